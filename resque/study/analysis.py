"""Does RESQUE predict what retraining costs? Records to a table, correlations with intervals, plots.

See PROTOCOL.md, "Analysis". The pipeline is three steps, each a plain function
the analysis notebook calls::

    frame = load_records("results/smoke")          # one row per finished shift/task run
    corr = correlations(frame, "resque_dist")      # per family and pooled, per measure
    summary_table(corr)                            # measure x method: r [95 % CI]

Choices, and why:

- **Which runs.** Only complete ``shift`` and ``task`` records are rows; the
  ``scratch`` records of the same experiment become the ``scratch_*`` columns
  of their row (the yardstick), and source models are not runs of the study.
  Incomplete or unreadable files are skipped and counted in ``frame.attrs``.
- **Censored runs** (stopped by a cutoff or the cap before reaching the target)
  are kept: their costs are lower bounds of what reaching the target would have
  cost, which is data, and dropping them would bias the analysis towards easy
  shifts. Every correlation row says how many of its runs were censored, and
  ``exclude_censored=True`` gives the analysis without them.
- **Bootstrap.** Percentile intervals from resampling runs with replacement;
  with several seeds, whole seeds are resampled (a cluster bootstrap), since the
  runs of one seed share a source model and data split and are not independent.
  A resample is represented by how many times it draws each run (a weight), so
  all resamples are computed at once as weighted statistics, exactly equal to
  the statistics of the duplicated samples (ties included, as scipy counts them).
- **Degenerate groups** (fewer than 3 runs, a constant column) give NaN and a
  ``note`` that says why, never an exception or a warning.
"""

from __future__ import annotations

import difflib
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import InvalidParameterError, RecordError
from ..cost.records import load_record

__all__ = [
    "Measure",
    "MEASURES",
    "ALL_MEASURES",
    "SAVINGS_MEASURES",
    "SHIFT_ESTIMATORS",
    "TASK_ESTIMATORS",
    "ESTIMATOR_LABELS",
    "METHODS",
    "resolve_results_dir",
    "load_records",
    "correlations",
    "summary_table",
    "savings_summary",
    "findings",
    "plot_scatter",
    "plot_vs_intensity",
    "label_of",
    "bootstrap_statistics",
]


@dataclass(frozen=True)
class Measure:
    """A cost of retraining, as a column of :func:`load_records` with a human label and unit."""

    column: str
    label: str
    unit: str

    @property
    def axis_label(self) -> str:
        return f"{self.label} ({self.unit})"


#: The seven measures of the study, column -> :class:`Measure`. The gradient norm
#: is the authors' (last mini-batch of the run); ``grad_norm_mean`` is in
#: :data:`ALL_MEASURES` for a robustness check.
MEASURES: dict[str, Measure] = {
    m.column: m
    for m in (
        Measure("epochs", "Epochs", "epochs"),
        Measure("grad_norm_last", "Gradient norm", "L2, last step"),
        Measure("param_change_from_start", "Parameter change", "RMS from start"),
        Measure("train_seconds", "Training time", "s"),
        Measure("train_flops", "FLOPs", "FLOP"),
        Measure("energy_kwh", "Energy", "kWh"),
        Measure("carbon_kg", "Carbon", "kg CO2-eq"),
    )
}
ALL_MEASURES: dict[str, Measure] = {
    **MEASURES,
    "grad_norm_mean": Measure("grad_norm_mean", "Gradient norm (mean)", "L2, mean over steps"),
}
#: Costs for which "reuse saved x % of training from scratch" means something
#: (a smaller gradient norm or parameter change is not a saving).
SAVINGS_MEASURES = ("epochs", "train_seconds", "train_flops", "energy_kwh", "carbon_kg")

SHIFT_ESTIMATORS = ("resque_dist", "resque_dist_paired", "accuracy_drop")
TASK_ESTIMATORS = (
    "resque_task",
    "resque_task_mean_centroids",
    "resque_task_mean_kmeanspp",
    "resque_task_flatten_centroids",
    "resque_task_flatten_kmeanspp",
)
ESTIMATOR_LABELS = {
    "resque_dist": "RESQUE_dist",
    "resque_dist_paired": "RESQUE_dist (paired)",
    "accuracy_drop": "Accuracy drop of the source model",
    "resque_task": "RESQUE_task",
    "resque_task_mean_centroids": "RESQUE_task (pooled, centroids)",
    "resque_task_mean_kmeanspp": "RESQUE_task (pooled, k-means++)",
    "resque_task_flatten_centroids": "RESQUE_task (flat, centroids)",
    "resque_task_flatten_kmeanspp": "RESQUE_task (flat, k-means++)",
}
#: Correlation method -> (column of its statistic, label).
METHODS = {
    "pearson": ("pearson_r", "Pearson r"),
    "spearman": ("spearman_rho", "Spearman ρ"),
    "kendall": ("kendall_tau", "Kendall τ"),
}

