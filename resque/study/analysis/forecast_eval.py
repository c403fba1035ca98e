"""How good is the forecast? Leave-one-experiment-out evaluation of :func:`resque.fit_forecast`, and its plot."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ...cost.measures import MEASURES
from ...forecast import DEFAULT_MEASURES, _as_frame, _usable, fit_forecast, mean_fit, ols_fit

__all__ = ["leave_one_out", "summarize_leave_one_out", "plot_predicted_vs_measured", "FORECASTERS",
           "forecast_comparison"]


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
                    "unit": MEASURES[measure].unit, "index": float(run[estimator]), "measured": measured,
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
        label, unit = (MEASURES[measure].label, MEASURES[measure].unit) if measure in MEASURES else (measure, "")
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




#: What each forecaster of :func:`forecast_comparison` regresses the cost on (None: nothing, a constant),
#: and whether it fits censored runs as the lower bounds they are. "The forecast" is what
#: ``resque forecast`` fits by default (``censored="model"``).
FORECASTERS = {
    "RESQUE_dist (the forecast)": ("resque_dist", True),
    "RESQUE_dist, censored runs left out": ("resque_dist", False),
    "intensity rank": ("intensity_rank", False),
    "constant": (None, False),
}


def forecast_comparison(frame, measure: str = "epochs", *, level: float = 0.9, kind: str = "shift") -> pd.DataFrame:
    """The forecast against a constant and the intensity baseline, on held-out experiments and held-out families.

    The forecasters: the forecast itself, as :func:`resque.fit_forecast` fits
    it by default (the least-squares line on RESQUE_dist with its t-based
    prediction interval, or, when the training runs include censored ones, the
    line fitted by maximum likelihood with them as lower bounds:
    :func:`resque.forecast.censored_line_fit`); the same least-squares line with
    censored runs left out; and least-squares baselines on the within-family
    intensity rank and on nothing (the mean, with its interval), which leave
    censored runs out. Held out in turn: each experiment (a family at one
    intensity, all its seeds together) and each family (all its intensities).
    The held-out runs that reached their target are scored (a censored cost has
    no error to measure: this favours fits that leave censored runs out).
    Intervals are clipped at 0, as the forecast's are.

    Returns
    -------
    pandas.DataFrame
        One row per held-out scheme and forecaster: ``held_out``
        (``"experiment"``, ``"family"``), ``forecaster``, ``n`` (runs scored),
        ``mae``, ``mdape`` (a fraction, over runs whose cost is not 0),
        ``coverage`` (share of runs inside their interval) and ``width`` (mean
        interval width), in the measure's unit.
    """
    from ...forecast import censored_line_fit
    from ...errors import ForecastError
    from .questions import add_baselines

    frame = add_baselines(_as_frame(frame))
    runs = frame[frame["kind"] == kind]
    runs = runs[np.isfinite(runs[measure].to_numpy(dtype=float)) & np.isfinite(runs["resque_dist"].to_numpy(dtype=float))]
    censored = runs["censored"].to_numpy(dtype=bool)
    schemes = {"experiment": pd.Series(_experiment_of(runs), index=runs.index), "family": runs["family"].astype(str)}
    rows = []
    for scheme, groups in schemes.items():
        for name, (column, counts_censored) in FORECASTERS.items():
            errors, apes, covered, widths = [], [], [], []
            for group in pd.unique(groups):
                held = (groups == group).to_numpy()
                train = runs[~held if counts_censored else ~held & ~censored]
                test = runs[held & ~censored]
                if len(train) < 3 or not len(test):
                    continue
                y = train[measure].to_numpy(dtype=float)
                x_test = np.zeros(len(test)) if column is None else test[column].to_numpy(dtype=float)
                try:
                    if column is None:
                        fit = mean_fit(y)
                    elif np.ptp(train[column].to_numpy(dtype=float)) == 0:
                        continue
                    elif counts_censored and train["censored"].to_numpy(dtype=bool).any():
                        fit = censored_line_fit(train[column], y, train["censored"].to_numpy(dtype=bool))
                    else:
                        fit = ols_fit(train[column].to_numpy(dtype=float), y)
                except ForecastError:
                    continue
                point, low, high = (np.maximum(v, 0.0) for v in fit.predict(x_test, level))
                measured = test[measure].to_numpy(dtype=float)
                errors += list(np.abs(point - measured))
                apes += [abs(p - m) / m for p, m in zip(point, measured) if m != 0]
                covered += list((low <= measured) & (measured <= high))
                widths += list(high - low)
            rows.append({"held_out": scheme, "forecaster": name, "n": len(errors),
                         "mae": float(np.mean(errors)) if errors else math.nan,
                         "mdape": float(np.median(apes)) if apes else math.nan,
                         "coverage": float(np.mean(covered)) if covered else math.nan,
                         "width": float(np.mean(widths)) if widths else math.nan})
    return pd.DataFrame(rows, columns=["held_out", "forecaster", "n", "mae", "mdape", "coverage", "width"])
