"""Stratified, seeded splits of a labelled dataset, computed from its labels alone.

See the method page (book/method.md), "The data protocol": per class, the training set is split
50 / 30 / 20 % into S0, S1, S2; the source model trains on S0+S2, a shift is
applied to S1+S2; stopping decisions use a validation split held out of the new
data. Small profiles subsample N images per class.

Every function here takes labels (a tensor, an array, a list) or a dataset
that has them (``.targets``, or a ``Subset``/``ConcatDataset`` of such), and
returns sorted int64 index tensors into it. No image is ever read, so splitting
60,000 labels takes milliseconds. :func:`subset` turns indices into a
``torch.utils.data.Subset`` that keeps ``.targets`` and ``.classes``, so splits
nest (a validation split of S1+S2, say).

The same seed gives the same indices on every machine: the only randomness is
one ``numpy.random.default_rng(seed).permutation``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, Subset

from ..errors import DataError, InvalidParameterError
from ..checks import check_seed

__all__ = [
    "PROTOCOL_FRACTIONS",
    "LabelledSubset",
    "ProtocolSplit",
    "protocol_split",
    "stratified_partition",
    "subsample_per_class",
    "subset",
    "targets_of",
    "validation_split",
]

#: Per-class shares of S0, S1, S2 (book/method.md).
PROTOCOL_FRACTIONS = (0.5, 0.3, 0.2)


def targets_of(data: Any) -> torch.Tensor:
    """The labels of `data` as an int64 tensor ``(N,)``, without reading images.

    Parameters
    ----------
    data : tensor, array, sequence of int, or Dataset
        Labels themselves, or a dataset with ``.targets`` (any
        :class:`resque.data.datasets.LabelledImages`, torchvision's MNIST/CIFAR),
        or a ``Subset`` / ``ConcatDataset`` built from such datasets.

    Raises
    ------
    DataError
        `data` is a dataset without reachable labels, or the labels are not a
        1-D sequence of non-negative integers.
    """
    if isinstance(data, Dataset):
        labels = getattr(data, "targets", None)
        if labels is None:
            if isinstance(data, Subset):
                labels = targets_of(data.dataset)[torch.as_tensor(data.indices, dtype=torch.long)]
            elif isinstance(data, ConcatDataset):
                labels = torch.cat([targets_of(part) for part in data.datasets])
            else:
                raise DataError(
                    f"{type(data).__name__} has no `.targets`, so its labels cannot be read without reading "
                    "every image; load it with resque.load_dataset, or pass the labels themselves"
                )
    else:
        labels = data
    labels = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
    if labels.ndim != 1 or labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise DataError(f"labels must be a 1-D sequence of integers; got {labels.dtype} of shape {tuple(labels.shape)}")
    labels = labels.long()
    if len(labels) and int(labels.min()) < 0:
        raise DataError(f"labels must be non-negative; found {int(labels.min())}")
    return labels


def _check_fractions(fractions: Any) -> np.ndarray:
    values = np.asarray(fractions, dtype=np.float64)
    if values.ndim != 1 or len(values) < 2 or not np.all(values > 0) or abs(values.sum() - 1.0) > 1e-6:
        raise InvalidParameterError(
            "fractions", fractions, "two or more positive shares that sum to 1, e.g. (0.5, 0.3, 0.2)"
        )
    return values


def _class_ranks(labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded shuffle grouped by class.

    Returns ``order`` (indices, grouped by class, shuffled within each),
    ``rank`` (each one's position within its class in that order) and
    ``class_size`` (the size of its class), all ``(N,)``.
    """
    order = np.random.default_rng(seed).permutation(len(labels))
    # A stable sort by label keeps the random order inside each class.
    order = order[np.argsort(labels[order], kind="stable")]
    _, starts, counts = np.unique(labels[order], return_index=True, return_counts=True)
    rank = np.arange(len(labels)) - np.repeat(starts, counts)
    return order, rank, np.repeat(counts, counts)


def _as_index_tensor(indices: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.sort(indices).astype(np.int64))


def stratified_partition(data: Any, fractions: Sequence[float], seed: int = 0) -> list[torch.Tensor]:
    """Split every class into parts of the given shares, at random but reproducibly.

    Class ``k`` with ``n_k`` images puts its shuffled images ``[c_{j-1}, c_j)``
    into part ``j``, with cut points ``c_j = round(n_k * (f_1 + ... + f_j))``
    (halves round up). Each part thus gets its share of every class to within
    one image, and the parts are disjoint and cover the data.

    Parameters
    ----------
    data : labels or Dataset
        See :func:`targets_of`.
    fractions : sequence of float
        Two or more positive shares summing to 1.
    seed : int, default 0
        Same seed, same parts; different seeds, different parts.

    Returns
    -------
    list of torch.Tensor
        One sorted int64 index tensor per share.

    Examples
    --------
    >>> train, test = stratified_partition([0, 0, 0, 0, 1, 1, 1, 1, 1], (0.75, 0.25), seed=0)
    >>> len(train), len(test)
    (7, 2)
    """
    labels = targets_of(data).numpy()
    shares = _check_fractions(fractions)
    seed = check_seed(seed)
    if len(labels) == 0:
        raise DataError("cannot split an empty dataset")
    order, rank, class_size = _class_ranks(labels, seed)
    # Cut points per image, (N, P-1); +0.5 then floor rounds halves up on every platform.
    cuts = np.floor(class_size[:, None] * np.cumsum(shares)[None, :-1] + 0.5)
    part = (rank[:, None] >= cuts).sum(axis=1)
    return [_as_index_tensor(order[part == j]) for j in range(len(shares))]


@dataclass(frozen=True)
class ProtocolSplit:
    """S0, S1, S2 of a training set (book/method.md), as sorted index tensors.

    Attributes
    ----------
    s0, s1, s2 : torch.Tensor
        int64 indices; per class about 50 %, 30 %, 20 % of the images.
    seed : int
    fractions : tuple of float
    """

    s0: torch.Tensor
    s1: torch.Tensor
    s2: torch.Tensor
    seed: int
    fractions: tuple[float, ...] = PROTOCOL_FRACTIONS

    @property
    def original(self) -> torch.Tensor:
        """S0+S2, sorted: the clean data the source model trains on."""
        return torch.sort(torch.cat([self.s0, self.s2])).values

    @property
    def shifted(self) -> torch.Tensor:
        """S1+S2, sorted: the data a shift is applied to and the model retrains on."""
        return torch.sort(torch.cat([self.s1, self.s2])).values

    def __repr__(self) -> str:
        return f"ProtocolSplit(s0={len(self.s0)}, s1={len(self.s1)}, s2={len(self.s2)}, seed={self.seed})"


def protocol_split(data: Any, seed: int = 0, fractions: Sequence[float] = PROTOCOL_FRACTIONS) -> ProtocolSplit:
    """The stratified, seeded S0/S1/S2 split of a training set.

    Parameters
    ----------
    data : labels or Dataset
        See :func:`targets_of`.
    seed : int, default 0
    fractions : (float, float, float), default (0.5, 0.3, 0.2)

    Returns
    -------
    ProtocolSplit

    Examples
    --------
    >>> split = protocol_split(torch.arange(10).repeat(100), seed=0)
    >>> len(split.s0), len(split.s1), len(split.s2)
    (500, 300, 200)
    """
    if len(fractions) != 3:
        raise InvalidParameterError("fractions", fractions, "three shares (S0, S1, S2) summing to 1")
    s0, s1, s2 = stratified_partition(data, fractions, seed)
    return ProtocolSplit(s0, s1, s2, seed=int(seed), fractions=tuple(float(f) for f in fractions))


def validation_split(data: Any, fraction: float = 0.1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Hold a stratified, seeded share of `data` out for validation.

    Parameters
    ----------
    data : labels or Dataset
        Typically the new data of an experiment, e.g. ``subset(train, split.shifted)``.
    fraction : float, default 0.1
        Share of each class held out, strictly between 0 and 1.
    seed : int, default 0

    Returns
    -------
    (torch.Tensor, torch.Tensor)
        Sorted int64 indices into `data`: the images to train on, the ones to validate on.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction < 1.0:
        raise InvalidParameterError("fraction", fraction, "a number strictly between 0 and 1")
    train, validation = stratified_partition(data, (1.0 - fraction, fraction), seed)
    return train, validation


def subsample_per_class(data: Any, n_per_class: int, seed: int = 0, allow_fewer: bool = False) -> torch.Tensor:
    """A seeded choice of `n_per_class` images of every class, for small profiles.

    Parameters
    ----------
    data : labels or Dataset
    n_per_class : int
        Images kept per class.
    seed : int, default 0
    allow_fewer : bool, default False
        Keep all images of classes smaller than `n_per_class` instead of failing.

    Returns
    -------
    torch.Tensor
        Sorted int64 indices into `data`.

    Raises
    ------
    InvalidParameterError
        `n_per_class` is not a positive int, or exceeds the smallest class
        while `allow_fewer` is false.
    """
    if isinstance(n_per_class, bool) or not isinstance(n_per_class, (int, np.integer)) or n_per_class < 1:
        raise InvalidParameterError("n_per_class", n_per_class, "a positive int")
    labels = targets_of(data).numpy()
    seed = check_seed(seed)
    if len(labels) == 0:
        raise DataError("cannot subsample an empty dataset")
    order, rank, class_size = _class_ranks(labels, seed)
    smallest = int(class_size.min())
    if n_per_class > smallest and not allow_fewer:
        label = int(labels[order][np.argmin(class_size)])
        raise InvalidParameterError(
            "n_per_class",
            n_per_class,
            f"at most {smallest}, the size of the smallest class (label {label})",
            hint="Pass allow_fewer=True to keep every image of the smaller classes.",
        )
    return _as_index_tensor(order[rank < n_per_class])


class LabelledSubset(Subset):
    """A ``torch.utils.data.Subset`` that keeps ``.targets`` and ``.classes``.

    Attributes
    ----------
    targets : torch.Tensor
        int64 ``(len(indices),)``: the labels of the chosen images, so that the
        subset can be split again without reading images.
    classes : list of str or None
        The parent's class names (labels are not renumbered).
    """

    def __init__(self, dataset: Dataset, indices: Sequence[int] | torch.Tensor):
        index = torch.as_tensor(np.asarray(indices) if not isinstance(indices, torch.Tensor) else indices)
        index = index.long().reshape(-1)
        parent_targets = targets_of(dataset)
        if len(index) and (int(index.min()) < 0 or int(index.max()) >= len(parent_targets)):
            raise InvalidParameterError(
                "indices", f"values in [{int(index.min())}, {int(index.max())}]",
                f"indices in [0, {len(parent_targets) - 1}]",
            )
        super().__init__(dataset, index.tolist())
        self.targets = parent_targets[index]
        self.classes = getattr(dataset, "classes", None)


def subset(dataset: Dataset, indices: Sequence[int] | torch.Tensor) -> LabelledSubset:
    """``Subset(dataset, indices)`` that keeps ``.targets`` and ``.classes`` for further splitting.

    Examples
    --------
    >>> from resque.data.datasets import load_dataset
    >>> train = load_dataset("digits")
    >>> split = protocol_split(train, seed=0)
    >>> new_data = subset(train, split.shifted)
    >>> fit, val = validation_split(new_data, fraction=0.1, seed=0)
    >>> len(fit) + len(val) == len(new_data)
    True
    """
    return LabelledSubset(dataset, indices)
