"""Baseline predictors of distribution-shift size, to compare with RESQUE_dist.

Each baseline takes the same inputs as :func:`resque.resque_dist` (a model, the
original and the shifted data, a layer name) and needs one forward pass over
each dataset. The math lives in plain functions on ``(N, D)`` arrays
(:func:`mmd_rbf`, :func:`frechet_distance`, :func:`linear_cka`); the public
model-level functions (:func:`accuracy_drop`, :func:`mmd`, :func:`frechet`,
:func:`cka`, :func:`baseline_scores`) collect mean-pooled embeddings with
:func:`shift_embeddings` and return a :class:`ShiftScore`.

Signs differ between baselines (CKA is a similarity, the others grow with
the shift): each one's sign and reading are in the predictor registry
(:func:`resque.get_predictor`), so an analysis can orient every score the same way.

All statistics are computed in float64 on the CPU after collection, whatever
device the forward pass ran on.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ..index.embedding import ForwardOptions, model_outputs  # the shared forward pass (re-exported here)
from ..errors import DataError, DegenerateEmbeddingError, InvalidParameterError
from ..checks import check_int, check_seed
from ..index.dist import ClassSums, model_digest
from ..index.functional import pool_embedding

__all__ = [
    "METRICS",
    "DatasetPass",
    "ShiftEmbeddings",
    "ShiftScore",
    "accuracy_drop",
    "baseline_scores",
    "cka",
    "dataset_pass",
    "frechet",
    "frechet_distance",
    "frechet_distance_from_moments",
    "linear_cka",
    "median_heuristic",
    "mmd",
    "mmd_rbf",
    "pair_embeddings",
    "pixel_distance",
    "pixel_rms_distance",
    "scores_from",
    "untrained_copy",
    "model_outputs",
    "shift_embeddings",
]

#: Images kept per dataset by default: the kernel methods cost O(N^2) time and memory.
DEFAULT_MAX_IMAGES = 2000


# --------------------------------------------------------------------------------------------
# Collection: one forward pass per dataset, capturing a layer and the model's output
# --------------------------------------------------------------------------------------------


def _as_logits(output, n: int) -> torch.Tensor | None:
    """``(B, K)`` logits if the model output looks like them, else ``None``."""
    if isinstance(output, torch.Tensor) and output.ndim == 2 and output.shape[0] == n:
        return output
    return None


def _subsample_indices(n: int, max_images: int | None, seed: int) -> np.ndarray:
    """Sorted indices of at most `max_images` of `n` items, a function of ``(n, seed)`` only.

    Two datasets of the same length therefore keep the same positions, which
    keeps clean/shifted pairs together for CKA.
    """
    if max_images is None or n <= max_images:
        return np.arange(n)
    generator = torch.Generator().manual_seed(seed)
    return np.sort(torch.randperm(n, generator=generator)[:max_images].numpy())


class ShiftEmbeddings(NamedTuple):
    """What one pass over each dataset gives the baselines.

    Attributes
    ----------
    original, shifted : numpy.ndarray
        ``(N, D)`` and ``(M, D)`` float64 mean-pooled embeddings, subsampled to
        at most ``max_images`` rows each, in dataset order.
    labels_original, labels_shifted : numpy.ndarray
        ``(N,)`` and ``(M,)`` int64 labels of the kept rows.
    logits_original, logits_shifted : numpy.ndarray or None
        ``(N, K)`` / ``(M, K)`` float64 model outputs of the kept rows; ``None``
        when the model does not return a 2-D tensor.
    accuracy_original, accuracy_shifted : float or None
        Top-1 accuracy of the model over ALL images of each dataset (not only
        the kept ones); ``None`` when the model output is not ``(B, K)`` logits.
    n_original, n_shifted : int
        Images in each dataset before subsampling.
    layer : str
    """

    original: np.ndarray
    labels_original: np.ndarray
    shifted: np.ndarray
    labels_shifted: np.ndarray
    logits_original: np.ndarray | None
    logits_shifted: np.ndarray | None
    accuracy_original: float | None
    accuracy_shifted: float | None
    n_original: int
    n_shifted: int
    layer: str


class DatasetPass(NamedTuple):
    """Everything one forward pass over a dataset gives RESQUE_dist and every shift baseline.

    Attributes
    ----------
    embeddings : numpy.ndarray or None
        ``(N, D)`` float64 mean-pooled embeddings of every image, in dataset order.
    labels : numpy.ndarray
        ``(N,)`` int64.
    logits : numpy.ndarray or None
        ``(N, K)`` float64 model outputs; ``None`` when the model does not return 2-D logits.
    accuracy : float or None
        Top-1 accuracy over all images (``None`` without logits).
    class_sums : ClassSums or None
        RESQUE_dist's per-class sums of the same embeddings (with the model's
        digest), exactly what :func:`resque.resque_dist` accumulates.
    layer : str or None
    """

    embeddings: np.ndarray | None
    labels: np.ndarray
    logits: np.ndarray | None
    accuracy: float | None
    class_sums: ClassSums | None
    layer: str | None

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])


def _pass(model, data, layer, name, forward: ForwardOptions) -> DatasetPass:
    embeddings, labels_seen, logits_seen = [], [], []
    correct, total, have_logits = 0, 0, True
    sums = ClassSums(layer=layer or "", model_digest=model_digest(model)) if layer is not None else None
    for layer_output, output, labels in model_outputs(model, data, layer, name=name, forward=forward):
        n = labels.shape[0]
        if layer_output is not None:
            pooled = pool_embedding(layer_output, "mean")
            sums.update(pooled, labels)
            embeddings.append(pooled.detach().to("cpu", torch.float64))
        labels_seen.append(labels.cpu())
        logits = _as_logits(output, n) if have_logits else None
        if logits is None:
            have_logits = False
        else:
            if n and int(labels.max()) >= logits.shape[1]:
                raise DataError(
                    f"`{name}` has label {int(labels.max())} but the model outputs {logits.shape[1]} "
                    "scores per image; labels must index the model's classes."
                )
            correct += int((logits.argmax(dim=1) == labels).sum())
            logits_seen.append(logits.detach().to("cpu", torch.float64))
        total += n
    if sums is not None:
        sums.sums, sums.counts = sums.sums.cpu(), sums.counts.cpu()
    return DatasetPass(
        torch.cat(embeddings).numpy() if embeddings else None, torch.cat(labels_seen).numpy(),
        torch.cat(logits_seen).numpy() if have_logits else None, correct / total if have_logits else None,
        sums, layer,
    )


def dataset_pass(
    model: nn.Module,
    data,
    layer: str | None,
    *,
    name: str = "data",
    device=None,
    batch_size: int | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> DatasetPass:
    """One forward pass over `data` that serves RESQUE_dist and every shift baseline.

    Give its ``class_sums`` to :func:`resque.resque_dist` (which then runs no
    pass of its own) and pairs of passes to :func:`pair_embeddings` for the
    baselines, so that scoring a shift with all of them reads each dataset once.

    Parameters
    ----------
    model, data, layer
        As in :func:`resque.resque_dist`; `layer` may be None to collect only
        labels, logits and accuracy.
    name : str
        How `data` is called in messages and on the progress bar.
    device, batch_size, num_workers, progress
        As in :func:`resque.resque_dist`.
    """
    forward = ForwardOptions(device=device, batch_size=batch_size, num_workers=num_workers, progress=progress)
    return _pass(model, data, layer, name, forward)


def pair_embeddings(original: DatasetPass, shifted: DatasetPass, *, max_images: int | None = DEFAULT_MAX_IMAGES,
                    seed: int = 0) -> ShiftEmbeddings:
    """The :class:`ShiftEmbeddings` of two passes, each subsampled as :func:`shift_embeddings` does."""
    max_images, seed = _check_sampling(max_images, seed)
    if original.embeddings is not None and shifted.embeddings is not None \
            and original.embeddings.shape[1] != shifted.embeddings.shape[1]:
        raise DataError(
            f"Embedding widths differ: {original.embeddings.shape[1]} (original) vs {shifted.embeddings.shape[1]} "
            "(shifted); both must come from the same layer of the same model."
        )

    def kept(part: DatasetPass):
        keep = _subsample_indices(part.n, max_images, seed)
        return (part.embeddings[keep] if part.embeddings is not None else None, part.labels[keep],
                part.logits[keep] if part.logits is not None else None)

    (emb_o, lab_o, log_o), (emb_s, lab_s, log_s) = kept(original), kept(shifted)
    return ShiftEmbeddings(emb_o, lab_o, emb_s, lab_s, log_o, log_s, original.accuracy, shifted.accuracy,
                           original.n, shifted.n, original.layer)


def _check_sampling(max_images, seed) -> tuple[int | None, int]:
    if max_images is not None:
        max_images = check_int("max_images", max_images, minimum=2, allowed="an integer >= 2, or None to keep every image")
    return max_images, check_seed(seed)


def shift_embeddings(
    model: nn.Module,
    original,
    shifted,
    layer: str,
    *,
    max_images: int | None = DEFAULT_MAX_IMAGES,
    seed: int = 0,
    device=None,
    batch_size: int | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> ShiftEmbeddings:
    """Mean-pooled embeddings and model outputs of both datasets, one pass each.

    Parameters
    ----------
    model : torch.nn.Module
        The trained source model; run in ``eval()`` without gradients, its mode
        and device restored afterwards.
    original, shifted : Dataset or DataLoader yielding ``(image, label)``
    layer : str
        Name from ``model.named_modules()``; its output is averaged over space
        (conv) or tokens (transformer) into one ``D``-vector per image.
    max_images : int or None, default 2000
        Keep at most this many images per dataset, drawn without replacement by
        a generator seeded with `seed` (the kernel baselines cost O(N^2)).
        ``None`` keeps all. Datasets of equal length keep the same positions.
    seed : int, default 0
    device, batch_size, num_workers, progress
        As in :func:`resque.resque_dist`.

    Returns
    -------
    ShiftEmbeddings
        Embeddings ``(N, D)`` / ``(M, D)`` float64, labels, logits and accuracies.

    Examples
    --------
    >>> e = shift_embeddings(model, clean_set, noisy_set, "features")  # doctest: +SKIP
    >>> mmd_rbf(e.original, e.shifted)                                 # doctest: +SKIP
    """
    max_images, seed = _check_sampling(max_images, seed)
    forward = ForwardOptions(device=device, batch_size=batch_size, num_workers=num_workers, progress=progress)
    o = _pass(model, original, layer, "original", forward)
    s = _pass(model, shifted, layer, "shifted", forward)
    return pair_embeddings(o, s, max_images=max_images, seed=seed)


# --------------------------------------------------------------------------------------------
# Functional cores on (N, D) arrays
# --------------------------------------------------------------------------------------------


def _as_matrix(x, name: str, min_rows: int = 2) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise DataError(
            f"`{name}` has shape {x.shape}; expected a 2-D (N, D) array of embeddings "
            "(reshape a single vector with x.reshape(1, -1), pool conv outputs first)."
        )
    if x.shape[0] < min_rows:
        raise DataError(f"`{name}` has {x.shape[0]} rows; this statistic needs at least {min_rows} samples.")
    if not np.isfinite(x).all():
        raise DataError(f"`{name}` contains NaN or Inf values; clean the embeddings first.")
    return x


def _same_width(x: np.ndarray, y: np.ndarray) -> None:
    if x.shape[1] != y.shape[1]:
        raise DataError(f"The samples have different widths ({x.shape[1]} vs {y.shape[1]}); they must share D.")


def median_heuristic(x, y=None) -> float:
    """Median pairwise Euclidean distance of the pooled sample (Gretton et al., 2012).

    Parameters
    ----------
    x : array_like or torch.Tensor
        ``(N, D)`` sample.
    y : array_like or torch.Tensor, optional
        ``(M, D)`` second sample, pooled with `x`.

    Returns
    -------
    float
        The median over the ``P (P - 1) / 2`` distinct pairs (``P = N + M``),
        with the :func:`numpy.median` convention (mean of the two middle values
        for an even count). If that median is 0 (most points coincide), the
        median of the non-zero distances is used; if every point coincides, 1.0.

    References
    ----------
    A. Gretton, K. Borgwardt, M. Rasch, B. Schölkopf, A. Smola. "A Kernel
    Two-Sample Test." JMLR 13 (2012), section 8.
    """
    pooled = _as_matrix(x, "x")
    if y is not None:
        y = _as_matrix(y, "y")
        _same_width(pooled, y)
        pooled = np.concatenate([pooled, y])
    return _median_of(_upper_sq_distances(pooled), pooled)


#: Rows of the pooled sample per block of :class:`_UpperDistances`: a block's products, distances and
#: kernel values are computed while they are in cache, and only pairs above the diagonal are computed.
_BLOCK_ROWS = 256


@functools.lru_cache(maxsize=4)
def _on_or_below_diagonal(rows: int) -> np.ndarray:
    """``(rows, rows)`` mask of the entries on and below the diagonal (read only)."""
    mask = np.tril(np.ones((rows, rows), dtype=bool))
    mask.flags.writeable = False
    return mask


@dataclass
class _UpperDistances:
    """Squared Euclidean distances of every pair ``i < j`` of a pooled sample, by blocks of rows.

    ``blocks[k] = (start, stop, values)``: rows ``start:stop`` against columns
    ``start:P``, shape ``(stop - start, P - start)``, in float64. In each
    block's first ``stop - start`` columns (its square on the diagonal) the
    entries on and below the diagonal are ``+inf``: a count below a threshold,
    a band of values and ``exp(-gamma d)`` (which is 0 there) all leave them
    out, so each pair counts once. `largest` is the largest distance of a pair.
    """

    size: int
    blocks: list
    largest: float

    @property
    def pairs(self) -> int:
        return self.size * (self.size - 1) // 2

    def values(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The distances of pairs ``rows[k] < cols[k]``."""
        out = np.empty(rows.shape[0])
        for start, stop, block in self.blocks:
            inside = (rows >= start) & (rows < stop)
            out[inside] = block[rows[inside] - start, cols[inside] - start]
        return out

    def every_pair(self) -> np.ndarray:
        """All ``P (P - 1) / 2`` distances, in no particular order (a copy)."""
        return np.concatenate([block[np.isfinite(block)] for _, _, block in self.blocks])


