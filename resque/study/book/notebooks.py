"""Reading an executed notebook: its title, its papermill parameters, its headline figure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...cost.records import RunRecord

#: Tag of the analysis notebook's cell whose PNG output becomes the intro's figure.
HEADLINE_TAG = "headline"


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
        if family is None:
            return None
        if intensity is None:  # the page of a family's grid
            return f"{str(family).replace('_', ' ').capitalize()}{seed_text}"
        return f"{str(family).replace('_', ' ').capitalize()} at {float(intensity):g}{seed_text}"
    if kind == "task":
        task = parameters.get("task", experiment.get("task"))
        if task is None:  # the page of the seed's tasks
            return None if seed is None else f"Tasks, seed {seed}"
        return f"Task {task}{seed_text}"
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


#: Tags of the cells papermill's parameters live in: removed from the rendered page (Jupyter Book's remove-cell).
PARAMETER_TAGS = ("parameters", "injected-parameters")


def for_readers(notebook, replacements: dict[str, str]):
    """The book's copy of an executed notebook: no parameter cell on the page, no path of the building machine.

    The template's ``parameters`` cell and papermill's ``injected-parameters``
    cell get Jupyter Book's ``remove-cell`` tag (they stay in the notebook a
    reader downloads); every other code cell gets ``hide-input``, so its code
    sits behind a "show code" toggle and its output stays in view. Every occurrence of each key of `replacements` (absolute
    paths: the results folder, the project's root) in the cells, their outputs
    and the metadata is replaced by its value (the path relative to the
    project, or nothing), longest first.
    """
    import nbformat

    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        tags = list(cell.metadata.get("tags", []))
        if any(tag in tags for tag in PARAMETER_TAGS):
            extra = "remove-cell"
        else:  # the library calls: behind a "show code" toggle, their outputs in full view
            extra = "hide-input"
        if extra not in tags:
            cell.metadata["tags"] = tags + [extra]
    text = nbformat.writes(notebook)
    for path in sorted(replacements, key=len, reverse=True):
        if path:
            text = text.replace(path, replacements[path])
    return nbformat.reads(text, as_version=4)


def rerun_line(run_id: str, parameters: dict[str, Any]) -> str | None:
    """One Markdown line saying how to rerun exactly this page's experiment, into a folder of its own.

    A shift or task page needs its seed's source model, so the command runs
    that first. None for pages that are not one experiment (the analysis,
    energy) or when the profile is unknown.
    """
    profile, seed = parameters.get("profile"), parameters.get("seed")
    if not profile or run_id in ("analysis", "energy"):
        return None
    base = f"resque study run --profile {profile} --results rerun"
    needs_source = not run_id.startswith("source-") and seed is not None
    command = (f"{base} --only source-seed{seed} && {base} --only {run_id}" if needs_source
               else f"{base} --only {run_id}")
    return f"To rerun exactly this experiment (into `rerun/`, from nothing): `{command}`"


def with_rerun_line(notebook, line: str | None):
    """`notebook` with `line` as a Markdown cell right after its title cell (unchanged without a line)."""
    if not line:
        return notebook
    import nbformat

    index = next((i + 1 for i, cell in enumerate(notebook.cells) if cell.cell_type == "markdown"), 0)
    cell = nbformat.v4.new_markdown_cell(line)
    if notebook.get("nbformat_minor", 5) < 5:  # cell ids came with nbformat 4.5
        cell.pop("id", None)
    notebook.cells.insert(index, cell)
    return notebook
