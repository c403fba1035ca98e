"""Tables and sentences the experiment notebooks show, built from records and outcomes.

The notebooks in ``notebooks/`` stay thin: whatever turns
a :class:`~resque.cost.records.RunRecord` or an experiment's outcome into a table or
a sentence lives here, with a test. Figures live in :mod:`resque.study.plots`.
Energy is in kWh, carbon in kg CO2-eq, time in seconds, as in the records.
"""

from __future__ import annotations

import os
import dataclasses
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd
import torch

from ..cost.energy import MEASURED_SOURCES
from ..cost.measures import MEASURES
from ..cost.records import RecordsRead, RunRecord, read_records

__all__ = [
    "ENERGY_PARTS",
    "compare_costs",
    "costs_table",
    "describe_energy",
    "describe_no_yardstick",
    "describe_stop",
    "describe_task_variants",
    "energy_table",
    "example_titles",
    "format_table",
    "gpu_energy_demo",
    "grid_table",
    "is_censored",
    "load_records",
    "measure_gpu_energy",
    "sample_images",
    "task_grid_table",
    "task_variants_table",
]

ENERGY_PARTS = ("cpu", "ram", "gpu")


_STOP_RULES = {
    "cutoff-1": "cutoff rule 1 (within {cutoff1_delta:g} of the target for {cutoff1_evals} checks without reaching it)",
    "cutoff-2": "cutoff rule 2 (within {cutoff2_delta:g} of the target for {cutoff2_evals} checks without reaching it)",
    "cap": "the epoch cap ({max_epochs} epochs)",
    "diverged": "divergence (the loss stopped being finite)",
}


# --------------------------------------------------------------------------- images


def sample_images(data, n: int = 8) -> tuple[torch.Tensor, list[int]]:
    """The first `n` images of a dataset and their labels.

    Parameters
    ----------
    data : Dataset
        Items ``(image (C, H, W), label)``.
    n : int, default 8
        Fewer are returned when the dataset is smaller.

    Returns
    -------
    images : torch.Tensor
        ``(n, C, H, W)``.
    labels : list of int
    """
    items = [data[i] for i in range(min(n, len(data)))]
    images = torch.stack([torch.as_tensor(image) for image, _ in items])  # (n, C, H, W)
    return images, [int(label) for _, label in items]


def example_titles(outcome) -> list[str] | None:
    """Class names of an outcome's example images, or None when it does not carry their labels.

    Reads ``outcome.example_labels`` (labels of ``outcome.examples`` or
    ``outcome.clean_examples``) and ``outcome.classes``.
    """
    labels = getattr(outcome, "example_labels", None)
    classes = list(getattr(outcome, "classes", []) or [])
    if labels is None:
        return None
    return [classes[int(k)] if 0 <= int(k) < len(classes) else str(int(k)) for k in labels]


# --------------------------------------------------------------------------- stop reasons and costs


def is_censored(record: RunRecord) -> bool:
    """True when the run stopped without reaching its target (see :attr:`RunRecord.censored`)."""
    return record.censored


def describe_stop(record: RunRecord) -> str:
    """One Markdown sentence on why `record`'s run stopped, flagging a censored run.

    Examples
    --------
    >>> from resque.cost.records import RunRecord
    >>> describe_stop(RunRecord("r", "shift", config={"target_accuracy": 0.5},
    ...                         evaluations=[{"val_accuracy": 0.4}, {"val_accuracy": 0.6}],
    ...                         totals={"epochs": 0.25}, stop_reason="reached"))
    'The run **reached** its target validation accuracy of 0.500 after 0.25 epochs, 2 checks (last: 0.600).'
    """
    config = record.config
    # a relative target is set per run (rho x a_src or a_ref): the record's totals or experiment hold it
    target = next((value for value in (record.totals.get("target_accuracy"), record.experiment.get("target_accuracy"),
                                       config.get("target_accuracy")) if value is not None), None)
    accuracies = [e.get("val_accuracy") for e in record.evaluations if e.get("val_accuracy") is not None]
    epochs = record.totals.get("epochs", len(record.evaluations))
    # a yardstick trained past its target to its plateau: its costs (and this sentence) stop at the target
    checks = min(int(record.totals.get("evaluations") or len(accuracies)), len(accuracies))
    accuracies = accuracies[:checks]
    epoch_word = ("epoch" if epochs == 1 else "epochs") + f", {checks} check{'' if checks == 1 else 's'}"
    last = f"{accuracies[-1]:.3f}" if accuracies else "n/a"
    target_text = f"{target:.3f}" if target is not None else "(unknown)"
    if record.stop_reason == "plateau":
        return (f"The run was trained to the plateau of its validation loss: {epochs:g} {epoch_word}; it ends "
                f"with the weights of its best check (validation accuracy "
                f"{_number(record.totals.get('final_val_accuracy')):.3f}).")
    if not is_censored(record):
        return (f"The run **reached** its target validation accuracy of {target_text} "
                f"after {epochs:g} {epoch_word} (last: {last}).")
    rule = _STOP_RULES.get(record.stop_reason)
    try:
        rule = rule.format(**config) if rule else f"{record.stop_reason!r}"
    except (KeyError, ValueError):
        rule = f"{record.stop_reason!r}"
    best = f"{max(accuracies):.3f}" if accuracies else "n/a"
    text = (f"**Censored run**: it was stopped by {rule} after {epochs:g} {epoch_word} without reaching "
            f"its target validation accuracy of {target_text} (best: {best}, last: {last}). "
            "Its costs are a lower bound on what reaching the target would take")
    if record.kind in ("shift", "task"):
        text += ", and the analysis treats it as censored"
    return text + "."


