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
:func:`~resque.cost.table.runs_table`) gets the same treatment, so that
the forecast can state the predicted saving ``1 - reuse / scratch``. Training
from scratch does not use the source model, so its cost usually does not
depend on the index: the yardstick is modelled by its mean and spread (an
intercept-only fit, prediction interval with ``n - 1`` degrees of freedom)
unless the OLS slope on the index is significant at the 5 % level, in which
case the line is used.

Costs cannot be negative, so the point estimate and both interval ends are
clipped at 0 (a model already at its target costs 0 epochs: accuracy is
checked before any update); a clipped value is marked in the printed table. Runs that stopped before
reaching the target accuracy (``censored``) have a cost that is only a lower
bound of the true one: by default they enter a censoring-aware line instead
(:func:`censored_line_fit`: a right-censored normal regression fitted by
maximum likelihood, whose interval is the fitted normal's), so they count as
what they are; ``censored="drop"`` leaves them out.

Applied to a model that is not one of the calibration study's source models,
:func:`forecast` warns (:class:`~resque.errors.ForecastWarning`).

Examples
--------
>>> from resque.forecast import fit_forecast
>>> model = fit_forecast("results/quick")                      # doctest: +SKIP
>>> print(model.predict(0.12))                                 # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from pathlib import Path
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .checks import check_choice, check_real
from .cost.measures import MEASURES, measures as _measures
from .cost.records import RunRecord, read_records
from .cost.table import require_pandas, runs_table
from .errors import ForecastError, ForecastWarning, InvalidParameterError
from .predictors.registry import PREDICTORS, list_predictors

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COSTS",
    "CostForecast",
    "ForecastError",
    "LinearFit",
    "MeasurePrediction",
    "Prediction",
    "calibration_sources",
    "censored_line_fit",
    "fit_forecast",
    "forecast",
    "mean_fit",
    "ols_fit",
]

#: Costs a forecast may be made for: those whose saving against training from
#: scratch means something (labels and units: resque.cost.measures).
COSTS = tuple(m.column for m in _measures(saving=True))
DEFAULT_MEASURES = ("epochs", "energy_kwh", "carbon_kg")
KINDS = ("shift", "task")
#: How a forecast treats calibration runs that stopped before their target (see :func:`fit_forecast`).
CENSORED = ("model", "drop", "observed")
#: Significance level of the slope test that decides between a mean and a line for the yardstick.
SCRATCH_SLOPE_ALPHA = 0.05


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
        from scipy import stats  # scipy comes with scikit-learn; imported when used

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
        from scipy import stats

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


@dataclass(frozen=True)
class CensoredLineFit:
    """A straight line fitted by maximum likelihood to costs some of which are right-censored.

    ``cost = intercept + slope * x + e`` with ``e ~ N(0, scale^2)``; an observed
    cost contributes its density, a censored one (a run stopped before its
    target, whose cost is a lower bound) the probability of exceeding it (a
    right-censored normal regression, the "Tobit" model). With nothing
    censored it is the least-squares line (with the maximum-likelihood scale).
    """

    intercept: float
    slope: float
    scale: float
    n: int
    n_censored: int

    def predict(self, x, level: float = 0.9):
        """Point prediction and the central `level` interval of the fitted normal (parameter uncertainty ignored)."""
        from scipy import stats

        x = np.asarray(x, dtype=float)
        point = self.intercept + self.slope * x
        half = stats.norm.ppf(0.5 + level / 2.0) * self.scale
        return point, point - half, point + half


def censored_line_fit(x: Sequence[float], y: Sequence[float], censored: Sequence[bool]) -> CensoredLineFit:
    """Fit :class:`CensoredLineFit` (at least 3 runs, 2 of them observed, two distinct x)."""
    from scipy import optimize, special

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    c = np.asarray(censored, dtype=bool)
    observed = ~c
    if observed.sum() < 2 or len(np.unique(x)) < 2:
        raise ForecastError("A censored line needs at least 2 runs that reached their target and two distinct x.")
    start = ols_fit(x[observed], y[observed]) if len(np.unique(x[observed])) > 1 else mean_fit(y[observed])
    scale0 = max(start.residual_se, 1e-6 * max(float(np.abs(y).max()), 1.0))

    log_c = np.log(np.sqrt(2 * np.pi))

    def negative_log_likelihood(theta):
        a, b, log_s = theta
        s = math.exp(log_s)
        z = (y - a - b * x) / s
        # the standard normal's log density and log survival, as scipy.stats.norm computes them (without its
        # argument checks, which took most of a fit's time)
        log_density = -z[observed] ** 2 / 2.0 - log_c
        return -(log_density.sum() - observed.sum() * log_s + special.log_ndtr(-z[c]).sum())

    result = optimize.minimize(negative_log_likelihood, [start.intercept, start.slope, math.log(scale0)],
                               method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-10, "maxiter": 20000})
    a, b, log_s = result.x
    return CensoredLineFit(float(a), float(b), float(math.exp(log_s)), len(y), int(c.sum()))


