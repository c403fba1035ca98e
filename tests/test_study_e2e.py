"""The smoke profile end to end: papermill notebooks on a Dask LocalCluster, records,
the analysis, the strict book build; then a resume that runs nothing new."""

import nbformat

import json
from pathlib import Path

import pytest

import resque
from resque.study import load_profile, run_study
from resque.study.analysis import load_records
from resque.study.book import build
from resque.study.book.browser import check_book, find_browser
from resque.study.results import ResultsDir

distributed = pytest.importorskip("distributed")
from test_book import book_sources, broken_local_links, needs_jupyter_book  # noqa: E402

pytestmark = pytest.mark.skipif(
    not resque.data.datasets.DEBIAN_FASHION_MNIST_DIR.exists(),
    reason="needs Debian's dataset-fashion-mnist (make test installs it)",
)

SMOKE = Path(resque.study.profiles.PROFILE_DIR) / "smoke.yaml"
BUILT: dict[str, Path] = {}  # the smoke book test_smoke_study_end_to_end built


def test_a_dataset_the_machine_lacks_stops_the_study_before_any_kernel(tmp_path, monkeypatch):
    # MNIST is not on this machine and the profile forbids downloads: said at once, not minutes into the run.
    profile_path = tmp_path / "smoke_and_mnist.yaml"
    profile_path.write_text(SMOKE.read_text().replace("tasks: [fashion_coarse4]", "tasks: [fashion_coarse4, mnist]"))
    monkeypatch.setenv("RESQUE_DATA", str(tmp_path / "data"))
    with pytest.raises(resque.DataError, match="dataset 'mnist' is not in"):
        run_study(profile_path, tmp_path / "results", progress=False)
    assert not (tmp_path / "results").exists()


def templates_failing_on(task: str, folder: Path) -> Path:
    """A copy of the notebook templates whose task page fails at `task`, after the tasks before it (a failure mid-study)."""
    source = Path(resque.__file__).resolve().parents[1] / "notebooks"
    folder.mkdir()
    for path in source.glob("*.ipynb"):
        notebook = nbformat.read(path, as_version=4)
        if path.name == "task.ipynb":
            at = next(i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])) + 1
            notebook.cells.insert(at, nbformat.v4.new_code_cell(
                "import resque.study.experiments as experiments\n"
                "real = experiments._run_task_with\n"
                "def failing(profile, seed, task, *args, **kwargs):\n"
                f"    if task == {task!r}:\n"
                f"        raise RuntimeError('stand-in failure of task {task}')\n"
                "    return real(profile, seed, task, *args, **kwargs)\n"
                "experiments._run_task_with = failing"))
        nbformat.write(notebook, folder / path.name)
    return folder


