"""Forecast what retraining will cost from a RESQUE value, before retraining.

The model is deliberately simple and stated in full. For each cost measure
(epochs, energy in kWh, carbon in kg CO2-eq, ...) the calibration runs of a
study give pairs ``(x_i, y_i)``: the estimator computed before retraining
(e.g. RESQUE_dist) and the measured cost of the retraining. The forecast is
the ordinary least-squares line

.. math::

    y = a + b x + \\varepsilon, \\qquad \\varepsilon \\sim N(0, \\sigma^2),

with the residual standard error :math:`s = \\sqrt{\\sum_i r_i^2 / (n - 2)}`
and, at a new index value :math:`x_0`, the t-based *prediction* interval (for
one new run, not for the mean cost)

.. math::

    \\hat y_0 \\pm t_{(1 + \\text{level}) / 2,\\, n - 2}\\;
    s \\sqrt{1 + 1/n + (x_0 - \\bar x)^2 / S_{xx}}.

The from-scratch yardstick of each run (``scratch_<cost>`` in
:func:`~resque.study.analysis.load_records`) gets the same treatment, so that
the forecast can state the predicted saving ``1 - reuse / scratch``. Training
from scratch does not use the source model, so its cost usually does not
depend on the index: the yardstick is modelled by its mean and spread (an
intercept-only fit, prediction interval with ``n - 1`` degrees of freedom)
unless the OLS slope on the index is significant at the 5 % level, in which
case the line is used.

Costs cannot be negative and a retraining takes at least one epoch, so the
point estimate and both interval ends are clipped at 0 (epochs: at 1); a
clipped value is marked in the printed table. Runs that stopped before
reaching the target accuracy (``censored``) are left out by default: their
cost is only a lower bound of the true cost.

Examples
--------
>>> from resque.forecast import fit_forecast
>>> model = fit_forecast("results/quick")                      # doctest: +SKIP
>>> print(model.predict(0.12))                                 # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import difflib
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from .errors import InvalidParameterError, ResqueError

__all__ = [
    "COSTS",
    "CostForecast",
    "ForecastError",
    "LinearFit",
    "MeasurePrediction",
    "Prediction",
    "add_forecast_arguments",
    "fit_forecast",
    "forecast",
    "forecast_command",
    "leave_one_out",
    "mean_fit",
    "ols_fit",
    "plot_predicted_vs_measured",
    "summarize_leave_one_out",
]

#: Costs a forecast may be made for: column -> (label, unit). These are the
#: costs for which "reuse saves x % of training from scratch" means something.
COSTS: dict[str, tuple[str, str]] = {
    "epochs": ("Epochs", "epochs"),
    "train_seconds": ("Training time", "s"),
    "train_flops": ("FLOPs", "FLOP"),
    "energy_kwh": ("Energy", "kWh"),
    "carbon_kg": ("Carbon", "kg CO2-eq"),
}
DEFAULT_MEASURES = ("epochs", "energy_kwh", "carbon_kg")
KINDS = ("shift", "task")
#: Significance level of the slope test that decides between a mean and a line for the yardstick.
SCRATCH_SLOPE_ALPHA = 0.05


class ForecastError(ResqueError, ValueError):
    """A forecast cannot be fitted from the calibration runs given (usually: too few).

    Attributes
    ----------
    measure : str
        The cost column that could not be fitted.
    n_runs : int
        Usable calibration runs found for it.
    min_runs : int
        Runs needed.
    """

    def __init__(self, message: str, *, measure: str = "", n_runs: int = 0, min_runs: int = 0):
        self.measure = measure
        self.n_runs = n_runs
        self.min_runs = min_runs
        super().__init__(message)


# ---------------------------------------------------------------------------
# Functional core: a line (or a mean) with prediction intervals
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LinearFit:
    """An OLS fit ``y = intercept + slope * x`` (or an intercept-only mean), ready to predict.

    Attributes
    ----------
    intercept, slope : float
        Coefficients (``slope`` is 0 for a mean model).
    residual_se : float
        Residual standard error ``s`` (unit of y).
    n : int
        Observations used.
    df : int
        Residual degrees of freedom (``n - 2`` for a line, ``n - 1`` for a mean).
    x_mean, sxx : float
        Mean of x and ``sum (x - x_mean)^2`` (0 for a mean model).
    se_intercept, se_slope : float
        Standard errors of the coefficients (``se_slope`` NaN for a mean model).
    kind : {"line", "mean"}
    """

    intercept: float
    slope: float
    residual_se: float
    n: int
    df: int
    x_mean: float
    sxx: float
    se_intercept: float
    se_slope: float
    kind: str = "line"

    @property
    def slope_p_value(self) -> float:
        """Two-sided p-value of ``slope = 0`` (NaN for a mean model or a perfect fit)."""
        if self.kind != "line" or not self.se_slope > 0:
            return math.nan
        return float(2 * stats.t.sf(abs(self.slope / self.se_slope), self.df))

    def predict(self, x: float | np.ndarray, level: float = 0.9) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Point prediction and the `level` prediction interval for one new observation at `x`.

        Returns
        -------
        point, low, high : numpy.ndarray
            Same shape as `x`; not clipped.
        """
        x = np.asarray(x, dtype=float)
        point = self.intercept + self.slope * x
        leverage = (x - self.x_mean) ** 2 / self.sxx if self.kind == "line" else 0.0 * x
        spread = self.residual_se * np.sqrt(1.0 + 1.0 / self.n + leverage)
        half = stats.t.ppf(0.5 + level / 2.0, self.df) * spread
        return point, point - half, point + half


