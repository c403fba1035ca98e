"""New tasks made from existing datasets, declared as data and applied by one function.

See the method page (book/method.md), "The data protocol" (tasks): besides other datasets, the study changes
the task on the same images: a subset of the classes, coarse labels, a
relabelling, or transformed images. A :class:`TaskSpec` says which, and
:func:`derive_task` applies it to a loaded dataset. Named presets live in
``TASKS``; :func:`load_task` loads one in a single call.

Fashion-MNIST's classes, for reading the presets: 0 T-shirt/top, 1 Trouser,
2 Pullover, 3 Dress, 4 Coat, 5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag, 9 Ankle boot.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .datasets import load_dataset
from ..errors import InvalidParameterError
from ..registry import Registry
from .splits import targets_of

__all__ = [
    "IMAGE_TRANSFORMS",
    "TASKS",
    "TaskDataset",
    "TaskSpec",
    "derive_task",
    "get_task",
    "list_tasks",
    "load_task",
    "task_labels",
]

TASKS = Registry("task")


# Image changes; module-level functions (not lambdas) so datasets stay picklable
# for DataLoader workers. Images are (..., C, H, W) floats in [0, 1].
def _invert(image: torch.Tensor) -> torch.Tensor:
    return 1.0 - image


def _rotate90(image: torch.Tensor) -> torch.Tensor:
    return torch.rot90(image, 1, dims=(-2, -1))  # counter-clockwise


def _rotate180(image: torch.Tensor) -> torch.Tensor:
    return torch.rot90(image, 2, dims=(-2, -1))


def _hflip(image: torch.Tensor) -> torch.Tensor:
    return torch.flip(image, dims=(-1,))


#: Image changes a :class:`TaskSpec` may name.
IMAGE_TRANSFORMS = {"invert": _invert, "rotate90": _rotate90, "rotate180": _rotate180, "hflip": _hflip}


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class TaskSpec:
    """A task derived from a dataset, applied in this order: choose classes, relabel, permute, transform.

    Parameters
    ----------
    dataset : str
        Name of the source dataset (see :func:`resque.data.datasets.list_datasets`).
    classes : sequence of int, optional
        Keep only these source classes; they become labels ``0 .. k-1`` in the
        order given.
    relabel : mapping of str to sequence of int, optional
        Coarse classes: each new class name maps to the source classes it merges.
        New labels follow the mapping's order; source classes in no group are
        dropped. Exclusive with `classes` (a coarse task already chooses its classes).
    permutation_seed : int, optional
        Shuffle the (possibly already reduced) labels with
        ``numpy.random.default_rng(seed).permutation``: label ``j`` becomes
        ``perm[j]``. A random permutation may leave some labels in place.
    transform : str, optional
        One of ``IMAGE_TRANSFORMS``: ``"invert"`` (``1 - x``), ``"rotate90"``
        (counter-clockwise), ``"rotate180"``, ``"hflip"``.
    description : str
        Free text, for listings.

    Examples
    --------
    >>> TaskSpec("fashion_mnist", relabel={"tops": [0, 2, 4, 6], "rest": [1, 3, 5, 7, 8, 9]}).relabel
    (('tops', (0, 2, 4, 6)), ('rest', (1, 3, 5, 7, 8, 9)))
    """

    dataset: str
    classes: tuple[int, ...] | None = None
    # Stored as ((name, (source classes...)), ...) so that the spec stays hashable and immutable.
    relabel: tuple[tuple[str, tuple[int, ...]], ...] | None = None
    permutation_seed: int | None = None
    transform: str | None = None
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, str) or not self.dataset:
            raise InvalidParameterError("dataset", self.dataset, "a dataset name (str)")
        if self.classes is not None and self.relabel is not None:
            raise InvalidParameterError(
                "classes", self.classes, "None when relabel is given",
                hint="A relabelling keeps only the classes it names; list the ones to keep there.",
            )
        if self.classes is not None:
            classes = tuple(self.classes)
            if not classes or not all(_is_int(c) and c >= 0 for c in classes) or len(set(classes)) != len(classes):
                raise InvalidParameterError("classes", self.classes, "a non-empty sequence of distinct class indices")
            object.__setattr__(self, "classes", tuple(int(c) for c in classes))
        if self.relabel is not None:
            object.__setattr__(self, "relabel", _normalise_relabel(self.relabel))
        if self.permutation_seed is not None and not (_is_int(self.permutation_seed) and self.permutation_seed >= 0):
            raise InvalidParameterError("permutation_seed", self.permutation_seed, "None or a non-negative int")
        if self.transform is not None and self.transform not in IMAGE_TRANSFORMS:
            raise InvalidParameterError("transform", self.transform, [None, *IMAGE_TRANSFORMS])


def _normalise_relabel(relabel: Any) -> tuple[tuple[str, tuple[int, ...]], ...]:
    pairs = list(relabel.items()) if isinstance(relabel, Mapping) else list(relabel)
    allowed = "a non-empty mapping {new class name: [source classes]} whose groups are disjoint and non-empty"
    try:
        groups = tuple((str(name), tuple(members)) for name, members in pairs)
    except (TypeError, ValueError) as error:
        raise InvalidParameterError("relabel", relabel, allowed) from error
    members = [m for _, group in groups for m in group]
    names = [name for name, _ in groups]
    if (
        not groups
        or any(not group for _, group in groups)
        or not all(_is_int(m) and m >= 0 for m in members)
        or len(set(members)) != len(members)
        or len(set(names)) != len(names)
    ):
        raise InvalidParameterError("relabel", relabel, allowed)
    return tuple((name, tuple(int(m) for m in group)) for name, group in groups)


def task_labels(
    targets: torch.Tensor, classes: Sequence[str], spec: TaskSpec
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The functional core of :func:`derive_task`: which images, which new labels, which names.

    Parameters
    ----------
    targets : torch.Tensor
        int64 ``(N,)`` labels of the source dataset.
    classes : sequence of str
        Source class names, indexed by label.
    spec : TaskSpec

    Returns
    -------
    indices : torch.Tensor
        int64 ``(M,)``, sorted: the source images the task keeps.
    new_targets : torch.Tensor
        int64 ``(M,)``: their labels in the new task, ``0 .. k-1``.
    new_classes : list of str
        ``k`` names, indexed by new label.
    """
    n_source = len(classes)
    if spec.relabel is not None:
        groups = spec.relabel
    elif spec.classes is not None:
        groups = tuple((classes[c] if c < n_source else str(c), (c,)) for c in spec.classes)
    else:
        groups = tuple((name, (c,)) for c, name in enumerate(classes))
    used = [c for _, group in groups for c in group]
    if max(used) >= n_source:
        parameter = "relabel" if spec.relabel is not None else "classes"
        raise InvalidParameterError(
            parameter, getattr(spec, parameter), f"class indices in [0, {n_source - 1}] of {spec.dataset!r}"
        )
    # label_map[source label] = new label, -1 for dropped classes.
    label_map = torch.full((n_source,), -1, dtype=torch.long)
    for new_label, (_, group) in enumerate(groups):
        label_map[list(group)] = new_label
    new_classes = [name for name, _ in groups]
    if spec.permutation_seed is not None:
        permutation = torch.from_numpy(np.random.default_rng(spec.permutation_seed).permutation(len(groups)))
        kept = label_map >= 0
        label_map[kept] = permutation[label_map[kept]]
        renamed = [""] * len(groups)
        for old, new in enumerate(permutation.tolist()):
            renamed[new] = new_classes[old]
        new_classes = renamed
    mapped = label_map[targets]
    indices = torch.nonzero(mapped >= 0).flatten()
    return indices, mapped[indices], new_classes


