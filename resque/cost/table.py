"""Run records as one table: a row per shift or task run, with its yardstick's costs beside it.

pandas is an extra of resque (``pip install 'resque[study]'``); it is imported
when a table is asked for, so the bare install imports without it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from ..extras import require
from ..predictors.registry import list_predictors
from .measures import MEASURES, measures
from .records import RunRecord

__all__ = ["runs_table", "require_pandas"]

#: Costs copied from each record's totals (and from its yardstick's, as scratch_*).
COST_COLUMNS = tuple(MEASURES)
SCRATCH_COLUMNS = ("epochs", "grad_norm_last", "grad_norm_mean", "param_change_from_start",
                   "train_seconds", "train_flops", "energy_kwh", "carbon_kg")
SAVINGS_COLUMNS = tuple(m.column for m in measures(saving=True))
ID_COLUMNS = ("run_id", "kind", "family", "intensity", "task", "seed")
#: Costs of the run's first repeat (``record.replicates``, another retraining seed), as repeat_*.
REPEAT_COLUMNS = COST_COLUMNS
_TEXT = {"run_id", "kind", "family", "task", "stop_reason", "energy_source", "scratch_run_id", "scratch_stop_reason"}


def require_pandas(what: str = "this table"):
    """The pandas module, or a :class:`~resque.extras.MissingExtraError` naming the extra that brings it."""
    return require("pandas", what)


def _energy_source(totals: Mapping) -> str:
    """``"estimate"`` if any part of the energy is estimated, else the hardware sources (``"nvml+rapl"``)."""
    parts = totals.get("energy_parts") or {}
    sources = sorted({str(part.get("source", "estimate")) for part in parts.values() if isinstance(part, Mapping)})
    if not sources or totals.get("energy_kwh") is None:
        return "unavailable"
    if "estimate" in sources:
        return "estimate"
    return "+".join(sources)


def _float(value) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def _row(record: RunRecord) -> dict:
    experiment = record.experiment or {}
    totals = record.totals or {}
    row = {
        "run_id": record.run_id,
        "kind": record.kind,
        "family": experiment.get("shift") if record.kind == "shift" else "task",
        "intensity": _float(experiment.get("intensity")),
        "task": experiment.get("task"),
        "seed": int(record.seed),
    }
    row.update({name: _float(value) for name, value in (record.estimators or {}).items()})
    row.update({name: _float(totals.get(name)) for name in COST_COLUMNS})
    row["stop_reason"] = record.stop_reason
    row["censored"] = record.censored
    row["energy_source"] = _energy_source(totals)
    row["test_accuracy"] = _float(record.test_accuracy)
    row["scratch_run_id"] = experiment.get("scratch_run_id")
    repeat = record.replicates[0] if record.replicates else None  # test-retest: the same run, another seed
    repeat_totals = (repeat or {}).get("totals") or {}
    row.update({f"repeat_{name}": _float(repeat_totals.get(name)) for name in REPEAT_COLUMNS})
    row["repeat_censored"] = bool(repeat["censored"]) if repeat is not None else None
    return row


def _columns(estimators: Iterable[str]) -> list[str]:
    from ..predictors.registry import get_predictor

    # the design's baselines (constant, intensity rank) are not in records: the analysis derives them
    known = [name for name in list_predictors() if not get_predictor(name).design]
    extra = sorted(set(estimators) - set(known))
    return (
        list(ID_COLUMNS) + known + extra + list(COST_COLUMNS)
        + ["stop_reason", "censored", "energy_source", "test_accuracy", "scratch_run_id"]
        + [f"scratch_{name}" for name in SCRATCH_COLUMNS]
        + ["scratch_stop_reason", "scratch_censored"]
        + [f"savings_{name}" for name in SAVINGS_COLUMNS]
        + [f"repeat_{name}" for name in REPEAT_COLUMNS] + ["repeat_censored"]
    )


def runs_table(records: Iterable[RunRecord]):
    """One row per complete shift or task run of `records`, with its yardstick's costs.

    Parameters
    ----------
    records : iterable of RunRecord
        Any records; only complete ``shift`` and ``task`` ones become rows. A
        complete ``scratch`` record whose ``experiment["yardstick_for"]`` names
        a run becomes that run's ``scratch_*`` columns; sources are not rows.

    Returns
    -------
    pandas.DataFrame
        Columns: ``run_id, kind, family`` (the shift name, or ``"task"``),
        ``intensity`` (NaN for tasks), ``task`` (None for shifts), ``seed``;
        every registered predictor (:func:`resque.list_predictors`, NaN where
        not computed; not the design's baselines, which the analysis derives)
        plus any other stored estimator; every cost of
        :data:`resque.cost.measures.MEASURES`; ``stop_reason``, ``censored``
        (the target was not reached: the costs are lower bounds),
        ``energy_source`` (``"estimate"`` when any part of the energy is
        estimated, ``"unavailable"``, or the hardware counters),
        ``test_accuracy``; the yardstick's ``scratch_<cost>``,
        ``scratch_stop_reason`` and ``scratch_censored`` (NaN without one);
        ``savings_<cost> = 1 - reuse / scratch`` for the costs whose
        saving means something; and the first repeat's ``repeat_<cost>`` and
        ``repeat_censored`` (a profile's ``replicate_seeds``; NaN without one).
        Sorted by kind, family, intensity, task, seed.
        ``attrs`` holds ``n_incomplete``, ``n_scratch`` and ``n_other``.
    """
    pd = require_pandas("resque's runs table")
    runs, yardsticks = [], {}
    counts = {"n_incomplete": 0, "n_scratch": 0, "n_other": 0}
    for record in records:
        if not record.complete:
            counts["n_incomplete"] += 1
        elif record.kind in ("shift", "task"):
            runs.append(_row(record))
        elif record.kind == "scratch":
            counts["n_scratch"] += 1
            yardsticks[record.run_id] = record
        else:
            counts["n_other"] += 1

    for row in runs:
        scratch = yardsticks.get(row["scratch_run_id"])  # each run names its yardstick
        totals = scratch.totals if scratch is not None else {}
        for name in SCRATCH_COLUMNS:
            row[f"scratch_{name}"] = _float(totals.get(name))
        row["scratch_stop_reason"] = scratch.stop_reason if scratch is not None else None
        row["scratch_censored"] = scratch.censored if scratch is not None else None
        with np.errstate(divide="ignore", invalid="ignore"):
            for name in SAVINGS_COLUMNS:
                scratch_cost = row[f"scratch_{name}"]
                row[f"savings_{name}"] = 1.0 - row[name] / scratch_cost if scratch_cost > 0 else math.nan

    estimators = {key for row in runs for key in row} - set(_columns(()))
    frame = pd.DataFrame(runs, columns=_columns(estimators))
    for column in frame.columns:
        if column == "seed":
            frame[column] = frame[column].astype("int64")
        elif column == "censored":
            frame[column] = frame[column].astype(bool)
        elif column in ("scratch_censored", "repeat_censored"):
            frame[column] = frame[column].astype("boolean")  # NA where there is no yardstick
        elif column not in _TEXT:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
        else:
            frame[column] = frame[column].astype(object)
    if len(frame):
        order = frame.assign(_kind=frame["kind"], _family=frame["family"].fillna(""), _task=frame["task"].fillna(""))
        frame = frame.loc[order.sort_values(["_kind", "_family", "intensity", "_task", "seed"]).index]
        frame = frame.reset_index(drop=True)
    frame.attrs.update(counts)
    return frame