def ols_fit(x: Sequence[float], y: Sequence[float]) -> LinearFit:
    """Ordinary least squares of `y` on `x`, with an intercept.

    Parameters
    ----------
    x, y : array-like, shape (n,)
        Finite values; at least 3 pairs and two distinct x.

    Returns
    -------
    LinearFit
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    n = len(x)
    x_mean, y_mean = x.mean(), y.mean()
    sxx = float(((x - x_mean) ** 2).sum())
    slope = float(((x - x_mean) * (y - y_mean)).sum() / sxx)
    intercept = float(y_mean - slope * x_mean)
    residuals = y - intercept - slope * x
    s = float(math.sqrt((residuals**2).sum() / (n - 2)))
    return LinearFit(
        intercept=intercept, slope=slope, residual_se=s, n=n, df=n - 2, x_mean=float(x_mean), sxx=sxx,
        se_intercept=s * math.sqrt(1.0 / n + x_mean**2 / sxx), se_slope=s / math.sqrt(sxx), kind="line",
    )


def mean_fit(y: Sequence[float]) -> LinearFit:
    """Intercept-only model: the mean of `y` and its spread (at least 2 values)."""
    y = np.asarray(y, dtype=float)
    n = len(y)
    s = float(y.std(ddof=1))
    return LinearFit(
        intercept=float(y.mean()), slope=0.0, residual_se=s, n=n, df=n - 1, x_mean=math.nan, sxx=0.0,
        se_intercept=s / math.sqrt(n), se_slope=math.nan, kind="mean",
    )


def _floor(measure: str) -> float:
    """Smallest possible value of a cost: one epoch, else zero."""
    return 1.0 if measure == "epochs" else 0.0


# ---------------------------------------------------------------------------
# Predictions
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class MeasurePrediction:
    """The forecast of one cost at one index value.

    Attributes
    ----------
    measure, label, unit : str
        Column (``"energy_kwh"``), label (``"Energy"``) and unit (``"kWh"``).
    point, low, high : float
        Predicted cost of the retraining and its prediction interval, clipped
        at 0 (epochs: at 1).
    clipped : bool
        Whether any of the three was raised to the floor.
    scratch : float
        Predicted cost of training from scratch (clipped the same way); NaN
        without yardsticks.
    saving : float
        ``1 - point / scratch``: the predicted fraction of the from-scratch cost
        saved by reusing the model (negative: reuse costs more); NaN without
        yardsticks.
    """

    measure: str
    label: str
    unit: str
    point: float
    low: float
    high: float
    clipped: bool
    scratch: float
    saving: float


@dataclass(frozen=True)
class Prediction:
    """A cost forecast at one index value: one :class:`MeasurePrediction` per measure.

    ``str(prediction)`` is a readable table; :meth:`to_frame` a DataFrame.

    Attributes
    ----------
    index_value : float
        The estimator value predicted at.
    estimator : str
        Its name (e.g. ``"resque_dist"``).
    level : float
        Level of the prediction intervals (e.g. 0.9).
    measures : dict of str to MeasurePrediction
    n_runs : int
        Calibration runs behind the fit (the smallest number over measures).
    index_range : (float, float)
        Smallest and largest index of the calibration runs.
    """

    index_value: float
    estimator: str
    level: float
    measures: dict[str, MeasurePrediction]
    n_runs: int
    index_range: tuple[float, float]

    @property
    def extrapolated(self) -> bool:
        """The index is outside the range of the calibration runs."""
        low, high = self.index_range
        return not (low <= self.index_value <= high)

    def __getitem__(self, measure: str) -> MeasurePrediction:
        return self.measures[measure]

    def to_frame(self) -> pd.DataFrame:
        """One row per measure: point, low, high, clipped, scratch, saving, unit."""
        rows = [vars(m).copy() for m in self.measures.values()]
        return pd.DataFrame(rows).set_index("measure")

    def __str__(self) -> str:
        from .study.analysis import label_of

        percent = round(100 * self.level)
        lines = [
            f"{label_of(self.estimator)} = {self.index_value:.4g}",
            (f"Predicted retraining cost ({percent} % prediction intervals; "
             f"OLS on {self.n_runs} calibration runs, index {self.index_range[0]:.3g}..{self.index_range[1]:.3g}):"),
        ]
        rows = [("measure", "predicted", f"{percent} % interval", "from scratch", "saving")]
        for m in self.measures.values():
            mark = "*" if m.clipped else ""
            rows.append((
                f"{m.label} ({m.unit})",
                f"{_number(m.point)}{mark}",
                f"[{_number(m.low)}, {_number(m.high)}]",
                _number(m.scratch),
                "n/a" if math.isnan(m.saving) else f"{100 * m.saving:.1f} %",
            ))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            lines.append("  " + "  ".join(
                cell.ljust(width) if i == 0 else cell.rjust(width) for i, (cell, width) in enumerate(zip(row, widths))
            ))
        lines.append("saving = 1 - predicted retraining cost / predicted cost of training from scratch.")
        if any(m.clipped for m in self.measures.values()):
            lines.append("* clipped: costs are at least 0 and epochs at least 1.")
        if self.extrapolated:
            lines.append("Warning: the index is outside the calibration range; the line is extrapolated.")
        return "\n".join(lines)


def _number(value: float) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if value == 0:
        return "0"
    if abs(value) >= 1e5 or abs(value) < 1e-3:
        return f"{value:.3e}"
    return f"{value:.4g}"


# ---------------------------------------------------------------------------
# The fitted forecast
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CostForecast:
    """Per-measure OLS lines of retraining cost on an estimator, and yardstick models.

    Build with :func:`fit_forecast`; see the module docstring for the model.

    Attributes
    ----------
    estimator : str
    kind : {"shift", "task"}
    level : float
        Default level of the prediction intervals.
    fits : dict of str to LinearFit
        Cost of the retraining on the index, per measure.
    scratch_fits : dict of str to LinearFit or None
        Cost of the from-scratch yardstick (a mean, or a line when its slope is
        significant); None with fewer than 2 yardsticks.
    n_runs : dict of str to int
        Calibration runs used per measure.
    index_range : (float, float)
        Smallest and largest index among them.
    """

    estimator: str
    kind: str
    level: float
    fits: dict[str, LinearFit]
    scratch_fits: dict[str, LinearFit | None]
    n_runs: dict[str, int]
    index_range: tuple[float, float]

    def predict(self, index_value: float, level: float | None = None) -> Prediction:
        """Forecast the costs of retraining at `index_value`.

        Parameters
        ----------
        index_value : float
            The estimator's value for the new data (e.g. RESQUE_dist).
        level : float, optional
            Interval level in (0, 1); default the forecast's `level`.

        Returns
        -------
        Prediction
        """
        level = _check_level(self.level if level is None else level)
        try:
            index_value = float(index_value)
        except (TypeError, ValueError):
            raise InvalidParameterError("index_value", index_value, "a finite number") from None
        if not math.isfinite(index_value):
            raise InvalidParameterError("index_value", index_value, "a finite number")
        measures = {}
        for measure, fit in self.fits.items():
            floor = _floor(measure)
            raw = [float(v) for v in fit.predict(index_value, level)]
            point, low, high = (max(v, floor) for v in raw)
            scratch_fit = self.scratch_fits.get(measure)
            scratch = max(float(scratch_fit.predict(index_value, level)[0]), floor) if scratch_fit else math.nan
            saving = 1.0 - point / scratch if scratch > 0 else math.nan
            label, unit = COSTS[measure]
            measures[measure] = MeasurePrediction(
                measure, label, unit, point, low, high, clipped=min(raw) < floor, scratch=scratch, saving=saving,
            )
        return Prediction(index_value, self.estimator, level, measures, min(self.n_runs.values()), self.index_range)


def _check_level(level: float) -> float:
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0 < level < 1:
        raise InvalidParameterError("level", level, "a number strictly between 0 and 1, e.g. 0.9")
    return float(level)


def _as_frame(records_or_frame) -> pd.DataFrame:
    """The :func:`load_records` frame of a results folder, a list of records, or the frame itself."""
    from .cost.records import RunRecord
    from .study.analysis import load_records, resolve_results_dir

    if isinstance(records_or_frame, pd.DataFrame):
        return records_or_frame
    if isinstance(records_or_frame, (str, os.PathLike)):
        return load_records(resolve_results_dir(records_or_frame))
    if isinstance(records_or_frame, Sequence) and all(isinstance(r, RunRecord) for r in records_or_frame):
        # One path from records to the frame: write them where load_records reads.
        with tempfile.TemporaryDirectory(prefix="resque-forecast-") as folder:
            for number, record in enumerate(records_or_frame):
                record.save(Path(folder) / f"{number:06d}.json")
            return load_records(folder)
    raise InvalidParameterError(
        "records_or_frame", type(records_or_frame).__name__,
        "a results folder, a list of RunRecord, or the DataFrame of resque.study.analysis.load_records",
    )


def _check_choice(parameter: str, value, allowed: Sequence[str]) -> None:
    if value not in allowed:
        close = difflib.get_close_matches(str(value), list(allowed), n=2)
        hint = f"Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise InvalidParameterError(parameter, value, list(allowed), hint)


def _usable(frame: pd.DataFrame, estimator: str, measure: str, kind: str, exclude_censored: bool):
    """Rows usable for one measure, and a sentence on why the others are not."""
    of_kind = frame[frame["kind"] == kind]
    index = pd.to_numeric(of_kind[estimator], errors="coerce")
    cost = pd.to_numeric(of_kind[measure], errors="coerce")
    has_index, has_cost = np.isfinite(index), np.isfinite(cost)
    censored = of_kind["censored"].astype(bool) if exclude_censored else pd.Series(False, index=of_kind.index)
    keep = has_index & has_cost & ~censored
    reasons = []
    if (~has_index).sum():
        reasons.append(f"{int((~has_index).sum())} without {estimator}")
    if (has_index & ~has_cost).sum():
        reasons.append(f"{int((has_index & ~has_cost).sum())} without {measure}")
    if (has_index & has_cost & censored).sum():
        reasons.append(f"{int((has_index & has_cost & censored).sum())} censored (target not reached)")
    why = f" of {len(of_kind)} {kind} runs" + (f" ({', '.join(reasons)})" if reasons else "")
    return of_kind[keep], why


def fit_forecast(
    records_or_frame,
    estimator: str = "resque_dist",
    measures: Sequence[str] = DEFAULT_MEASURES,
    kind: str = "shift",
    min_runs: int = 5,
    exclude_censored: bool = True,
    level: float = 0.9,
) -> CostForecast:
    """Fit the retraining-cost forecast on calibration runs.

    Per measure: OLS of the cost on the estimator (``cost = a + b * index``)
    with t-based prediction intervals; and a model of the from-scratch
    yardstick's cost (its mean, or a line when the slope on the index is
    significant at 5 %). See the module docstring.

    Parameters
    ----------
    records_or_frame : str, path-like, list of RunRecord or pandas.DataFrame
        A study's results folder, its records, or the frame of
        :func:`resque.study.analysis.load_records`.
    estimator : str, default "resque_dist"
        Column of the index the costs are regressed on.
    measures : sequence of str, default ("epochs", "energy_kwh", "carbon_kg")
        Costs to forecast, from :data:`COSTS` (epochs; ``train_seconds`` in s;
        ``train_flops``; ``energy_kwh`` in kWh; ``carbon_kg`` in kg CO2-eq).
    kind : {"shift", "task"}, default "shift"
        Which runs calibrate the forecast.
    min_runs : int, default 5
        Fewest usable runs per measure (at least 3: a line and a spread).
    exclude_censored : bool, default True
        Leave out runs that stopped before reaching the target accuracy (their
        cost is only a lower bound).
    level : float, default 0.9
        Default level of the prediction intervals.

    Returns
    -------
    CostForecast

    Raises
    ------
    ForecastError
        Fewer than `min_runs` usable runs for a measure (the message says how
        many there are and why the others are unusable), or all of them at the
        same index value.
    InvalidParameterError
        Unknown `estimator`, `measures`, `kind`; bad `min_runs` or `level`.

    Examples
    --------
    >>> model = fit_forecast("results/quick", estimator="resque_dist")  # doctest: +SKIP
    >>> model.predict(0.1)["energy_kwh"].point                          # doctest: +SKIP
    0.0123
    """
    _check_choice("kind", kind, KINDS)
    if isinstance(measures, str):
        measures = (measures,)
    if not measures:
        raise InvalidParameterError("measures", measures, f"a non-empty list from {list(COSTS)}")
    for measure in measures:
        _check_choice("measures", measure, list(COSTS))
    if isinstance(min_runs, bool) or not isinstance(min_runs, (int, np.integer)) or min_runs < 3:
        raise InvalidParameterError("min_runs", min_runs, "an int >= 3 (a line and its spread need 3 points)")
    level = _check_level(level)
    frame = _as_frame(records_or_frame)
    estimators = [c for c in frame.columns if c.startswith(("resque", "accuracy"))]
    if estimator not in frame.columns:
        _check_choice("estimator", estimator, estimators)

    fits, scratch_fits, n_runs, indexes = {}, {}, {}, []
    for measure in measures:
        rows, why = _usable(frame, estimator, measure, kind, exclude_censored)
        if len(rows) < min_runs:
            raise ForecastError(
                f"A forecast of {measure} needs at least min_runs={min_runs} calibration runs with a finite "
                f"{estimator} and {measure}" + (" that reached the target" if exclude_censored else "")
                + f"; found {len(rows)}{why}. Run more experiments (e.g. more intensities or seeds), "
                "or lower min_runs knowingly.",
                measure=measure, n_runs=len(rows), min_runs=min_runs,
            )
        x, y = rows[estimator].to_numpy(float), rows[measure].to_numpy(float)
        if np.ptp(x) == 0:
            raise ForecastError(
                f"All {len(x)} calibration runs have {estimator}={x[0]:.4g}; a line through one index value "
                "cannot predict another. Add runs at other shift intensities.",
                measure=measure, n_runs=len(x), min_runs=min_runs,
            )
        fits[measure] = ols_fit(x, y)
        n_runs[measure] = len(rows)
        indexes.append(x)
        scratch_fits[measure] = _scratch_fit(rows, estimator, measure)
    everything = np.concatenate(indexes)
    return CostForecast(estimator, kind, level, fits, scratch_fits, n_runs,
                        (float(everything.min()), float(everything.max())))


def _scratch_fit(rows: pd.DataFrame, estimator: str, measure: str) -> LinearFit | None:
    """The yardstick's cost: a mean, or a line when its slope on the index is significant."""
    column = f"scratch_{measure}"
    if column not in rows.columns:
        return None
    scratch = rows[[estimator, column]].copy()
    if "scratch_run_id" in rows.columns:  # a yardstick shared by several runs counts once
        ids = rows["scratch_run_id"]
        scratch = scratch[ids.isna() | ~ids.duplicated()]
    scratch = scratch[np.isfinite(pd.to_numeric(scratch[column], errors="coerce"))]
    if len(scratch) < 2:
        return None
    x, y = scratch[estimator].to_numpy(float), scratch[column].to_numpy(float)
    if len(scratch) >= 3 and np.ptp(x) > 0:
        line = ols_fit(x, y)
        if line.slope_p_value < SCRATCH_SLOPE_ALPHA:
            return line
    return mean_fit(y)