class TaskDataset(Dataset):
    """A dataset seen through a :class:`TaskSpec`; yields ``(image, new label)``.

    Parameters
    ----------
    base : Dataset
        Yields ``(float image (C, H, W) in [0, 1], label)`` and has ``.targets``
        and ``.classes``, as :func:`resque.data.datasets.load_dataset` gives.
    spec : TaskSpec

    Attributes
    ----------
    targets : torch.Tensor
        int64 ``(M,)``, new labels ``0 .. k-1``.
    classes : list of str
        New class names.
    indices : torch.Tensor
        Which images of `base` the task keeps.
    """

    def __init__(self, base: Dataset, spec: TaskSpec):
        base_classes = getattr(base, "classes", None)
        if base_classes is None:
            raise InvalidParameterError("dataset", type(base).__name__, "a dataset with `.classes` and `.targets`")
        self.base = base
        self.spec = spec
        self.indices, self.targets, self.classes = task_labels(targets_of(base), base_classes, spec)
        self.name = getattr(base, "name", spec.dataset)
        self.split = getattr(base, "split", "")
        self._image_change = IMAGE_TRANSFORMS[spec.transform] if spec.transform else None

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        index = int(index)
        image, _ = self.base[int(self.indices[index])]
        if self._image_change is not None:
            image = self._image_change(image)
        return image, int(self.targets[index])

    def __getitems__(self, indices) -> list[tuple[torch.Tensor, int]]:
        """A batch of items, as a ``DataLoader`` asks for them; read together where the base dataset can."""
        indices = [int(i) for i in indices]
        read = getattr(self.base, "__getitems__", None)
        if not callable(read):
            return [self[i] for i in indices]
        images = [image for image, _ in read(self.indices[indices].tolist())]
        if self._image_change is not None:
            images = [self._image_change(image) for image in images]
        return list(zip(images, self.targets[indices].tolist()))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        return f"TaskDataset(images={len(self)}, classes={self.num_classes}, spec={self.spec!r})"


def get_task(name: str) -> TaskSpec:
    """The :class:`TaskSpec` registered as `name`; unknown names list the known ones."""
    return TASKS.get(name)()


