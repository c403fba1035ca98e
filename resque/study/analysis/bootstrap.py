"""Correlations of every bootstrap resample at once, as weighted statistics.

A resample is represented by how many times it draws each run (a weight), so
all resamples are computed together, exactly equal to the statistics of the
duplicated samples (ties included, as scipy counts them). With several seeds,
whole seeds are resampled (a cluster bootstrap): the runs of one seed share a
source model and a data split and are not independent.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import stats

__all__ = ["bootstrap_statistics", "draw_weights", "point_estimates"]


def _tie_codes(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Index of each value among the sorted distinct values, and their number."""
    distinct, codes = np.unique(values, return_inverse=True)
    return codes.ravel(), len(distinct)


def _weighted_pearson(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Pearson r of each resample; x, y (n,) or (B, n), weights w (B, n). NaN where a variance is 0."""
    total = w.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):  # a resample that drew none of these runs: NaN
        dx = x - (w * x).sum(axis=1, keepdims=True) / total  # (B, n)
        dy = y - (w * y).sum(axis=1, keepdims=True) / total
        cov = (w * dx * dy).sum(axis=1)
        var = (w * dx * dx).sum(axis=1) * (w * dy * dy).sum(axis=1)
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


def draw_weights(clusters: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap weights (n_boot, n): each resample draws as many clusters as there are, with replacement."""
    labels, index = np.unique(clusters, return_inverse=True)
    k = len(labels)
    cluster_counts = rng.multinomial(k, np.full(k, 1.0 / k), size=n_boot)  # (B, k)
    return cluster_counts[:, index.ravel()].astype(float)  # each run weighs what its cluster was drawn


def point_estimates(x: np.ndarray, y: np.ndarray) -> dict[str, tuple[float, float]]:
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
