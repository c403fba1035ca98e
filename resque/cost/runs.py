"""A tracked, recorded training run: the unit a study is made of.

:func:`run_training` wraps :func:`resque.cost.training.train` with a
:class:`~resque.cost.tracking.CostTracker` and turns the outcome into a
:class:`~resque.cost.records.RunRecord`. The three kinds of run of book/method.md
share it:

- ``kind="source"``: the source model trained from scratch on clean S0+S2;
- ``kind="shift"``: that model fine-tuned on shifted S1+S2 (:func:`retrain_shift`);
- ``kind="task"``: that model with a fresh head fine-tuned on a new task (:func:`retrain_task`);
- ``kind="scratch"``: a fresh model trained on the same new data to the same
  target, the yardstick that says what reuse saved (:func:`train_from_scratch`).
"""

from __future__ import annotations

import os
import traceback
from dataclasses import asdict

from torch import nn

from ..models.zoo import create_model
from .records import RunRecord, provenance
from .tracking import CostTracker
from .training import TrainConfig, as_tensors, retrain_for_task, train

__all__ = ["KINDS", "run_training", "retrain_shift", "retrain_task", "train_from_scratch", "cost_to_target",
           "replicate_summary"]

KINDS = ("source", "shift", "task", "scratch")


def run_training(
    model: nn.Module,
    train_data,
    val_data,
    config: TrainConfig | None = None,
    *,
    kind: str,
    run_id: str,
    experiment: dict | None = None,
    estimators: dict | None = None,
    test_data=None,
    energy: bool = True,
    country_iso_code: str = "USA",
    record_path: str | os.PathLike | None = None,
    settings: dict | None = None,
    device=None,
    progress: bool = True,
) -> RunRecord:
    """Train `model` with every cost tracked, and return (and optionally save) its record.

    Parameters
    ----------
    model : torch.nn.Module
        Trained in place.
    train_data, val_data, test_data
        As in :func:`resque.cost.training.train`.
    config : TrainConfig, optional
    kind : {"source", "shift", "task", "scratch"}
    run_id : str
        Unique name of the run, stored in the record.
    experiment : dict, optional
        What changed (``{"shift": "frost", "intensity": 0.3}``, ``{"task": "digits"}``).
    estimators : dict, optional
        Values computed before retraining (``{"resque_dist": 0.07}``).
    energy : bool, default True
        Track energy and carbon (codecarbon; NVML on CUDA).
    country_iso_code : str, default "USA"
        For carbon intensity.
    record_path : path, optional
        Where to write the record (JSON, atomically). If training raises, an
        incomplete record with the error is written there before the error propagates.
    settings : dict, optional
        The settings the run depends on, stored as ``record.settings`` (a study
        stores its profile's; see :meth:`resque.study.profiles.Profile.run_settings`).

    Returns
    -------
    RunRecord
        ``complete=True``; ``stop_reason`` says whether the target was reached.
    """
    from ..errors import InvalidParameterError

    if kind not in KINDS:
        raise InvalidParameterError("kind", kind, KINDS)
    config = config or TrainConfig()
    record = RunRecord(
        run_id=run_id,
        kind=kind,
        experiment=dict(experiment or {}),
        seed=config.seed,
        config=asdict(config),
        model=dict(getattr(model, "resque_config", {}) or {"name": type(model).__name__, "kwargs": {}}),
        estimators=dict(estimators or {}),
        provenance=provenance(),
        settings=dict(settings or {}),
    )
    try:
        train_set = as_tensors(train_data, "train_data")
        sample = (train_set.images[: config.batch_size], train_set.labels[: config.batch_size])
        tracker = CostTracker(model, energy=energy, country_iso_code=country_iso_code, flops_sample=sample)
        result = train(model, train_set, val_data, config, test_data=test_data, tracker=tracker,
                       device=device, progress=progress)
    except BaseException as error:
        record.error = "".join(traceback.format_exception_only(type(error), error)).strip()
        if record_path is not None:
            record.save(record_path)
        raise
    record.evaluations = [_row(stats, costs) for stats, costs in zip(result.history, tracker.epochs)]
    totals = tracker.totals().to_dict()
    # Cost to the stopping evaluation: epochs as a fraction (samples / training-set size).
    totals.update(epochs=result.samples / result.train_size, evaluations=len(result.history),
                  train_size=result.train_size, evals_per_epoch=config.evals_per_epoch,
                  target_accuracy=config.target_accuracy, final_val_accuracy=result.final_val_accuracy,
                  best_evaluation=result.best_evaluation)
    record.totals = totals
    record.stop_reason = result.stop_reason
    record.test_accuracy = result.test_accuracy
    record.complete = True
    if record_path is not None:
        record.save(record_path)
    return record