def _upper_sq_distances(pooled: np.ndarray, split: int | None = None) -> _UpperDistances:
    """:class:`_UpperDistances` of the rows of `pooled`, from Gram products of blocks of rows.

    ``||a||^2 + ||b||^2 - 2 a.b`` in float64 (BLAS products, many times faster
    than pairwise loops, and half of the whole matrix); round-off below zero is
    clipped. No block of rows straddles `split` (the first sample's end, for
    :func:`_mmd_and_bandwidth`).
    """
    size = pooled.shape[0]
    norms = np.einsum("ij,ij->i", pooled, pooled)
    cut = split if split is not None and 0 < split < size else size
    edges = [*range(0, cut, _BLOCK_ROWS), *range(cut, size, _BLOCK_ROWS), size]
    blocks, largest = [], 0.0
    for start, stop in zip(edges[:-1], edges[1:]):
        block = pooled[start:stop] @ pooled[start:].T  # (rows, P - start)
        block *= -2.0
        block += norms[start:stop, None]
        block += norms[None, start:]
        np.maximum(block, 0.0, out=block)
        largest = max(largest, float(block.max(initial=0.0)))  # the square's lower half repeats pairs above
        square = block[:, : stop - start]
        square[_on_or_below_diagonal(stop - start)] = np.inf
        blocks.append((start, stop, block))
    return _UpperDistances(size, blocks, largest)


