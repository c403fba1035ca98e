"""The study's Jupyter Book: assemble the executed notebooks, then build the HTML.

The book never executes anything. ``resque study run`` executes the notebook
templates with papermill into ``<results>/notebooks/<run_id>.ipynb``;
:func:`assemble` copies those into ``book/_generated/`` and writes the pages
that list them, and :func:`build` runs ``jupyter-book build . -W -n --keep-going``
on the result. ``_toc.yml`` is fixed: it names the generated overview pages and
takes the notebooks in with globs, so whatever a profile ran enters the book.

What :func:`assemble` writes (``book/_generated/``, git-ignored, wiped first)::

    sources.md  sources/source-seed<k>.ipynb           the source models
    shifts.md   shifts/shift-<family>-<i>-seed<k>.ipynb one table per shift family
    tasks.md    tasks/task-<task>-seed<k>.ipynb         one table per task
    energy.ipynb    (or energy.md, a note, when it did not run)
    analysis.ipynb  (or analysis.md)
    headline.inc.md  the intro's figure: the PNG output of the analysis cell
                     tagged ``headline`` (else its first PNG; figures/headline.png),
                     or a sentence when there is none
    timings.inc.md   the reproduce page's table of measured times
    profiles.inc.md  the reproduce page's table of the shipped profiles
    figures/method.png  the method page's illustration (drawn here, seeded)
    _static/mathjax/    MathJax 3 for offline reading (from `django-static-mathjax`)
    manifest.json       what was copied from where

Command line (wired as ``resque book build``): see :func:`book_command`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BookBuildError, BookError, ResqueError
from ..cost.records import RecordError, RunRecord, load_record

__all__ = [
    "BookError",
    "BookBuildError",
    "assemble",
    "build",
    "notebook_title",
    "HEADLINE_TAG",
]

GENERATED = "_generated"
#: Tag of the analysis notebook's cell whose PNG output becomes the intro's figure.
HEADLINE_TAG = "headline"
#: run_id prefix -> (folder under _generated, overview page title).
GROUPS = {
    "source": ("sources", "Source models"),
    "shift": ("shifts", "Distribution shifts"),
    "task": ("tasks", "Task changes"),
}
#: run_ids rendered as pages of their own.
SINGLE_PAGES = {
    "energy": "Energy and carbon",
    "analysis": "Results: does RESQUE predict the cost?",
}
#: MathJax files the book needs: the combined TeX+MathML/CHTML component, its
#: fonts, and what it loads on demand (TeX extensions, menu, accessibility).
MATHJAX_PARTS = ["tex-mml-chtml.js", "output/chtml", "input/tex/extensions", "input/mml", "ui", "a11y", "adaptors"]
MATHJAX_CDN = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"


# --------------------------------------------------------------------------- notebooks


def _read_notebook(path: Path):
    import nbformat

    return nbformat.read(path, as_version=4)


def notebook_title(notebook, default: str) -> str:
    """The text of the first ``# Title`` line of the notebook's first markdown cell, else `default`."""
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        for line in cell.source.splitlines():
            if line.startswith("# "):
                return line[2:].strip()
        return default
    return default


def _papermill(notebook) -> dict[str, Any]:
    return dict(notebook.metadata.get("papermill", {}))


def _headline_png(notebook) -> tuple[bytes | None, bool]:
    """The intro's figure: ``(png, tagged)``.

    The first PNG output of a cell tagged :data:`HEADLINE_TAG`; without such a
    cell, the notebook's first PNG output (``tagged`` is then False); else None.
    """
    import base64

    first = None
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" not in data:
                continue
            png = base64.b64decode(data["image/png"])
            if HEADLINE_TAG in cell.metadata.get("tags", []):
                return png, True
            first = png if first is None else first
    return first, False