# ---------------------------------------------------------------------------
# Leave-one-experiment-out evaluation
# ---------------------------------------------------------------------------


def _experiment_of(frame: pd.DataFrame) -> pd.Series:
    """One label per experiment: the shift and its intensity, or the task (seeds are one experiment)."""
    family = frame["family"].astype(str) if "family" in frame.columns else pd.Series("", index=frame.index)
    intensity = frame["intensity"].map(lambda v: f"{v:g}") if "intensity" in frame.columns else ""
    task = frame["task"].astype(str) if "task" in frame.columns else ""
    return np.where(frame["kind"] == "task", "task:" + task, family + "@" + intensity)


def leave_one_out(
    frame,
    estimator: str = "resque_dist",
    measures: Sequence[str] = DEFAULT_MEASURES,
    kind: str = "shift",
    min_runs: int = 5,
    exclude_censored: bool = True,
    level: float = 0.9,
) -> pd.DataFrame:
    """Leave-one-experiment-out evaluation of :func:`fit_forecast`.

    Each experiment (a shift family at one intensity, or one task; all its
    seeds together, so that a seed never predicts its sibling) is left out in
    turn; the forecast is fitted on the other runs and predicts every run of
    the left-out experiment.

    Parameters
    ----------
    frame : str, path-like, list of RunRecord or pandas.DataFrame
        As in :func:`fit_forecast`; so are the other parameters.

    Returns
    -------
    pandas.DataFrame
        One row per (run, measure): ``run_id, experiment, measure, unit,
        index, measured, predicted, low, high, covered`` (the measured cost is
        inside the interval) and ``ape`` (``|predicted - measured| / measured``,
        NaN where measured is 0). ``attrs["summary"]`` is
        :func:`summarize_leave_one_out` of it and ``attrs["level"]`` the level.

    Raises
    ------
    ForecastError
        Fewer than ``min_runs`` runs remain once an experiment is left out.
    """
    frame = _as_frame(frame)
    if isinstance(measures, str):
        measures = (measures,)
    rows = []
    for measure in measures:
        fit_forecast(frame, estimator, (measure,), kind, min_runs, exclude_censored, level)  # checks everything once
        usable, _ = _usable(frame, estimator, measure, kind, exclude_censored)
        experiments = pd.Series(_experiment_of(usable), index=usable.index)
        for experiment in pd.unique(experiments):
            held_out = usable[experiments == experiment]
            model = fit_forecast(usable[experiments != experiment], estimator, (measure,), kind, min_runs,
                                 exclude_censored, level)
            for _, run in held_out.iterrows():
                predicted = model.predict(run[estimator], level)[measure]
                measured = float(run[measure])
                rows.append({
                    "run_id": run["run_id"], "experiment": experiment, "measure": measure,
                    "unit": COSTS[measure][1], "index": float(run[estimator]), "measured": measured,
                    "predicted": predicted.point, "low": predicted.low, "high": predicted.high,
                    "covered": bool(predicted.low <= measured <= predicted.high),
                    "ape": abs(predicted.point - measured) / abs(measured) if measured != 0 else math.nan,
                })
    result = pd.DataFrame(rows, columns=["run_id", "experiment", "measure", "unit", "index", "measured",
                                         "predicted", "low", "high", "covered", "ape"])
    result.attrs["level"] = level
    result.attrs["estimator"] = estimator
    result.attrs["summary"] = summarize_leave_one_out(result)
    return result


