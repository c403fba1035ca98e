"""RESQUE_task: how badly the old model's embeddings cluster the new task's classes.

See the method page (book/method.md), "RESQUE_task: a task change". The new task's images go through the model
once; their embeddings are clustered with k-means into as many clusters as the
task has classes, and the index is ``1 - ARI(true labels, clusters)``: 0 when
the old features already separate the new classes, about 1 when they carry no
information about them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from .embedding import ForwardOptions, layer_outputs
from ..checks import check_choice
from ..errors import DataError, DegenerateEmbeddingError
from .functional import POOLS, adjusted_rand_index, class_centroids, kmeans_labels, pool_embedding

__all__ = ["INITS", "TaskResult", "resque_task", "resque_task_variants", "variants_from_embeddings"]

#: k-means initialisations: the true class centroids (default, one run) or seeded k-means++.
INITS = ("centroids", "k-means++")


@dataclass(frozen=True)
class TaskResult:
    """The outcome of :func:`resque_task`. ``float(result)`` is the index.

    Attributes
    ----------
    value : float
        RESQUE_task = 1 - ARI, in ``[0, 1.5]`` (ARI can dip slightly below 0 for
        worse-than-chance clusterings, hence values a little above 1).
    ari : float
        Adjusted Rand index between the true labels and the k-means clusters.
    pool, init : str
        The variant computed.
    n_images, n_classes : int
    n_iter : int
        Lloyd iterations k-means ran.
    """

    value: float
    ari: float
    pool: str
    init: str
    n_images: int
    n_classes: int
    n_iter: int
    layer: str

    def __float__(self) -> float:
        return self.value

    def __repr__(self) -> str:
        return (
            f"TaskResult(value={self.value:.6f}, ari={self.ari:.6f}, pool={self.pool!r}, "
            f"init={self.init!r}, classes={self.n_classes}, images={self.n_images})"
        )


def _collect(model, data, layer, pools, forward: ForwardOptions) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """One pass; embeddings for every requested pool, on the CPU, plus labels."""
    chunks: dict[str, list[torch.Tensor]] = {pool: [] for pool in pools}
    label_chunks = []
    for output, labels in layer_outputs(model, data, layer, name="data", forward=forward):
        for pool in pools:
            chunks[pool].append(pool_embedding(output, pool).float().cpu())
        label_chunks.append(labels.cpu())
    return {pool: torch.cat(parts) for pool, parts in chunks.items()}, torch.cat(label_chunks)


def task_from_embeddings(
    embedding: torch.Tensor, labels: torch.Tensor, init: str = "centroids", seed: int = 0
) -> tuple[float, float, int, int]:
    """RESQUE_task from stored embeddings (the `_compute` step).

    Parameters
    ----------
    embedding : torch.Tensor
        ``(N, D)`` embeddings.
    labels : torch.Tensor
        ``(N,)`` integer labels (any values; they are re-indexed).
    init : {"centroids", "k-means++"}
    seed : int

    Returns
    -------
    (value, ari, n_classes, n_iter)
    """
    check_choice("init", init, INITS)
    classes, dense = torch.unique(labels, return_inverse=True)
    n_classes = int(classes.numel())
    if n_classes < 2:
        raise DataError(
            f"RESQUE_task needs at least 2 classes in the new task's data, found {n_classes}; "
            "clustering one class says nothing about separability."
        )
    if embedding.shape[0] <= n_classes:
        raise DataError(
            f"RESQUE_task needs more images ({embedding.shape[0]}) than classes ({n_classes}); give it more data."
        )
    features = embedding.double()
    if bool((features == features[0]).all()):
        raise DegenerateEmbeddingError(
            "Every image has the same embedding at this layer (e.g. all zero), so it cannot separate "
            "any classes; choose another layer."
        )
    start = class_centroids(features, dense, n_classes).numpy() if init == "centroids" else "k-means++"
    clusters, n_iter = kmeans_labels(features.numpy(), n_classes, start, seed=seed)
    ari = adjusted_rand_index(dense.numpy(), clusters)
    return 1.0 - ari, ari, n_classes, n_iter


def resque_task(
    model: nn.Module,
    data,
    layer: str,
    pool: str = "mean",
    init: str = "centroids",
    *,
    seed: int = 0,
    device=None,
    batch_size: int | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> TaskResult:
    """RESQUE_task of the new task's labelled data for one model layer.

    Parameters
    ----------
    model : torch.nn.Module
        The trained source model (run in ``eval()`` mode, no gradients, mode restored).
    data : Dataset or DataLoader
        Labelled images of the new task, yielding ``(image, label)``.
    layer : str
        Name from ``model.named_modules()``.
    pool : {"mean", "flatten"}, default "mean"
        Average conv outputs over space (tokens over ``T``), or keep all ``C*H*W`` values.
    init : {"centroids", "k-means++"}, default "centroids"
        Start k-means at the true class centroids (one run), or at seeded k-means++.
    seed : int, default 0
        Random state for k-means++.
    device, batch_size, num_workers, progress
        As in :func:`resque.resque_dist`.

    Returns
    -------
    TaskResult
        ``float(result)`` is ``1 - ARI``.

    Notes
    -----
    k-means needs every embedding at once, so memory is ``N x D`` floats (unlike
    RESQUE_dist, which streams).

    Examples
    --------
    >>> float(resque.resque_task(model, new_task_set, layer="features"))  # doctest: +SKIP
    0.4127
    """
    check_choice("pool", pool, POOLS)
    check_choice("init", init, INITS)
    embeddings, labels = _collect(model, data, layer, (pool,), ForwardOptions(device, batch_size, num_workers, progress))
    value, ari, n_classes, n_iter = task_from_embeddings(embeddings[pool], labels, init, seed)
    return TaskResult(value, ari, pool, init, int(labels.numel()), n_classes, n_iter, layer)


def resque_task_variants(
    model: nn.Module,
    data,
    layer: str,
    *,
    seed: int = 0,
    device=None,
    batch_size: int | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> dict[tuple[str, str], TaskResult]:
    """All four RESQUE_task variants (pool x init) from a single forward pass.

    Returns
    -------
    dict
        ``{(pool, init): TaskResult}`` for pool in ``("mean", "flatten")`` and
        init in ``("centroids", "k-means++")``; each equals what
        :func:`resque_task` returns for that variant.
    """
    embeddings, labels = _collect(model, data, layer, POOLS, ForwardOptions(device, batch_size, num_workers, progress))
    return variants_from_embeddings(embeddings, labels, layer, seed=seed)


def variants_from_embeddings(
    embeddings: Mapping[str, torch.Tensor], labels: torch.Tensor, layer: str, *, seed: int = 0
) -> dict[tuple[str, str], TaskResult]:
    """The four variants of :func:`resque_task_variants` from embeddings already pooled both ways.

    Parameters
    ----------
    embeddings : mapping
        ``{"mean": (N, C), "flatten": (N, D)}`` float32 embeddings of one layer
        (:func:`resque.index.functional.pool_embedding` of its outputs).
    labels : torch.Tensor
        ``(N,)`` integer labels.
    layer : str
        The layer's name, kept in each result.
    """
    results = {}
    for pool in POOLS:
        for init in INITS:
            value, ari, n_classes, n_iter = task_from_embeddings(embeddings[pool], labels, init, seed)
            results[(pool, init)] = TaskResult(value, ari, pool, init, int(labels.numel()), n_classes, n_iter, layer)
    return results
