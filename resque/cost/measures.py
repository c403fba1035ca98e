"""The table of cost measures: what each cost of retraining is called, its unit, and how to read it.

Every other module (records to tables, the analysis, the forecast, the
notebooks' tables and plots) reads its labels and units from :data:`MEASURES`,
so a measure is named the same way everywhere.

Examples
--------
>>> MEASURES["energy_kwh"].axis_label
'Energy (kWh)'
>>> [m.column for m in measures(saving=True)]
['epochs', 'train_seconds', 'train_flops', 'energy_kwh', 'carbon_kg']
"""

from __future__ import annotations

from dataclasses import dataclass

from ..checks import check_choice

__all__ = ["Measure", "MEASURES", "measures", "measure", "label_of"]


@dataclass(frozen=True)
class Measure:
    """One cost of a training run, as a key of ``RunRecord.totals`` (and a column of the study's tables).

    Attributes
    ----------
    column : str
        Key in ``record.totals``; the column of the runs table.
    label, unit : str
        How people read it: ``"Energy"``, ``"kWh"``.
    headline : bool
        One of the measures the study reports for every predictor.
    saving : bool
        "Reuse saved x % of training from scratch" means something for it
        (a smaller gradient norm is not a saving); these are the costs a
        forecast predicts.
    estimate : bool
        The figure may be an estimate rather than a measurement (energy and
        carbon from a TDP model, FLOPs counted for one step and scaled): say
        so wherever it is shown.
    note : str
        What else a reader should know.
    """

    column: str
    label: str
    unit: str
    headline: bool = False
    saving: bool = False
    estimate: bool = False
    note: str = ""

    @property
    def axis_label(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


_TABLE = (
    Measure("epochs", "Epochs", "epochs", headline=True, saving=True,
            note="samples / training-set size to the evaluation that stopped the run: a fraction, 0 when the "
                 "model met its target before any update"),
    Measure("steps", "Optimizer steps", "steps"),
    Measure("samples", "Samples", "images"),
    Measure("grad_norm_last", "Gradient norm", "L2, last full batch", headline=True,
            note="the authors' measure: the global L2 norm of the gradient at the run's last full batch"),
    Measure("grad_norm_mean", "Gradient norm (mean)", "L2, mean over steps"),
    Measure("param_change_from_start", "Parameter change", "RMS from start", headline=True),
    Measure("train_seconds", "Training time", "s", headline=True, saving=True),
    Measure("eval_seconds", "Validation time", "s"),
    Measure("cpu_seconds", "CPU time", "s", note="process CPU time (all threads), training and validation"),
    Measure("train_flops", "FLOPs", "FLOP", headline=True, saving=True, estimate=True,
            note="counted for one training step and scaled by the samples seen, so proportional to samples"),
    Measure("energy_kwh", "Energy", "kWh", headline=True, saving=True, estimate=True,
            note="an estimate from the processor's TDP where no hardware energy counter exists"),
    Measure("energy_estimated_kwh", "Energy, of which estimated", "kWh", estimate=True),
    Measure("carbon_kg", "Carbon", "kg CO2-eq", headline=True, saving=True, estimate=True,
            note="energy times the grid's carbon intensity, so proportional to energy"),
)

#: Every cost measure, column -> :class:`Measure`, in the order tables show them.
MEASURES: dict[str, Measure] = {m.column: m for m in _TABLE}


def measures(*, headline: bool | None = None, saving: bool | None = None) -> list[Measure]:
    """The measures with the given flags (all of them by default), in table order."""
    return [m for m in _TABLE
            if (headline is None or m.headline == headline) and (saving is None or m.saving == saving)]


def measure(column: str) -> Measure:
    """The :class:`Measure` of `column`; unknown names list the known ones."""
    return MEASURES[check_choice("measure", column, MEASURES)]


def label_of(column: str) -> str:
    """Human label of a measure column, or the column itself when it is not a measure."""
    found = MEASURES.get(column)
    return found.label if found is not None else column