def list_tasks(pattern: str | None = None) -> list[str]:
    """Names of the preset tasks, sorted; `pattern` filters with shell wildcards (``"fashion_*"``)."""
    return TASKS.names(pattern)


def derive_task(dataset: Dataset, spec: TaskSpec | str) -> TaskDataset:
    """Apply a task spec (or a preset's name) to a loaded dataset.

    Parameters
    ----------
    dataset : Dataset
        The spec's source dataset, with ``.targets`` and ``.classes``.
    spec : TaskSpec or str
        A spec, or one of :func:`list_tasks`.

    Returns
    -------
    TaskDataset

    Raises
    ------
    InvalidParameterError
        `dataset` was loaded under another name than ``spec.dataset`` (class
        indices mean different things in different datasets), or the spec
        names classes the dataset does not have.

    Examples
    --------
    >>> from resque.data.datasets import load_dataset
    >>> small = derive_task(load_dataset("digits"), TaskSpec("digits", classes=[3, 8]))
    >>> small.classes, sorted(set(small.targets.tolist()))
    (['3', '8'], [0, 1])
    """
    if isinstance(spec, str):
        spec = get_task(spec)
    loaded_as = getattr(dataset, "name", "")
    if loaded_as and loaded_as != spec.dataset:
        raise InvalidParameterError(
            "dataset", loaded_as, [spec.dataset],
            hint="Load the spec's dataset, or use dataclasses.replace(spec, dataset=...) if the classes match.",
        )
    return TaskDataset(dataset, spec)


def load_task(
    task: TaskSpec | str,
    split: str = "train",
    root: str | os.PathLike | None = None,
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    download: bool = False,
    **options: Any,
) -> TaskDataset:
    """Load a task's source dataset (see :func:`resque.data.datasets.load_dataset`) and derive the task.

    Examples
    --------
    >>> load_task("digits_subset_0_4", image_size=32, channels=3).classes
    ['0', '1', '2', '3', '4']
    """
    spec = get_task(task) if isinstance(task, str) else task
    base = load_dataset(spec.dataset, split, root, image_size, channels, download, **options)
    return derive_task(base, spec)


def _preset(name: str, spec: TaskSpec) -> None:
    TASKS.register(name)(lambda: spec)


_FASHION_COARSE = {
    "tops": [0, 2, 4, 6],  # T-shirt/top, Pullover, Coat, Shirt
    "bottoms": [1, 3],  # Trouser, Dress
    "footwear": [5, 7, 9],  # Sandal, Sneaker, Ankle boot
    "bags": [8],  # Bag
}

_preset("fashion_mnist", TaskSpec("fashion_mnist", description="Fashion-MNIST's own 10 classes"))
_preset("fashion_coarse4", TaskSpec("fashion_mnist", relabel=_FASHION_COARSE,
                                    description="tops / bottoms / footwear / bags"))
_preset("fashion_subset_0_4", TaskSpec("fashion_mnist", classes=(0, 1, 2, 3, 4),
                                       description="T-shirt/top, Trouser, Pullover, Dress, Coat"))
_preset("fashion_subset_5_9", TaskSpec("fashion_mnist", classes=(5, 6, 7, 8, 9),
                                       description="Sandal, Shirt, Sneaker, Bag, Ankle boot"))
_preset("fashion_permuted", TaskSpec("fashion_mnist", permutation_seed=0, description="labels shuffled, seed 0"))
_preset("fashion_inverted", TaskSpec("fashion_mnist", transform="invert", description="images 1 - x"))
_preset("fashion_rotated90", TaskSpec("fashion_mnist", transform="rotate90",
                                      description="images turned 90 degrees counter-clockwise"))
_preset("fashion_tops4", TaskSpec("fashion_mnist", classes=(0, 2, 4, 6),
                                  description="T-shirt/top, Pullover, Coat, Shirt: the four most confused classes"))
_preset("fashion_footwear3", TaskSpec("fashion_mnist", classes=(5, 7, 9), description="Sandal, Sneaker, Ankle boot"))
_preset("fashion_rotated180", TaskSpec("fashion_mnist", transform="rotate180", description="images turned upside down"))
_preset("digits", TaskSpec("digits", description="scikit-learn's 8x8 digits, 10 classes"))
_preset("digits_subset_0_4", TaskSpec("digits", classes=(0, 1, 2, 3, 4), description="digits 0-4"))
_preset("digits_inverted", TaskSpec("digits", transform="invert", description="digits, images 1 - x"))

# Every other registered dataset is also a task as a whole (the paper's task changes:
# CIFAR-10 -> CIFAR-100, SVHN, MNIST, ...).
for _name in ("mnist", "kmnist", "emnist", "cifar10", "cifar100", "svhn", "stl10", "gtsrb"):
    _preset(_name, TaskSpec(_name, description=f"the whole {_name} dataset"))