#: Above this many pairs, :func:`_middle_of_upper` selects within a band around the median.
_BAND_FROM_PAIRS = 1_000_000


def _middle_of_upper(distances: _UpperDistances) -> tuple[float, float]:
    """The two middle order statistics of the distances of every pair (equal for an odd count).

    Exact. For many pairs it avoids gathering and partitioning all of them: a
    seeded random sample of pairs brackets the median in a narrow band, one
    pass over the blocks counts the pairs below the band and gathers those
    inside it, and the order statistics are selected from that band; if the
    band misses them (it never should: the band is about nine sampling errors
    wide), every pair is partitioned as for a few pairs.
    """
    size, count = distances.size, distances.pairs
    middle = ((count - 1) // 2, count // 2)
    if count <= _BAND_FROM_PAIRS:
        return tuple(float(v) for v in np.partition(distances.every_pair(), middle)[list(middle)])
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, size, 400_000), rng.integers(0, size, 400_000)
    above = rows < cols
    low, high = np.quantile(distances.values(rows[above], cols[above]), [0.49, 0.51])
    below, band = 0, []
    for _, _, block in distances.blocks:  # +inf (a pair already counted) is neither below nor in the band
        below += int(np.count_nonzero(block < low))
        inside = block >= low
        inside &= block <= high
        band.append(block[inside])
    band = np.concatenate(band)
    if below <= middle[0] and below + band.size > middle[1]:
        wanted = [middle[0] - below, middle[1] - below]
        return tuple(float(v) for v in np.partition(band, wanted)[wanted])
    return tuple(float(v) for v in np.partition(distances.every_pair(), middle)[list(middle)])