def describe_no_yardstick(profile, kind: str, seed: int) -> str:
    """Why a run of `kind` and `seed` has no from-scratch yardstick under `profile` (a Markdown sentence).

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> describe_no_yardstick(SimpleNamespace(scratch=True, shift_scratch_seeds=[0]), "shift", 1)
    'No from-scratch yardstick for this run: the profile trains it for the shift runs of seed 0 only (`shift_scratch_seeds`), so what reuse saves is measured there; reuse costs only.'
    """
    if not profile.scratch:
        return "The profile trains no from-scratch yardstick (`scratch: false`); reuse costs only."
    seeds = getattr(profile, "shift_scratch_seeds", None)
    if kind == "shift" and seeds is not None and seed not in seeds:
        listed = ", ".join(str(s) for s in seeds) or "none"
        return (f"No from-scratch yardstick for this run: the profile trains it for the shift runs of seed"
                f"{'s' if len(seeds) > 1 else ''} {listed} only (`shift_scratch_seeds`), so what reuse saves is "
                "measured there; reuse costs only.")
    return "No from-scratch yardstick was recorded for this run; reuse costs only."


def describe_energy(record: RunRecord) -> str:
    """One Markdown sentence on the run's energy and carbon, part by part, with each figure's source.

    Examples
    --------
    >>> from resque.cost.records import RunRecord
    >>> describe_energy(RunRecord("r", "shift", totals={"energy_parts": {}, "energy_unavailable": {"gpu": "no GPU"}}))
    'Energy: no part could be read (gpu: no GPU).'
    """
    totals = record.totals
    parts = totals.get("energy_parts") or {}
    unavailable = totals.get("energy_unavailable") or {}
    read = [f"{part} {figure['kwh']:.3g} kWh ({_label(figure['source'])})" for part, figure in parts.items()]
    missing = [f"{part}: {why}" for part, why in unavailable.items() if part not in parts]
    if not read:
        return "Energy: no part could be read" + (f" ({'; '.join(missing)})." if missing else ".")
    text = "Energy: " + ", ".join(read)
    if missing:
        text += "; not read: " + "; ".join(missing)
    text += "."
    if totals.get("carbon_kg") is not None and totals.get("carbon_intensity") is not None:
        text += (f" Carbon: {totals['carbon_kg']:.3g} kg CO2-eq, at {totals['carbon_intensity']:.3g} kg CO2-eq "
                 f"per kWh ({totals.get('country_iso_code') or 'unknown country'}).")
    if any(figure["source"] not in MEASURED_SOURCES for figure in parts.values()):
        text += " An estimate is a model of power (TDP times load, DIMM power), not a reading of a counter."
    return text


def _label(source: str) -> str:
    return f"measured, {source}" if source in MEASURED_SOURCES else "ESTIMATE"


def costs_table(record: RunRecord) -> pd.DataFrame:
    """The run's total costs, one row per measure, with units.

    Returns
    -------
    DataFrame
        Index: measure label; columns ``value``, ``unit`` and ``note`` (how a
        figure that may be an estimate is made). Measures the record lacks
        (e.g. energy with tracking off) show as NaN.
    """
    rows = {m.label: {"value": _number(record.totals.get(key)), "unit": m.unit, "note": m.note if m.estimate else ""}
            for key, m in MEASURES.items()}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "measure"
    return table