def _run_label(kind: str, parameters: dict[str, Any], record: RunRecord | None, run_id: str) -> str | None:
    """What tells one run of a kind from the others, e.g. "gaussian_noise at 0.04, seed 0"."""
    experiment = record.experiment if record is not None else {}
    seed = parameters.get("seed", record.seed if record is not None else None)
    seed_text = "" if seed is None else f", seed {seed}"
    if kind == "shift":
        family = parameters.get("shift", experiment.get("shift"))
        intensity = parameters.get("intensity", experiment.get("intensity"))
        if family is None or intensity is None:
            return None
        return f"{str(family).replace('_', ' ').capitalize()} at {float(intensity):g}{seed_text}"
    if kind == "task":
        task = parameters.get("task", experiment.get("task"))
        return None if task is None else f"Task {task}{seed_text}"
    if kind == "source":
        return None if seed is None else f"Source model, seed {seed}"
    return None


def _retitle(notebook, label: str) -> bool:
    """Make the copy's ``# Title`` say which run it is: ``# <label>`` then the template's title in italics.

    Every run of a template shares its title; in the book's navigation they must differ.
    """
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.splitlines()
        for index, line in enumerate(lines):
            if line.startswith("# "):
                template_title = line[2:].strip()
                if label in template_title:
                    return False
                lines[index:index + 1] = [f"# {label}", "", f"*{template_title}*"]
                cell.source = "\n".join(lines)
                return True
        return False
    return False


@dataclass
class _Run:
    """One executed notebook and what the results folder knows about it."""

    run_id: str
    source: Path
    title: str
    papermill: dict[str, Any]
    record: RunRecord | None = None
    scratch: RunRecord | None = None
    failed: dict[str, Any] | None = None
    target: str = ""  # path under _generated, without suffix
    notebook: Any = None  # the copy to write, when it differs from `source`

    @property
    def link(self) -> str:
        return f"{self.target}.ipynb"


@dataclass
class _Study:
    root: Path
    runs: dict[str, list[_Run]] = field(default_factory=dict)  # group -> runs
    single: dict[str, _Run] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)


def _load_record(path: Path) -> RunRecord | None:
    try:
        return load_record(path)
    except RecordError:
        return None


def _collect(results_dir: Path) -> _Study:
    study = _Study(root=results_dir)
    for group in GROUPS:
        study.runs[group] = []
    for path in sorted((results_dir / "notebooks").glob("*.ipynb")):
        run_id = path.stem
        kind = run_id.split("-", 1)[0]
        if kind not in GROUPS and run_id not in SINGLE_PAGES:
            study.ignored.append(path.name)
            continue
        notebook = _read_notebook(path)
        run = _Run(run_id, path, notebook_title(notebook, run_id), _papermill(notebook))
        run.record = _load_record(results_dir / "records" / f"{run_id}.json")
        label = _run_label(kind, run.papermill.get("parameters", {}), run.record, run_id)
        if label is not None and _retitle(notebook, label):
            run.notebook = notebook
            run.title = label
        run.scratch = _load_record(results_dir / "records" / f"scratch-{run_id}.json")
        failure = results_dir / "failed" / f"{run_id}.json"
        if failure.exists():
            try:
                run.failed = json.loads(failure.read_text())
            except (OSError, ValueError):
                run.failed = {"error": "unreadable failure file"}
            if not isinstance(run.failed, dict):
                run.failed = {"error": str(run.failed)}
        if run_id in SINGLE_PAGES:
            run.target = run_id
            study.single[run_id] = run
        else:
            run.target = f"{GROUPS[kind][0]}/{run_id}"
            study.runs[kind].append(run)
    return study


# --------------------------------------------------------------------------- pages