def _median_of(distances: _UpperDistances, pooled: np.ndarray) -> float:
    """The median pairwise distance (numpy's convention) from the :func:`_upper_sq_distances` of `pooled`.

    Squared distances order as the distances do, so the median is read off the
    ``P (P - 1) / 2`` squared distances (numpy's convention: the mean of the
    two middle distances for an even count). A median at round-off level
    means most points coincide: then the exact pairwise distances decide
    (their zeros are exact), as documented above.
    """
    low, high = _middle_of_upper(distances)
    median = (np.sqrt(low) + np.sqrt(high)) / 2.0
    if median ** 2 > 1e-9 * distances.largest:
        return float(median)
    from scipy.spatial.distance import pdist  # scipy comes with scikit-learn; imported when used

    distances = pdist(pooled)  # (P (P - 1) / 2,), exact zeros for coinciding points
    median = float(np.median(distances))
    if median > 0:
        return median
    positive = distances[distances > 0]
    return float(np.median(positive)) if positive.size else 1.0


def mmd_rbf(x, y, bandwidth: float | None = None) -> float:
    """Unbiased squared maximum mean discrepancy with a Gaussian RBF kernel.

    ``k(a, b) = exp(-||a - b||^2 / (2 sigma^2))`` and

    ``MMD_u^2 = 1/(m(m-1)) sum_{i != j} k(x_i, x_j) + 1/(n(n-1)) sum_{i != j} k(y_i, y_j)
    - 2/(mn) sum_{i, j} k(x_i, y_j)``  (Gretton et al., 2012, Lemma 6).

    Parameters
    ----------
    x : array_like or torch.Tensor
        ``(m, D)`` sample, ``m >= 2``.
    y : array_like or torch.Tensor
        ``(n, D)`` sample, ``n >= 2``.
    bandwidth : float, optional
        ``sigma``. Default: :func:`median_heuristic` of the pooled sample.

    Returns
    -------
    float
        The estimate. Being unbiased it is 0 on average when both samples come
        from the same distribution, so it can be slightly NEGATIVE (including for
        a sample compared with itself: the diagonal terms ``k(x_i, x_i) = 1`` are
        left out of the within-sample sums but not of the cross sum).

    References
    ----------
    A. Gretton, K. Borgwardt, M. Rasch, B. Schölkopf, A. Smola. "A Kernel
    Two-Sample Test." JMLR 13 (2012), eq. (3) and Lemma 6.
    """
    x, y = _as_matrix(x, "x"), _as_matrix(y, "y")
    _same_width(x, y)
    if bandwidth is not None and (isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float))
                                  or not bandwidth > 0 or not np.isfinite(bandwidth)):
        raise InvalidParameterError("bandwidth", bandwidth, "a positive finite number, or None for the median heuristic")
    return _mmd_and_bandwidth(x, y, bandwidth)[0]