def compare_costs(record: RunRecord, scratch: RunRecord | None = None) -> pd.DataFrame:
    """Costs of reuse (`record`) next to the from-scratch yardstick (`scratch`), with their ratio.

    Parameters
    ----------
    record : RunRecord
        The retraining run (kind ``"shift"`` or ``"task"``).
    scratch : RunRecord, optional
        A fresh model trained on the same data to the same target. Without it
        the table has the ``reuse`` column only.

    Returns
    -------
    DataFrame
        Index: measure label (every measure of :data:`resque.cost.measures.MEASURES`, plus stop reason and
        accuracies); columns ``unit``, ``reuse`` and, with `scratch`,
        ``from scratch`` and ``reuse / scratch`` (below 1: reuse was cheaper).
    """
    def column(run: RunRecord) -> dict:
        values = {m.label: _number(run.totals.get(key)) for key, m in MEASURES.items()}
        accuracies = [e.get("val_accuracy") for e in run.evaluations]
        values["final validation accuracy"] = _number(accuracies[-1] if accuracies else None)
        values["test accuracy"] = _number(run.test_accuracy)
        values["stop reason"] = run.stop_reason
        return values

    units = {m.label: m.unit for m in MEASURES.values()}
    table = pd.DataFrame({"reuse": column(record)})
    if scratch is not None:
        table["from scratch"] = pd.Series(column(scratch))
        ratios = {}
        for label in (m.label for m in MEASURES.values()):
            reuse, fresh = table.at[label, "reuse"], table.at[label, "from scratch"]
            ratios[label] = reuse / fresh if _finite(reuse) and _finite(fresh) and fresh != 0 else float("nan")
        table["reuse / scratch"] = pd.Series(ratios)
    table.insert(0, "unit", [units.get(label, "") for label in table.index])
    table.index.name = "measure"
    return table


def grid_table(outcomes) -> pd.DataFrame:
    """One row per intensity of a shift grid (:func:`resque.study.experiments.run_shift_grid`).

    Columns: RESQUE_dist (unpaired, and paired when computed), the source
    model's accuracy on the shifted data, the target, the retraining's cost in
    epochs and its stop reason (``censored`` marks a lower bound), and the
    yardstick's epochs when one was trained.

    Examples
    --------
    >>> from types import SimpleNamespace
    >>> from resque.cost.records import RunRecord
    >>> run = RunRecord("r", "shift", totals={"epochs": 1.5}, stop_reason="reached",
    ...                 experiment={"target_accuracy": 0.8})
    >>> row = SimpleNamespace(intensity=0.1, record=run, scratch=None, dist=0.02, dist_paired=None,
    ...                       accuracy_shifted=0.7)
    >>> float(grid_table([row]).loc[0.1, "reuse epochs"])
    1.5
    """
    rows = {}
    for outcome in outcomes:
        record = outcome.record
        row = {"RESQUE_dist": float(outcome.dist)}
        if outcome.dist_paired is not None:
            row["RESQUE_dist (paired)"] = float(outcome.dist_paired)
        row.update({
            "source accuracy (shifted)": float(outcome.accuracy_shifted),
            "target": _number(record.experiment.get("target_accuracy")),
            "reuse epochs": _number(record.totals.get("epochs")),
            "reuse stop": record.stop_reason + (" (censored)" if is_censored(record) else ""),
        })
        if outcome.scratch is not None:
            row["scratch epochs"] = _number(outcome.scratch.totals.get("epochs"))
            row["scratch stop"] = outcome.scratch.stop_reason + (" (censored)" if is_censored(outcome.scratch) else "")
        rows[float(outcome.intensity)] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "intensity"
    return table


def task_grid_table(outcomes) -> pd.DataFrame:
    """One row per task of a seed's task page (:func:`resque.study.experiments.run_task_grid`).

    Columns: classes, RESQUE_task (the default variant), ``a_ref`` (the
    yardstick's best validation accuracy) and the target, the retraining's
    cost in epochs and its stop reason (``censored`` marks a lower bound), and
    the yardstick's epochs to the same target.
    """
    rows = {}
    for outcome in outcomes:
        record, experiment = outcome.record, outcome.record.experiment
        row = {
            "classes": experiment.get("num_classes"),
            "RESQUE_task": _number(record.estimators.get("resque_task")),
            "a_ref": _number(experiment.get("a_ref")),
            "target": _number(experiment.get("target_accuracy")),
            "reuse epochs": _number(record.totals.get("epochs")),
            "reuse stop": record.stop_reason + (" (censored)" if is_censored(record) else ""),
        }
        if outcome.scratch is not None:
            row["scratch epochs"] = _number(outcome.scratch.totals.get("epochs"))
        rows[outcome.task or record.run_id] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "task"
    return table


