"""What a results folder holds for the book, run by run: notebook, record, yardstick, failure."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...cost.records import RunRecord
from ...errors import InvalidParameterError
from ..results import ResultsDir, format_intensity, parse_run_id
from .notebooks import _papermill, _read_notebook, _retitle, _run_label, notebook_title

#: Where the book's generated pages go, under book/.
GENERATED = "_generated"
#: run kind -> (folder under _generated, overview page title).
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
    #: (key, record, yardstick) of each run the notebook makes: one, or one per intensity of a shift page (a
    #: family's grid; key: the intensity) or per task of a task page (key: the task); record None where none (yet)
    parts: list[tuple[Any, RunRecord | None, RunRecord | None]] = field(default_factory=list)
    target: str = ""  # path under _generated, without suffix
    notebook: Any = None  # the copy to write, when it differs from `source`

    @property
    def page(self) -> bool:
        """One notebook, a record per intensity (a shift family's grid) or per task (a seed's tasks)."""
        return parse_run_id(self.run_id).is_page

    @property
    def link(self) -> str:
        return f"{self.target}.ipynb"


@dataclass
class _Study:
    root: Path
    runs: dict[str, list[_Run]] = field(default_factory=dict)  # group -> runs
    single: dict[str, _Run] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)
    unreadable: dict[str, str] = field(default_factory=dict)  # record file -> why


def _collect(results_dir: Path) -> _Study:
    results = ResultsDir(results_dir)
    found = results.read_records()
    records = {record.run_id: record for record in found.records}
    study = _Study(root=results_dir, unreadable=dict(found.unreadable))
    by_page: dict[str, list[RunRecord]] = {}  # a page's id -> the records of its intensities or tasks
    for record in found.records:
        try:
            by_page.setdefault(parse_run_id(record.run_id).page, []).append(record)
        except InvalidParameterError:
            continue
    for group in GROUPS:
        study.runs[group] = []
    for path in sorted((results_dir / "notebooks").glob("*.ipynb")):
        run_id = path.stem
        try:
            kind = parse_run_id(run_id).kind
        except InvalidParameterError:
            kind = None
        if kind not in GROUPS and run_id not in SINGLE_PAGES:
            study.ignored.append(path.name)
            continue
        notebook = _read_notebook(path)
        run = _Run(run_id, path, notebook_title(notebook, run_id), _papermill(notebook))
        run.record = records.get(run_id)
        label = _run_label(kind, run.papermill.get("parameters", {}), run.record, run_id)
        if label is not None and _retitle(notebook, label):
            run.notebook = notebook
            run.title = label
        if run.record is not None:  # the run names its yardstick
            run.scratch = records.get(run.record.experiment.get("scratch_run_id"))
        if run.page:
            run.parts = _page_parts(run, kind, by_page.get(run_id, []), records)
        elif run.record is not None:
            run.parts = [(run.record.experiment.get("intensity" if kind == "shift" else "task"), run.record,
                          run.scratch)]
        failure = results.failure(run_id)
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


def _page_parts(run: _Run, kind: str, found: list[RunRecord], records: dict[str, RunRecord]) -> list:
    """(key, record, yardstick) of each run of a page: those it was run with, and any record found.

    The key is the intensity of a shift page's run (matched as run ids write
    it), the task of a task page's; runs come in order of intensity, or in the
    page's order of tasks.
    """
    parameters = run.papermill.get("parameters", {})
    if kind == "shift":
        values = {format_intensity(v): float(v) for v in parameters.get("intensities") or []}
        by_key = {format_intensity(r.experiment.get("intensity", 0.0)): r for r in found}
        values.update({k: float(r.experiment.get("intensity", 0.0)) for k, r in by_key.items()})
        order = sorted(values, key=values.get)
    else:
        values = {str(t): str(t) for t in parameters.get("tasks") or []}
        by_key = {str(r.experiment.get("task")): r for r in found}
        values.update({k: k for k in by_key})
        order = list(values)
    parts = []
    for key in order:
        record = by_key.get(key)
        scratch = records.get(record.experiment.get("scratch_run_id")) if record is not None else None
        parts.append((values[key], record, scratch))
    return parts
