"""The mathematics of RESQUE as plain functions on tensors.

Nothing here touches a model or a data loader: `embedding.py` produces the
embeddings, the estimator modules (`dist.py`, `task.py`) hold state and call
these functions. Keeping the math separate lets the tests check it against a
slow reference written independently.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import DataError, DegenerateEmbeddingError, InvalidParameterError

__all__ = [
    "POOLS",
    "pool_embedding",
    "accumulate_class_sums",
    "class_angles",
    "class_centroids",
    "kmeans_labels",
    "adjusted_rand_index",
]

#: How a layer output becomes one vector per image (see book/method.md, RESQUE_dist step 1).
POOLS = ("mean", "flatten")


def pool_embedding(output: torch.Tensor, pool: str = "mean") -> torch.Tensor:
    """Turn a layer output into one embedding vector per image.

    Parameters
    ----------
    output : torch.Tensor
        ``(B, C, H, W)`` conv output, ``(B, T, D)`` token output or ``(B, D)``.
    pool : {"mean", "flatten"}
        ``"mean"`` averages a conv output over space (``H, W``) and a token output
        over tokens (``T``); ``"flatten"`` keeps every value (``C*H*W``), the
        authors' "non-averaged" variant. 2-D outputs are returned as they are.

    Returns
    -------
    torch.Tensor
        ``(B, C)``, ``(B, D)`` or ``(B, C*H*W)``.
    """
    if pool not in POOLS:
        raise InvalidParameterError("pool", pool, POOLS)
    if output.ndim == 2:
        return output
    if output.ndim not in (3, 4):
        raise DataError(
            f"The layer output has shape {tuple(output.shape)}; RESQUE needs a 2-D (B, D), "
            "3-D token (B, T, D) or 4-D conv (B, C, H, W) output. Choose another layer."
        )
    if pool == "flatten":
        return output.flatten(1)
    if output.ndim == 4:
        return output.mean(dim=(2, 3))  # (B, C, H, W) -> (B, C)
    return output.mean(dim=1)  # (B, T, D) -> (B, D): average over tokens, not features


def accumulate_class_sums(
    sums: torch.Tensor, counts: torch.Tensor, embedding: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Add a batch's embeddings to per-class running sums.

    Rows are indexed by the label value, so the tables grow when a larger label
    appears; absent classes keep a zero count.

    Parameters
    ----------
    sums : torch.Tensor
        ``(K, C)`` float64 running sums (``K`` may be 0 at the start).
    counts : torch.Tensor
        ``(K,)`` int64 number of images per class so far.
    embedding : torch.Tensor
        ``(B, C)`` embeddings of the batch.
    labels : torch.Tensor
        ``(B,)`` non-negative integer labels.

    Returns
    -------
    (sums, counts) : the updated tables (possibly new, larger tensors).
    """
    width = embedding.shape[1]
    n_rows = max(int(labels.max()) + 1 if labels.numel() else 0, sums.shape[0])
    if sums.shape[0] and width != sums.shape[1]:
        raise DataError(
            f"Embedding width changed from {sums.shape[1]} to {width} between batches; "
            "all images must have the same shape."
        )
    if n_rows > sums.shape[0] or sums.shape[1] != width:
        grown = torch.zeros(n_rows, width, dtype=sums.dtype, device=embedding.device)
        if sums.shape[0]:
            grown[: sums.shape[0]] = sums
        grown_counts = torch.zeros(n_rows, dtype=counts.dtype, device=embedding.device)
        grown_counts[: counts.shape[0]] = counts
        sums, counts = grown, grown_counts
    sums.index_add_(0, labels, embedding.to(sums.dtype))
    counts += torch.bincount(labels, minlength=counts.shape[0])
    return sums, counts


def class_angles(
    original_sums: torch.Tensor, shifted_sums: torch.Tensor, classes: list[int] | None = None
) -> torch.Tensor:
    """Angle between each class's summed embedding before and after a shift.

    ``theta_k = arccos(clip(<s_o/|s_o|, s_s/|s_s|>, -1, 1)) / pi``.

    Parameters
    ----------
    original_sums, shifted_sums : torch.Tensor
        ``(K, C)`` per-class sums, one row per class, rows in the same order.
    classes : list of int, optional
        The class label of each row, used only to name classes in errors.

    Returns
    -------
    torch.Tensor
        ``(K,)`` float64 angles in ``[0, 1]`` (0: same direction, 1: opposite).

    Raises
    ------
    DegenerateEmbeddingError
        If a class sum has zero length: its direction, hence the angle, is undefined.
    """
    a = original_sums.double()
    b = shifted_sums.double()
    norm_a = a.norm(dim=1)
    norm_b = b.norm(dim=1)
    if bool((norm_a == 0).any()) or bool((norm_b == 0).any()):
        classes = list(range(a.shape[0])) if classes is None else list(classes)
        where = []
        for name, norms in (("original", norm_a), ("shifted", norm_b)):
            zero = [classes[i] for i in torch.nonzero(norms == 0).flatten().tolist()]
            if zero:
                where.append(f"{name} data, classes {zero}")
        raise DegenerateEmbeddingError(
            "The embeddings of some classes are all zero (" + "; ".join(where) + "), so their "
            "direction and the RESQUE_dist angle are undefined. The layer is probably dead for "
            "those images (e.g. a ReLU output that is zero everywhere); choose the layer before "
            "the activation, or another layer."
        )
    cosine = (a * b).sum(dim=1) / (norm_a * norm_b)
    return torch.arccos(cosine.clamp(-1.0, 1.0)) / math.pi


def class_centroids(embedding: torch.Tensor, labels: torch.Tensor, n_classes: int) -> torch.Tensor:
    """Mean embedding of each class, ``(K, D)``, for labels ``0..K-1``."""
    sums = torch.zeros(n_classes, embedding.shape[1], dtype=torch.float64, device=embedding.device)
    sums.index_add_(0, labels, embedding.double())
    counts = torch.bincount(labels, minlength=n_classes).to(sums.dtype)
    return sums / counts[:, None]


def kmeans_labels(
    embedding: np.ndarray, n_clusters: int, init: np.ndarray | str, seed: int = 0
) -> tuple[np.ndarray, int]:
    """Lloyd's k-means from one initialisation.

    Parameters
    ----------
    embedding : ndarray, shape (N, D)
    n_clusters : int
    init : ndarray of shape (n_clusters, D) or "k-means++"
        Starting centres, or scikit-learn's greedy k-means++ seeded with `seed`.
    seed : int
        Random state for k-means++ (ignored for explicit centres).

    Returns
    -------
    (labels, n_iter) : cluster index per point, ``(N,)``, and Lloyd iterations run.
    """
    import warnings

    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    km = KMeans(n_clusters=n_clusters, init=init, n_init=1, random_state=seed, algorithm="lloyd")
    with warnings.catch_warnings():
        # duplicate points are legitimate here (e.g. saturated embeddings)
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = km.fit_predict(embedding)
    return labels, int(km.n_iter_)


def adjusted_rand_index(true_labels: np.ndarray, cluster_labels: np.ndarray) -> float:
    """Adjusted Rand index (Hubert & Arabie, 1985) between two partitions."""
    from sklearn.metrics import adjusted_rand_score

    return float(adjusted_rand_score(true_labels, cluster_labels))
