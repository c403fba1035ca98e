"""A study's records as the analysis table (see :func:`resque.cost.table.runs_table`)."""

from __future__ import annotations

import os
from pathlib import Path

from ...cost.records import read_records
from ...cost.table import runs_table

__all__ = ["load_records", "resolve_results_dir", "describe_skipped"]


def resolve_results_dir(results_dir: str | os.PathLike, *, levels: int = 2) -> Path:
    """`results_dir` as given, or found relative to a parent of the working directory.

    Notebooks run with their own folder (``notebooks/``) as working directory,
    while profiles name results relative to the repository root; a relative path
    that does not exist here is looked up `levels` parents up. The path is
    returned unchanged when it is found nowhere (:func:`load_records` then
    reports an empty study).
    """
    path = Path(results_dir)
    if path.exists() or path.is_absolute():
        return path
    base = Path.cwd()
    for _ in range(levels):
        base = base.parent
        if (base / path).exists():
            return base / path
    return path


def load_records(results_dir: str | os.PathLike):
    """One row per complete shift or task run of a study, with its yardstick's costs.

    Parameters
    ----------
    results_dir : str or path-like
        A study's results folder (its ``records/`` subfolder is read), or a
        folder of record files itself. A folder that does not exist gives an
        empty frame (a study not run yet), with ``attrs["missing"] = True``.

    Returns
    -------
    pandas.DataFrame
        The columns of :func:`resque.cost.table.runs_table`. ``attrs`` holds
        ``results_dir``, ``missing``, ``n_incomplete`` (records of runs that
        did not finish), ``n_unreadable`` and ``unreadable`` (file name -> why),
        ``n_scratch`` and ``n_other`` (source models).

    Examples
    --------
    >>> frame = load_records("results/smoke")  # doctest: +SKIP
    >>> frame.groupby("family")["epochs"].median()  # doctest: +SKIP
    """
    found = read_records(results_dir)
    frame = runs_table(found.records)
    frame.attrs.update({"results_dir": str(results_dir), "missing": found.missing,
                        "n_unreadable": len(found.unreadable), "unreadable": dict(found.unreadable)})
    return frame


def describe_skipped(frame) -> str:
    """One sentence on the records :func:`load_records` left out, naming each unreadable file and why."""
    unfinished = frame.attrs.get("n_incomplete", 0)
    unreadable = frame.attrs.get("unreadable", {})
    if not unfinished and not unreadable:
        return "No record was left out."
    parts = []
    if unfinished:
        parts.append(f"{unfinished} of runs that did not finish")
    if unreadable:
        named = "; ".join(f"{name} ({why})" for name, why in sorted(unreadable.items()))
        parts.append(f"{len(unreadable)} unreadable: {named}. Rerun the study to rebuild them")
    return "Records left out: " + "; ".join(parts) + "."
