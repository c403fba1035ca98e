"""The study runner and the CLI, on stand-in notebooks (no training: each notebook starts in ~1.5 s).

The stand-ins mimic the real templates' contract: a ``parameters`` cell of
literals, and a complete record under ``records/<run_id>.json`` with the
run_id derived from the parameters the way :func:`expand` names it. They
write the record JSON directly rather than import resque, which would cost
seconds of torch import per kernel; the tests read the records back with
:func:`resque.cost.records.load_record` to show the two agree. Every notebook
appends its run_id to ``order.log`` so the tests can check the order.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("papermill")
nbformat = pytest.importorskip("nbformat")

from resque.cli import main  # noqa: E402
from resque.cost.records import load_record  # noqa: E402
from resque.study.results import ResultsDir  # noqa: E402
from resque.study.profiles import expand, list_profiles, load_profile  # noqa: E402
from resque.study.runner import Outcome, StudySummary, run_study  # noqa: E402

PROFILE = """\
description: Stand-in grid for the runner tests.
dataset: fashion_mnist
model: small_cnn
seeds: [0]
shifts:
  gaussian_noise: [0.1, 0.2]
tasks: [fashion_coarse4]
"""
RUN_IDS = [
    "source-seed0",
    "shift-gaussian_noise-seed0",  # the family's page: one notebook, one record per intensity
    "task-seed0",  # the seed's tasks on one page, one record per task
    "energy",
    "analysis",
]
#: The records the experiments write.
RECORD_IDS = ["source-seed0", "shift-gaussian_noise-0.1-seed0", "shift-gaussian_noise-0.2-seed0",
              "task-fashion_coarse4-seed0"]

HELPERS = """\
import json, pathlib
results = pathlib.Path(results_dir)
results.mkdir(parents=True, exist_ok=True)
with open(results / "order.log", "a") as log:
    log.write(RUN_ID + "\\n")

def save_record(kind, run_id=None, **own):
    # What a real experiment leaves: its record with the profile's settings, and what it owns.
    from resque.study.profiles import load_profile
    RUN_ID = run_id or globals()["RUN_ID"]
    own.update({k: globals()[k] for k in ("shift", "task") if k in globals()})
    settings = load_profile(profile).run_settings(kind, seed, **own)
    records = results / "records"
    records.mkdir(parents=True, exist_ok=True)
    experiment = {}
    if kind == "source":
        for suffix in (".safetensors", ".fingerprint.safetensors"):
            (results / "models").mkdir(exist_ok=True)
            (results / "models" / f"source-seed{seed}{suffix}").write_text("stand-in")
    else:
        experiment["scratch_run_id"] = "scratch-" + RUN_ID
        (records / f"scratch-{RUN_ID}.json").write_text(json.dumps({
            "schema": "resque-run/2", "run_id": "scratch-" + RUN_ID, "kind": "scratch", "seed": seed,
            "complete": True, "settings": settings}))
    (records / f"{RUN_ID}.json").write_text(json.dumps({
        "schema": "resque-run/2", "run_id": RUN_ID, "kind": kind, "seed": seed, "complete": True,
        "experiment": experiment, "settings": settings}))

def need_source():
    if not (results / "records" / f"source-seed{seed}.json").exists():
        raise RuntimeError("source model missing: the runner broke the order")
