"""Assemble the book from a results folder, then build its HTML with Jupyter Book."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ...errors import BookBuildError, BookError
from .collect import GENERATED, GROUPS, SINGLE_PAGES, _collect
from .downloads import myst_from_notebook, notebook_from_markdown
from .figure import _method_figure
from .mathjax import _install_mathjax
from .notebooks import for_readers, rerun_line, with_rerun_line
from .pages import (
    _headline_snippet,
    _missing_page,
    _profiles_snippet,
    _shifts_page,
    _sources_page,
    _tasks_page,
    _teaching_snippet,
    _timings_snippet,
    _unreadable_note,
)

def _machine_paths(results_dir: Path, book_dir: Path) -> dict[str, str]:
    """Absolute paths of the building machine -> what the book shows instead (see notebooks.for_readers).

    The results folder becomes its path relative to the project (``results/quick``),
    or its name when it lies elsewhere; the project's root becomes nothing (so a
    template is ``notebooks/shift.ipynb``), and so does the folder resque is
    installed in (a traceback names its files); the Python environment becomes
    ``<python>/``; the home folder becomes ``~``.
    """
    project = book_dir.resolve().parent
    results = results_dir.resolve()
    try:
        shown = results.relative_to(project).as_posix()
    except ValueError:
        shown = results.name
    package = Path(__file__).resolve().parents[3]  # where resque is installed (its tracebacks name it)
    paths = {str(results): shown, str(project) + os.sep: "", str(project): ".", str(package) + os.sep: "",
             sys.prefix + os.sep: "<python>" + os.sep, str(Path.home()): "~"}
    return {path: value for path, value in paths.items() if len(Path(path).parts) > 1}  # never "/" itself


def _template_root(notebook) -> dict[str, str]:
    """The project a study ran in (its templates' folder's parent, from papermill's input path) -> nothing.

    A study run in another checkout than the book's leaves that checkout's path in the notebook.
    """
    source = Path(str(notebook.metadata.get("papermill", {}).get("input_path") or ""))
    if not source.is_absolute() or len(source.parent.parent.parts) < 2:
        return {}
    return {str(source.parent.parent) + os.sep: ""}


#: The findings page's sentences -> the label of the results page's section that backs each.
FINDINGS_SECTIONS = {"within": "results-questions", "beyond": "results-questions", "best": "results-best",
                     "repeat": "results-questions", "forecast": "results-forecast"}


def _findings_links(analysis_notebook) -> dict[str, str]:
    """A link after each findings sentence to its section, where the executed results page has that label."""
    if analysis_notebook is None:
        return {}
    text = "\n".join(cell.source for cell in analysis_notebook.cells if cell.cell_type == "markdown")
    return {key: f" ({{ref}}`details <{label}>`)" for key, label in FINDINGS_SECTIONS.items()
            if f"({label})=" in text}


def _findings_snippet(results_dir: Path, links: dict[str, str] | None = None) -> str:
    """The findings page's body: the answers in sentences, then the tables (the epochs), from the records."""
    from ..analysis import load_records
    from ..analysis.report import answer_sentences, report_markdown

    frame = load_records(results_dir)
    sentences = answer_sentences(frame, links=links) if len(frame) else ""
    if not sentences:
        return ("*The findings appear here once the study has finished enough shift runs (at least 5): "
                "see {doc}`reproduce`.*\n")
    return (sentences + "\n## The tables behind these sentences\n\n"
            + report_markdown(frame, measures=("epochs",)) + "\n")


def assemble(results_dir: str | os.PathLike, book_dir: str | os.PathLike = "book") -> Path:
    """Copy a study's executed notebooks into the book and write its generated pages.

    Parameters
    ----------
    results_dir : path
        A study's results folder (``results/<profile>``, layout in :mod:`resque.study`).
        Its ``notebooks/*.ipynb`` are the papermill-executed notebooks; its
        ``records/`` fill the overview tables. A folder with no notebooks yet
        gives a book whose pages say so.
    book_dir : path, default "book"
        The folder of the book's pages (``book/`` next to ``_toc.yml``).

    Returns
    -------
    Path
        ``<book_dir>/_generated``, rewritten from scratch (see the module docstring).

    Raises
    ------
    BookError
        If `results_dir` or `book_dir` does not exist.
    """
    results_dir = Path(results_dir)
    book_dir = Path(book_dir)
    if not results_dir.is_dir():
        raise BookError(
            f"results_dir={str(results_dir)!r} is not a folder. Run the study first "
            "(resque study run --profile quick writes results/quick), or pass the folder it wrote."
        )
    if not book_dir.is_dir():
        raise BookError(f"book_dir={str(book_dir)!r} is not a folder; pass the book's page folder (book/).")
    generated = book_dir / GENERATED
    if generated.exists():
        shutil.rmtree(generated)  # a previous study's notebooks must not linger
    generated.mkdir()
    (generated / "figures").mkdir()

    import nbformat

    study = _collect(results_dir)
    copied = {}
    scrub = _machine_paths(results_dir, book_dir)
    downloads = generated / "downloads"
    downloads.mkdir()
    for run in [r for runs in study.runs.values() for r in runs] + list(study.single.values()):
        target = generated / run.link
        target.parent.mkdir(parents=True, exist_ok=True)
        notebook = run.notebook if run.notebook is not None else nbformat.read(run.source, as_version=4)
        text_copy = Path(os.path.relpath(downloads / f"{target.stem}.md", target.parent)).as_posix()
        rerun = rerun_line(run.run_id, run.papermill.get("parameters", {}))
        download = (f"This page as a text notebook: {{download}}`{target.stem}.md <{text_copy}>` (MyST Markdown, "
                    "without outputs; the download button at the top gives the executed `.ipynb`).")
        page = for_readers(with_rerun_line(notebook, rerun), {**scrub, **_template_root(notebook)})
        (downloads / f"{target.stem}.md").write_text(myst_from_notebook(page))  # without a link to itself
        line = next((cell for cell in page.cells if rerun and cell.source == rerun), None)
        if line is not None:  # the link goes under the rerun line, in the same cell
            line.source += "\n\n" + download
        else:
            page = with_rerun_line(page, download)
        nbformat.write(page, target)
        copied[run.run_id] = run.link
    if (book_dir / "tutorial.md").exists():  # for a class: the tutorial as a notebook to open in Jupyter
        nbformat.write(notebook_from_markdown((book_dir / "tutorial.md").read_text()), downloads / "tutorial.ipynb")
    for folder, _ in GROUPS.values():
        (generated / folder).mkdir(exist_ok=True)
    note = _unreadable_note(study.unreadable)
    (generated / "sources.md").write_text(_sources_page(study.runs["source"]) + note)
    (generated / "shifts.md").write_text(_shifts_page(study.runs["shift"]) + note)
    (generated / "tasks.md").write_text(_tasks_page(study.runs["task"]) + note)
    for run_id in SINGLE_PAGES:
        if run_id not in study.single:
            (generated / f"{run_id}.md").write_text(_missing_page(run_id))
    (generated / "headline.inc.md").write_text(_headline_snippet(study, generated))
    (generated / "timings.inc.md").write_text(_timings_snippet(study))
    analysis_page = generated / "analysis.ipynb"
    links = _findings_links(nbformat.read(analysis_page, as_version=4) if analysis_page.exists() else None)
    (generated / "findings.inc.md").write_text(_findings_snippet(results_dir, links))
    (generated / "teaching.inc.md").write_text(_teaching_snippet(study))
    (generated / "profiles.inc.md").write_text(_profiles_snippet())
    _method_figure(generated / "figures" / "method.png")
    mathjax = _install_mathjax(generated / "_static")
    manifest = {
        "results_dir": str(results_dir.resolve()),
        "notebooks": copied,
        "ignored": study.ignored,
        "unreadable_records": study.unreadable,
        "headline_figure": (generated / "figures" / "headline.png").exists(),
        "mathjax": mathjax,
    }
    (generated / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return generated


def _jupyter_book() -> list[str]:
    beside = Path(sys.executable).with_name("jupyter-book")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("jupyter-book")
    if found:
        return [found]
    raise BookError("jupyter-book is not installed; install it into this environment (pip install 'jupyter-book<2').")


def _log_tail(output: str, lines: int = 40) -> str:
    """The warnings and errors of a Sphinx log, else its last lines."""
    text = output.splitlines()
    flagged = [line for line in text if "WARNING" in line or "ERROR" in line or "Error" in line]
    chosen = flagged[-lines:] if flagged else text[-lines:]
    return "\n".join(chosen)


def build(
    results_dir: str | os.PathLike,
    book_dir: str | os.PathLike = ".",
    strict: bool = True,
    output_dir: str | os.PathLike | None = None,
) -> Path:
    """Assemble the book from `results_dir` and build its HTML with Jupyter Book.

    Runs ``jupyter-book build <book_dir> --path-output <output_dir> --all`` with
    ``-W -n --keep-going`` when `strict` (every warning, broken reference
    included, fails the build). Nothing is executed: the notebooks were.

    Parameters
    ----------
    results_dir : path
        A study's results folder (see :func:`assemble`).
    book_dir : path, default "."
        The book's root: the folder holding ``_config.yml``, ``_toc.yml`` and ``book/``.
    strict : bool, default True
        Warnings are errors, nitpicky references (the CI setting).
    output_dir : path, optional
        Where ``_build/`` goes (default: `book_dir`).

    Returns
    -------
    Path
        ``<output_dir>/_build/html/index.html``.

    Raises
    ------
    BookError
        The folders are missing or jupyter-book is not installed.
    BookBuildError
        The build failed; its message holds the build's warnings and errors.
    """
    root = Path(book_dir)
    for name in ("_config.yml", "_toc.yml", "book"):
        if not (root / name).exists():
            raise BookError(f"book_dir={str(root)!r} has no {name}; pass the book's root (the repository root).")
    assemble(results_dir, root / "book")
    output = Path(output_dir) if output_dir is not None else root
    command = _jupyter_book() + ["build", str(root), "--path-output", str(output), "--all"]
    if strict:
        command += ["-W", "-n", "--keep-going"]
    env = {**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    index = output / "_build" / "html" / "index.html"
    log = result.stdout + "\n" + result.stderr
    if result.returncode != 0 or not index.exists():
        raise BookBuildError(command, result.returncode, _log_tail(log))
    return index
