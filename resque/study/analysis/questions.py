"""The questions a reviewer asks of a cost predictor, each answered from the runs table.

book/method.md ("Analysis") lists them; each function here answers one:

- :func:`add_baselines`: the trivial baselines every ranking carries next to the
  published predictors: a constant, and the within-family rank of the shift
  intensity (the model-free pixel distance, the accuracy drop and RESQUE from
  an untrained network are stored by the study itself).
- :func:`within_between`: the pooled correlation mixes the trend of cost with
  intensity inside a family and the order of the families. This reports them
  apart, and the partial rank correlation given the within-family intensity
  rank: does the predictor say anything the intensity does not?
- :func:`harrell_c`: concordance that handles censored runs (a run stopped
  before its target has a cost that is only a lower bound).
- :func:`two_way_weights`: bootstrap resamples of source seeds and experiments
  together (each run weighs its seed's draw times its experiment's draw), so
  that intervals reflect both kinds of variation.
- :func:`compare_predictors`: "A beats B" decided by the bootstrap interval of
  the difference of their correlations on the same resamples, with Holm's
  correction over the comparisons made; never by overlapping intervals.
- :func:`curves_by_tercile`: cost curves by tercile of a predictor, the
  Kaplan-Meier share of runs not yet at their target against the cost spent.

How each statistic treats censored runs: correlations (Spearman) leave them
out, since a lower bound ranked as an observed value would bias them;
Harrell's C keeps them as the censored observations they are (a pair counts
only when the run with the smaller cost reached its target).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from ...errors import InvalidParameterError
from ...predictors.registry import get_predictor, list_predictors
from .bootstrap import bootstrap_statistics
from .correlations import check_column

__all__ = ["BASELINES", "add_baselines", "orient", "experiment_of", "within_between", "harrell_c",
           "concordance_table", "two_way_weights", "compare_predictors", "holm", "kaplan_meier",
           "curves_by_tercile", "plot_curves_by_tercile"]

#: Baselines derived from the study's design rather than computed from data (registry entries with
#: ``design=True``): column -> (label, reading).
BASELINES = {p.name: (p.label, p.reading) for p in map(get_predictor, list_predictors("shift"))
             if p.design}


def add_baselines(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of `frame` with the :data:`BASELINES` columns (NaN for task runs, which have no intensity)."""
    out = frame.copy()
    shift = out["kind"] == "shift"
    out["constant"] = np.where(shift, 0.0, np.nan)
    out["intensity_rank"] = np.nan
    for _, runs in out[shift].groupby("family"):
        # the clean control is rank 0 in every family, run or not (it is run once per seed, under one family)
        levels = sorted(set(runs["intensity"].astype(float)) | {0.0})
        out.loc[runs.index, "intensity_rank"] = [float(levels.index(float(v))) for v in runs["intensity"]]
    return out


def orient(frame: pd.DataFrame, name: str) -> np.ndarray:
    """Column `name` turned so that higher always means more retraining predicted (its registry sign; as it is if unregistered)."""
    values = frame[name].to_numpy(dtype=float)
    try:
        return get_predictor(name).sign * values
    except Exception:  # a stored estimator that is not a registered predictor: taken as it is
        return values


def experiment_of(frame: pd.DataFrame) -> np.ndarray:
    """What an experiment is, across seeds: the shift family and intensity, or the task (one label per row)."""
    from .forecast_eval import _experiment_of  # the labels the forecast's leave-one-experiment-out uses

    return _experiment_of(frame)