def _number(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    try:
        return f"{float(value):.{digits}g}"
    except (TypeError, ValueError):
        return str(value)


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell and link text."""
    for char in "|[]":
        text = text.replace(char, "\\" + char)
    return text.replace("\n", " ")


def _energy(record: RunRecord | None) -> str:
    if record is None:
        return "–"
    kwh = record.totals.get("energy_kwh")
    if kwh is None:
        return "–"
    estimated = record.totals.get("energy_estimated_kwh") or 0.0
    return f"{kwh:.2g}" + (" (est.)" if estimated >= 0.5 * kwh else "")


def _epochs(record: RunRecord | None) -> str:
    return "–" if record is None else _number(record.totals.get("epochs"))


def _status(run: _Run) -> str:
    if run.failed is not None or (run.record is not None and not run.record.complete):
        return "**failed**"
    if run.record is None:
        return "no record"
    return run.record.stop_reason or "–"


def _notebook_link(run: _Run, text: str) -> str:
    """A link from a page in _generated/ to the run's notebook."""
    return f"[{_cell(text)}]({run.link})"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


NO_RUNS = "No experiment of this kind ran in this study (see the profile on {doc}`../reproduce`)."


def _sources_page(runs: list[_Run]) -> str:
    parts = [
        "# Source models\n",
        "Each seed's source model is trained from scratch on the clean original data "
        "(S0+S2). Every shift and task experiment of that seed starts from it. "
        "Stop reasons: `reached` (the target validation accuracy), `cutoff-1` / "
        "`cutoff-2` (came close, then stalled), `cap` (the epoch limit), `diverged`.\n",
    ]
    if not runs:
        parts.append(NO_RUNS)
    else:
        rows = [[_notebook_link(r, r.title), _epochs(r.record), _status(r),
                 _number(r.record.test_accuracy if r.record else None), _energy(r.record)] for r in runs]
        parts.append(_table(["notebook", "epochs", "stop", "test accuracy", "energy (kWh)"], rows))
    return "\n".join(parts) + "\n"


def _family_of(run: _Run) -> tuple[str, float, int]:
    experiment = run.record.experiment if run.record else {}
    parameters = run.papermill.get("parameters", {})
    family = experiment.get("shift") or parameters.get("shift")
    intensity = experiment.get("intensity", parameters.get("intensity"))
    seed = run.record.seed if run.record else parameters.get("seed", 0)
    if family is None:  # shift-<family>-<intensity>-seed<k>
        pieces = run.run_id.split("-")
        family = pieces[1] if len(pieces) > 1 else "unknown"
        try:
            intensity = float(pieces[2])
        except (IndexError, ValueError):
            intensity = None
    return str(family), (float("nan") if intensity is None else float(intensity)), int(seed or 0)


def _shifts_page(runs: list[_Run]) -> str:
    parts = [
        "# Distribution shifts\n",
        "One section per shift family; each intensity links to its notebook. For each run: "
        "RESQUE_dist computed *before* retraining (unpaired, the authors' protocol; *paired*: "
        "the same images clean and shifted), the source model's accuracy drop on the shifted "
        "data (the simplest rival predictor), then what retraining cost: epochs, the rule that "
        "stopped it, and *from scratch*, the epochs a fresh model needed on the same data to "
        "the same target (the yardstick). Energy in kWh; *est.* marks a TDP-based estimate, "
        "not a measurement.\n",
    ]
    if not runs:
        parts.append(NO_RUNS)
    families: dict[str, list[tuple[float, int, _Run]]] = {}
    for run in runs:
        family, intensity, seed = _family_of(run)
        families.setdefault(family, []).append((intensity, seed, run))
    for family in sorted(families):
        parts.append(f"## {family.replace('_', ' ').capitalize()}\n")
        rows = []
        for intensity, seed, run in sorted(families[family], key=lambda item: (item[0], item[1])):
            estimators = run.record.estimators if run.record else {}
            rows.append([
                _notebook_link(run, _number(intensity)), str(seed), _number(estimators.get("resque_dist")),
                _number(estimators.get("resque_dist_paired")), _number(estimators.get("accuracy_drop")),
                _epochs(run.record), _status(run), _epochs(run.scratch), _energy(run.record),
            ])
        header = ["intensity", "seed", "RESQUE_dist", "paired", "accuracy drop", "epochs", "stop", "from scratch", "kWh"]
        if len({seed for _, seed, _ in families[family]}) == 1:  # one seed: say it once, keep the table narrow
            parts.append(f"Seed {families[family][0][1]}.\n")
            header, rows = header[:1] + header[2:], [row[:1] + row[2:] for row in rows]
        parts.append(_table(header, rows) + "\n")
    return "\n".join(parts) + "\n"


def _task_of(run: _Run) -> tuple[str, int]:
    experiment = run.record.experiment if run.record else {}
    parameters = run.papermill.get("parameters", {})
    task = experiment.get("task") or parameters.get("task")
    if task is None:  # task-<task>-seed<k>
        task = run.run_id[len("task-"):].rsplit("-seed", 1)[0]
    seed = run.record.seed if run.record else parameters.get("seed", 0)
    return str(task), int(seed or 0)


def _tasks_page(runs: list[_Run]) -> str:
    parts = [
        "# Task changes\n",
        "One section per new task. RESQUE_task is `1 - ARI` of k-means on the source "
        "model's embeddings of the new task; the default variant (mean pooling, k-means "
        "started at the true class centroids) is shown with the flattened-embedding "
        "variant beside it. Retraining replaces the last layer and fine-tunes everything.\n",
    ]
    if not runs:
        parts.append(NO_RUNS)
    tasks: dict[str, list[tuple[int, _Run]]] = {}
    for run in runs:
        task, seed = _task_of(run)
        tasks.setdefault(task, []).append((seed, run))
    for task in sorted(tasks):
        parts.append(f"## {task}\n")
        rows = []
        for seed, run in sorted(tasks[task], key=lambda item: item[0]):
            estimators = run.record.estimators if run.record else {}
            classes = run.record.experiment.get("num_classes") if run.record else None
            rows.append([
                _notebook_link(run, f"seed {seed}"), _number(classes), _number(estimators.get("resque_task")),
                _number(estimators.get("resque_task_flatten_centroids")), _epochs(run.record), _status(run),
                _epochs(run.scratch), _energy(run.record),
            ])
        parts.append(_table(["run", "classes", "RESQUE_task", "flattened", "epochs", "stop",
                             "from scratch", "kWh"], rows) + "\n")
    return "\n".join(parts) + "\n"


def _missing_page(run_id: str) -> str:
    return (
        f"# {SINGLE_PAGES[run_id]}\n\n"
        f"The `{run_id}` notebook has not run in this study yet, so there is nothing to show. "
        "Run the whole study (`resque study run`, see {doc}`../reproduce`) and rebuild the book.\n"
    )


def _headline_snippet(study: _Study, generated: Path) -> str:
    analysis = study.single.get("analysis")
    png, tagged = _headline_png(_read_notebook(analysis.source)) if analysis is not None else (None, False)
    if png is None:
        return (
            "*The headline figure appears here once the study's analysis notebook has run: "
            "see {doc}`reproduce`.*\n"
        )
    path = generated / "figures" / "headline.png"
    path.write_bytes(png)
    caption = (
        "RESQUE before retraining against what retraining then cost, every run of the study pooled."
        if tagged else "The first figure of the results page."
    )
    return (
        f"```{{figure}} /book/{GENERATED}/figures/headline.png\n"
        ":name: fig-headline\n"
        ":width: 90%\n\n"
        f"{caption} The statistics, per shift family and per measure, with their confidence "
        "intervals, are on {doc}`the results page <_generated/analysis>`.\n"
        "```\n"
    )


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    value = float(value)
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def _timings_snippet(study: _Study) -> str:
    everything = [run for runs in study.runs.values() for run in runs] + list(study.single.values())
    profile = next((str(r.papermill.get("parameters", {}).get("profile")) for r in everything
                    if r.papermill.get("parameters", {}).get("profile")), study.root.name)
    if profile.endswith((".yaml", ".yml")):
        profile = Path(profile).stem
    rows = []
    total = 0.0
    labels = {"source": "source models", "shift": "shift experiments", "task": "task experiments"}
    for kind, runs in [(k, v) for k, v in study.runs.items()] + [(k, [v]) for k, v in study.single.items()]:
        durations = [float(r.papermill["duration"]) for r in runs if r.papermill.get("duration") is not None]
        if not runs:
            continue
        total += sum(durations)
        rows.append([labels.get(kind, f"`{kind}` notebook"), str(len(runs)),
                     _seconds(sum(durations)) if durations else "–"])
    rows.append(["**all notebooks**", str(len(everything)), f"**{_seconds(total)}**" if total else "–"])
    starts = sorted(str(r.papermill["start_time"]) for r in everything if r.papermill.get("start_time"))
    ends = sorted(str(r.papermill["end_time"]) for r in everything if r.papermill.get("end_time"))
    machine = next((r.record.provenance for r in everything if r.record and r.record.provenance), {})
    lines = [
        f"Measured on the study this book was built from (profile `{_cell(profile)}`), "
        "from the execution times papermill stores in each notebook:\n",
        _table(["what", "notebooks", "execution time"], rows),
        "",
    ]
    summary = study.root / "summary.json"
    if summary.exists():
        try:
            wall = json.loads(summary.read_text()).get("wall_seconds")
        except (OSError, ValueError, AttributeError):
            wall = None
        if wall is not None:
            lines.append(f"The runner's own summary (`summary.json`) gives **{_seconds(wall)}** of wall time "
                         "for the whole study, kernel start-ups and waiting included.\n")
    if starts and ends:
        lines.append(f"First notebook started {starts[0]}, last one ended {ends[-1]} (UTC).\n")
    if machine:
        cpu = machine.get("processor") or machine.get("machine") or "unknown CPU"
        gpu = machine.get("cuda_device") or "no GPU"
        lines.append(f"Machine: {_cell(str(machine.get('platform', '')))}, {_cell(str(cpu))}, "
                     f"{machine.get('cpu_count', '?')} CPU cores, torch {machine.get('torch', '?')} "
                     f"with {machine.get('torch_threads', '?')} threads, {_cell(str(gpu))}.\n")
    return "\n".join(lines) + "\n"


def _profiles_snippet() -> str:
    """A table of the shipped profiles, read from their YAML files (so it never goes stale)."""
    from .profiles import expand, list_profiles, load_profile

    rows = []
    for name in list_profiles():
        try:
            profile = load_profile(name)
        except ResqueError as error:  # a profile this machine cannot load is shown, not hidden
            rows.append([f"`{name}`", _cell(str(error)), "", "", "", "", ""])
            continue
        grid = sum(len(v) for v in profile.shifts.values())
        per_class = "all" if profile.n_per_class is None else str(profile.n_per_class)
        rows.append([
            f"`{name}`", _cell(profile.description), f"{profile.dataset}, {profile.model}", per_class,
            f"{len(profile.shifts)} families, {grid} shifts", str(len(profile.tasks)),
            f"{len(profile.seeds)} ({len(expand(profile, name, 'results'))} notebooks)",
        ])
    return _table(["profile", "what", "data, model", "images per class", "shifts", "tasks", "seeds"], rows) + "\n"


def _method_figure(path: Path) -> None:
    """Draw the method page's illustration (seeded: the same picture every time)."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    import matplotlib.pyplot as plt
    import torch

    from ..index.functional import adjusted_rand_index, class_angles, kmeans_labels

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), dpi=110, gridspec_kw={"width_ratios": [1.35, 1, 1]})

    # (a) RESQUE_dist: one class's summed embedding before and after a shift.
    ax = axes[0]
    s_o, s_s = np.array([3.0, 1.0]), np.array([2.0, 2.4])
    theta = float(class_angles(torch.from_numpy(s_o[None]), torch.from_numpy(s_s[None]))[0])
    for vector, colour, label in ((s_o, "tab:blue", r"$s_o(k)$: original"), (s_s, "tab:orange", r"$s_s(k)$: shifted")):
        ax.annotate("", xy=vector, xytext=(0, 0), arrowprops=dict(arrowstyle="-|>", color=colour, lw=2))
        ax.text(*(vector * 1.04), label, color=colour, fontsize=9)
    start, stop = np.arctan2(s_o[1], s_o[0]), np.arctan2(s_s[1], s_s[0])
    arc = np.linspace(start, stop, 30)
    ax.plot(0.9 * np.cos(arc), 0.9 * np.sin(arc), color="black", lw=1)
    ax.text(1.0, 0.55, rf"$\pi\,\theta_k$ ($\theta_k$ = {theta:.2f})", fontsize=9)
    ax.set(xlim=(-0.3, 4.6), ylim=(-0.3, 3.2), xticks=[], yticks=[],
           title="RESQUE_dist: angle of each class's sum")

    # (b, c) RESQUE_task: k-means from the true centroids, 1 - ARI.
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [3.0, 0.5], [1.2, 2.8]])
    labels = np.repeat(np.arange(3), 60)
    for ax, spread, name in ((axes[1], 0.45, "features separate the new classes"),
                             (axes[2], 1.6, "features mix the new classes")):
        points = centres[labels] + spread * rng.standard_normal((labels.size, 2))
        init = np.stack([points[labels == k].mean(axis=0) for k in range(3)])
        clusters, _ = kmeans_labels(points, 3, init)
        score = 1.0 - adjusted_rand_index(labels, clusters)
        ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", vmin=0, vmax=9, s=10, alpha=0.8)
        ax.set(xticks=[], yticks=[], title=f"{name}\nRESQUE_task = 1 - ARI = {score:.2f}")
        ax.title.set_fontsize(10)
    axes[0].title.set_fontsize(10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def _mathjax_source() -> Path | None:
    """The es5 folder of the MathJax 3 bundled by the `django-static-mathjax` package, if installed."""
    import importlib.util

    spec = importlib.util.find_spec("mathjax")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        es5 = Path(location) / "static" / "mathjax" / "es5"
        if (es5 / "tex-mml-chtml.js").is_file():
            return es5
    return None


def _install_mathjax(static: Path) -> str:
    """Put MathJax under ``static/mathjax``; return "bundled" or "cdn"."""
    target = static / "mathjax"
    target.mkdir(parents=True, exist_ok=True)
    source = _mathjax_source()
    if source is None:
        # Same file name as the bundled copy, so _config.yml needs no change:
        # a loader that fetches MathJax from its CDN (math needs the network then).
        (target / "tex-mml-chtml.js").write_text(
            "// django-static-mathjax was not installed when this book was built: load MathJax 3 from its CDN.\n"
            "(function () {\n"
            "  var script = document.createElement('script');\n"
            f"  script.src = '{MATHJAX_CDN}';\n"
            "  script.async = true;\n"
            "  document.head.appendChild(script);\n"
            "})();\n"
        )
        return "cdn"
    for part in MATHJAX_PARTS:
        if (source / part).is_dir():
            shutil.copytree(source / part, target / part, dirs_exist_ok=True)
        elif (source / part).is_file():
            (target / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / part, target / part)
    return "bundled"


# --------------------------------------------------------------------------- assemble / build


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

    study = _collect(results_dir)
    copied = {}
    for run in [r for runs in study.runs.values() for r in runs] + list(study.single.values()):
        target = generated / run.link
        target.parent.mkdir(parents=True, exist_ok=True)
        if run.notebook is not None:
            import nbformat

            nbformat.write(run.notebook, target)
        else:
            shutil.copy2(run.source, target)
        copied[run.run_id] = run.link
    for folder, _ in GROUPS.values():
        (generated / folder).mkdir(exist_ok=True)
    (generated / "sources.md").write_text(_sources_page(study.runs["source"]))
    (generated / "shifts.md").write_text(_shifts_page(study.runs["shift"]))
    (generated / "tasks.md").write_text(_tasks_page(study.runs["task"]))
    for run_id in SINGLE_PAGES:
        if run_id not in study.single:
            (generated / f"{run_id}.md").write_text(_missing_page(run_id))
    (generated / "headline.inc.md").write_text(_headline_snippet(study, generated))
    (generated / "timings.inc.md").write_text(_timings_snippet(study))
    (generated / "profiles.inc.md").write_text(_profiles_snippet())
    _method_figure(generated / "figures" / "method.png")
    mathjax = _install_mathjax(generated / "_static")
    manifest = {
        "results_dir": str(results_dir.resolve()),
        "notebooks": copied,
        "ignored": study.ignored,
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


# --------------------------------------------------------------------------- command line