"""


def _notebook(parameters: str, body: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[cell, nbformat.v4.new_code_cell(body)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def write_templates(folder: Path, *, shift_fails_at: float | None = None, source_fails: bool = False) -> Path:
    """Stand-ins for the five templates; optionally failing ones."""
    folder.mkdir(parents=True, exist_ok=True)
    common = 'profile = ""\nresults_dir = ""\nseed = 0\n'
    source_fail = "raise ValueError('stand-in source failure')\n" if source_fails else ""
    shift_fail = ""
    if shift_fails_at is not None:
        shift_fail = (f"    if intensity == {shift_fails_at}:\n"
                      "        raise ValueError(f'stand-in failure at intensity {intensity}')\n")
    templates = {
        "source": ("", 'RUN_ID = f"source-seed{seed}"\n', source_fail + "save_record('source')"),
        "shift": ('shift = ""\nintensities = []\n', 'RUN_ID = f"shift-{shift}-seed{seed}"\n',
                  "need_source()\nfor intensity in intensities:\n" + shift_fail
                  + "    save_record('shift', f'shift-{shift}-{intensity:g}-seed{seed}', intensity=intensity)"),
        "task": ('tasks = []\n', 'RUN_ID = f"task-seed{seed}"\n',
                 "need_source()\nfor task in tasks:\n    save_record('task', f'task-{task}-seed{seed}')"),
        "energy": ("", 'RUN_ID = "energy"\n', "print('energy page')"),
        "analysis": ("", 'RUN_ID = "analysis"\n', "print(sorted(p.name for p in results.glob('records/*.json')))"),
    }
    for kind, (own, run_id, body) in templates.items():
        nbformat.write(_notebook(common + own, run_id + HELPERS + body), folder / f"{kind}.ipynb")
    return folder


def executed_order(results: Path) -> list[str]:
    return (results / "order.log").read_text().split()


@pytest.fixture(scope="module")
def profile_yaml(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("profile") / "standin.yaml"
    path.write_text(PROFILE)
    return path


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> Path:
    return write_templates(tmp_path_factory.mktemp("templates"))


@pytest.fixture(scope="module")
def first_run(profile_yaml, templates, tmp_path_factory) -> tuple[StudySummary, Path]:
    results = tmp_path_factory.mktemp("study") / "results"
    summary = run_study(profile_yaml, results, notebooks_dir=templates, progress=False)
    return summary, results


def test_the_stand_in_grid_is_the_one_expand_gives(profile_yaml):
    assert [e.run_id for e in expand(load_profile(profile_yaml), str(profile_yaml), "r")] == RUN_IDS


# --------------------------------------------------------------------------- local runs


def test_run_executes_every_experiment_in_order(first_run):
    summary, results = first_run
    assert summary.ok
    assert summary.done == RUN_IDS and summary.skipped == [] and summary.failed == {}
    assert executed_order(results) == RUN_IDS
    layout = ResultsDir(results)
    for run_id in RUN_IDS:
        executed = nbformat.read(layout.notebook(run_id), as_version=4)
        assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    for run_id in RECORD_IDS:
        assert load_record(layout.record(run_id), require_complete=True).run_id == run_id
    assert not (results / "failed").exists()
    assert summary.seconds > 0


def test_second_run_executes_nothing(first_run, profile_yaml, templates, capsys):
    _, results = first_run
    summary = run_study(profile_yaml, results, notebooks_dir=templates, progress=False)
    assert summary.done == [] and summary.skipped == RUN_IDS and summary.ok
    assert executed_order(results) == RUN_IDS  # no notebook appended to the log
    assert "0 done, 5 skipped, 0 failed" in capsys.readouterr().out


def test_failure_is_recorded_the_rest_complete_and_a_fixed_rerun_clears_it(profile_yaml, tmp_path, monkeypatch, capsys):
    failing = write_templates(tmp_path / "failing", shift_fails_at=0.2)
    results = tmp_path / "results"
    bad, bad_record = "shift-gaussian_noise-seed0", "shift-gaussian_noise-0.2-seed0"
    monkeypatch.setenv("RESQUE_NOTEBOOKS", str(failing))

    code = main(["study", "run", "--profile", str(profile_yaml), "--results", str(results), "--no-progress"])

    out = capsys.readouterr().out
    assert code == 1
    assert "4 done, 0 skipped, 1 failed" in out
    assert f"FAILED {bad}: ValueError: stand-in failure at intensity 0.2" in out
    layout = ResultsDir(results)
    failure = json.loads(layout.failure(bad).read_text())
    assert failure["run_id"] == bad and failure["error_type"] == "ValueError"
    assert "intensity 0.2" in failure["error"] and failure["utc_time"].endswith("+00:00")
    assert failure["notebook"] == str(layout.notebook(bad))
    executed = nbformat.read(layout.notebook(bad), as_version=4)  # kept, with the error in it
    assert any(o.get("ename") == "ValueError" for c in executed.cells for o in c.get("outputs", []))
    assert not layout.complete(bad_record)
    assert all(layout.complete(r) for r in RECORD_IDS if r != bad_record)  # 0.1, before the failure, is kept

    fixed = write_templates(tmp_path / "fixed")
    summary = run_study(profile_yaml, results, notebooks_dir=fixed, progress=False)
    assert summary.ok and summary.done == [bad, "energy", "analysis"]  # summaries re-run: a record is new
    assert not layout.failure(bad).exists()


def test_failed_source_blocks_its_shifts_and_tasks(profile_yaml, tmp_path):
    broken = write_templates(tmp_path / "broken", source_fails=True)
    summary = run_study(profile_yaml, tmp_path / "results", notebooks_dir=broken, progress=False)
    assert not summary.ok
    assert list(summary.failed) == ["source-seed0"]
    assert summary.blocked == RUN_IDS[1:3]
    assert summary.done == ["energy", "analysis"]
    assert executed_order(tmp_path / "results") == ["source-seed0", "energy", "analysis"]


def test_summaries_rerun_only_when_something_changed(profile_yaml, tmp_path):
    own = write_templates(tmp_path / "templates")
    results = tmp_path / "results"
    first = run_study(profile_yaml, results, notebooks_dir=own, only="analysis", progress=False)
    assert first.done == ["analysis"]  # no executed notebook yet
    again = run_study(profile_yaml, results, notebooks_dir=own, only="analysis", progress=False)
    assert again.skipped == ["analysis"]  # nothing new ran
    later = ResultsDir(results).notebook("analysis").stat().st_mtime + 10
    os.utime(own / "analysis.ipynb", (later, later))  # the template was edited
    edited = run_study(profile_yaml, results, notebooks_dir=own, only="analysis", progress=False)
    assert edited.done == ["analysis"]


@pytest.mark.parametrize("by_address", [False, True], ids=["cluster-object", "address"])
def test_dask_executor_runs_the_same_grid_and_returns_failures(profile_yaml, tmp_path, by_address):
    distributed = pytest.importorskip("distributed")
    failing = write_templates(tmp_path / "failing", shift_fails_at=0.2)
    results = tmp_path / "results"
    bad = "shift-gaussian_noise-seed0"
    cluster_options = dict(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None)
    with distributed.LocalCluster(**cluster_options) as cluster:
        scheduler = cluster.scheduler_address if by_address else cluster
        summary = run_study(profile_yaml, results, executor="dask", scheduler=scheduler, notebooks_dir=failing,
                            progress=False)
    assert summary.done == [r for r in RUN_IDS if r != bad]
    assert list(summary.failed) == [bad] and "intensity 0.2" in summary.failed[bad]
    assert json.loads(ResultsDir(results).failure(bad).read_text())["error_type"] == "ValueError"
    order = executed_order(results)
    assert sorted(order) == sorted(RUN_IDS)
    assert order[0] == "source-seed0" and order[-2:] == ["energy", "analysis"]


# --------------------------------------------------------------------------- CLI outputs


def test_cli_plan_prints_the_experiments_without_running(profile_yaml, first_run, capsys):
    _, results = first_run
    assert main(["study", "plan", "--profile", str(profile_yaml), "--results", str(results)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "5 experiments" in lines[0]
    assert [line.split()[1] for line in lines[1:]] == RUN_IDS
    assert "shift.ipynb" in lines[2] and "done" in lines[2] and "intensities=[0.1, 0.2]" in lines[2]


def test_cli_plan_of_fresh_results_says_to_run(profile_yaml, tmp_path, capsys):
    assert main(["study", "plan", "--profile", str(profile_yaml), "--results", str(tmp_path / "r"),
                 "--only", "shift-*"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines[1:]] == RUN_IDS[1:2]
    assert all("to run" in line for line in lines[1:])
    assert not (tmp_path / "r").exists()


def test_cli_list_shows_every_profile_with_its_size(capsys):
    assert main(["study", "list"]) == 0
    out = capsys.readouterr().out
    for name in list_profiles():
        profile = load_profile(name)
        row = next(line for line in out.splitlines() if line.split()[0] == name)
        assert row.split()[1] == str(len(expand(profile, name, ".")))
        assert profile.description in row


# --------------------------------------------------------------------------- bad input: one test per message


def _usage_error(argv, capsys) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "Traceback" not in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    return captured.err


def test_unknown_profile_lists_the_known_ones(capsys):
    err = _usage_error(["study", "run", "--profile", "quik"], capsys)
    assert "profile='quik'" in err and all(repr(name) in err for name in list_profiles())


def test_unknown_executor(profile_yaml, tmp_path, capsys):
    err = _usage_error(["study", "run", "--profile", str(profile_yaml), "--results", str(tmp_path),
                        "--executor", "slurm"], capsys)
    assert "executor='slurm'" in err and "'local', 'dask'" in err


def test_dask_without_scheduler(profile_yaml, tmp_path, capsys):
    err = _usage_error(["study", "run", "--profile", str(profile_yaml), "--results", str(tmp_path),
                        "--executor", "dask"], capsys)
    assert "scheduler=None" in err and "tcp://" in err


def test_scheduler_without_dask_executor(profile_yaml, tmp_path):
    with pytest.raises(ValueError, match="executor='dask'"):
        run_study(profile_yaml, tmp_path, scheduler="tcp://localhost:8786", progress=False)


def test_unknown_kernel_lists_the_installed_ones(profile_yaml, tmp_path, templates):
    with pytest.raises(ValueError, match="kernel_name='no-such-kernel'.*'python3'"):
        run_study(profile_yaml, tmp_path / "results", notebooks_dir=templates, kernel_name="no-such-kernel",
                  progress=False)


def test_missing_templates_are_named(profile_yaml, tmp_path):
    partial = write_templates(tmp_path / "partial")
    (partial / "task.ipynb").unlink()
    with pytest.raises(ValueError, match="Missing: task.ipynb"):
        run_study(profile_yaml, tmp_path / "results", notebooks_dir=partial, progress=False)
    assert not (tmp_path / "results").exists()  # refused before any kernel started


def test_missing_notebooks_folder(profile_yaml, tmp_path, monkeypatch):
    monkeypatch.setenv("RESQUE_NOTEBOOKS", str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="RESQUE_NOTEBOOKS="):
        run_study(profile_yaml, tmp_path / "results", progress=False)


def test_only_matching_nothing(profile_yaml, tmp_path, templates):
    with pytest.raises(ValueError, match="only='shift-frost-\\*'"):
        run_study(profile_yaml, tmp_path, notebooks_dir=templates, only="shift-frost-*", progress=False)


def test_invalid_profile_values_fail_before_any_kernel(tmp_path, templates):
    bad = tmp_path / "bad.yaml"
    bad.write_text(PROFILE.replace("[0.1, 0.2]", "[0.1, 7.0]"))
    with pytest.raises(ValueError):
        run_study(bad, tmp_path / "results", notebooks_dir=templates, progress=False)
    assert not (tmp_path / "results").exists()


def test_summary_reports_the_throughput_ratio_and_its_parts(tmp_path):
    from resque.cost.records import RunRecord
    from resque.study.profiles import Experiment
    from resque.study.runner import StudySummary, _write_summary

    results = ResultsDir(tmp_path)
    for run_id, kind, seconds in (("source-seed0", "source", 3.0), ("shift-frost-0.3-seed0", "shift", 1.5),
                                  ("scratch-shift-frost-0.3-seed0", "scratch", 2.0)):
        experiment = {"scratch_run_id": "scratch-shift-frost-0.3-seed0"} if kind == "shift" else {}
        RunRecord(run_id, kind, experiment=experiment, complete=True,
                  totals={"train_seconds": seconds, "eval_seconds": 0.5}).save(results.record(run_id))
    experiments = [Experiment("source-seed0", "source", {"seed": 0}),
                   Experiment("shift-frost-seed0", "shift", {"seed": 0, "shift": "frost", "intensities": [0.3]}),
                   Experiment("analysis", "analysis", {"seed": 0})]
    outcomes = [Outcome("source-seed0", "source", "skipped"), Outcome("shift-frost-seed0", "shift", "done"),
                Outcome("analysis", "analysis", "done")]
    _write_summary(tmp_path, StudySummary("p", tmp_path, done=["shift-frost-seed0", "analysis"],
                                          seconds=12.0, outcomes=outcomes), experiments)
    summary = json.loads(results.summary.read_text())
    this_run = summary["invocations"][-1]["throughput"]
    assert this_run["train_eval_seconds"] == pytest.approx(1.5 + 0.5 + 2.0 + 0.5)  # the run and its yardstick
    assert this_run["ratio"] == pytest.approx(12.0 / 4.5) and this_run["overhead_seconds"] == pytest.approx(7.5)
    assert summary["throughput"]["train_eval_seconds"] == pytest.approx(3.5 + 2.0 + 2.5)  # every record
    assert summary["throughput"]["ratio"] == pytest.approx(12.0 / 8.0)


def test_throughput_counts_repeats_and_a_yardstick_trained_to_its_plateau_in_full(tmp_path):
    from resque.cost.records import RunRecord
    from resque.study.runner import _training_seconds

    results = ResultsDir(tmp_path)
    RunRecord("task-t-seed0", "task", experiment={"scratch_run_id": "scratch-task-t-seed0"}, complete=True,
              totals={"train_seconds": 1.0, "eval_seconds": 0.5},
              replicates=[{"totals": {"train_seconds": 0.75, "eval_seconds": 0.25}}]).save(results.record("task-t-seed0"))
    # its costs stop at the target (2 + 1 s), but it trained on to its plateau (6 + 2 s)
    RunRecord("scratch-task-t-seed0", "scratch", complete=True,
              totals={"train_seconds": 2.0, "eval_seconds": 1.0,
                      "plateau": {"train_seconds": 6.0, "eval_seconds": 2.0}}).save(results.record("scratch-task-t-seed0"))
    assert _training_seconds(results, ["task-t-seed0"]) == pytest.approx(1.5 + 1.0 + 8.0)  # run, its repeat, yardstick
    # and the whole study's figure in summary.json counts them the same way (not the costs to the target)
    from resque.study.profiles import Experiment
    from resque.study.runner import StudySummary, _write_summary

    experiments = [Experiment("task-seed0", "task", {"seed": 0, "tasks": ["t"]})]
    _write_summary(tmp_path, StudySummary("p", tmp_path, done=["task-seed0"], seconds=21.0,
                                          outcomes=[Outcome("task-seed0", "task", "done")]), experiments)
    summary = json.loads(results.summary.read_text())
    assert summary["throughput"]["train_eval_seconds"] == pytest.approx(10.5)
    assert summary["invocations"][-1]["throughput"]["train_eval_seconds"] == pytest.approx(10.5)