# Costs copied from each record's totals (and from its yardstick's, as scratch_*).
_COST_COLUMNS = (
    "epochs", "steps", "samples", "grad_norm_last", "grad_norm_mean", "param_change_from_start",
    "train_seconds", "eval_seconds", "train_flops", "energy_kwh", "energy_estimated_kwh", "carbon_kg",
)
_SCRATCH_COLUMNS = (
    "epochs", "grad_norm_last", "grad_norm_mean", "param_change_from_start",
    "train_seconds", "train_flops", "energy_kwh", "carbon_kg",
)
_ID_COLUMNS = ("run_id", "kind", "family", "intensity", "task", "seed")


def label_of(name: str) -> str:
    """Human label of a measure or estimator column (the column name itself when unknown)."""
    if name in ALL_MEASURES:
        return ALL_MEASURES[name].label
    return ESTIMATOR_LABELS.get(name, name)


def _axis_label(name: str) -> str:
    return ALL_MEASURES[name].axis_label if name in ALL_MEASURES else label_of(name)


# ---------------------------------------------------------------------------
# Records -> frame
# ---------------------------------------------------------------------------


def resolve_results_dir(results_dir: str | os.PathLike, *, levels: int = 2) -> Path:
    """`results_dir` as given, or found relative to a parent of the working directory.

    Notebooks run with their own folder (``notebooks/``) as working directory,
    while profiles name results relative to the repository root; a relative path
    that does not exist here is looked up `levels` parents up. The path is
    returned unchanged when it is found nowhere (:func:`load_records` then
    reports an empty study).
    """
    path = Path(results_dir)
    if path.exists() or path.is_absolute():
        return path
    base = Path.cwd()
    for _ in range(levels):
        base = base.parent
        if (base / path).exists():
            return base / path
    return path


def _energy_source(totals: Mapping) -> str:
    """``"estimate"`` if any part of the energy is estimated, else the hardware sources (``"nvml+rapl"``)."""
    parts = totals.get("energy_parts") or {}
    sources = sorted({str(part.get("source", "estimate")) for part in parts.values() if isinstance(part, Mapping)})
    if not sources or totals.get("energy_kwh") is None:
        return "unavailable"
    if "estimate" in sources:
        return "estimate"
    return "+".join(sources)


def _float(value) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def _row(record) -> dict:
    experiment = record.experiment or {}
    totals = record.totals or {}
    family = experiment.get("shift") if record.kind == "shift" else "task"
    row = {
        "run_id": record.run_id,
        "kind": record.kind,
        "family": family,
        "intensity": _float(experiment.get("intensity")),
        "task": experiment.get("task"),
        "seed": int(record.seed),
    }
    row.update({name: _float(value) for name, value in (record.estimators or {}).items()})
    row.update({name: _float(totals.get(name)) for name in _COST_COLUMNS})
    row["stop_reason"] = record.stop_reason
    row["censored"] = record.stop_reason != "reached"
    row["energy_source"] = _energy_source(totals)
    row["test_accuracy"] = _float(record.test_accuracy)
    row["scratch_run_id"] = experiment.get("scratch_run_id")
    return row


def _columns(estimators: Iterable[str]) -> list[str]:
    known = list(SHIFT_ESTIMATORS) + list(TASK_ESTIMATORS)
    extra = sorted(set(estimators) - set(known))
    return (
        list(_ID_COLUMNS) + known + extra + list(_COST_COLUMNS)
        + ["stop_reason", "censored", "energy_source", "test_accuracy", "scratch_run_id"]
        + [f"scratch_{name}" for name in _SCRATCH_COLUMNS]
        + ["scratch_stop_reason", "scratch_censored"]
        + [f"savings_{name}" for name in SAVINGS_MEASURES]
    )


