"""How the analysis names its columns: measures from the measures table, predictors from their registry."""

from __future__ import annotations

from ...cost.measures import MEASURES
from ...predictors.registry import PREDICTORS

__all__ = ["label_of", "axis_label"]


def label_of(name: str) -> str:
    """Human label of a measure or predictor column (the column name itself when unknown)."""
    if name in MEASURES:
        return MEASURES[name].label
    if name in PREDICTORS:
        return PREDICTORS.get(name).label
    return name


def axis_label(name: str) -> str:
    """A plot axis label: the measure with its unit, or the predictor's label."""
    return MEASURES[name].axis_label if name in MEASURES else label_of(name)