def summarize_leave_one_out(loo_frame: pd.DataFrame) -> pd.DataFrame:
    """Per measure: runs ``n``, median absolute percentage error ``mdape`` (a fraction) and ``coverage``.

    ``coverage`` is the share of left-out runs inside their prediction
    interval; it should be close to the interval level.
    """
    grouped = loo_frame.groupby("measure", sort=False)
    return pd.DataFrame({
        "n": grouped.size(),
        "mdape": grouped["ape"].median(),
        "coverage": grouped["covered"].mean(),
    })


def plot_predicted_vs_measured(loo_frame: pd.DataFrame):
    """Predicted against measured cost of each left-out run, one panel per measure.

    Each point carries its prediction interval as a vertical bar; the
    diagonal is a perfect forecast. Panel titles give the MdAPE and the
    coverage.

    Parameters
    ----------
    loo_frame : pandas.DataFrame
        The result of :func:`leave_one_out`.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    measures = list(pd.unique(loo_frame["measure"]))
    summary = summarize_leave_one_out(loo_frame)
    level = loo_frame.attrs.get("level", math.nan)
    figure, axes = plt.subplots(1, max(len(measures), 1), figsize=(4.2 * max(len(measures), 1), 4), squeeze=False)
    for ax, measure in zip(axes[0], measures):
        part = loo_frame[loo_frame["measure"] == measure]
        label, unit = COSTS.get(measure, (measure, ""))
        below, above = part["predicted"] - part["low"], part["high"] - part["predicted"]
        colours = np.where(part["covered"], "tab:blue", "tab:red")
        ax.errorbar(part["measured"], part["predicted"], yerr=[below, above], fmt="none", ecolor="0.7", zorder=1)
        ax.scatter(part["measured"], part["predicted"], c=colours, s=18, zorder=2)
        ends = [min(part["measured"].min(), part["low"].min()), max(part["measured"].max(), part["high"].max())]
        ax.plot(ends, ends, color="0.3", linestyle="--", linewidth=1)
        ax.set_xlabel(f"Measured {label.lower()} ({unit})")
        ax.set_ylabel(f"Predicted {label.lower()} ({unit})")
        row = summary.loc[measure]
        ax.set_title(f"{label}: MdAPE {100 * row['mdape']:.1f} %, "
                     f"coverage {100 * row['coverage']:.0f} % (level {100 * level:.0f} %)", fontsize=9)
    figure.tight_layout()
    return figure


# ---------------------------------------------------------------------------
# From a model and new data to a forecast
# ---------------------------------------------------------------------------


def forecast(
    model,
    new_data,
    layer: str | None = None,
    *,
    calibration,
    original=None,
    fingerprint=None,
    measures: Sequence[str] = DEFAULT_MEASURES,
    level: float = 0.9,
    min_runs: int = 5,
    exclude_censored: bool = True,
    device=None,
    batch_size: int | None = None,
    progress: bool = False,
) -> Prediction:
    """RESQUE_dist of `new_data` for `model`, and the retraining cost it predicts.

    The calibration forecast is fitted first, so that too few calibration runs
    fail before any forward pass.

    Parameters
    ----------
    model : torch.nn.Module
        The trained source model.
    new_data : Dataset or DataLoader
        Labelled data after the shift.
    layer : str, optional
        Embedding layer; default :func:`resque.default_layer` of the model.
    calibration : str, path-like, list of RunRecord or pandas.DataFrame
        Calibration runs (see :func:`fit_forecast`).
    original : Dataset or DataLoader, optional
        The data the model was trained on. Give this or `fingerprint`.
    fingerprint : ClassSums, str or path-like, optional
        The model's fingerprint, or the path of its file.
    measures, level, min_runs, exclude_censored
        As in :func:`fit_forecast`.
    device, batch_size, progress
        As in :func:`resque.resque_dist`.

    Returns
    -------
    Prediction
        Its ``index_value`` is RESQUE_dist.

    Raises
    ------
    ForecastError
        Too few calibration runs.
    InvalidParameterError
        Neither or both of `original` and `fingerprint`.
    """
    if (original is None) == (fingerprint is None):
        raise InvalidParameterError(
            "original/fingerprint", "both" if original is not None else "neither",
            "exactly one of them", "Pass the model's original data or its fingerprint (a ClassSums or its file).",
        )
    model_fit = fit_forecast(calibration, "resque_dist", measures, "shift", min_runs, exclude_censored, level)
    from .index.dist import ClassSums, load_fingerprint, resque_dist
    from .models.zoo import default_layer

    if layer is None:
        layer = default_layer(model)
    if fingerprint is not None and not isinstance(fingerprint, ClassSums):
        fingerprint = load_fingerprint(fingerprint)
    result = resque_dist(model, original if original is not None else fingerprint, new_data, layer,
                         device=device, batch_size=batch_size, progress=progress)
    return model_fit.predict(float(result), level)


# ---------------------------------------------------------------------------
# Command line: resque forecast ...
# ---------------------------------------------------------------------------


def add_forecast_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``resque forecast``."""
    parser.add_argument("--checkpoint", required=True, metavar="PATH", help="the source model (resque.save_checkpoint)")
    parser.add_argument("--fingerprint", required=True, metavar="PATH",
                        help="the model's fingerprint file (resque.fingerprint(...).save)")
    parser.add_argument("--data", required=True, metavar="NAME_OR_DIR",
                        help="the new data: a registry dataset (see resque.list_datasets()) or an image folder with "
                             "one subfolder per class, named so that their sorted order is the model's label order")
    parser.add_argument("--calibration", required=True, metavar="RESULTS_DIR",
                        help="a study's results folder: the runs the forecast is fitted on")
    parser.add_argument("--split", default="train", choices=("train", "test"), help="dataset split (default: train)")
    parser.add_argument("--data-root", metavar="DIR", default=None, help="dataset root (default: $RESQUE_DATA or cache)")
    parser.add_argument("--shift", metavar="FAMILY", default=None,
                        help="apply this shift family to the data (see resque.list_shifts())")
    parser.add_argument("--intensity", type=float, default=None, help="the shift's intensity (with --shift)")
    parser.add_argument("--n-per-class", type=int, default=None, metavar="N",
                        help="use a seeded subsample of N images per class (faster)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsample and the shift (default: 0)")
    parser.add_argument("--layer", default=None, help="embedding layer (default: the model's default layer)")
    parser.add_argument("--level", type=float, default=0.9, help="prediction interval level (default: 0.9)")
    parser.add_argument("--min-runs", type=int, default=5, help="fewest calibration runs accepted (default: 5)")
    parser.add_argument("--include-censored", action="store_true",
                        help="also calibrate on runs that did not reach the target")
    parser.add_argument("--device", default=None, help="torch device (default: where the model is, the CPU)")
    parser.add_argument("--batch-size", type=int, default=None, help="batch size of the forward pass")