def load_records(results_dir: str | os.PathLike) -> pd.DataFrame:
    """One row per complete shift or task run of a study, with its yardstick's costs.

    Parameters
    ----------
    results_dir : str or path-like
        A study's results folder (its ``records/`` subfolder is read), or a
        folder of record files itself. A folder that does not exist gives an
        empty frame (a study not run yet), with ``attrs["missing"] = True``.

    Returns
    -------
    pandas.DataFrame
        Columns: ``run_id, kind, family`` (the shift name, or ``"task"``),
        ``intensity`` (NaN for tasks), ``task`` (None for shifts), ``seed``;
        every estimator (:data:`SHIFT_ESTIMATORS` and :data:`TASK_ESTIMATORS`
        always, NaN where not computed, plus any other found); the costs
        (``epochs, steps, samples, grad_norm_last, grad_norm_mean,
        param_change_from_start, train_seconds, eval_seconds`` in s,
        ``train_flops``, ``energy_kwh, energy_estimated_kwh`` in kWh,
        ``carbon_kg`` in kg CO2-eq); ``stop_reason``, ``censored`` (the target
        was not reached), ``energy_source`` (``"estimate"`` when any part of
        the energy is estimated, ``"unavailable"``, or the hardware counters),
        ``test_accuracy``; the yardstick's ``scratch_<cost>``,
        ``scratch_stop_reason`` and ``scratch_censored`` (NaN without one); and
        ``savings_<cost> = 1 - reuse / scratch`` for :data:`SAVINGS_MEASURES`.
        Rows are sorted by kind, family, intensity, task and seed.

        ``attrs`` holds ``results_dir``, ``missing``, ``n_incomplete`` (records
        of runs that did not finish), ``n_unreadable`` and ``unreadable`` (file
        name -> why), ``n_scratch`` and ``n_other`` (source models).

    Examples
    --------
    >>> frame = load_records("results/smoke")  # doctest: +SKIP
    >>> frame.groupby("family")["epochs"].median()  # doctest: +SKIP
    """
    root = Path(results_dir)
    folder = root / "records" if (root / "records").is_dir() else root
    attrs = {"results_dir": str(root), "missing": not folder.is_dir(), "n_incomplete": 0, "n_unreadable": 0,
             "unreadable": {}, "n_scratch": 0, "n_other": 0}
    runs, yardsticks = [], {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            record = load_record(path)
        except RecordError as error:
            attrs["n_unreadable"] += 1
            attrs["unreadable"][path.name] = str(error)
            continue
        if not record.complete:
            attrs["n_incomplete"] += 1
        elif record.kind in ("shift", "task"):
            runs.append(_row(record))
        elif record.kind == "scratch":
            attrs["n_scratch"] += 1
            target = (record.experiment or {}).get("yardstick_for")
            if target:
                yardsticks[target] = record
        else:
            attrs["n_other"] += 1

    for row in runs:
        scratch = yardsticks.get(row["run_id"])
        totals = scratch.totals if scratch is not None else {}
        for name in _SCRATCH_COLUMNS:
            row[f"scratch_{name}"] = _float(totals.get(name))
        row["scratch_stop_reason"] = scratch.stop_reason if scratch is not None else None
        row["scratch_censored"] = (scratch.stop_reason != "reached") if scratch is not None else None
        with np.errstate(divide="ignore", invalid="ignore"):
            for name in SAVINGS_MEASURES:
                scratch_cost = row[f"scratch_{name}"]
                row[f"savings_{name}"] = 1.0 - row[name] / scratch_cost if scratch_cost > 0 else math.nan

    estimators = {key for row in runs for key in row} - set(_columns(()))
    frame = pd.DataFrame(runs, columns=_columns(estimators))
    text = {"run_id", "kind", "family", "task", "stop_reason", "energy_source", "scratch_run_id", "scratch_stop_reason"}
    for column in frame.columns:
        if column == "seed":
            frame[column] = frame[column].astype("int64")
        elif column in ("censored",):
            frame[column] = frame[column].astype(bool)
        elif column == "scratch_censored":
            frame[column] = frame[column].astype("boolean")  # NA where there is no yardstick
        elif column not in text:
            frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
        else:
            frame[column] = frame[column].astype(object)
    if len(frame):
        order = frame.assign(_kind=frame["kind"], _family=frame["family"].fillna(""), _task=frame["task"].fillna(""))
        frame = frame.loc[order.sort_values(["_kind", "_family", "intensity", "_task", "seed"]).index]
        frame = frame.reset_index(drop=True)
    frame.attrs.update(attrs)
    return frame


# ---------------------------------------------------------------------------
# Correlations with a vectorised (cluster) bootstrap
# ---------------------------------------------------------------------------


def _tie_codes(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Index of each value among the sorted distinct values, and their number."""
    distinct, codes = np.unique(values, return_inverse=True)
    return codes.ravel(), len(distinct)


def _weighted_pearson(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pearson r of each resample; x, y (n,) or (B, n), weights w (B, n). NaN where a variance is 0."""
    total = w.sum(axis=1, keepdims=True)
    dx = x - (w * x).sum(axis=1, keepdims=True) / total  # (B, n)
    dy = y - (w * y).sum(axis=1, keepdims=True) / total
    cov = (w * dx * dy).sum(axis=1)
    var = (w * dx * dx).sum(axis=1) * (w * dy * dy).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = cov / np.sqrt(var)
    return np.clip(r, -1.0, 1.0)


def _weighted_midranks(codes: np.ndarray, n_distinct: int, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average ranks in each resample (as scipy.stats.rankdata of the duplicated sample), (B, n).

    Also returns the weight of each distinct value, (B, n_distinct).
    """
    onehot = np.zeros((len(codes), n_distinct))
    onehot[np.arange(len(codes)), codes] = 1.0
    group_weight = w @ onehot  # (B, G): how many draws have each distinct value
    below = np.cumsum(group_weight, axis=1) - group_weight
    # the draws equal to a value occupy ranks below+1 .. below+weight: their mean
    return (below + (group_weight + 1.0) / 2.0)[:, codes], group_weight


def _weighted_kendall(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Kendall tau-b of each resample (as scipy.stats.kendalltau of the duplicated sample), (B,).

    A run drawn w times adds w(w-1)/2 pairs tied in both x and y; two distinct
    runs drawn w_i and w_j times add w_i w_j copies of their pair.
    """
    sx, sy = np.sign(x[:, None] - x[None, :]), np.sign(y[:, None] - y[None, :])  # (n, n)
    concordance = sx * sy
    tied_x, tied_y = (sx == 0).astype(float), (sy == 0).astype(float)
    np.fill_diagonal(tied_x, 0.0)
    np.fill_diagonal(tied_y, 0.0)

    def pair(matrix: np.ndarray) -> np.ndarray:  # sum over i < j of w_i w_j m_ij, per resample
        return 0.5 * np.einsum("bi,bi->b", w @ matrix, w)

    self_ties = 0.5 * (w * (w - 1.0)).sum(axis=1)
    total = w.sum(axis=1)
    all_pairs = 0.5 * total * (total - 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = pair(concordance) / np.sqrt(
            (all_pairs - pair(tied_x) - self_ties) * (all_pairs - pair(tied_y) - self_ties)
        )
    return np.clip(tau, -1.0, 1.0)


def bootstrap_statistics(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Pearson r, Spearman rho and Kendall tau-b of every resample at once.

    Parameters
    ----------
    x, y : numpy.ndarray, shape (n,)
        The paired observations.
    weights : numpy.ndarray, shape (B, n)
        How many times each resample draws each observation (non-negative integers).

    Returns
    -------
    dict of str to numpy.ndarray, shape (B,)
        ``"pearson"``, ``"spearman"``, ``"kendall"``: each statistic of each
        resample, equal to scipy's on the sample with every observation repeated
        its weight times; NaN where the resample is constant in x or y.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    w = np.atleast_2d(np.asarray(weights, dtype=float))
    x_codes, x_distinct = _tie_codes(x)
    y_codes, y_distinct = _tie_codes(y)
    rank_x, weight_x = _weighted_midranks(x_codes, x_distinct, w)
    rank_y, weight_y = _weighted_midranks(y_codes, y_distinct, w)
    # Decide constancy exactly, from the distinct values drawn, not from a float variance.
    degenerate = ((weight_x > 0).sum(axis=1) < 2) | ((weight_y > 0).sum(axis=1) < 2)
    result = {
        "pearson": _weighted_pearson(x, y, w),
        "spearman": _weighted_pearson(rank_x, rank_y, w),
        "kendall": _weighted_kendall(x, y, w),
    }
    for values in result.values():
        values[degenerate] = np.nan
    return result


def _draw_weights(clusters: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap weights (n_boot, n): each resample draws as many clusters as there are, with replacement."""
    labels, index = np.unique(clusters, return_inverse=True)
    k = len(labels)
    cluster_counts = rng.multinomial(k, np.full(k, 1.0 / k), size=n_boot)  # (B, k)
    return cluster_counts[:, index.ravel()].astype(float)  # each run weighs what its cluster was drawn


def _point_estimates(x: np.ndarray, y: np.ndarray) -> dict[str, tuple[float, float]]:
    with warnings.catch_warnings():
        # Constant inputs are screened out before; anything left over must give NaN quietly.
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        warnings.simplefilter("ignore", stats.NearConstantInputWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        pearson = stats.pearsonr(x, y)
        spearman = stats.spearmanr(x, y)
        kendall = stats.kendalltau(x, y)
    return {
        "pearson": (float(pearson.statistic), float(pearson.pvalue)),
        "spearman": (float(spearman.statistic), float(spearman.pvalue)),
        "kendall": (float(kendall.statistic), float(kendall.pvalue)),
    }


def _check_column(frame: pd.DataFrame, parameter: str, name) -> None:
    if not isinstance(name, str) or name not in frame.columns:
        columns = [str(c) for c in frame.columns]
        close = difflib.get_close_matches(str(name), columns, n=3)
        hint = f"Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise InvalidParameterError(parameter, name, "a column of the frame from load_records", hint)


def _result_columns() -> list[str]:
    columns = ["estimator", "group", "measure", "label", "n", "n_censored", "n_seeds", "resampled", "n_boot"]
    for method, (statistic, _) in METHODS.items():
        columns += [statistic, f"{method}_p", f"{method}_low", f"{method}_high"]
    return columns + ["note"]


def correlations(
    frame: pd.DataFrame,
    estimator: str | Sequence[str] = "resque_dist",
    measures: Iterable[str] = MEASURES,
    by: str | None = "family",
    *,
    n_boot: int = 2000,
    seed: int = 0,
    cluster: str | None = "seed",
    exclude_censored: bool = False,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Pearson, Spearman and Kendall correlation of an estimator with each cost, with bootstrap intervals.

    Parameters
    ----------
    frame : pandas.DataFrame
        From :func:`load_records`. Only rows where `estimator` is finite are
        used (``resque_dist`` exists for shift runs, ``resque_task`` for task runs).
    estimator : str or sequence of str, default "resque_dist"
        Column(s) of the predictor; several give their tables one after another.
    measures : iterable of str, default :data:`MEASURES`
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
        _check_column(frame, "estimator", name)
    measures = list(measures)
    for name in measures:
        _check_column(frame, "measures", name)
    if by is not None:
        _check_column(frame, "by", by)
    if cluster is not None:
        _check_column(frame, "cluster", cluster)
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
                                cluster, exclude_censored, confidence)
    return pd.DataFrame(rows, columns=_result_columns())


def _group_rows(estimator, group, members, measures, n_boot, rng, cluster, exclude_censored, confidence):
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
    # One set of resamples per group, shared by its measures, so their intervals are comparable.
    weights_all = _draw_weights(draw_from, n_boot, rng) if n_boot and len(members) else np.zeros((0, len(members)))
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
            for method, (value, pvalue) in _point_estimates(x, y).items():
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
                    if resampled.startswith(f"{cluster}s") and n_clusters < 5:
                        notes.append(f"only {n_clusters} {cluster}s resampled: interval coarse")
            if row["n_censored"] and row["n_censored"] * 2 > row["n"]:
                notes.append(f"{row['n_censored']} of {row['n']} runs censored")
        row["note"] = "; ".join(notes)
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------
# Tables and prose
# ---------------------------------------------------------------------------


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


def savings_summary(frame: pd.DataFrame, measures: Sequence[str] = SAVINGS_MEASURES, by: str = "family") -> pd.DataFrame:
    """How much reuse saved against training from scratch, per group and pooled.

    Parameters
    ----------
    frame : pandas.DataFrame
        From :func:`load_records`.
    measures : sequence of str, default :data:`SAVINGS_MEASURES`
    by : str, default "family"

    Returns
    -------
    pandas.DataFrame
        Indexed by group (then ``"pooled"``): ``runs`` (with a yardstick),
        ``reuse censored`` and ``scratch censored`` (runs that did not reach
        the target; a censored scratch run makes the saving a lower bound, a
        censored reuse run an upper bound), and the median saving per measure
        (``1 - reuse / scratch``; 0.6 means reuse cost 40 % of scratch).
    """
    for name in measures:
        _check_column(frame, "measures", f"savings_{name}")
    _check_column(frame, "by", by)
    paired = frame[frame["scratch_run_id"].notna() & frame["scratch_stop_reason"].notna()]
    groups = [(str(g), paired[paired[by] == g]) for g in sorted(paired[by].dropna().unique(), key=str)]
    groups.append(("pooled", paired))
    table = []
    for group, rows in groups:
        entry = {"group": group, "runs": len(rows), "reuse censored": int(rows["censored"].sum()),
                 "scratch censored": int(rows["scratch_censored"].fillna(False).astype(bool).sum())}
        for name in measures:
            values = rows[f"savings_{name}"].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            entry[f"median saving: {label_of(name).lower()}"] = float(np.median(values)) if len(values) else math.nan
        table.append(entry)
    return pd.DataFrame(table).set_index("group")


def _pooled(corr: pd.DataFrame | None, estimator: str, measure: str) -> pd.Series | None:
    if corr is None or corr.empty:
        return None
    hit = corr[(corr["estimator"] == estimator) & (corr["group"] == "pooled") & (corr["measure"] == measure)]
    return hit.iloc[0] if len(hit) else None


def _sentence(row: pd.Series | None, estimator: str, measure: str) -> str:
    what = f"{label_of(measure).lower()}"
    if row is None:
        return f"with {what} it was not computed"
    if not np.isfinite(row["spearman_rho"]):
        return f"with {what} it cannot be computed ({row['note'] or 'no data'})"
    text = f"with {what} it is {row['spearman_rho']:.2f}"
    if np.isfinite(row["spearman_low"]):
        low, high = row["spearman_low"], row["spearman_high"]
        text += f" (95 % CI {low:.2f} to {high:.2f}"
        text += ", which includes zero)" if low <= 0.0 <= high else ")"
    return text


def findings(frame: pd.DataFrame, corr: pd.DataFrame | None = None, corr_task: pd.DataFrame | None = None,
             *, measures: Sequence[str] = ("epochs", "energy_kwh"), min_runs: int = 10) -> str:
    """A paragraph of prose (Markdown, no headings) that states the numbers and their caveats.

    Parameters
    ----------
    frame : pandas.DataFrame
        From :func:`load_records`.
    corr, corr_task : pandas.DataFrame or None
        From :func:`correlations` for ``resque_dist`` and ``resque_task``.
    measures : sequence of str, default ("epochs", "energy_kwh")
        The measures whose pooled Spearman rho the text states.
    min_runs : int, default 10
        Below this many runs the text warns that the numbers are not evidence.
    """
    shifts = frame[frame["kind"] == "shift"]
    tasks = frame[frame["kind"] == "task"]
    if len(shifts) < 3 and len(tasks) < 3:
        found = f"{len(frame)} complete run{'s' if len(frame) != 1 else ''}"
        skipped = frame.attrs.get("n_incomplete", 0)
        extra = f" ({skipped} more did not finish)" if skipped else ""
        where = frame.attrs.get("results_dir", "the results folder")
        if frame.attrs.get("missing"):
            found = f"no records, since {where} does not exist"
        else:
            found = f"{found} of retraining in {where}{extra}"
        return (f"There is not enough data for an analysis: {found}, and a correlation needs at least 3 runs "
                f"of a kind. Run the study's grid first; until then the tables and figures on this page are "
                f"empty or show single points.")
    parts = []
    for kind, runs, estimator, table in (("shift", shifts, "resque_dist", corr), ("task", tasks, "resque_task", corr_task)):
        if len(runs) == 0:
            continue
        n_seeds = runs["seed"].nunique()
        scope = (f"{runs['family'].nunique()} shift famil{'ies' if runs['family'].nunique() != 1 else 'y'}"
                 if kind == "shift" else f"{runs['task'].nunique()} task{'s' if runs['task'].nunique() != 1 else ''}")
        clauses = "; ".join(_sentence(_pooled(table, estimator, m), estimator, m) for m in measures)
        text = (f"Over {len(runs)} {kind} run{'s' if len(runs) != 1 else ''} ({scope}, {n_seeds} "
                f"seed{'s' if n_seeds != 1 else ''}), the pooled Spearman ρ between {label_of(estimator)} and the "
                f"cost of retraining: {clauses}.")
        if len(runs) < 3:
            text += f" A correlation needs at least 3 {kind} runs."
        elif len(runs) < min_runs:
            text += (f" With only {len(runs)} runs these numbers are not evidence either way: the intervals are "
                     f"wide, and one run more or less can change their sign.")
        censored = int(runs["censored"].sum())
        if censored * 2 > len(runs):
            text += (f" Most runs ({censored} of {len(runs)}) stopped before reaching their target, so their costs "
                     f"are lower bounds of what reaching it would have cost.")
        elif censored:
            text += f" {censored} of {len(runs)} runs did not reach their target (kept, as lower bounds)."
        parts.append(text)
    estimated = int((frame["energy_source"] == "estimate").sum())
    if estimated:
        parts.append(f"Energy and carbon are estimates (a model of power, not a hardware counter) for {estimated} "
                     f"of {len(frame)} runs, so they largely follow training time.")
    paired = frame[frame["scratch_stop_reason"].notna()]
    saved = paired["savings_epochs"].to_numpy(dtype=float)
    saved = saved[np.isfinite(saved)]
    if len(saved):
        text = (f"Against training from scratch on the same data, reuse saved a median "
                f"{100 * np.median(saved):.0f} % of the epochs over {len(saved)} runs")
        energy = paired["savings_energy_kwh"].to_numpy(dtype=float)
        energy = energy[np.isfinite(energy)]
        if len(energy):
            text += f" and {100 * np.median(energy):.0f} % of the energy"
        text += "."
        scratch_censored = paired["scratch_censored"].fillna(False).to_numpy(dtype=bool)
        reuse_censored = paired["censored"].to_numpy(dtype=bool)
        lower = int((scratch_censored & ~reuse_censored).sum())
        unclear = int(reuse_censored.sum())
        if lower:
            # scratch stopped short of the target: its true cost is higher, so the saving is larger
            text += (f" In {lower} of these the scratch run did not reach the target while reuse did, so the "
                     f"saving there is a lower bound.")
        if unclear:
            text += (f" In {unclear} the reused model itself did not reach the target, so the saving there may "
                     f"be overstated.")
        parts.append(text)
    return "\n\n".join(parts)


# ---------------------------------------------------------------------------
# Plots
# ---------------------------------------------------------------------------

_CENSORED_LABEL = "censored (target not reached)"


def _palette(families: Sequence[str]) -> dict[str, tuple]:
    import seaborn as sns

    return dict(zip(families, sns.color_palette("colorblind", max(len(families), 1))))


def _draw_runs(ax, x, y, censored, color, label=None, size=28):
    """Reached runs as filled dots, censored ones hollow: their cost is a lower bound."""
    reached = ~censored
    if reached.any():
        ax.scatter(x[reached], y[reached], s=size, color=color, label=label, zorder=3)
    if censored.any():
        ax.scatter(x[censored], y[censored], s=size, facecolors="none", edgecolors=color, linewidths=1.2, zorder=3,
                   label=None if reached.any() else label)


def _legend(fig, families, palette, extra=()):
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", linestyle="", color=palette[f], label=str(f)) for f in families]
    handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor="0.3",
                          color="0.3", label=_CENSORED_LABEL))
    handles.extend(extra)
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), frameon=False, fontsize="small")


def _grid(n_panels: int, ncols: int, width: float = 3.3, height: float = 2.8):
    import matplotlib.pyplot as plt

    ncols = max(1, min(ncols, n_panels))
    nrows = max(1, math.ceil(n_panels / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows + 0.6), layout="constrained",
                             squeeze=False)
    axes = axes.ravel()
    for ax in axes[n_panels:]:
        fig.delaxes(ax)
    return fig, list(axes[:n_panels])


def plot_scatter(frame: pd.DataFrame, estimator: str = "resque_dist", measures: Iterable[str] = MEASURES,
                 *, hue: str = "family", ncols: int = 4):
    """The estimator against each cost, one panel per measure, with a pooled least-squares line.

    Points are coloured by `hue`; runs that did not reach their target are
    hollow (their cost is a lower bound). Each panel is titled with the measure
    and its pooled Spearman rho and n.

    Parameters
    ----------
    frame : pandas.DataFrame
        From :func:`load_records`; rows without the estimator are left out.
    estimator : str, default "resque_dist"
    measures : iterable of str, default :data:`MEASURES`
    hue : str, default "family"
    ncols : int, default 4

    Returns
    -------
    matplotlib.figure.Figure
        With one axes per measure.
    """
    from matplotlib.lines import Line2D

    measures = list(measures)
    _check_column(frame, "estimator", estimator)
    for name in measures:
        _check_column(frame, "measures", name)
    _check_column(frame, "hue", hue)
    runs = frame[np.isfinite(frame[estimator].to_numpy(dtype=float))]
    families = sorted(runs[hue].dropna().unique(), key=str)
    palette = _palette(families)
    fig, axes = _grid(len(measures), ncols)
    for ax, measure in zip(axes, measures):
        x_all = runs[estimator].to_numpy(dtype=float)
        y_all = runs[measure].to_numpy(dtype=float)
        keep = np.isfinite(y_all)
        for family in families:
            mine = keep & (runs[hue] == family).to_numpy()
            _draw_runs(ax, x_all[mine], y_all[mine], runs["censored"].to_numpy(dtype=bool)[mine], palette[family])
        x, y = x_all[keep], y_all[keep]
        title = label_of(measure)
        if len(x) >= 2 and np.unique(x).size >= 2:
            slope, intercept = np.polyfit(x, y, 1)
            grid = np.linspace(x.min(), x.max(), 50)
            ax.plot(grid, intercept + slope * grid, color="0.2", linestyle="--", linewidth=1, zorder=2)
        if len(x) >= 3 and np.unique(x).size >= 2 and np.unique(y).size >= 2:
            rho = _point_estimates(x, y)["spearman"][0]
            title += f"\nρ = {rho:.2f}, n = {len(x)}"
        elif len(x) == 0:
            ax.text(0.5, 0.5, f"no runs with\n{label_of(estimator)}", ha="center", va="center",
                    transform=ax.transAxes, color="0.4")
        else:
            title += f"\nn = {len(x)}"
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel(label_of(estimator))
        ax.set_ylabel(_axis_label(measure))
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    fit = Line2D([], [], color="0.2", linestyle="--", label="least-squares fit (pooled)")
    _legend(fig, families, palette, extra=(fit,))
    return fig


def plot_vs_intensity(frame: pd.DataFrame, estimator: str = "resque_dist",
                      costs: Sequence[str] = ("epochs", "energy_kwh"), *, ncols: int = 3):
    """The estimator and some costs against shift intensity, one line per shift family.

    Lines join the mean over seeds at each intensity; the runs themselves are
    drawn as points (hollow when censored). Intensity scales differ between
    families (see :mod:`resque.data.shifts`), so compare shapes, not positions.

    Parameters
    ----------
    frame : pandas.DataFrame
        From :func:`load_records`; only shift runs (finite intensity) are drawn.
    estimator : str, default "resque_dist"
    costs : sequence of str, default ("epochs", "energy_kwh")
    ncols : int, default 3

    Returns
    -------
    matplotlib.figure.Figure
        With ``1 + len(costs)`` axes.
    """
    columns = [estimator, *costs]
    for name in columns:
        _check_column(frame, "costs" if name != estimator else "estimator", name)
    runs = frame[np.isfinite(frame["intensity"].to_numpy(dtype=float))]
    families = sorted(runs["family"].dropna().unique(), key=str)
    palette = _palette(families)
    fig, axes = _grid(len(columns), ncols)
    for ax, column in zip(axes, columns):
        for family in families:
            mine = runs[runs["family"] == family]
            values = mine[column].to_numpy(dtype=float)
            keep = np.isfinite(values)
            if not keep.any():
                continue
            _draw_runs(ax, mine["intensity"].to_numpy(dtype=float)[keep], values[keep],
                       mine["censored"].to_numpy(dtype=bool)[keep], palette[family], size=16)
            means = mine[keep].groupby("intensity")[column].mean()
            ax.plot(means.index.to_numpy(), means.to_numpy(), color=palette[family], linewidth=1.5)
        if not families:
            ax.text(0.5, 0.5, "no shift runs", ha="center", va="center", transform=ax.transAxes, color="0.4")
        ax.set_title(label_of(column), fontsize="medium")
        ax.set_xlabel("intensity")
        ax.set_ylabel(_axis_label(column))
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    _legend(fig, families, palette)
    return fig


# --------------------------------------------------------------------------- which predictor is best?

#: Predictors of retraining cost stored with each run, and the sign that makes
#: "higher = more retraining predicted" (transferability scores and CKA say
#: "higher = easier", so they enter with -1).
SHIFT_PREDICTORS: dict[str, int] = {
    "resque_dist": 1, "resque_dist_paired": 1, "accuracy_drop": 1, "mmd": 1, "frechet": 1, "cka": -1,
}
TASK_PREDICTORS: dict[str, int] = {
    "resque_task": 1, "resque_task_mean_kmeanspp": 1, "resque_task_flatten_centroids": 1,
    "resque_task_flatten_kmeanspp": 1, "logme": -1, "leep": -1, "nce": -1, "h_score": -1, "gbc": -1,
    "knn_accuracy": -1, "linear_probe_accuracy": -1,
}
PREDICTOR_LABELS = {
    **ESTIMATOR_LABELS,
    "mmd": "MMD (RBF, median heuristic)", "frechet": "Fréchet distance", "cka": "Linear CKA (paired)",
    "logme": "LogME", "leep": "LEEP", "nce": "NCE", "h_score": "H-score", "gbc": "GBC",
    "knn_accuracy": "k-NN accuracy", "linear_probe_accuracy": "Linear-probe accuracy",
}


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

    Each predictor is first oriented by :data:`SHIFT_PREDICTORS` /
    :data:`TASK_PREDICTORS` so that higher always means "more retraining
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
    signs = SHIFT_PREDICTORS if kind == "shift" else TASK_PREDICTORS
    runs = frame[frame["kind"] == kind].copy()
    present = [name for name in signs if name in runs and runs[name].notna().sum() >= 3]
    if runs.empty or not present:
        return pd.DataFrame(columns=["group", "measure", "predictor", "label", "n", "spearman_rho", "rank"])
    oriented = runs.copy()
    for name in present:
        oriented[name] = signs[name] * runs[name]
    measures = [m for m in measures if m in runs]
    corr = correlations(oriented, present, measures, by=by, n_boot=n_boot, seed=seed).copy()
    corr["predictor"] = corr["estimator"]
    corr["label"] = [PREDICTOR_LABELS.get(p, p) for p in corr["predictor"]]
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


def winner_sentences(ranking: pd.DataFrame, what: str) -> str:
    """One plain sentence per measure naming the pooled winner and how far it stands from the rest."""
    if ranking.empty:
        return f"For {what}, too few runs carry these predictors to rank them."
    lines = []
    pooled = ranking[ranking["group"] == "pooled"]
    for measure, rows in pooled.groupby("measure", sort=False):
        rows = rows.dropna(subset=["spearman_rho"]).sort_values("rank")
        if rows.empty:
            continue
        top = rows.iloc[0]
        text = (f"- **{label_of(measure)}**: {top['label']} ranks first, Spearman ρ = {top['spearman_rho']:.2f} "
                f"[{top['spearman_low']:.2f}, {top['spearman_high']:.2f}], pairwise accuracy "
                f"{top['pairwise_accuracy']:.2f}")
        if len(rows) > 1:
            second = rows.iloc[1]
            overlap = second["spearman_high"] >= top["spearman_low"]
            text += (f"; next is {second['label']} at {second['spearman_rho']:.2f}"
                     + (" — the intervals overlap, so the order is not settled." if overlap else "."))
        lines.append(text)
    return f"For {what} ({int(pooled['n'].max())} runs pooled):\n\n" + "\n".join(lines)