def task_variants_table(variants: dict, conv_variants: dict | None = None) -> pd.DataFrame:
    """The four RESQUE_task variants as a table, the default (mean pooling, centroid init) marked.

    Parameters
    ----------
    variants : dict
        ``{(pool, init): TaskResult}`` from :func:`resque.resque_task_variants`.
    conv_variants : dict, optional
        The same at a convolutional layer (a profile's ``task_conv_layer``),
        where pooling and flattening differ: four more rows.

    Returns
    -------
    DataFrame
        Columns ``layer``, ``pooling``, ``k-means init``, ``RESQUE_task``, ``ARI``,
        ``k-means iterations``, ``default``; the default variant first.
    """
    rows = []
    for group in (variants, conv_variants or {}):
        for (pool, init), result in group.items():
            rows.append({
                "layer": result.layer,
                "pooling": pool,
                "k-means init": init,
                "RESQUE_task": float(result.value),
                "ARI": float(result.ari),
                "k-means iterations": int(result.n_iter),
                "default": group is variants and (pool, init) == ("mean", "centroids"),
            })
    table = pd.DataFrame(rows)
    return table.sort_values("default", ascending=False, kind="stable").reset_index(drop=True)


def describe_task_variants(variants: dict) -> str:
    """A Markdown remark on how the four RESQUE_task variants relate (empty when there is nothing to say).

    When the layer's output is already a vector (``(B, D)``), mean pooling and
    flattening give the same embedding, hence the same values; this says so.
    """
    remarks = []
    for init in sorted({init for _, init in variants}):
        mean, flat = variants.get(("mean", init)), variants.get(("flatten", init))
        if mean is not None and flat is not None and abs(float(mean) - float(flat)) < 1e-12:
            remarks.append(init)
    if not remarks:
        return ""
    layer = next(iter(variants.values())).layer
    return (f"Here mean pooling and flattening agree (initialisation: {', '.join(remarks)}): the output of "
            f"layer `{layer}` is already a vector per image, so there is nothing to pool.")