def _new_data(args: argparse.Namespace, model):
    """The dataset named or found at ``--data``, subsampled and shifted as asked."""
    from .data.datasets import ToModelInput, load_dataset
    from .models.zoo import input_shape
    from .data.shifts import ShiftedDataset
    from .data.splits import subsample_per_class, subset

    channels, size, _ = input_shape(model)
    if Path(args.data).is_dir():
        from torchvision.datasets import ImageFolder

        data = ImageFolder(args.data, transform=ToModelInput(image_size=size, channels=channels))
    else:
        data = load_dataset(args.data, split=args.split, root=args.data_root, image_size=size, channels=channels)
    if args.n_per_class is not None:
        data = subset(data, subsample_per_class(data, args.n_per_class, seed=args.seed))
    if args.shift is not None:
        if args.intensity is None:
            raise InvalidParameterError("--intensity", None, "a number on the shift family's scale (with --shift)")
        data = ShiftedDataset(data, args.shift, args.intensity, seed=args.seed)
    elif args.intensity is not None:
        raise InvalidParameterError("--shift", None, "a shift family (see resque.list_shifts()) with --intensity")
    return data


def forecast_command(args: argparse.Namespace) -> int:
    """``resque forecast``: print RESQUE_dist of the new data and the forecast; return the exit status."""
    from .models.checkpoint import load_checkpoint

    # Calibration first: too few runs should fail in a second, not after a forward pass.
    fit_forecast(args.calibration, "resque_dist", DEFAULT_MEASURES, "shift", args.min_runs,
                 not args.include_censored, args.level)
    model = load_checkpoint(args.checkpoint)
    prediction = forecast(
        model, _new_data(args, model), args.layer, calibration=args.calibration, fingerprint=args.fingerprint,
        level=args.level, min_runs=args.min_runs, exclude_censored=not args.include_censored,
        device=args.device, batch_size=args.batch_size,
    )
    print(prediction)
    return 0