def _finished(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """Rows with every column finite and a cost that was observed (not censored)."""
    keep = ~frame["censored"].to_numpy(dtype=bool)
    for column in columns:
        keep &= np.isfinite(frame[column].to_numpy(dtype=float))
    return frame[keep]


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(stats.spearmanr(x, y)[0])


def within_between(frame: pd.DataFrame, predictor: str, measure: str) -> dict:
    """The correlation of `predictor` with `measure` inside families, between families, and beyond the intensity.

    Shift runs only, censored runs left out (their cost is a lower bound).

    Returns
    -------
    dict
        ``within``: the mean Spearman rho over the strata of one family and one
        source seed (weighted by their runs; strata where the predictor or the
        cost is constant are skipped), with ``n_strata``; ``between``: Spearman
        rho of the family means of predictor and cost (``n_families`` points);
        ``beyond_intensity``: partial rank correlation given the within-family
        intensity rank (ranks taken within each stratum, the intensity rank's
        linear part removed from both), NaN when the predictor's ranks are the
        intensity's in every stratum (it then says nothing the intensity does
        not); ``n`` runs used.
    """
    for name in (predictor, measure):
        check_column(frame, "predictor" if name == predictor else "measure", name)
    frame = add_baselines(frame)  # from the design, always (a stale or empty column never counts)
    runs = _finished(frame[frame["kind"] == "shift"], [predictor, measure])
    runs = runs.assign(_x=orient(runs, predictor), _y=runs[measure].to_numpy(dtype=float))
    rhos, sizes, residual_x, residual_y, residual_t = [], [], [], [], []
    for _, stratum in runs.groupby(["family", "seed"]):
        x, y, t = stratum["_x"].to_numpy(), stratum["_y"].to_numpy(), stratum["intensity_rank"].to_numpy(dtype=float)
        rho = _spearman(x, y)
        if np.isfinite(rho):
            rhos.append(rho)
            sizes.append(len(stratum))
        if len(stratum) >= 3:
            for values, out in ((x, residual_x), (y, residual_y), (t, residual_t)):
                ranks = stats.rankdata(values)
                out.append(ranks - ranks.mean())
    within = float(np.average(rhos, weights=sizes)) if rhos else float("nan")
    means = runs.groupby("family")[["_x", "_y"]].mean()
    between = _spearman(means["_x"].to_numpy(), means["_y"].to_numpy())
    beyond = float("nan")
    if residual_x:
        x, y, t = (np.concatenate(parts) for parts in (residual_x, residual_y, residual_t))
        x_left, y_left = _remove(x, t), _remove(y, t)
        scale = max(float(np.abs(x).max(initial=0.0)), 1.0)
        if np.abs(x_left).max(initial=0.0) > 1e-9 * scale and np.ptp(y_left) > 0:
            beyond = float(np.corrcoef(x_left, y_left)[0, 1])
    return {"predictor": predictor, "measure": measure, "n": len(runs), "within": within, "n_strata": len(rhos),
            "between": between, "n_families": len(means), "beyond_intensity": beyond}


def _remove(values: np.ndarray, covariate: np.ndarray) -> np.ndarray:
    """`values` minus their least-squares line on `covariate` (both already centred within strata)."""
    denominator = float(covariate @ covariate)
    return values - (float(values @ covariate) / denominator) * covariate if denominator > 0 else values


def harrell_c(predicted, cost, censored=None) -> tuple[float, int]:
    """Harrell's concordance of a predictor with a right-censored cost.

    A pair of runs is comparable when the one with the smaller cost reached its
    target (its cost was observed): the other needed more, whether it was
    observed or censored at a larger lower bound. Ties in cost are not
    comparable. The pair is concordant when the predictor is higher for the
    costlier run; a tie in the predictor counts one half.

    Parameters
    ----------
    predicted : array_like
        Oriented so that higher predicts more retraining (see :func:`orient`).
    cost : array_like
        Observed cost, or the lower bound of a censored run.
    censored : array_like of bool, optional
        True where the run stopped before its target. Default: none.

    Returns
    -------
    (float, int)
        C in [0, 1] (1: every comparable pair in order; 0.5: no better than
        chance, or a constant predictor), and the number of comparable pairs
        (NaN with 0 pairs).
    """
    x, y = np.asarray(predicted, dtype=float), np.asarray(cost, dtype=float)
    c = np.zeros(len(y), dtype=bool) if censored is None else np.asarray(censored, dtype=bool)
    if not (len(x) == len(y) == len(c)):
        raise InvalidParameterError("predicted/cost/censored", (len(x), len(y), len(c)), "arrays of one length")
    keep = np.isfinite(x) & np.isfinite(y)
    x, y, c = x[keep], y[keep], c[keep]
    comparable = (y[:, None] < y[None, :]) & ~c[:, None]  # i cheaper than j, and i's cost observed
    pairs = int(comparable.sum())
    if not pairs:
        return float("nan"), 0
    score = np.where(x[:, None] < x[None, :], 1.0, np.where(x[:, None] == x[None, :], 0.5, 0.0))
    return float(score[comparable].sum() / pairs), pairs


def concordance_table(frame: pd.DataFrame, predictors: Sequence[str], measures: Sequence[str],
                      kind: str = "shift") -> pd.DataFrame:
    """Harrell's C of every predictor with every cost, censored runs kept as censored."""
    runs = frame[frame["kind"] == kind]
    rows = []
    for measure in measures:
        for name in predictors:
            if name not in runs or measure not in runs:
                continue
            value, pairs = harrell_c(orient(runs, name), runs[measure], runs["censored"])
            rows.append({"measure": measure, "predictor": name, "harrell_c": value, "pairs": pairs,
                         "n": int(np.isfinite(runs[name].to_numpy(dtype=float)).sum()),
                         "n_censored": int(runs["censored"].to_numpy(dtype=bool).sum())})
    return pd.DataFrame(rows, columns=["measure", "predictor", "harrell_c", "pairs", "n", "n_censored"])


def two_way_weights(seeds, experiments, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap weights ``(n_boot, n)`` that resample source seeds and experiments together.

    Each resample draws as many seeds as there are and as many experiments as
    there are, each with replacement and independently; a run weighs its
    seed's count times its experiment's count (the two-way, "pigeonhole"
    bootstrap of crossed designs, Owen 2007). With one seed it reduces to
    resampling experiments, and the intervals then ignore seed variation.
    """
    def draws(labels):
        names, index = np.unique(np.asarray(labels).astype(str), return_inverse=True)
        k = len(names)
        return rng.multinomial(k, np.full(k, 1.0 / k), size=n_boot)[:, index.ravel()].astype(float)

    return draws(seeds) * draws(experiments)


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment of `p_values` (family-wise error), in their order."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    running = 0.0
    for position, index in enumerate(order):
        running = max(running, min(1.0, (len(p) - position) * p[index]))
        adjusted[index] = running
    return adjusted


def compare_predictors(frame: pd.DataFrame, predictors: Sequence[str], measure: str, *,
                       reference: str = "resque_dist", kind: str = "shift", n_boot: int = 2000, seed: int = 0,
                       confidence: float = 0.95) -> pd.DataFrame:
    """Each predictor's Spearman rho with `measure` against `reference`'s, on the same two-way resamples.

    Runs of `kind` where every compared predictor and the measure are finite,
    censored runs left out. For each other predictor: the difference
    ``rho(predictor) - rho(reference)`` (both oriented by their sign), its
    percentile interval over the resamples of :func:`two_way_weights`, a
    two-sided bootstrap p-value (twice the smaller share of resamples on either
    side of 0, counted as ``(k + 1) / (B + 1)``) and Holm's adjustment over the
    comparisons of this call.

    Returns
    -------
    pandas.DataFrame
        ``predictor, reference, measure, n, n_seeds, rho, rho_reference,
        difference, low, high, p, p_holm, verdict`` (``"better"``, ``"worse"``
        or ``"not distinguishable"`` at the Holm-adjusted level ``1 -
        confidence``; ``"undefined ..."`` for a predictor constant over the runs).
    """
    names = [reference] + [p for p in predictors if p != reference]
    if any(name in BASELINES for name in names):
        frame = add_baselines(frame)  # from the design, always
    for name in names + [measure]:
        check_column(frame, "predictors", name)
    runs = _finished(frame[frame["kind"] == kind], names + [measure])
    columns = ["predictor", "reference", "measure", "n", "n_seeds", "rho", "rho_reference", "difference",
               "low", "high", "p", "p_holm", "verdict"]
    if len(runs) < 3 or len(names) < 2:
        return pd.DataFrame(columns=columns)
    y = runs[measure].to_numpy(dtype=float)
    weights = two_way_weights(runs["seed"], experiment_of(runs), n_boot, np.random.default_rng(seed))
    rho = {name: _spearman(orient(runs, name), y) for name in names}
    boot = {name: bootstrap_statistics(orient(runs, name), y, weights)["spearman"] for name in names}
    alpha = 1.0 - confidence
    rows = []
    for name in names[1:]:
        difference = boot[name] - boot[reference]
        difference = difference[np.isfinite(difference)]
        if len(difference):
            low, high = np.quantile(difference, [alpha / 2, 1 - alpha / 2])
            count = len(difference)  # +1s: a p-value from B resamples is never below 1 / (B + 1)
            p = min(1.0, 2.0 * (min(np.sum(difference <= 0), np.sum(difference >= 0)) + 1) / (count + 1))
        else:
            low = high = p = float("nan")
        rows.append({"predictor": name, "reference": reference, "measure": measure, "n": len(runs),
                     "n_seeds": int(runs["seed"].nunique()), "rho": rho[name], "rho_reference": rho[reference],
                     "difference": rho[name] - rho[reference], "low": float(low), "high": float(high), "p": float(p)})
    table = pd.DataFrame(rows, columns=columns[:-2])
    valid = np.isfinite(table["p"].to_numpy(dtype=float))
    table["p_holm"] = np.nan
    table.loc[valid, "p_holm"] = holm(table.loc[valid, "p"])
    table["verdict"] = [
        "undefined (a constant has no rank correlation)" if not np.isfinite(r) else
        "not distinguishable" if not (p_adj < alpha) else ("better" if d > 0 else "worse")
        for r, p_adj, d in zip(table["rho"], table["p_holm"].fillna(1.0), table["difference"].fillna(0.0))
    ]
    return table


def kaplan_meier(cost, censored=None) -> pd.DataFrame:
    """Kaplan-Meier estimate of the share of runs not yet at their target, against the cost spent.

    The cost plays the part of a survival time and reaching the target that
    of the event; a censored run (stopped before its target) leaves the risk
    set at its cost without an event.

    Returns
    -------
    pandas.DataFrame
        One row per distinct cost at which a run reached its target, from cost
        0: ``cost``, ``at_risk`` (runs still short of their target just
        before), ``reached`` (runs reaching it at that cost) and
        ``not_yet`` (the estimated share still short of it after that cost).
        The curve starts at ``not_yet = 1`` before any cost.
    """
    y = np.asarray(cost, dtype=float)
    c = np.zeros(len(y), dtype=bool) if censored is None else np.asarray(censored, dtype=bool)
    keep = np.isfinite(y)
    y, c = y[keep], c[keep]
    rows, share = [], 1.0
    for value in np.unique(y[~c]):
        at_risk = int((y >= value).sum())
        reached = int(((y == value) & ~c).sum())
        share *= 1.0 - reached / at_risk
        rows.append({"cost": float(value), "at_risk": at_risk, "reached": reached, "not_yet": share})
    return pd.DataFrame(rows, columns=["cost", "at_risk", "reached", "not_yet"])


def curves_by_tercile(frame: pd.DataFrame, predictor: str = "resque_dist", measure: str = "epochs",
                      kind: str = "shift") -> dict[str, pd.DataFrame]:
    """:func:`kaplan_meier` of `measure` for the runs in each tercile of `predictor` (low, middle, high).

    If the predictor predicts the cost, the curve of the high tercile lies above
    the others (its runs stay short of their target longer). Censored runs
    count as censored. Ties at a tercile edge go to the lower tercile.
    """
    runs = frame[frame["kind"] == kind]
    runs = runs[np.isfinite(runs[predictor].to_numpy(dtype=float)) & np.isfinite(runs[measure].to_numpy(dtype=float))]
    if len(runs) < 3:
        return {}
    oriented = pd.Series(orient(runs, predictor), index=runs.index)
    ranks = oriented.rank(method="first")
    terciles = pd.cut(ranks, 3, labels=["low", "middle", "high"])
    return {str(label): kaplan_meier(group[measure], group["censored"])
            for label, group in runs.groupby(terciles, observed=True)}


def plot_curves_by_tercile(frame: pd.DataFrame, predictor: str = "resque_dist", measure: str = "epochs",
                           kind: str = "shift"):
    """The :func:`curves_by_tercile` as step curves: share of runs not yet at target against the cost."""
    import matplotlib.pyplot as plt

    from ...cost.measures import MEASURES

    curves = curves_by_tercile(frame, predictor, measure, kind)
    figure, ax = plt.subplots(figsize=(5.2, 3.6))
    colours = {"low": "tab:green", "middle": "tab:orange", "high": "tab:red"}
    for label, curve in curves.items():
        xs = [0.0] + curve["cost"].tolist()
        ys = [1.0] + curve["not_yet"].tolist()
        ax.step(xs, ys, where="post", color=colours.get(label), label=f"{label} {predictor_label(predictor)}")
    known = MEASURES.get(measure)
    ax.set_xlabel(measure if known is None else known.label if known.unit.lower() == known.label.lower()
                  else known.axis_label)
    ax.set_ylabel("share of runs not yet at target")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(f"Kaplan-Meier by tercile of {predictor_label(predictor)}", fontsize=9)
    figure.tight_layout()
    return figure



def predictor_label(name: str) -> str:
    """How tables name a predictor: a registered predictor's label (the design's baselines are registered too),
    else the column name."""
    try:
        return get_predictor(name).label
    except Exception:
        return name
