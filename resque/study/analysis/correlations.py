"""Correlations between a predictor and each cost, per group and pooled, with bootstrap intervals.

Degenerate groups (fewer than 3 runs, a constant column) give NaN and a
``note`` that says why, never an exception or a warning.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from ...checks import did_you_mean
from ...cost.measures import measures as _measures
from ...errors import InvalidParameterError
from .bootstrap import bootstrap_statistics, draw_weights, point_estimates
from .labels import label_of

__all__ = ["METHODS", "HEADLINE", "correlations", "summary_table", "family_table", "check_column"]

#: The measures reported for every predictor (column names; labels in resque.cost.measures).
HEADLINE = tuple(m.column for m in _measures(headline=True))
#: Correlation method -> (column of its statistic, label).
METHODS = {
    "pearson": ("pearson_r", "Pearson r"),
    "spearman": ("spearman_rho", "Spearman ρ"),
    "kendall": ("kendall_tau", "Kendall τ"),
}


def check_column(frame: pd.DataFrame, parameter: str, name) -> None:
    if not isinstance(name, str) or name not in frame.columns:
        columns = [str(c) for c in frame.columns]
        raise InvalidParameterError(parameter, name, "a column of the frame from load_records",
                                    did_you_mean(name, columns))


def _result_columns() -> list[str]:
    columns = ["estimator", "group", "measure", "label", "n", "n_censored", "n_seeds", "resampled", "n_boot"]
    for method, (statistic, _) in METHODS.items():
        columns += [statistic, f"{method}_p", f"{method}_low", f"{method}_high"]
    return columns + ["note"]


def correlations(
    frame: pd.DataFrame,
    estimator: str | Sequence[str] = "resque_dist",
    measures: Iterable[str] = HEADLINE,
    by: str | None = "family",
    *,
    n_boot: int = 2000,
    seed: int = 0,
    cluster: str | None = "seed",
    exclude_censored: bool = False,
    confidence: float = 0.95,
    two_way: bool = True,
) -> pd.DataFrame:
    """Pearson, Spearman and Kendall correlation of an estimator with each cost, with bootstrap intervals.

    Parameters
    ----------
    frame : pandas.DataFrame
        From :func:`load_records`. Only rows where `estimator` is finite are
        used (``resque_dist`` exists for shift runs, ``resque_task`` for task runs).
    estimator : str or sequence of str, default "resque_dist"
        Column(s) of the predictor; several give their tables one after another.
    measures : iterable of str, default :data:`HEADLINE`
        Cost columns. A run without a value for a measure (e.g. no energy
        reading) is left out of that measure only.
    by : str or None, default "family"
        Column whose groups are analysed separately; a ``"pooled"`` group of
        all runs always follows. None: pooled only. (Task runs all have family
        ``"task"``, so their groups are ``"task"`` and ``"pooled"``, the same
        runs; ``by="task"`` splits them by task.)
    n_boot : int, default 2000
        Bootstrap resamples; 0 skips the intervals.
    seed : int, default 0
        Seed of the resampling (the same resamples for every measure of a group).
    cluster : str or None, default "seed"
        Column whose values are resampled as whole clusters, keeping their runs
        together. With one value in a group it falls back on resampling runs,
        and ``resampled`` says so. None: always resample runs.
    exclude_censored : bool, default False
        Leave out runs that did not reach their target. By default they are
        kept (their cost is a lower bound) and counted in ``n_censored``.
    confidence : float, default 0.95
        Level of the percentile intervals.
    two_way : bool, default True
        With several clusters, also resample the experiments (a shift family
        at one intensity, or a task), crossed with the clusters: each run
        weighs its seed's draw times its experiment's draw
        (:func:`~resque.study.analysis.questions.two_way_weights`), so that the
        intervals reflect both. False: clusters only.

    Returns
    -------
    pandas.DataFrame
        One row per estimator, group and measure: ``estimator, group, measure,
        label, n, n_censored, n_seeds, resampled`` (``"seeds (k clusters)"``,
        ``"runs (one seed)"`` or ``"runs"``), ``n_boot`` (resamples that gave a
        value), then for each method in :data:`METHODS` the statistic
        (``pearson_r``, ``spearman_rho``, ``kendall_tau``), its p-value
        (``<method>_p``) and interval (``<method>_low``, ``<method>_high``),
        and ``note`` (why a value is NaN, or what to beware of; "" if nothing).

    Examples
    --------
    >>> corr = correlations(load_records("results/smoke"), "resque_dist")  # doctest: +SKIP
    >>> corr.query("group == 'pooled'")[["measure", "spearman_rho", "spearman_low", "spearman_high"]]  # doctest: +SKIP
    """
    estimators = [estimator] if isinstance(estimator, str) else list(estimator)
    if not estimators:
        raise InvalidParameterError("estimator", estimator, "a column name or a non-empty list of them")
    for name in estimators:
        check_column(frame, "estimator", name)
    measures = list(measures)
    for name in measures:
        check_column(frame, "measures", name)
    if by is not None:
        check_column(frame, "by", by)
    if cluster is not None:
        check_column(frame, "cluster", cluster)
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 0:
        raise InvalidParameterError("n_boot", n_boot, "an integer >= 0 (0 skips the intervals)")
    if not 0.0 < confidence < 1.0:
        raise InvalidParameterError("confidence", confidence, "a level strictly between 0 and 1, e.g. 0.95")

    rows = []
    for name in estimators:
        runs = frame[np.isfinite(frame[name].to_numpy(dtype=float))]
        if exclude_censored:
            runs = runs[~runs["censored"].to_numpy(dtype=bool)]
        groups = [] if by is None else [(str(g), runs[runs[by] == g]) for g in sorted(runs[by].dropna().unique(), key=str)]
        groups.append(("pooled", runs))
        for group_index, (group, members) in enumerate(groups):
            rows += _group_rows(name, group, members, measures, n_boot, np.random.default_rng([seed, group_index]),
                                cluster, exclude_censored, confidence, two_way)
    return pd.DataFrame(rows, columns=_result_columns())


def _group_rows(estimator, group, members, measures, n_boot, rng, cluster, exclude_censored, confidence,
                two_way=False):
    x_all = members[estimator].to_numpy(dtype=float)
    censored_all = members["censored"].to_numpy(dtype=bool) if "censored" in members else np.zeros(len(members), bool)
    clusters_all = members[cluster].to_numpy() if cluster is not None else np.arange(len(members))
    n_clusters = len(np.unique(clusters_all)) if len(members) else 0
    n_seeds = int(members["seed"].nunique()) if "seed" in members else 0
    if cluster is None:
        resampled, draw_from = "runs", np.arange(len(members))
    elif n_clusters >= 2:
        resampled, draw_from = f"{cluster}s ({n_clusters} clusters)", clusters_all
    else:
        resampled, draw_from = f"runs (one {cluster})", np.arange(len(members))
    crossed = two_way and cluster is not None and n_clusters >= 2 and {"kind", "family", "intensity", "task"} <= set(members)
    if crossed:
        from .questions import experiment_of, two_way_weights

        experiments = experiment_of(members)
        resampled = f"{cluster}s x experiments ({n_clusters} x {len(np.unique(experiments))})"
    # One set of resamples per group, shared by its measures, so their intervals are comparable.
    if not (n_boot and len(members)):
        weights_all = np.zeros((0, len(members)))
    elif crossed:
        weights_all = two_way_weights(clusters_all, experiments, n_boot, rng)
    else:
        weights_all = draw_weights(draw_from, n_boot, rng)
    alpha = (1.0 - confidence) / 2.0

    rows = []
    for measure in measures:
        y_all = members[measure].to_numpy(dtype=float)
        keep = np.isfinite(y_all)
        x, y = x_all[keep], y_all[keep]
        row = {"estimator": estimator, "group": group, "measure": measure, "label": label_of(measure),
               "n": int(keep.sum()), "n_censored": int(censored_all[keep].sum()), "n_seeds": n_seeds,
               "resampled": resampled, "n_boot": 0}
        notes = []
        if exclude_censored:
            notes.append("censored runs excluded")
        if row["n"] < 3:
            notes.insert(0, f"n={row['n']} < 3 runs: no correlation" + ("" if keep.all() else f" ({(~keep).sum()} without {measure})"))
        elif np.unique(x).size < 2:
            notes.insert(0, f"{label_of(estimator)} is constant ({x[0]:g}) over these runs")
        elif np.unique(y).size < 2:
            notes.insert(0, f"{label_of(measure)} is constant ({y[0]:g}) over these runs")
        else:
            for method, (value, pvalue) in point_estimates(x, y).items():
                row[METHODS[method][0]], row[f"{method}_p"] = value, pvalue
            if n_boot:
                boot = bootstrap_statistics(x, y, weights_all[:, keep])
                finite = np.isfinite(boot["pearson"])
                row["n_boot"] = int(finite.sum())
                if finite.mean() < 0.5:
                    notes.append(f"{(~finite).sum()} of {n_boot} resamples constant: no interval")
                else:
                    for method, values in boot.items():
                        values = values[np.isfinite(values)]
                        row[f"{method}_low"], row[f"{method}_high"] = np.quantile(values, [alpha, 1.0 - alpha])
                    if row["n"] < 10:
                        notes.append(f"only {row['n']} runs: interval unreliable")
                    if cluster is not None and resampled.startswith(f"{cluster}s") and n_clusters < 5:
                        notes.append(f"only {n_clusters} {cluster}s resampled: interval coarse")
            if row["n_censored"] and row["n_censored"] * 2 > row["n"]:
                notes.append(f"{row['n_censored']} of {row['n']} runs censored")
        row["note"] = "; ".join(notes)
        rows.append(row)
    return rows


def _with_interval(value: float, low: float, high: float, digits: int) -> str:
    if not np.isfinite(value):
        return "n/a"
    text = f"{value:.{digits}f}"
    if np.isfinite(low) and np.isfinite(high):
        text += f" [{low:.{digits}f}, {high:.{digits}f}]"
    return text


def summary_table(corr: pd.DataFrame, group: str = "pooled", *, digits: int = 2) -> pd.DataFrame:
    """Compact table of one group: measure x method, each cell ``r [low, high]``.

    Parameters
    ----------
    corr : pandas.DataFrame
        From :func:`correlations`.
    group : str, default "pooled"
    digits : int, default 2

    Returns
    -------
    pandas.DataFrame
        Indexed by measure label (and estimator, when `corr` has several);
        columns ``n``, ``censored``, one per method (``"Pearson r"`` ...) and
        ``note``. A value that could not be computed reads ``"n/a"``.
    """
    rows = corr[corr["group"] == group]
    several = rows["estimator"].nunique() > 1
    table = []
    for _, row in rows.iterrows():
        entry = {"estimator": label_of(row["estimator"]), "measure": row["label"], "n": int(row["n"]),
                 "censored": int(row["n_censored"])}
        for method, (statistic, title) in METHODS.items():
            entry[title] = _with_interval(row[statistic], row[f"{method}_low"], row[f"{method}_high"], digits)
        entry["note"] = row["note"]
        table.append(entry)
    columns = ["estimator", "measure", "n", "censored"] + [title for _, title in METHODS.values()] + ["note"]
    table = pd.DataFrame(table, columns=columns)
    return table.set_index(["estimator", "measure"] if several else ["measure"]).drop(
        columns=[] if several else ["estimator"])


def family_table(corr: pd.DataFrame, method: str = "spearman", *, digits: int = 2) -> pd.DataFrame:
    """One group per row, one cost per column, each cell ``rho [low, high]`` (a table that fits a page).

    Parameters
    ----------
    corr : pandas.DataFrame
        From :func:`correlations` with ``by="family"`` (one estimator).
    method : {"pearson", "spearman", "kendall"}, default "spearman"

    Returns
    -------
    pandas.DataFrame
        Index: the groups (the families, then ``pooled``); columns ``runs``
        then the cost labels (a cell over fewer runs than the group's says
        ``(n = ...)``, e.g. a gradient norm undefined for runs of 0 steps). A
        value that could not be computed reads ``"n/a: "`` and why (e.g.
        ``"n/a: Epochs is constant (1) over these runs"``).
    """
    if method not in METHODS:
        raise InvalidParameterError("method", method, list(METHODS))
    statistic = METHODS[method][0]
    table: dict[str, dict[str, str]] = {}
    for group, rows in corr.groupby("group", sort=False):
        most = int(rows["n"].max())
        entry = table.setdefault(str(group), {"runs": str(most)})
        for _, row in rows.iterrows():
            cell = _with_interval(row[statistic], row[f"{method}_low"], row[f"{method}_high"], digits)
            if cell == "n/a" and row["note"]:
                cell = f"n/a: {str(row['note']).split('; ')[0]}"
            if int(row["n"]) != most:
                cell += f" (n = {int(row['n'])})"
            entry[row["label"]] = cell
    return pd.DataFrame.from_dict(table, orient="index").rename_axis(f"{METHODS[method][1]} [95 % CI]")