def _mmd_and_bandwidth(x: np.ndarray, y: np.ndarray, bandwidth: float | None) -> tuple[float, float]:
    """:func:`mmd_rbf` and the bandwidth it used, from one set of pooled distances (median included).

    Each pair is computed once (:func:`_upper_sq_distances`), so the sums over
    ``i != j`` within a sample are twice the sums over ``i < j``.
    """
    m, n = x.shape[0], y.shape[0]
    pooled = np.concatenate([x, y])
    distances = _upper_sq_distances(pooled, split=m)
    if bandwidth is None:
        bandwidth = _median_of(distances, pooled)
    gamma = 1.0 / (2.0 * float(bandwidth) ** 2)
    within_x = within_y = cross = 0.0
    for start, _, block in distances.blocks:
        # In place: the distances are not needed again, and fresh memory pages would cost as much as the
        # exponentials themselves. A pair counted in another block is +inf here, and its kernel value 0.
        # torch shares the block's memory and spreads the exponentials over the cores (numpy's use one):
        # a quarter of the time on 2 cores, each value within an ulp of numpy's.
        kernel = torch.from_numpy(block)
        kernel.mul_(-gamma)
        kernel.exp_()
        if start < m:  # rows of x: columns start..m-1 are x, the rest y
            within_x += float(block[:, : m - start].sum())
            cross += float(block[:, m - start:].sum())
        else:
            within_y += float(block.sum())
    return (float(2.0 * within_x / (m * (m - 1)) + 2.0 * within_y / (n * (n - 1)) - 2.0 * cross / (m * n)),
            float(bandwidth))


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix (negative round-off eigenvalues -> 0)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance_from_moments(mu_x, cov_x, mu_y, cov_y) -> float:
    """Fréchet (2-Wasserstein) distance between N(mu_x, cov_x) and N(mu_y, cov_y), squared.

    ``||mu_x - mu_y||^2 + Tr(S_x + S_y - 2 (S_x S_y)^{1/2})``. The trace of the
    matrix square root is computed stably as the sum of the square roots of the
    eigenvalues of the symmetric PSD matrix ``S_x^{1/2} S_y S_x^{1/2}`` (same
    eigenvalues as ``S_x S_y``), with negative round-off eigenvalues set to 0, so
    no complex parts appear and singular covariances (``N <= D``) are fine.

    Parameters
    ----------
    mu_x, mu_y : array_like
        ``(D,)`` means.
    cov_x, cov_y : array_like
        ``(D, D)`` symmetric positive semi-definite covariances.

    Returns
    -------
    float
        ``>= 0`` up to round-off. With singular covariances the square roots of
        round-off eigenvalues (~1e-16 relative) leave errors of order 1e-8 per
        dimension relative to the covariance scale, so identical samples give
        about 0, possibly slightly negative.

    References
    ----------
    D. C. Dowson, B. V. Landau. "The Fréchet distance between multivariate normal
    distributions." J. Multivariate Analysis 12 (1982). M. Heusel et al. "GANs
    Trained by a Two Time-Scale Update Rule Converge to a Local Nash
    Equilibrium." NeurIPS 2017 (the FID).
    """
    mu_x, mu_y = np.asarray(mu_x, np.float64), np.asarray(mu_y, np.float64)
    cov_x, cov_y = np.asarray(cov_x, np.float64), np.asarray(cov_y, np.float64)
    d = mu_x.shape[0]
    if mu_x.shape != (d,) or mu_y.shape != (d,) or cov_x.shape != (d, d) or cov_y.shape != (d, d):
        raise DataError(
            f"Moment shapes do not fit: means {mu_x.shape}, {mu_y.shape}; covariances {cov_x.shape}, "
            f"{cov_y.shape}; expected (D,) means and (D, D) covariances with one D."
        )
    root_x = _psd_sqrt(cov_x)
    middle = root_x @ cov_y @ root_x  # (D, D), symmetric PSD
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())
    mean_term = float(((mu_x - mu_y) ** 2).sum())
    return mean_term + float(np.trace(cov_x) + np.trace(cov_y)) - 2.0 * trace_sqrt


def frechet_distance(x, y, eps: float = 0.0) -> float:
    """Fréchet distance between Gaussians fitted to two samples (FID-style).

    Parameters
    ----------
    x : array_like or torch.Tensor
        ``(N, D)`` sample, ``N >= 2``.
    y : array_like or torch.Tensor
        ``(M, D)`` sample, ``M >= 2``.
    eps : float, default 0.0
        Ridge added to both covariances' diagonals. The eigenvalue formulation of
        :func:`frechet_distance_from_moments` handles singular covariances (e.g.
        ``N <= D``) without it, so the default adds nothing; a small ``eps``
        only stabilises comparisons between very small samples, and adds
        ``2 D eps - 2 Tr((...)^{1/2})`` changes of order ``eps``.

    Returns
    -------
    float
        ``||mu_x - mu_y||^2 + Tr(S_x + S_y - 2 (S_x S_y)^{1/2})`` with sample
        means and unbiased (``N - 1``) sample covariances.

    References
    ----------
    Dowson & Landau (1982); Heusel et al., NeurIPS 2017 (see
    :func:`frechet_distance_from_moments`).
    """
    x, y = _as_matrix(x, "x"), _as_matrix(y, "y")
    _same_width(x, y)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0 or not np.isfinite(eps):
        raise InvalidParameterError("eps", eps, "a non-negative finite number")
    ridge = eps * np.eye(x.shape[1])
    cov_x = np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1]) + ridge
    cov_y = np.cov(y, rowvar=False).reshape(y.shape[1], y.shape[1]) + ridge
    return frechet_distance_from_moments(x.mean(axis=0), cov_x, y.mean(axis=0), cov_y)