def _floor(measure: str) -> float:
    """Smallest possible value of a cost: 0 for every cost (epochs too: a model at its target costs nothing)."""
    return 0.0


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
        at 0.
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
    n_censored: int = 0  # calibration runs that entered a censoring-aware line as lower bounds

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
        return require_pandas("Prediction.to_frame").DataFrame(rows).set_index("measure")

    def __str__(self) -> str:
        percent = round(100 * self.level)
        lines = [
            f"{PREDICTORS.get(self.estimator).label if self.estimator in PREDICTORS else self.estimator} = "
            f"{self.index_value:.4g}",
            (f"Predicted retraining cost ({percent} % prediction intervals; "
             + (f"a censoring-aware line on {self.n_runs} calibration runs, {self.n_censored} of them censored "
                "and counted as lower bounds" if self.n_censored else f"OLS on {self.n_runs} calibration runs")
             + f", index {self.index_range[0]:.3g}..{self.index_range[1]:.3g}):"),
        ]
        rows = [("measure", "predicted", f"{percent} % interval", "from scratch", "saving")]
        for m in self.measures.values():
            mark = "*" if m.clipped else ""
            estimate = m.measure in MEASURES and MEASURES[m.measure].estimate and m.measure != "train_flops"
            rows.append((
                f"{m.label}{', estimate' if estimate else ''} ({m.unit})",
                f"{_number(m.point)}{mark}",
                f"[{_number(m.low)}, {_number(m.high)}]",
                _number(m.scratch),
                "n/a" if math.isnan(m.saving) else f"{100 * m.saving:.1f} %" + ("*" if m.clipped else ""),
            ))
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for row in rows:
            lines.append("  " + "  ".join(
                cell.ljust(width) if i == 0 else cell.rjust(width) for i, (cell, width) in enumerate(zip(row, widths))
            ))
        lines.append("saving = 1 - predicted retraining cost / predicted cost of training from scratch.")
        if any(m.measure in ("energy_kwh", "carbon_kg") for m in self.measures.values()):
            lines.append("Energy and carbon are estimates wherever the calibration runs had no hardware energy "
                         "counter (a processor's rated power times the time taken).")
        clipped = [m for m in self.measures.values() if m.clipped]
        if clipped:
            lines.append("* clipped: here the fitted line falls below the least a retraining can cost (0, or 1 epoch), "
                         "so that floor is shown; read it as \"little\", not as an exact figure.")
            if any(m.point == 0 for m in clipped):
                lines.append("  A saving of 100 % only follows from such a predicted cost of 0: retraining is "
                             "predicted to cost far less than training from scratch, not nothing.")
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
    fits : dict of str to LinearFit or CensoredLineFit
        Cost of the retraining on the index, per measure (a censoring-aware
        line where calibration runs were censored, see :func:`fit_forecast`).
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
    fits: dict[str, LinearFit | CensoredLineFit]
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
            label, unit = MEASURES[measure].label, MEASURES[measure].unit
            measures[measure] = MeasurePrediction(
                measure, label, unit, point, low, high, clipped=min(raw) < floor, scratch=scratch, saving=saving,
            )
        censored = max((getattr(fit, "n_censored", 0) for fit in self.fits.values()), default=0)
        return Prediction(index_value, self.estimator, level, measures, min(self.n_runs.values()), self.index_range,
                          censored)


def _check_level(level: float) -> float:
    allowed = "a number strictly between 0 and 1, e.g. 0.9"
    level = check_real("level", level, minimum=0.0, maximum=1.0, closed_max=False, allowed=allowed)
    if level == 0.0:
        raise InvalidParameterError("level", level, allowed)
    return level


