"""The book: assembled from a study's results and built strictly (-W -n --keep-going).

The results folder here is synthetic: tiny executed notebooks (a ``# Title``
cell, a code cell with a text and a PNG output, papermill metadata) and run
records, laid out as ``resque study run`` lays them out. The book's sources are
copied into tmp_path, so nothing is written into the repository.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

nbformat = pytest.importorskip("nbformat")  # the book's tools: the `book` extra (jupyter-book, matplotlib)
pytest.importorskip("matplotlib")

from resque.cost.records import RunRecord
from resque.cli import main as cli_main
from resque.study import book

REPO = Path(__file__).resolve().parents[1]
needs_jupyter_book = pytest.mark.skipif(
    not (Path(sys.executable).with_name("jupyter-book").exists() or shutil.which("jupyter-book")),
    reason="jupyter-book is not installed",
)
# A 2 x 2 RGB PNG.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg=="
)
# run_id -> (the template's title, the parameters papermill injected besides profile and seed)
RUNS = {
    "source-seed0": ("Source model: training on clean data", {}),
    # a family's grid on one page (a record per intensity); frost as an older study wrote it, a page per run
    "shift-gaussian_noise-seed0": ("Distribution shift: score, then retrain",
                                   {"shift": "gaussian_noise", "intensities": [0.04, 0.1]}),
    "shift-frost-0.3-seed0": ("Distribution shift: score, then retrain", {"shift": "frost", "intensity": 0.3}),
    "task-fashion_coarse4-seed0": ("Task change: score, then retrain", {"task": "fashion_coarse4"}),
    "energy": ("Energy and carbon", {}),
    "analysis": ("Results", {}),
}


def executed_notebook(title: str, parameters: dict, *, headline: bool = False):
    """A notebook shaped like papermill's output."""
    v4 = nbformat.v4
    png = base64.b64encode(PNG).decode()
    code = v4.new_code_cell("print('hello')\nfigure()", execution_count=1, outputs=[
        v4.new_output("stream", name="stdout", text="hello\n"),
        v4.new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"}),
    ])
    if headline:
        code.metadata["tags"] = [book.HEADLINE_TAG]
    notebook = v4.new_notebook(cells=[
        v4.new_markdown_cell(f"# {title}\n\nSome prose with math, $\\theta_k$.\n\n## A section"),
        v4.new_code_cell("seed = 0", metadata={"tags": ["injected-parameters"]}, execution_count=0),
        code,
    ])
    notebook.metadata.update({
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python", "version": "3.11", "pygments_lexer": "ipython3"},
        "papermill": {"duration": 12.5, "start_time": "2025-01-01T00:00:00", "end_time": "2025-01-01T00:00:12",
                      "parameters": parameters, "exception": None},
    })
    return notebook


def synthetic_results(root: Path, *, runs=RUNS, headline: bool = True) -> Path:
    (root / "notebooks").mkdir(parents=True)
    for run_id, (title, extra) in runs.items():
        parameters = {"profile": "smoke", "seed": 0, **extra}
        nb = executed_notebook(title, parameters, headline=headline and run_id == "analysis")
        nbformat.write(nb, root / "notebooks" / f"{run_id}.ipynb")
    records = [
        RunRecord("source-seed0", "source", {"dataset": "fashion_mnist"}, totals={"epochs": 3, "energy_kwh": 1e-4,
                  "energy_estimated_kwh": 1e-4}, stop_reason="reached", test_accuracy=0.8, complete=True),
        RunRecord("shift-gaussian_noise-0.04-seed0", "shift", {"shift": "gaussian_noise", "intensity": 0.04,
                  "scratch_run_id": "scratch-shift-gaussian_noise-0.04-seed0"},
                  estimators={"resque_dist": 0.021, "resque_dist_paired": 0.004, "accuracy_drop": 0.01},
                  totals={"epochs": 1}, stop_reason="reached", complete=True),
        RunRecord("scratch-shift-gaussian_noise-0.04-seed0", "scratch", totals={"epochs": 4}, complete=True),
        RunRecord("shift-frost-0.3-seed0", "shift", {"shift": "frost", "intensity": 0.3},
                  estimators={"resque_dist": 0.2}, totals={"epochs": 2}, stop_reason="cap", complete=True),
        RunRecord("task-fashion_coarse4-seed0", "task", {"task": "fashion_coarse4", "num_classes": 4},
                  estimators={"resque_task": 0.14}, totals={"epochs": 2}, stop_reason="reached", complete=True),
    ]
    for record in records:
        record.save(root / "records" / f"{record.run_id}.json")
    # A failed page: its notebook exists, its first intensity's record too, not its second; a note says why.
    (root / "failed").mkdir()
    (root / "failed" / "shift-gaussian_noise-seed0.json").write_text(json.dumps({"error": "boom"}))
    return root