def linear_cka(x, y) -> float:
    """Linear centred kernel alignment between paired representations.

    ``CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` on column-centred
    ``X`` and ``Y``, whose row ``i`` must describe the same image.

    Parameters
    ----------
    x : array_like or torch.Tensor
        ``(N, D1)`` representations.
    y : array_like or torch.Tensor
        ``(N, D2)`` representations of the same ``N`` images in the same order
        (``D2`` may differ from ``D1``).

    Returns
    -------
    float
        A SIMILARITY in ``[0, 1]``: 1 when ``Y`` is an orthogonal transform times
        a scalar of ``X`` (plus a shift); invariant to those, not to general
        invertible linear maps. ``1 - CKA`` is a shift size.

    Raises
    ------
    DataError
        Different row counts, or fewer than 2 rows.
    DegenerateEmbeddingError
        A representation is constant over images (zero after centring).

    References
    ----------
    S. Kornblith, M. Norouzi, H. Lee, G. Hinton. "Similarity of Neural Network
    Representations Revisited." ICML 2019, eq. (5) and section 3.
    """
    x, y = _as_matrix(x, "x"), _as_matrix(y, "y")
    if x.shape[0] != y.shape[0]:
        raise DataError(
            f"Linear CKA compares paired rows, but x has {x.shape[0]} and y has {y.shape[0]}; pass the "
            "same images in the same order (clean and shifted)."
        )
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    norm_x = np.linalg.norm(x.T @ x)  # Frobenius of (D1, D1)
    norm_y = np.linalg.norm(y.T @ y)  # Frobenius of (D2, D2)
    if norm_x == 0 or norm_y == 0:
        raise DegenerateEmbeddingError(
            "A representation is the same for every image (zero after centring), so CKA is undefined; "
            "choose another layer or more varied images."
        )
    return float(np.linalg.norm(y.T @ x) ** 2 / (norm_x * norm_y))


# --------------------------------------------------------------------------------------------
# Public model-level baselines
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShiftScore:
    """One baseline's value. ``float(score)`` is the value; its sign: ``ShiftScore.direction``.

    Attributes
    ----------
    metric : str
        ``"accuracy_drop"``, ``"mmd"``, ``"frechet"`` or ``"cka"``.
    value : float
    layer : str or None
        The layer the embeddings come from (``None`` for ``accuracy_drop``).
    n_original, n_shifted : int
        Images used from each dataset (after subsampling, except for accuracy).
    details : dict
        Metric-specific numbers (accuracies, bandwidth, ...).
    """

    metric: str
    value: float
    layer: str | None
    n_original: int
    n_shifted: int
    details: dict = field(default_factory=dict)

    def __float__(self) -> float:
        return self.value

    @property
    def direction(self) -> str:
        """How to read the value (from the predictor registry)."""
        from .registry import get_predictor

        return get_predictor(self.metric).reading


def _accuracy_score(e: ShiftEmbeddings) -> ShiftScore:
    if e.accuracy_original is None or e.accuracy_shifted is None:
        raise DataError(
            "The model does not return (B, K) class scores, so its accuracy is undefined; "
            "accuracy_drop needs a classifier whose output is a 2-D logits tensor."
        )
    return ShiftScore(
        "accuracy_drop", e.accuracy_original - e.accuracy_shifted, e.layer, e.n_original, e.n_shifted,
        {"accuracy_original": e.accuracy_original, "accuracy_shifted": e.accuracy_shifted},
    )


def _mmd_score(e: ShiftEmbeddings, bandwidth) -> ShiftScore:
    if bandwidth is not None:
        value, sigma = mmd_rbf(e.original, e.shifted, bandwidth), bandwidth
    else:  # one matrix of distances gives the median heuristic and the kernel
        value, sigma = _mmd_and_bandwidth(_as_matrix(e.original, "original"), _as_matrix(e.shifted, "shifted"), None)
    return ShiftScore("mmd", value, e.layer, len(e.original), len(e.shifted), {"bandwidth": float(sigma)})


def _frechet_score(e: ShiftEmbeddings, eps) -> ShiftScore:
    value = frechet_distance(e.original, e.shifted, eps)
    return ShiftScore("frechet", value, e.layer, len(e.original), len(e.shifted), {"eps": eps})