def _as_frame(records_or_frame) -> pd.DataFrame:
    """The runs table (:func:`resque.cost.table.runs_table`) of a results folder, of records, or the table itself."""
    pd = require_pandas("the forecast")
    if isinstance(records_or_frame, pd.DataFrame):
        return records_or_frame
    if isinstance(records_or_frame, (str, os.PathLike)):
        found = read_records(records_or_frame)
        if found.unreadable:  # named, never dropped without a word
            warnings.warn(found.describe_unreadable() + "; the forecast is fitted without them.", stacklevel=3)
        return runs_table(found.records)
    if isinstance(records_or_frame, Sequence) and all(isinstance(r, RunRecord) for r in records_or_frame):
        return runs_table(records_or_frame)
    raise InvalidParameterError(
        "records_or_frame", type(records_or_frame).__name__,
        "a results folder, a list of RunRecord, or the DataFrame of resque.cost.table.runs_table",
    )


def _usable(frame: pd.DataFrame, estimator: str, measure: str, kind: str, exclude_censored: bool):
    """Rows usable for one measure, and a sentence on why the others are not (censored ones kept unless excluded)."""
    pd = require_pandas("the forecast")
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
    exclude_censored: bool | None = None,
    level: float = 0.9,
    *,
    censored: str = "model",
) -> CostForecast:
    """Fit the retraining-cost forecast on calibration runs.

    Per measure: OLS of the cost on the estimator (``cost = a + b * index``)
    with t-based prediction intervals; and a model of the from-scratch
    yardstick's cost (its mean, or a line when the slope on the index is
    significant at 5 %). See the module docstring. When some calibration runs
    are censored (stopped before their target: their cost is a lower bound),
    the default fits the censoring-aware line instead
    (:func:`censored_line_fit`, a right-censored normal regression), so they
    count as what they are.

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
    exclude_censored : bool, optional
        The older switch, kept for existing calls: True is ``censored="drop"``,
        False ``censored="observed"``; refused next to a different `censored`.
    level : float, default 0.9
        Default level of the prediction intervals.
    censored : {"model", "drop", "observed"}, default "model"
        What runs that stopped before reaching the target accuracy are:
        lower bounds in a censoring-aware line (``"model"``; with none
        censored it is the OLS line), left out (``"drop"``), or taken as if
        their cost had been observed (``"observed"``, biased low).

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
    check_choice("kind", kind, KINDS)
    if isinstance(measures, str):
        measures = (measures,)
    if not measures:
        raise InvalidParameterError("measures", measures, f"a non-empty list from {list(COSTS)}")
    for measure in measures:
        check_choice("measures", measure, list(COSTS))
    if isinstance(min_runs, bool) or not isinstance(min_runs, (int, np.integer)) or min_runs < 3:
        raise InvalidParameterError("min_runs", min_runs, "an int >= 3 (a line and its spread need 3 points)")
    level = _check_level(level)
    if exclude_censored is not None:
        implied = "drop" if exclude_censored else "observed"
        if censored not in ("model", implied):
            raise InvalidParameterError("exclude_censored", exclude_censored,
                                        f"None when censored={censored!r} is given (it would mean {implied!r})")
        censored = implied
    check_choice("censored", censored, CENSORED)
    exclude_censored = censored == "drop"
    frame = _as_frame(records_or_frame)
    estimators = [name for name in list_predictors(kind) if name in frame.columns]
    if estimator not in frame.columns:
        check_choice("estimator", estimator, estimators)

    fits, scratch_fits, n_runs, indexes = {}, {}, {}, []
    for measure in measures:
        rows, why = _usable(frame, estimator, measure, kind, exclude_censored)
        if len(rows) < min_runs:
            raise ForecastError(
                f"A forecast of {measure} needs at least min_runs={min_runs} calibration runs with a finite "
                f"{estimator} and {measure}" + (" that reached the target" if exclude_censored else "")
                + f"; found {len(rows)}{why}. Run more experiments (e.g. more intensities or seeds), "
                "or lower min_runs (--min-runs on the command line) knowingly.",
                measure=measure, n_runs=len(rows), min_runs=min_runs,
            )
        x, y = rows[estimator].to_numpy(float), rows[measure].to_numpy(float)
        if np.ptp(x) == 0:
            raise ForecastError(
                f"All {len(x)} calibration runs have {estimator}={x[0]:.4g}; a line through one index value "
                "cannot predict another. Add runs at other shift intensities.",
                measure=measure, n_runs=len(x), min_runs=min_runs,
            )
        lower_bound = rows["censored"].to_numpy(dtype=bool) if censored == "model" else np.zeros(len(x), bool)
        if lower_bound.any():
            fits[measure] = censored_line_fit(x, y, lower_bound)
        else:
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
    scratch = scratch[np.isfinite(require_pandas("the forecast").to_numeric(scratch[column], errors="coerce"))]
    if len(scratch) < 2:
        return None
    x, y = scratch[estimator].to_numpy(float), scratch[column].to_numpy(float)
    if len(scratch) >= 3 and np.ptp(x) > 0:
        line = ols_fit(x, y)
        if line.slope_p_value < SCRATCH_SLOPE_ALPHA:
            return line
    return mean_fit(y)


# ---------------------------------------------------------------------------
# From a model and new data to a forecast
# ---------------------------------------------------------------------------


def calibration_sources(results_dir: str | os.PathLike) -> list:
    """The source models a study's results folder holds (``models/source-seed<k>.safetensors``), sorted."""
    models = Path(results_dir) / "models"
    return sorted(p for p in models.glob("source-*.safetensors") if not p.name.endswith(".fingerprint.safetensors"))