def _row(stats, costs) -> dict:
    """One evaluation's row: the loop's cumulative counts, then the tracker's costs of the interval before it."""
    interval = costs.to_dict()
    interval.pop("epoch")  # the tracker's 0-based interval index is the evaluation number
    interval["interval_steps"], interval["interval_samples"] = interval.pop("steps"), interval.pop("samples")
    return {**asdict(stats), **interval}


#: Costs that add up over evaluation intervals (the rest are read at the stopping evaluation).
_ADDITIVE = ("train_seconds", "eval_seconds", "cpu_seconds", "train_flops", "energy_kwh", "energy_estimated_kwh",
             "carbon_kg")


def cost_to_target(record: RunRecord, target: float) -> tuple[dict, bool]:
    """What `record`'s run had cost when its validation accuracy first met `target`.

    A run trained to its plateau passes its target on the way; this reads that
    point off its evaluations: steps, samples and fractional epochs at the
    first evaluation at or above `target`, time, FLOPs and energy summed over
    the intervals up to it, gradient norm and parameter change as they were
    there. Returns ``(totals, reached)``; when the run never met `target`,
    the whole run's totals and False (a lower bound).
    """
    rows = record.evaluations
    hit = next((i for i, row in enumerate(rows) if row.get("val_accuracy", -1.0) >= target), None)
    totals = dict(record.totals)
    if hit is None:
        return totals, False
    upto, at = rows[: hit + 1], rows[hit]
    for key in _ADDITIVE:
        values = [row.get(key) for row in upto]
        totals[key] = None if any(v is None for v in values) else float(sum(values))
    train_size = totals.get("train_size") or 1
    totals.update(steps=at["steps"], samples=at["samples"], epochs=at["samples"] / train_size,
                  evaluations=hit + 1, target_accuracy=float(target), final_val_accuracy=at["val_accuracy"],
                  best_evaluation=hit, param_change_from_start=at.get("param_change_from_start"),
                  layer_change_from_start=dict(at.get("layer_change_from_start") or {}))
    norms = [row.get("grad_norm_last") for row in upto if row.get("grad_norm_last") is not None]
    totals["grad_norm_last"] = norms[-1] if norms else None
    steps = [(row.get("grad_norm_mean"), row.get("interval_steps", 0)) for row in upto]
    counted = [(mean, n) for mean, n in steps if mean is not None and n]
    totals["grad_norm_mean"] = (sum(m * n for m, n in counted) / sum(n for _, n in counted)) if counted else None
    return totals, True


#: The costs a repeat keeps (:func:`replicate_summary`): those the analysis reads.
REPLICATE_COSTS = ("epochs", "steps", "samples", "evaluations", "train_seconds", "eval_seconds", "cpu_seconds",
                   "train_flops", "grad_norm_mean", "grad_norm_last", "param_change_from_start", "energy_kwh",
                   "energy_estimated_kwh", "carbon_kg", "final_val_accuracy")


def replicate_summary(record: RunRecord) -> dict:
    """What a repeat of a retraining (another retraining seed) adds to the first run's ``replicates``."""
    return {"retrain_seed": record.seed, "stop_reason": record.stop_reason, "censored": record.censored,
            "test_accuracy": record.test_accuracy,
            "totals": {key: record.totals.get(key) for key in REPLICATE_COSTS}}


def retrain_shift(model: nn.Module, shifted_train, val_data, config: TrainConfig | None = None, **options) -> RunRecord:
    """Fine-tune all layers of the source model on shifted data (``kind="shift"``)."""
    return run_training(model, shifted_train, val_data, config, kind="shift", **options)


def retrain_task(
    model: nn.Module, task_train, val_data, num_classes: int, config: TrainConfig | None = None, **options
) -> RunRecord:
    """Replace the head with a fresh one of `num_classes` outputs, fine-tune all layers (``kind="task"``)."""
    config = config or TrainConfig()
    retrain_for_task(model, num_classes, seed=config.seed)
    return run_training(model, task_train, val_data, config, kind="task", **options)


def train_from_scratch(
    name: str, train_data, val_data, config: TrainConfig | None = None, *, model_kwargs: dict | None = None,
    kind: str = "scratch", **options
) -> tuple[nn.Module, RunRecord]:
    """Build a fresh registry model (seeded by ``config.seed``) and train it (``kind="scratch"`` or ``"source"``)."""
    import torch

    config = config or TrainConfig()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = create_model(name, **(model_kwargs or {}))
    return model, run_training(model, train_data, val_data, config, kind=kind, **options)