def format_table(table: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """A copy of `table` for display: numbers as strings with `digits` significant digits, NaN as "n/a".

    Cost tables mix magnitudes (1e10 FLOPs next to 1e-6 kWh), which a shared
    column format would round to 0; other cells (text, booleans) are kept.
    """
    def cell(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return value
        if pd.isna(value):
            return "n/a"
        return f"{value:.{digits}g}"

    return table.apply(lambda column: column.map(cell))


# --------------------------------------------------------------------------- energy


def load_records(results_dir: str | os.PathLike, *, complete_only: bool = True) -> RecordsRead:
    """The run records of a study (``results_dir/records/*.json``), the unreadable ones named.

    Parameters
    ----------
    results_dir : path
        A study's results directory (layout: :mod:`resque.study.results`).
    complete_only : bool, default True
        Leave out records of runs that did not finish.

    Returns
    -------
    RecordsRead
        ``.records`` sorted by run id; ``.unreadable`` (file -> why) and
        ``.describe_unreadable()`` for the page to say so.
    """
    found = read_records(Path(results_dir, "records"))
    kept = sorted((r for r in found.records if r.complete or not complete_only), key=lambda r: r.run_id)
    return dataclasses.replace(found, records=kept)


def _status(sources: Iterable[str]) -> str:
    sources = list(sources)
    if not sources:
        return "not tracked"
    measured = [source in MEASURED_SOURCES for source in sources]
    if all(measured):
        return "measured"
    return "partly measured" if any(measured) else "estimated"


def energy_table(records: Iterable[RunRecord]) -> pd.DataFrame:
    """Each run's energy, part by part, with the source of every figure.

    Parameters
    ----------
    records : iterable of RunRecord

    Returns
    -------
    DataFrame
        One row per run: ``run_id``, ``kind``, ``epochs``, ``seconds`` (training
        plus validation, the interval energy covers), ``energy_kwh``,
        ``carbon_kg``; per part in :data:`ENERGY_PARTS`, ``<part>_kwh`` (NaN when
        not read) and ``<part>_source`` (``"nvml"``, ``"rapl"``, ``"estimate"``,
        or ``"unavailable: <why>"``); ``status`` is ``"measured"``,
        ``"estimated"``, ``"partly measured"`` or ``"not tracked"``;
        ``mean_watts`` (energy over seconds, W), ``country`` and
        ``kg_co2_per_kwh`` (the grid intensity carbon was computed with).
    """
    rows = []
    for record in records:
        totals = record.totals
        parts = totals.get("energy_parts") or {}
        unavailable = totals.get("energy_unavailable") or {}
        row = {
            "run_id": record.run_id,
            "kind": record.kind,
            "epochs": totals.get("epochs", len(record.evaluations)),
            "seconds": _number(totals.get("train_seconds", 0.0)) + _number(totals.get("eval_seconds", 0.0)),
            "energy_kwh": _number(totals.get("energy_kwh")),
            "carbon_kg": _number(totals.get("carbon_kg")),
        }
        for part in ENERGY_PARTS:
            figure = parts.get(part)
            row[f"{part}_kwh"] = _number(figure["kwh"]) if figure else float("nan")
            if figure:
                row[f"{part}_source"] = figure["source"]
            else:
                row[f"{part}_source"] = "unavailable: " + unavailable.get(part, "not recorded")
        row["status"] = _status(figure["source"] for figure in parts.values())
        row["mean_watts"] = row["energy_kwh"] * 3.6e6 / row["seconds"] if row["seconds"] > 0 else float("nan")
        row["country"] = totals.get("country_iso_code") or ""
        row["kg_co2_per_kwh"] = _number(totals.get("carbon_intensity"))
        rows.append(row)
    columns = ["run_id", "kind", "epochs", "seconds", "energy_kwh", "carbon_kg",
               *[f"{part}_{field}" for part in ENERGY_PARTS for field in ("kwh", "source")], "status",
               "mean_watts", "country", "kg_co2_per_kwh"]
    return pd.DataFrame(rows, columns=columns)


def measure_gpu_energy(work: Callable[[], object], reader) -> dict:
    """Energy a GPU counter sees while `work()` runs.

    Parameters
    ----------
    work : callable
        Called once with no arguments; it should synchronise its device before
        returning (e.g. ``torch.cuda.synchronize()``) so the counter sees all of it.
    reader : EnergyCounter
        A cumulative counter, usually :class:`resque.NvmlEnergyReader`
        (``read_kwh()`` and a ``source`` label).

    Returns
    -------
    dict
        ``kwh``, ``joules``, ``seconds`` (wall time), ``watts`` (mean power)
        and ``source``.
    """
    before, start = float(reader.read_kwh()), time.perf_counter()
    work()
    after, seconds = float(reader.read_kwh()), time.perf_counter() - start
    kwh = after - before
    joules = kwh * 3.6e6
    return {"kwh": kwh, "joules": joules, "seconds": seconds,
            "watts": joules / seconds if seconds > 0 else float("nan"), "source": reader.source}


def _number(value) -> float:
    return float("nan") if value is None else float(value)


def _finite(value) -> bool:
    try:
        return pd.notna(value) and abs(float(value)) != float("inf")
    except (TypeError, ValueError):
        return False


def gpu_energy_demo(seconds: float = 2.0, size: int = 4096) -> dict | None:
    """Read the GPU's NVML energy counter around `seconds` of matrix products; None without CUDA.

    Parameters
    ----------
    seconds : float, default 2.0
        How long to keep the GPU busy (the counter updates every few tens of ms).
    size : int, default 4096
        Side of the square float32 matrices multiplied.

    Returns
    -------
    dict or None
        As :func:`measure_gpu_energy`, plus ``device`` (the GPU's name) and
        ``products`` (matrix products done).
    """
    if not torch.cuda.is_available():
        return None
    from ..cost.energy import NvmlEnergyReader

    device = torch.device("cuda", torch.cuda.current_device())
    reader = NvmlEnergyReader.for_torch_device(device)
    a = torch.randn(size, size, device=device)
    products = 0

    def work():
        nonlocal products
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            for _ in range(10):
                a @ a
            products += 10
            torch.cuda.synchronize(device)

    try:
        result = measure_gpu_energy(work, reader)
    finally:
        reader.close()
    return {**result, "device": torch.cuda.get_device_name(device), "products": products}