def matches_a_source(model, results_dir: str | os.PathLike) -> bool | None:
    """Whether `model`'s weights are exactly one of the calibration's source models (None: it holds none).

    Reads the checkpoints' tensors only (safetensors: no code runs).
    """
    import torch
    from safetensors.torch import load_file

    sources = calibration_sources(results_dir)
    if not sources:
        return None
    mine = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    for path in sources:
        theirs = load_file(str(path))
        if theirs.keys() == mine.keys() and all(
                theirs[k].shape == mine[k].shape and torch.equal(theirs[k], mine[k].to(theirs[k].dtype))
                for k in mine):
            return True
    return False


def _warn_if_not_a_source(model, calibration) -> None:
    if isinstance(calibration, (str, os.PathLike)) and Path(calibration).is_dir():
        if matches_a_source(model, calibration) is False:
            names = ", ".join(p.stem for p in calibration_sources(calibration))
            warnings.warn(ForecastWarning(
                f"This model is not one of the source models the forecast was calibrated on ({names} in "
                f"{calibration}): its retraining may cost differently at the same RESQUE_dist. Trust the forecast "
                "only for a model of the same architecture, data and training recipe, or calibrate on a study of "
                "your own model."), stacklevel=3)


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
    exclude_censored: bool | None = None,
    censored: str = "model",
    calibration_dir: str | os.PathLike | None = None,
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
    calibration : str, path-like, list of RunRecord, pandas.DataFrame or CostForecast
        Calibration runs (see :func:`fit_forecast`), or a forecast already
        fitted on them (then `measures`, `min_runs` and `censored` are its own).
    original : Dataset or DataLoader, optional
        The data the model was trained on. Give this or `fingerprint`.
    fingerprint : ClassSums, str or path-like, optional
        The model's fingerprint, or the path of its file.
    measures, level, min_runs, exclude_censored, censored
        As in :func:`fit_forecast`.
    calibration_dir : path, optional
        The results folder a fitted `calibration` came from, for the check under Warns.
    device, batch_size, progress
        As in :func:`resque.resque_dist`.

    Returns
    -------
    Prediction
        Its ``index_value`` is RESQUE_dist.

    Warns
    -----
    ForecastWarning
        When the calibration's results folder (`calibration`, or
        `calibration_dir`) holds source models and `model` is none of them:
        the forecast was calibrated on another model.

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
    if isinstance(calibration, CostForecast):  # already fitted: used as it is
        model_fit = calibration
    else:
        model_fit = fit_forecast(calibration, "resque_dist", measures, "shift", min_runs, exclude_censored, level,
                                 censored=censored)
    _warn_if_not_a_source(model, calibration_dir if calibration_dir is not None else calibration)
    from .index.dist import ClassSums, load_fingerprint, resque_dist
    from .models.zoo import default_layer

    if layer is None:
        layer = default_layer(model)
    if fingerprint is not None and not isinstance(fingerprint, ClassSums):
        fingerprint = load_fingerprint(fingerprint)
    result = resque_dist(model, original if original is not None else fingerprint, new_data, layer,
                         device=device, batch_size=batch_size, progress=progress)
    return model_fit.predict(float(result), level)