@needs_jupyter_book
def test_smoke_study_end_to_end(tmp_path, monkeypatch, capsys):
    # The shipped smoke grid plus one experiment that fails in its notebook, mid-study.
    profile_path = tmp_path / "smoke_and_a_failure.yaml"
    profile_path.write_text(SMOKE.read_text().replace("tasks: [fashion_coarse4]", "tasks: [fashion_coarse4, digits]"))
    profile = load_profile(profile_path)
    assert profile.tasks == ["fashion_coarse4", "digits"] and not profile.download
    results = ResultsDir(tmp_path / "results")
    monkeypatch.setenv("RESQUE_DATA", str(tmp_path / "data"))  # the runner's kernels inherit it
    templates = templates_failing_on("digits", tmp_path / "templates")

    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
    try:
        summary = run_study(profile_path, results.root, executor="dask", scheduler=cluster, progress=False,
                            notebooks_dir=templates)
    finally:
        cluster.close()

    assert list(summary.failed) == ["task-seed0"]  # the page of the seed's tasks, failed at its second task
    assert "stand-in failure of task digits" in summary.failed["task-seed0"]
    assert results.failure("task-seed0").exists() and results.notebook("task-seed0").exists()
    assert not results.complete("task-digits-seed0")
    expected = ["source-seed0", "shift-gaussian_noise-seed0", "shift-frost-seed0", "energy", "analysis"]
    assert summary.done == expected
    records = ["source-seed0", "shift-gaussian_noise-0-seed0", "shift-gaussian_noise-0.1-seed0",
               "shift-frost-0.3-seed0", "task-fashion_coarse4-seed0"]
    for run_id in records:
        assert resque.load_record(results.record(run_id), require_complete=True).run_id == run_id
    assert all(results.notebook(run_id).exists() for run_id in expected)  # fashion_coarse4 came before the failure

    frame = load_records(results.root)
    assert sorted(frame["run_id"]) == sorted(records[1:])
    assert frame["resque_dist"].notna().sum() == 3 and frame["resque_task"].notna().sum() == 1
    executed = json.loads(results.notebook("analysis").read_text())
    assert any(o.get("data", {}).get("image/png") for c in executed["cells"] for o in c.get("outputs", []))

    root = book_sources(tmp_path / "book_root")
    index = build(results.root, book_dir=root, strict=True, output_dir=tmp_path / "out")
    html = index.parent
    assert index.exists() and not broken_local_links(html)
    pages = {p.relative_to(html).as_posix() for p in html.rglob("*.html")}
    assert any("shift-frost-seed0" in p for p in pages) and any("analysis" in p for p in pages)
    BUILT["html"] = html  # for the browser check below

    # The forecast from the smoke study's own source model and runs: too few runs by
    # default (3 < 5) is said plainly; with a lower bar it prints the four numbers.
    from resque.cli import main as cli

    forecast_args = ["forecast", "--checkpoint", str(results.source_model(0)),
                     "--fingerprint", str(results.source_fingerprint(0)), "--data", "fashion_mnist",
                     "--shift", "gaussian_noise", "--intensity", "0.1", "--n-per-class", "20",
                     "--calibration", str(results.root)]
    assert cli(forecast_args) == 2
    assert "at least min_runs=5" in capsys.readouterr().err
    assert cli(forecast_args + ["--min-runs", "3", "--include-censored"]) == 0
    printed = capsys.readouterr().out
    assert all(word in printed for word in ("RESQUE_dist", "epochs", "kWh", "CO2"))

    again = run_study(profile_path, results.root, progress=False, notebooks_dir=templates)  # local executor
    assert again.done == [] and list(again.failed) == ["task-seed0"]
    assert set(again.skipped) == set(expected)

    # The same experiments one after another in one kernel (the local default) compute the same
    # records as each in a kernel of its own (the Dask worker's above); the failed page's kernel is replaced.
    warm = ResultsDir(tmp_path / "warm")
    rerun = run_study(profile_path, warm.root, progress=False, notebooks_dir=templates, only="*-seed0")
    assert rerun.done == expected[:3] and list(rerun.failed) == ["task-seed0"]
    for run_id in records:
        cold, hot = (resque.load_record(r.record(run_id)) for r in (results, warm))
        assert hot.estimators == cold.estimators and hot.stop_reason == cold.stop_reason
        assert hot.test_accuracy == cold.test_accuracy
        assert [(e["steps"], e["val_loss"]) for e in hot.evaluations] == [
            (e["steps"], e["val_loss"]) for e in cold.evaluations]


@pytest.mark.skipif(find_browser() is None, reason="needs Chromium (Debian: apt-get install -y chromium; "
                                                   "make test installs it where apt-get can)")
def test_the_smoke_book_reads_well_in_a_browser(tmp_path, monkeypatch):
    # Every page of the smoke study's book, opened from file:// offline as a reader would: the book the
    # end-to-end test above built, or (run alone) a smoke study and its book built here.
    if "html" not in BUILT:
        monkeypatch.setenv("RESQUE_DATA", str(tmp_path / "data"))
        run_study(SMOKE, tmp_path / "results", progress=False)
        BUILT["html"] = build(tmp_path / "results", book_dir=book_sources(tmp_path / "book_root"), strict=True,
                              output_dir=tmp_path / "out").parent
    report = check_book(BUILT["html"])
    assert report.ok, report.summary()
    assert len(report.pages) >= 10 and sum(page.typeset for page in report.pages) > 0
    assert [shot.name for shot in report.screenshots] == ["front.png", "results.png"]