def book_sources(root: Path) -> Path:
    """The book's sources (config, toc, pages) copied into `root`."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(REPO / name, root / name)
    shutil.copytree(REPO / "book", root / "book", ignore=shutil.ignore_patterns("_generated", "_build"))
    return root


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.targets: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.targets.append(value)


def broken_local_links(html_root: Path) -> list[str]:
    broken = []
    for page in html_root.rglob("*.html"):
        if "_static" in page.relative_to(html_root).parts:  # the theme's templates, not pages
            continue
        parser = _Links()
        parser.feed(page.read_text(errors="replace"))
        for target in parser.targets:
            url = urlparse(target)
            if url.scheme or url.netloc or target.startswith(("#", "mailto:", "javascript:")) or not url.path:
                continue
            if not (page.parent / unquote(url.path)).resolve().exists():
                broken.append(f"{page.relative_to(html_root)} -> {target}")
    return broken


# --------------------------------------------------------------------------- assemble


def test_assemble_writes_every_page(tmp_path):
    results = synthetic_results(tmp_path / "results")
    pages = book_sources(tmp_path / "site") / "book"
    generated = book.assemble(results, pages)
    assert generated == pages / "_generated"
    for run_id in RUNS:
        kind = run_id.split("-")[0]
        folder = {"source": "sources/", "shift": "shifts/", "task": "tasks/"}.get(kind, "")
        assert (generated / f"{folder}{run_id}.ipynb").is_file()
    for name in ("sources.md", "shifts.md", "tasks.md", "headline.inc.md", "timings.inc.md", "findings.inc.md",
                 "profiles.inc.md",
                 "figures/method.png", "figures/headline.png", "_static/mathjax/tex-mml-chtml.js"):
        assert (generated / name).is_file(), name
    shifts = (generated / "shifts.md").read_text()
    assert "## Gaussian noise" in shifts and "## Frost" in shifts
    # Every run of a template shares its title: the book's copy names the run.
    assert "[0.04](shifts/shift-gaussian_noise-seed0.ipynb)" in shifts  # each intensity links to its page
    rows = {line.split("|")[1].strip(): line for line in shifts.splitlines() if "shift-gaussian_noise-seed0" in line}
    assert "reached" in rows["[0.04](shifts/shift-gaussian_noise-seed0.ipynb)"]  # done before the page failed
    assert "**failed**" in rows["[0.1](shifts/shift-gaussian_noise-seed0.ipynb)"]
    page = nbformat.read(generated / "shifts" / "shift-gaussian_noise-seed0.ipynb", as_version=4)
    assert page.cells[0].source.startswith("# Gaussian noise, seed 0\n")
    assert "[Source model, seed 0](sources/source-seed0.ipynb)" in (generated / "sources.md").read_text()
    copy = nbformat.read(generated / "shifts" / "shift-frost-0.3-seed0.ipynb", as_version=4)
    assert copy.cells[0].source.startswith("# Frost at 0.3, seed 0\n\n*Distribution shift: score, then retrain*")
    assert book.notebook_title(nbformat.read(generated / "energy.ipynb", as_version=4), "") == "Energy and carbon"
    assert "0.021" in shifts and "| ≥ 4 |" in shifts  # RESQUE_dist and the scratch yardstick's epochs (capped: a bound)
    assert "**failed**" in shifts
    assert "## Does the cost spread?" in shifts and "**The criteria do not hold**" in shifts  # 1 of 2 censored
    assert (generated / "figures" / "headline.png").read_bytes() == PNG
    assert "once the study has finished enough shift runs" in (generated / "findings.inc.md").read_text()
    timings = (generated / "timings.inc.md").read_text()
    assert "profile `smoke`" in timings and "**75 s**" in timings  # 6 notebooks x 12.5 s of papermill duration


def test_book_copies_show_no_parameter_cell_and_no_path_of_the_machine(tmp_path):
    results = synthetic_results(tmp_path / "site" / "results" / "smoke")
    for path in (results / "notebooks").glob("*.ipynb"):  # as papermill leaves them: absolute paths everywhere
        nb = nbformat.read(path, as_version=4)
        nb.cells.insert(1, nbformat.v4.new_code_cell('results_dir = "results/smoke"', metadata={"tags": ["parameters"]}))
        nb.cells[2].source = f'results_dir = "{results.resolve()}"'
        nb.cells[3].outputs[0]["text"] = f"records from {results.resolve()}/records, data in {Path.home()}/.cache\n"
        nb.metadata["papermill"]["input_path"] = str(tmp_path / "site" / "notebooks" / "shift.ipynb")
        nbformat.write(nb, path)
    generated = book.assemble(results, book_sources(tmp_path / "site") / "book")
    for path in generated.rglob("*.ipynb"):
        text = path.read_text()
        assert str(tmp_path) not in text and str(Path.home()) + "/" not in text, path.name
        if path.parent.name == "downloads":  # the tutorial as a notebook: no parameters
            continue
        nb = nbformat.read(path, as_version=4)
        code = [cell for cell in nb.cells if cell.cell_type == "code"]
        injected, last = code[1], code[2]
        assert injected.source == 'results_dir = "results/smoke"'  # relative to the project
        assert "records from results/smoke/records, data in ~/.cache" in last.outputs[0]["text"]
        assert nb.metadata["papermill"]["input_path"] == "notebooks/shift.ipynb"
        removed = [cell for cell in nb.cells if "remove-cell" in cell.metadata.get("tags", [])]
        assert [cell.metadata["tags"][0] for cell in removed] == ["parameters", "injected-parameters"]
        assert "hide-input" in last.metadata["tags"]  # the code behind a toggle, its output in view


def test_every_experiment_page_says_how_to_rerun_it(tmp_path):
    results = synthetic_results(tmp_path / "results")
    generated = book.assemble(results, book_sources(tmp_path / "site") / "book")
    page = nbformat.read(generated / "shifts" / "shift-gaussian_noise-seed0.ipynb", as_version=4)
    rerun, download = page.cells[1].source.split("\n\n")
    assert page.cells[1].cell_type == "markdown" and rerun == (
        "To rerun exactly this experiment (into `rerun/`, from nothing): `resque study run --profile smoke "
        "--results rerun --only source-seed0 && resque study run --profile smoke --results rerun --only "
        "shift-gaussian_noise-seed0`")
    assert "{download}`shift-gaussian_noise-seed0.md <../downloads/shift-gaussian_noise-seed0.md>`" in download
    source = nbformat.read(generated / "sources" / "source-seed0.ipynb", as_version=4)
    assert source.cells[1].source.split("\n\n")[0].endswith(
        "`resque study run --profile smoke --results rerun --only source-seed0`")
    analysis = nbformat.read(generated / "analysis.ipynb", as_version=4)
    assert not any("To rerun" in cell.source for cell in analysis.cells)
    assert "{download}`analysis.md <downloads/analysis.md>`" in analysis.cells[1].source


def test_each_page_downloads_in_its_other_format(tmp_path):
    from resque.study.book.downloads import tutorial_blocks

    results = synthetic_results(tmp_path / "results")
    generated = book.assemble(results, book_sources(tmp_path / "site") / "book")
    notebooks = sorted(p.stem for p in generated.rglob("*.ipynb") if p.parent.name != "downloads")
    assert sorted(p.stem for p in (generated / "downloads").glob("*.md")) == notebooks
    text = (generated / "downloads" / "shift-gaussian_noise-seed0.md").read_text()
    page = nbformat.read(generated / "shifts" / "shift-gaussian_noise-seed0.ipynb", as_version=4)
    assert text.startswith("---\njupytext:") and "format_name: myst" in text
    assert text.count("```{code-cell} ipython3") == sum(c.cell_type == "code" for c in page.cells)
    assert re.search(r":tags: \[[^\]]*remove-cell", text) and ":tags: [hide-input]" in text  # tags kept
    assert str(tmp_path) not in text  # scrubbed like the page
    assert "To rerun exactly this experiment" in text and "{download}" not in text  # no link to itself
    tutorial = nbformat.read(generated / "downloads" / "tutorial.ipynb", as_version=4)
    code = [cell.source for cell in tutorial.cells if cell.cell_type == "code"]
    assert code == [block.rstrip("\n") for block in tutorial_blocks(REPO / "book" / "tutorial.md")]
    prose = "\n".join(cell.source for cell in tutorial.cells if cell.cell_type == "markdown")
    assert "**Exercise 1: a dose-response curve**" in prose and "**Solution**" in prose
    assert ":::" not in prose and ":class:" not in prose and "{cite:p}" not in prose and "{doc}" not in prose
    assert "xiao2017fashion" not in prose and "as a notebook" not in prose  # no citation key, no self-reference
    solutions = [c for c in tutorial.cells if c.cell_type == "code" and c.metadata.get("jupyter", {}).get("source_hidden")]
    assert len(solutions) == prose.count("**Solution**") >= 4  # each solution folded, the lesson's code open


def test_myst_text_notebook_keeps_cells_in_order():
    from resque.study.book.downloads import myst_from_notebook

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Title"),
                                         nbformat.v4.new_markdown_cell("More."),
                                         nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["hide-input"]}),
                                         nbformat.v4.new_markdown_cell("End.")])
    text = myst_from_notebook(nb)
    assert text.index("# Title") < text.index("+++") < text.index("More.") < text.index("x = 1") < text.index("End.")
    assert "```{code-cell} ipython3\n:tags: [hide-input]\n\nx = 1\n```" in text


def test_teachers_page_quotes_the_studys_measured_time(tmp_path):
    results = synthetic_results(tmp_path / "results")
    generated = book.assemble(results, book_sources(tmp_path / "site") / "book")
    assert "left no `summary.json`" in (generated / "teaching.inc.md").read_text()
    (results / "summary.json").write_text(json.dumps({"wall_seconds": 300.0}))
    generated = book.assemble(results, book_sources(tmp_path / "site2") / "book")
    teaching = (generated / "teaching.inc.md").read_text()
    assert "profile `smoke`" in teaching and "took **5.0 min** of wall time" in teaching


def test_findings_link_to_the_sections_the_results_page_labels():
    from resque.study.book.build import FINDINGS_SECTIONS, _findings_links

    labelled = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("(results-best)=\n## Which?")])
    assert _findings_links(labelled) == {"best": " ({ref}`details <results-best>`)"}
    assert _findings_links(None) == {}
    template = nbformat.read(REPO / "notebooks" / "analysis.ipynb", as_version=4)
    assert set(_findings_links(template)) == set(FINDINGS_SECTIONS)  # every label is in the template


def test_assemble_without_analysis_writes_placeholders(tmp_path):
    results = synthetic_results(tmp_path / "results", runs={"source-seed0": ("Source model", {})})
    generated = book.assemble(results, book_sources(tmp_path / "site") / "book")
    assert not (generated / "figures" / "headline.png").exists()
    assert "appears here once" in (generated / "headline.inc.md").read_text()
    assert "has not run" in (generated / "analysis.md").read_text()
    assert "has not run" in (generated / "energy.md").read_text()
    assert "No experiment of this kind ran" in (generated / "shifts.md").read_text()


def test_assemble_replaces_a_previous_study(tmp_path):
    pages = book_sources(tmp_path / "site") / "book"
    book.assemble(synthetic_results(tmp_path / "one"), pages)
    book.assemble(synthetic_results(tmp_path / "two", runs={"source-seed0": ("Source model", {})}), pages)
    assert not list((pages / "_generated" / "shifts").glob("*.ipynb"))


def test_headline_falls_back_to_the_first_figure(tmp_path):
    results = synthetic_results(tmp_path / "results", headline=False)
    generated = book.assemble(results, book_sources(tmp_path / "site") / "book")
    assert (generated / "figures" / "headline.png").read_bytes() == PNG
    assert "The first figure of the results page" in (generated / "headline.inc.md").read_text()


def test_notebook_title():
    nb = executed_notebook("A title", {})
    assert book.notebook_title(nb, "default") == "A title"
    nb.cells[0].source = "no heading here"
    assert book.notebook_title(nb, "default") == "default"


def test_missing_results_dir_is_explained(tmp_path):
    with pytest.raises(book.BookError, match="resque study run"):
        book.assemble(tmp_path / "nowhere", tmp_path)


def test_build_needs_a_book_root(tmp_path):
    with pytest.raises(book.BookError, match="_config.yml"):
        book.build(tmp_path, tmp_path)


# --------------------------------------------------------------------------- build


@needs_jupyter_book
def test_strict_build_of_a_synthetic_study(tmp_path):
    results = synthetic_results(tmp_path / "results")
    root = book_sources(tmp_path / "site")
    index = book.build(results, root, strict=True)
    html = index.parent
    assert index == root / "_build" / "html" / "index.html" and index.is_file()
    expected = ["book/intro", "book/method", "book/tutorial", "book/teaching", "book/reproduce",
                "book/_generated/sources",
                "book/_generated/shifts", "book/_generated/tasks", "book/_generated/energy",
                "book/_generated/analysis"]
    expected += [f"book/_generated/{ {'source': 'sources', 'shift': 'shifts', 'task': 'tasks'}[r.split('-')[0]]}/{r}"
                 for r in RUNS if "-" in r]
    for page in expected:
        assert (html / f"{page}.html").is_file(), page
    assert broken_local_links(html) == []
    # Titles come from the notebooks, the figures are in, MathJax is local, templates are not rendered.
    assert "Gaussian noise, seed 0" in (html / "book/_generated/shifts/shift-gaussian_noise-seed0.html").read_text()
    assert "Frost at 0.3, seed 0" in (html / "book/_generated/shifts/shift-frost-0.3-seed0.html").read_text()
    assert "headline.png" in (html / "book/intro.html").read_text()
    assert re.search(r'src="[./]*_static/mathjax/tex-mml-chtml.js', (html / "book/method.html").read_text())
    assert not (html / "notebooks").exists() and not (html / "results").exists()


@needs_jupyter_book
def test_strict_build_fails_with_the_warning(tmp_path):
    results = synthetic_results(tmp_path / "results", runs={"source-seed0": ("Source model", {})})
    root = book_sources(tmp_path / "site")
    (root / "book" / "method.md").write_text("# The method\n\nA link to {doc}`nowhere`.\n")
    with pytest.raises(book.BookBuildError, match="nowhere") as caught:
        book.build(results, root, strict=True)
    assert caught.value.returncode != 0


@needs_jupyter_book
def test_book_command(tmp_path, capsys):
    results = synthetic_results(tmp_path / "results", runs={"source-seed0": ("Source model", {})})
    root = book_sources(tmp_path / "site")
    command = ["book", "build", "--results", str(results), "--book-dir", str(root), "--output", str(tmp_path / "out")]
    assert cli_main(command) == 0
    assert (tmp_path / "out" / "_build" / "html" / "index.html").is_file()
    assert "index.html" in capsys.readouterr().out
    assert cli_main(["book", "build", "--results", str(tmp_path / "nowhere"), "--book-dir", str(root)]) == 1
    assert "not a folder" in capsys.readouterr().err


# --------------------------------------------------------------------------- tutorial


def test_tutorial_python_blocks_run(tmp_path, monkeypatch):
    """The tutorial's code, solutions included, runs as written (in order, as one session)."""
    from resque.study.book.downloads import run_tutorial

    run = run_tutorial(REPO / "book" / "tutorial.md", workdir=tmp_path)
    assert len(run.seconds) >= 5 and run.total > 0
    assert 0 <= float(run.namespace["score"]) <= 1


def test_timings_quote_the_runners_throughput(tmp_path):
    results = synthetic_results(tmp_path / "results")
    (results / "summary.json").write_text(json.dumps({"wall_seconds": 300.0, "throughput": {
        "wall_seconds": 300.0, "train_eval_seconds": 200.0, "overhead_seconds": 100.0, "ratio": 1.5}}))
    generated = book.assemble(results, book_sources(tmp_path / "site") / "book")
    timings = (generated / "timings.inc.md").read_text()
    assert "**5.0 min** of wall time" in timings and "(train + eval) = **1.50**" in timings and "3.3 min" in timings