def _cka_score(e: ShiftEmbeddings) -> ShiftScore:
    if e.n_original != e.n_shifted:
        raise DataError(
            f"cka compares the same images clean and shifted, but `original` has {e.n_original} images and "
            f"`shifted` {e.n_shifted}; pass paired datasets (the shifted one made from the original, same order)."
        )
    if not np.array_equal(e.labels_original, e.labels_shifted):
        first = int(np.flatnonzero(e.labels_original != e.labels_shifted)[0])
        raise DataError(
            f"cka compares the same images clean and shifted, but the labels differ (first at kept row {first}); "
            "pass paired datasets in the same order, without shuffling."
        )
    value = linear_cka(e.original, e.shifted)
    return ShiftScore("cka", value, e.layer, len(e.original), len(e.shifted), {"shift": 1.0 - value})


def accuracy_drop(
    model: nn.Module,
    original,
    shifted,
    *,
    device=None,
    batch_size: int | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> ShiftScore:
    """Source-model top-1 accuracy on `original` minus that on `shifted`.

    Higher means a larger (more harmful) shift; negative when the model does
    better on the shifted data. Uses every image (no subsampling). The classic
    supervised yardstick of shift severity, e.g. D. Hendrycks, T. Dietterich,
    "Benchmarking Neural Network Robustness to Common Corruptions and
    Perturbations", ICLR 2019.

    Parameters
    ----------
    model : torch.nn.Module
        A classifier whose output is ``(B, K)`` class scores; labels index them.
    original, shifted : Dataset or DataLoader yielding ``(image, label)``
    device, batch_size, num_workers, progress
        As in :func:`resque.resque_dist`.

    Returns
    -------
    ShiftScore
        ``float(score)`` in ``[-1, 1]``; ``details`` holds both accuracies.
    """
    forward = ForwardOptions(device=device, batch_size=batch_size, num_workers=num_workers, progress=progress)
    o = _pass(model, original, None, "original", forward)
    s = _pass(model, shifted, None, "shifted", forward)
    return _accuracy_score(pair_embeddings(o, s, max_images=None))


def mmd(
    model: nn.Module,
    original,
    shifted,
    layer: str,
    *,
    bandwidth: float | None = None,
    max_images: int | None = DEFAULT_MAX_IMAGES,
    seed: int = 0,
    device=None,
    batch_size: int | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> ShiftScore:
    """Unbiased squared RBF-kernel MMD between the datasets' pooled embeddings at `layer`.

    See :func:`mmd_rbf` (Gretton et al., JMLR 2012). Higher = larger shift;
    values near 0, possibly slightly negative, mean no detectable shift.

    Parameters
    ----------
    model, original, shifted, layer
        As in :func:`resque.resque_dist`.
    bandwidth : float, optional
        Kernel width; default the median heuristic (``details["bandwidth"]``).
    max_images, seed, device, batch_size, num_workers, progress
        As in :func:`shift_embeddings`.

    Returns
    -------
    ShiftScore
    """
    e = shift_embeddings(
        model, original, shifted, layer, max_images=max_images, seed=seed,
        device=device, batch_size=batch_size, num_workers=num_workers, progress=progress,
    )
    return _mmd_score(e, bandwidth)


def frechet(
    model: nn.Module,
    original,
    shifted,
    layer: str,
    *,
    eps: float = 0.0,
    max_images: int | None = DEFAULT_MAX_IMAGES,
    seed: int = 0,
    device=None,
    batch_size: int | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> ShiftScore:
    """Fréchet distance between Gaussians fitted to the pooled embeddings at `layer`.

    See :func:`frechet_distance` (Dowson & Landau 1982; Heusel et al. 2017).
    Higher = larger shift.

    Parameters
    ----------
    model, original, shifted, layer
        As in :func:`resque.resque_dist`.
    eps : float, default 0.0
        Covariance ridge, see :func:`frechet_distance`.
    max_images, seed, device, batch_size, num_workers, progress
        As in :func:`shift_embeddings`.

    Returns
    -------
    ShiftScore
    """
    e = shift_embeddings(
        model, original, shifted, layer, max_images=max_images, seed=seed,
        device=device, batch_size=batch_size, num_workers=num_workers, progress=progress,
    )
    return _frechet_score(e, eps)


def cka(
    model: nn.Module,
    clean,
    shifted,
    layer: str,
    *,
    max_images: int | None = DEFAULT_MAX_IMAGES,
    seed: int = 0,
    device=None,
    batch_size: int | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> ShiftScore:
    """Linear CKA between embeddings of the same images, clean and shifted.

    See :func:`linear_cka` (Kornblith et al., ICML 2019). The value is a
    SIMILARITY: 1 = representations unchanged, so higher = SMALLER shift;
    ``details["shift"]`` holds ``1 - CKA``.

    Parameters
    ----------
    model, layer
        As in :func:`resque.resque_dist`.
    clean, shifted : Dataset or DataLoader
        Paired data: image ``i`` of `shifted` is image ``i`` of `clean` after the
        shift, so both have the same length and labels in the same order.
    max_images, seed, device, batch_size, num_workers, progress
        As in :func:`shift_embeddings`; the same positions are kept in both.

    Returns
    -------
    ShiftScore

    Raises
    ------
    DataError
        The datasets differ in length or labels (not paired).
    """
    e = shift_embeddings(
        model, clean, shifted, layer, max_images=max_images, seed=seed,
        device=device, batch_size=batch_size, num_workers=num_workers, progress=progress,
    )
    return _cka_score(e)


# --------------------------------------------------------------------------------------------
# Baselines without a trained model: how far the pixels moved, and RESQUE from an untrained network
# --------------------------------------------------------------------------------------------


def pixel_rms_distance(clean, shifted) -> float:
    """Root-mean-square pixel difference between paired images: ``sqrt(mean((x - x')^2))``.

    A model-free baseline: how far the shift moved the images themselves, on the
    ``[0, 1]`` scale (0: unchanged; 1: every pixel flipped from black to white).

    Parameters
    ----------
    clean, shifted : torch.Tensor or array_like
        ``(N, C, H, W)`` (any shape, the same for both): image ``i`` of
        `shifted` is image ``i`` of `clean` after the shift.
    """
    x = torch.as_tensor(clean, dtype=torch.float64)
    y = torch.as_tensor(shifted, dtype=torch.float64)
    if x.shape != y.shape:
        raise DataError(f"pixel distance compares paired images, but the shapes differ: {tuple(x.shape)} and "
                        f"{tuple(y.shape)}; pass the shifted images made from `clean`, in the same order.")
    if x.numel() == 0:
        raise DataError("pixel distance needs at least one image; both inputs are empty.")
    return float(torch.sqrt(torch.mean((x - y) ** 2)))


def pixel_distance(model, clean, shifted, layer=None, *, batch_size: int = 1024, **_options) -> float:
    """:func:`pixel_rms_distance` of two paired datasets (`model` and `layer` are not used: no model is involved)."""
    from ..cost.training import as_tensors

    x, y = as_tensors(clean, "clean", batch_size), as_tensors(shifted, "shifted", batch_size)
    if not torch.equal(x.labels, y.labels):
        raise DataError("pixel distance compares the same images clean and shifted, but the labels differ; "
                        "pass paired datasets in the same order, without shuffling.")
    return pixel_rms_distance(x.images, y.images)


def untrained_copy(model: nn.Module, seed: int = 0) -> nn.Module:
    """A freshly initialised network of `model`'s architecture (a registry model's name and arguments).

    The negative control of RESQUE: the same index from a network that learnt
    nothing says how much of RESQUE's signal comes from the training. Built
    with `seed`, in ``eval()`` mode, on `model`'s device.
    """
    from ..index.embedding import model_device
    from ..models.zoo import create_model

    config = getattr(model, "resque_config", None)
    if not config:
        raise DataError(
            "An untrained copy needs the model's registry name and arguments (model.resque_config), which "
            f"{type(model).__name__} lacks; build the model with resque.create_model or load it with load_checkpoint."
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = create_model(config["name"], **config.get("kwargs", {}))
    return fresh.to(model_device(model)).eval()


def baseline_scores(
    model: nn.Module,
    original,
    shifted,
    layer: str,
    *,
    metrics=("accuracy_drop", "mmd", "frechet"),
    bandwidth: float | None = None,
    eps: float = 0.0,
    max_images: int | None = DEFAULT_MAX_IMAGES,
    seed: int = 0,
    device=None,
    batch_size: int | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> dict[str, ShiftScore]:
    """Several baselines from ONE forward pass over each dataset.

    Parameters
    ----------
    model, original, shifted, layer
        As in :func:`resque.resque_dist`.
    metrics : sequence of str, default ("accuracy_drop", "mmd", "frechet")
        Any of :data:`METRICS`; add ``"cka"`` for paired data.
    bandwidth, eps
        See :func:`mmd` and :func:`frechet`.
    max_images, seed, device, batch_size, num_workers, progress
        As in :func:`shift_embeddings`.

    Returns
    -------
    dict[str, ShiftScore]
        In the order of `metrics`; the same values as the single-metric functions.
    """
    metrics = _check_metrics(metrics)
    e = shift_embeddings(
        model, original, shifted, layer, max_images=max_images, seed=seed,
        device=device, batch_size=batch_size, num_workers=num_workers, progress=progress,
    )
    return scores_from(e, metrics, bandwidth=bandwidth, eps=eps)


def _check_metrics(metrics) -> tuple[str, ...]:
    metrics = (metrics,) if isinstance(metrics, str) else tuple(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise InvalidParameterError("metrics", unknown[0] if unknown else metrics, METRICS)
    return metrics


def scores_from(e: ShiftEmbeddings, metrics=("accuracy_drop", "mmd", "frechet"), *,
                bandwidth: float | None = None, eps: float = 0.0) -> dict[str, ShiftScore]:
    """The baselines of `metrics` from embeddings already collected (:func:`pair_embeddings`); no pass."""
    metrics = _check_metrics(metrics)
    settings = {"mmd": {"bandwidth": bandwidth}, "frechet": {"eps": eps}}
    return {m: _SCORERS[m](e, **settings.get(m, {})) for m in metrics}


#: Each baseline from the embeddings of one pass (signs and labels: resque.predictors.registry).
_SCORERS = {"accuracy_drop": _accuracy_score, "mmd": _mmd_score, "frechet": _frechet_score, "cka": _cka_score}
#: The metric names :func:`baseline_scores` accepts.
METRICS = tuple(_SCORERS)
