"""Which predictor is best? Every registered predictor against every cost, oriented the same way."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from ...predictors.registry import get_predictor, list_predictors
from .correlations import correlations

__all__ = ["ranking_table", "pairwise_accuracy", "rank_predictors", "best_predictors"]


def pairwise_accuracy(predicted: np.ndarray, measured: np.ndarray) -> float:
    """Share of run pairs that `predicted` orders as `measured` does ("which retraining is cheaper?").

    Pairs whose measured costs tie are left out (there is nothing to decide);
    a tie in the prediction counts as half right. NaN when no pair differs.
    """
    x = np.asarray(predicted, dtype=float)
    y = np.asarray(measured, dtype=float)
    dx = np.sign(x[:, None] - x[None, :])
    dy = np.sign(y[:, None] - y[None, :])
    upper = np.triu(np.ones_like(dy, dtype=bool), k=1) & (dy != 0)
    if not upper.any():
        return float("nan")
    agree = (dx[upper] == dy[upper]).sum() + 0.5 * (dx[upper] == 0).sum()
    return float(agree / upper.sum())


def rank_predictors(
    frame: pd.DataFrame,
    kind: str = "shift",
    measures: Iterable[str] = ("epochs", "param_change_from_start", "train_flops", "energy_kwh"),
    *,
    by: str | None = None,
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """Every stored predictor against every cost measure, best first per measure (and group).

    Each registered predictor of `kind` (:func:`resque.list_predictors`) is
    first oriented by its sign so that higher always means "more retraining
    predicted"; then Spearman, Kendall and Pearson with bootstrap intervals
    (:func:`correlations`) and :func:`pairwise_accuracy` are computed.

    `by` (e.g. ``"family"``) ranks within each group as well as pooled.

    Returns
    -------
    pandas.DataFrame
        One row per (group, measure, predictor): n, the three correlations
        with their intervals, pairwise accuracy, and ``rank`` (1 = highest
        Spearman rho for that group and measure). Predictors absent from the
        runs are left out.
    """
    from .questions import add_baselines  # the design's baselines (constant, intensity rank) are ranked too

    signs = {name: get_predictor(name).sign for name in list_predictors(kind)}
    runs = (add_baselines(frame) if kind == "shift" else frame)
    runs = runs[runs["kind"] == kind].copy()
    present = [name for name in signs if name in runs and runs[name].notna().sum() >= 3]
    if runs.empty or not present:
        return pd.DataFrame(columns=["group", "measure", "predictor", "label", "n", "spearman_rho", "rank"])
    oriented = runs.copy()
    for name in present:
        oriented[name] = signs[name] * runs[name]
    measures = [m for m in measures if m in runs]
    corr = correlations(oriented, present, measures, by=by, n_boot=n_boot, seed=seed).copy()
    corr["predictor"] = corr["estimator"]
    corr["label"] = [get_predictor(p).label for p in corr["predictor"]]
    members = {g: oriented if g == "pooled" else oriented[oriented[by] == g] for g in corr["group"].unique()}
    corr["pairwise_accuracy"] = [
        pairwise_accuracy(*_finite_pair(members[g], p, m))
        for g, p, m in zip(corr["group"], corr["predictor"], corr["measure"])
    ]
    corr["rank"] = corr.groupby(["group", "measure"])["spearman_rho"].rank(ascending=False, method="min")
    keep = ["group", "measure", "predictor", "label", "n", "spearman_rho", "spearman_low", "spearman_high",
            "kendall_tau", "kendall_low", "kendall_high", "pearson_r", "pearson_low", "pearson_high",
            "pairwise_accuracy", "rank"]
    return corr[keep].sort_values(["group", "measure", "rank"]).reset_index(drop=True)


def _finite_pair(frame: pd.DataFrame, x: str, y: str) -> tuple[np.ndarray, np.ndarray]:
    both = frame[[x, y]].astype(float).dropna()
    return both[x].to_numpy(), both[y].to_numpy()


def best_predictors(ranking: pd.DataFrame, group: str = "pooled") -> pd.DataFrame:
    """The winner per measure in `group` (highest Spearman rho), with its interval and pairwise accuracy."""
    if ranking.empty:
        return ranking
    rows = ranking[(ranking["group"] == group) & (ranking["rank"] == 1)].drop_duplicates("measure")
    return rows[["measure", "label", "n", "spearman_rho", "spearman_low", "spearman_high", "pairwise_accuracy"]]


def ranking_table(ranking: pd.DataFrame, group: str = "pooled", *, digits: int = 2) -> pd.DataFrame:
    """One group of :func:`rank_predictors` for people: a row per predictor, a column per cost.

    Each cell is ``rho [low, high]`` (Spearman, with its interval) followed by
    the pairwise accuracy, e.g. ``0.78 [0.56, 0.91] · 0.80``; rows are sorted by
    the first cost's rank; a value that could not be computed reads ``n/a``.
    """
    from .labels import label_of

    rows = ranking[ranking["group"] == group]
    if rows.empty:
        return pd.DataFrame()
    table: dict[str, dict[str, str]] = {}
    order = rows[rows["measure"] == rows["measure"].iloc[0]].sort_values("rank")["label"].tolist()
    for _, row in rows.iterrows():
        rho, low, high = row["spearman_rho"], row["spearman_low"], row["spearman_high"]
        if not np.isfinite(rho):
            cell = "n/a"
        else:
            cell = f"{rho:.{digits}f}"
            if np.isfinite(low) and np.isfinite(high):
                cell += f" [{low:.{digits}f}, {high:.{digits}f}]"
            if np.isfinite(row["pairwise_accuracy"]):
                cell += f" · {row['pairwise_accuracy']:.{digits}f}"
        table.setdefault(row["label"], {})[label_of(row["measure"])] = cell
    frame = pd.DataFrame.from_dict(table, orient="index")
    frame = frame.loc[[label for label in order if label in frame.index]
                      + [label for label in frame.index if label not in order]]
    return frame.rename_axis("Spearman ρ [95 % CI] · pairwise accuracy")


def family_winners(ranking: pd.DataFrame, *, digits: int = 2) -> pd.DataFrame:
    """The first-ranked predictor of each cost in each shift family, for people.

    One row per family (the groups of :func:`rank_predictors` with
    ``by="family"``, the pooled group left out), one column per cost; each cell
    is ``label (ρ 0.83)``, followed by ``+ k tied`` when k other predictors
    share first place, or ``n/a`` with the reason where none could be ranked.
    """
    from .labels import label_of

    rows = ranking[(ranking["group"] != "pooled") & (ranking["rank"] == 1)]
    table: dict[str, dict[str, str]] = {}
    for (group, measure), best in rows.groupby(["group", "measure"], sort=False):
        rho, ties = best["spearman_rho"].iloc[0], best["label"].nunique() - 1
        table.setdefault(group, {})[label_of(measure)] = (
            f"{best['label'].iloc[0]} (ρ {rho:.{digits}f})" + (f" + {ties} tied" if ties else ""))
    groups = sorted(g for g in ranking["group"].unique() if g != "pooled")
    measures = [label_of(m) for m in dict.fromkeys(ranking["measure"])]
    frame = pd.DataFrame.from_dict(table, orient="index").reindex(index=groups, columns=measures)
    return frame.fillna("n/a: cost or predictors constant").rename_axis("shift family")
