"""Image classification datasets by name, each brought to one model input shape.

See the method page (book/method.md), "The data protocol". Every dataset loaded here yields
``(image, label)`` pairs: ``image`` a float tensor ``(C, H, W)`` in ``[0, 1]``,
``label`` an ``int``. Each one also carries ``.classes`` (names, indexed by
label) and ``.targets`` (all labels as one tensor), so that stratified splits
(:mod:`resque.data.splits`) never have to read an image.

Two datasets work offline:

- ``fashion_mnist``, the default, read from the data root or unpacked there
  from Debian's ``dataset-fashion-mnist`` package;
- ``digits``, scikit-learn's 8x8 handwritten digits, which ship inside
  scikit-learn.

The others (``mnist``, ``kmnist``, ``emnist``, ``cifar10``, ``cifar100``,
``svhn``, ``stl10``, ``gtsrb``) come through torchvision and need a one-time
download (``download=True``) on a machine with internet access.

Where the files live: the ``root`` argument, else the environment variable
``RESQUE_DATA``, else ``$XDG_CACHE_HOME/resque/data`` (``~/.cache/resque/data``).
"""

from __future__ import annotations

import contextlib
import gzip
import inspect
import os
import shutil
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple
from urllib.error import URLError

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset, TensorDataset

from ..errors import DataError, InvalidParameterError
from ..io import atomic_path
from ..registry import Registry
from .splits import stratified_partition

__all__ = [
    "DATASETS",
    "DEBIAN_FASHION_MNIST_DIR",
    "LabelledImages",
    "ToModelInput",
    "data_root",
    "list_datasets",
    "load_dataset",
    "check_available",
    "prepare_fashion_mnist",
    "to_model_input",
    "NATIVE_CHANNELS",
]

DATASETS = Registry("dataset")

#: Channels each registered dataset has before any conversion (1: grey, 3: colour), known without loading it.
NATIVE_CHANNELS = {"fashion_mnist": 1, "digits": 1, "mnist": 1, "kmnist": 1, "emnist": 1,
                   "cifar10": 3, "cifar100": 3, "svhn": 3, "stl10": 3, "gtsrb": 3}

#: Environment variable naming the data root when no ``root`` is passed.
DATA_ROOT_ENV = "RESQUE_DATA"

#: Where Debian's ``dataset-fashion-mnist`` package installs the gzipped files.
#: Tests point this (or the ``debian_dir`` argument) at an empty folder.
DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

#: The four files torchvision's FashionMNIST reads, unpacked, from ``ROOT/FashionMNIST/raw/``.
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

#: Seconds a download may wait on a silent server before failing; torchvision
#: sets no timeout, so without one a half-open connection would hang forever.
DOWNLOAD_TIMEOUT_S = 60.0

#: How ``digits`` (which has no official split) is divided: a stratified
#: 80/20 train/test split drawn with this seed (see :func:`resque.data.splits.stratified_partition`).
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0

SPLITS = ("train", "test")
CHANNELS = (1, 3)

# ITU-R BT.601 luma weights, the same PIL uses for its "L" mode, so that a
# colour image turned grey here matches one turned grey by PIL.
_LUMA = (0.299, 0.587, 0.114)


# ---------------------------------------------------------------------------
# Data root
# ---------------------------------------------------------------------------


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The folder datasets are read from and downloaded to.

    Parameters
    ----------
    root : str or path-like, optional
        Used as given (``~`` expanded) when not None.

    Returns
    -------
    pathlib.Path
        ``root``, else ``$RESQUE_DATA``, else ``$XDG_CACHE_HOME/resque/data``
        (``~/.cache/resque/data`` when ``XDG_CACHE_HOME`` is unset). The folder
        is not created here; loaders create it when they write into it.
    """
    if root is not None:
        return Path(root).expanduser()
    from_env = os.environ.get(DATA_ROOT_ENV)
    if from_env:
        return Path(from_env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "resque" / "data"


# ---------------------------------------------------------------------------
# The one transform: any image -> float (C, H, W) in [0, 1] of the model's shape
# ---------------------------------------------------------------------------


def _as_float_image(image: Any) -> torch.Tensor:
    """A PIL image, array (HW / HWC) or tensor (HW / CHW / BCHW) as a float tensor in [0, 1]."""
    if isinstance(image, Image.Image):
        # Palette, alpha and 16-bit modes have no single meaning as [0, 1] floats;
        # RGB is what torchvision's own colour datasets hand out.
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        image = np.asarray(image)
    if isinstance(image, np.ndarray):
        # numpy and PIL put channels last; torch puts them first.
        if image.ndim == 3:
            image = image.transpose(2, 0, 1)
        image = np.ascontiguousarray(image)
        if not image.flags.writeable:  # PIL's buffers are read-only; torch warns on those
            image = image.copy()
        image = torch.from_numpy(image)
    if not isinstance(image, torch.Tensor):
        raise DataError(f"cannot read an image of type {type(image).__name__}; expected a PIL image, array or tensor")
    if image.ndim == 2:
        image = image.unsqueeze(0)  # (H, W) -> (1, H, W)
    if image.ndim < 3:
        raise DataError(f"an image needs at least 2 dimensions (H, W); got shape {tuple(image.shape)}")
    if image.dtype == torch.uint8:
        return image.float() / 255.0
    if image.dtype == torch.bool:
        return image.float()
    if not image.is_floating_point():
        raise DataError(
            f"integer images other than uint8 (got {image.dtype}) have no fixed range; "
            "scale them to floats in [0, 1] first"
        )
    low, high = float(image.min()), float(image.max())
    if low < 0.0 or high > 1.0:
        raise DataError(
            f"float images must lie in [0, 1]; got values in [{low:.4g}, {high:.4g}]. "
            "Scale them (e.g. divide 8-bit values by 255) before loading."
        )
    return image.float()


def _check_image_size(image_size: Any) -> tuple[int, int] | None:
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        raise InvalidParameterError(
            "image_size", image_size, "None, a positive int, or a pair (height, width) of positive ints"
        )
    return size  # type: ignore[return-value]


def _check_channels(channels: Any) -> None:
    if channels is not None and channels not in CHANNELS:
        raise InvalidParameterError("channels", channels, [None, *CHANNELS])


def to_model_input(
    image: Any, image_size: int | tuple[int, int] | None = None, channels: int | None = None
) -> torch.Tensor:
    """Bring one image (or a batch) to a model's input shape, as floats in [0, 1].

    Colour is converted before resizing when it shrinks the data (RGB to grey)
    and after when it grows it (grey to RGB), so that only the channels kept
    are resized. No mean/std normalisation is applied: book/method.md defines
    images, and the shifts applied to them, on the ``[0, 1]`` scale; a model
    that wants normalised inputs should normalise inside its ``forward``.

    Parameters
    ----------
    image : PIL.Image.Image, numpy.ndarray or torch.Tensor
        PIL images and arrays are ``(H, W)`` or ``(H, W, C)``; tensors are
        ``(H, W)``, ``(C, H, W)`` or ``(B, C, H, W)``. ``uint8`` values are
        divided by 255; floats must already lie in ``[0, 1]``.
    image_size : int or (int, int), optional
        Output height and width (an int means a square). Resizing is bilinear
        with antialiasing, which matters when shrinking (STL-10's 96x96 to 32x32).
        None (default) keeps the size.
    channels : {1, 3}, optional
        1 turns colour to grey (BT.601 luma, as PIL's ``"L"`` mode); 3 repeats a
        grey channel three times. None (default) keeps the channels.

    Returns
    -------
    torch.Tensor
        float32, ``(C, H, W)`` (or ``(B, C, H, W)`` for a batch), in ``[0, 1]``.

    Examples
    --------
    >>> to_model_input(torch.zeros(28, 28, dtype=torch.uint8), image_size=32, channels=3).shape
    torch.Size([3, 32, 32])
    """
    size = _check_image_size(image_size)
    _check_channels(channels)
    x = _as_float_image(image)  # (..., C, H, W)
    in_channels = x.shape[-3]
    if channels is not None and in_channels not in CHANNELS:
        raise DataError(f"cannot convert an image with {in_channels} channels; only 1 (grey) or 3 (RGB) are supported")
    if channels == 1 and in_channels == 3:
        weights = torch.tensor(_LUMA, dtype=x.dtype).view(3, 1, 1)
        x = (x * weights).sum(dim=-3, keepdim=True)
    if size is not None and tuple(x.shape[-2:]) != size:
        lead = x.shape[:-3]
        flat = x.reshape(-1, *x.shape[-3:])  # (B, C, H, W), as interpolate wants
        flat = F.interpolate(flat, size=size, mode="bilinear", align_corners=False, antialias=True)
        x = flat.reshape(*lead, *flat.shape[-3:])
    if channels == 3 and in_channels == 1:
        x = x.expand(*x.shape[:-3], 3, *x.shape[-2:]).contiguous()
    # Bilinear weights are non-negative, so this only removes float round-off.
    return x.clamp_(0.0, 1.0)


@dataclass(frozen=True)
class ToModelInput:
    """:func:`to_model_input` with fixed settings, as a picklable dataset transform.

    Parameters
    ----------
    image_size : int or (int, int), optional
        Output height and width; None keeps each image's size. The RESQUE
        authors resize every dataset to 32.
    channels : {1, 3}, optional
        Output channels; None keeps them. The authors use 3.

    Examples
    --------
    >>> ToModelInput(image_size=32, channels=3)(torch.rand(1, 28, 28)).shape
    torch.Size([3, 32, 32])
    """

    image_size: int | tuple[int, int] | None = None
    channels: int | None = None

    def __post_init__(self) -> None:
        _check_image_size(self.image_size)
        _check_channels(self.channels)

    def __call__(self, image: Any) -> torch.Tensor:
        return to_model_input(image, self.image_size, self.channels)


# ---------------------------------------------------------------------------
# The dataset every loader returns
# ---------------------------------------------------------------------------


class LabelledImages(Dataset):
    """A labelled image dataset yielding ``(float image (C, H, W) in [0, 1], int label)``.

    Parameters
    ----------
    source : Sequence
        Indexable; ``source[i][0]`` is image ``i`` in any form
        :func:`to_model_input` reads (a torchvision dataset qualifies).
    targets : sequence of int
        The label of each image, ``0 .. len(classes) - 1``. These, not the
        source's own labels, are what ``__getitem__`` returns.
    classes : sequence of str
        Class names, indexed by label.
    transform : callable, optional
        Applied to each image; default :class:`ToModelInput` with no resizing.
    name, split : str
        Where the data came from, for messages and provenance.

    Attributes
    ----------
    targets : torch.Tensor
        int64 ``(N,)``: all labels at once, for splitting without reading images.
    classes : list of str
    """

    def __init__(
        self,
        source: Sequence,
        targets: Sequence[int] | np.ndarray | torch.Tensor,
        classes: Sequence[str],
        transform: Callable[[Any], torch.Tensor] | None = None,
        name: str = "",
        split: str = "",
    ):
        self.source = source
        self.targets = torch.as_tensor(np.asarray(targets), dtype=torch.long).reshape(-1)
        self.classes = [str(c) for c in classes]
        self.transform = transform if transform is not None else ToModelInput()
        self.name = name
        self.split = split
        label = f"dataset {name!r} ({split})" if name else "dataset"
        if len(self.targets) != len(source):
            raise DataError(f"{label} has {len(source)} images but {len(self.targets)} labels")
        if len(self.targets) == 0:
            raise DataError(f"{label} is empty")
        low, high = int(self.targets.min()), int(self.targets.max())
        if low < 0 or high >= len(self.classes):
            raise DataError(
                f"{label} has labels in [{low}, {high}] but {len(self.classes)} class names; "
                f"labels must lie in [0, {len(self.classes) - 1}]"
            )

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        index = int(index)
        image = self.source[index][0]
        return self.transform(image), int(self.targets[index])

    def __getitems__(self, indices) -> list[tuple[torch.Tensor, int]]:
        """A batch of items, as a ``DataLoader`` asks for them: those of ``__getitem__``.

        Images held in one tensor are converted together, one call for the
        batch rather than one an image; other sources are read one by one.
        """
        indices = [int(i) for i in indices]
        if not (isinstance(self.source, _Images) and isinstance(self.transform, ToModelInput)):
            return [self[i] for i in indices]
        batch = self.source.images[indices]
        if batch.ndim == 3:  # (B, H, W): grey images without a channel axis
            batch = batch.unsqueeze(1)
        images = self.transform(batch).unbind(0)
        labels = self.targets[indices].tolist()
        return list(zip(images, labels))

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``), whether or not each occurs in this split."""
        return len(self.classes)

    def __repr__(self) -> str:
        return (
            f"LabelledImages(name={self.name!r}, split={self.split!r}, images={len(self)}, "
            f"classes={self.num_classes}, transform={self.transform!r})"
        )


class _Parts(NamedTuple):
    """What a registered loader returns: images, their labels, and class names."""

    source: Sequence
    targets: Any
    classes: Sequence[str]


# ---------------------------------------------------------------------------
# Public entry points
# ---------------------------------------------------------------------------


def list_datasets(pattern: str | None = None) -> list[str]:
    """Names :func:`load_dataset` accepts, sorted; `pattern` filters with shell wildcards (``"*mnist"``)."""
    return DATASETS.names(pattern)


def check_available(name: str, *, root: str | os.PathLike | None = None, download: bool = False) -> None:
    """Raise the error :func:`load_dataset` would raise if dataset `name` cannot be had here; else return.

    Cheap for the offline default (its files are only looked for), a load of
    the test split otherwise. With `download`, only the name is checked:
    nothing is fetched by a check.
    """
    DATASETS.get(name)  # unknown names: close matches and the list
    if download:
        return
    if name == "fashion_mnist":
        prepare_fashion_mnist(data_root(root), download=download)
    else:
        load_dataset(name, "test", root=root, download=download)


def load_dataset(
    name: str,
    split: str = "train",
    root: str | os.PathLike | None = None,
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    download: bool = False,
    **options: Any,
) -> LabelledImages:
    """Load a dataset by name as :class:`LabelledImages`.

    Parameters
    ----------
    name : str
        One of :func:`list_datasets`.
    split : {"train", "test"}
        The dataset's official split (``digits``: a fixed seeded 80/20 split,
        see ``DIGITS_TEST_FRACTION``, ``DIGITS_SPLIT_SEED``).
    root : str or path-like, optional
        Data root; default :func:`data_root` (``$RESQUE_DATA``, else a per-user cache).
    image_size : int or (int, int), optional
        Resize every image to this (the authors use 32); None keeps the native size.
    channels : {1, 3}, optional
        Output channels (the authors use 3); None keeps the native channels.
    download : bool, default False
        Let torchvision fetch missing files (needs internet). Off by default so
        that nothing touches the network unless asked.
    **options
        Passed to the dataset's loader, e.g. ``debian_dir`` for ``fashion_mnist``.

    Returns
    -------
    LabelledImages
        Yields ``(image, label)``: ``image`` float32 ``(C, H, W)`` in ``[0, 1]``,
        not mean/std-normalised (shifts are defined on ``[0, 1]`` images; a
        model can normalise inside itself).

    Raises
    ------
    InvalidParameterError
        Unknown `name` (the message lists the known ones), `split`, `image_size`
        or `channels`.
    DataError
        The files are missing and cannot be fetched; the message says how to get them.

    Examples
    --------
    >>> train = load_dataset("digits", image_size=32, channels=3)
    >>> image, label = train[0]
    >>> image.shape, train.targets.shape
    (torch.Size([3, 32, 32]), torch.Size([1438]))
    """
    loader = DATASETS.get(name)
    if split not in SPLITS:
        raise InvalidParameterError("split", split, SPLITS)
    accepted = [p for p in inspect.signature(loader).parameters if p not in ("root", "train", "download")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise InvalidParameterError("options", unknown, f"options of {name!r}: {accepted or 'none'}")
    transform = ToModelInput(image_size=image_size, channels=channels)
    parts = loader(data_root(root), split == "train", bool(download), **options)
    return LabelledImages(parts.source, parts.targets, parts.classes, transform=transform, name=name, split=split)


# ---------------------------------------------------------------------------
# Fashion-MNIST: data root, else Debian's package, else a download
# ---------------------------------------------------------------------------


def _unpack_gzip(source: Path, destination: Path) -> None:
    """Gunzip `source` to `destination` through a temporary file, so that an
    interrupted or concurrent unpack never leaves a truncated file behind."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(destination) as partial, open(partial, "wb") as out, gzip.open(source, "rb") as packed:
        shutil.copyfileobj(packed, out, length=1 << 20)


def _fashion_mnist_missing_message(root: Path, missing: list[str], reason: str) -> str:
    raw = root / "FashionMNIST" / "raw"
    return (
        f"Fashion-MNIST files {missing} are not in {raw} and {reason}. Get them either way:\n"
        f"  1. offline, from Debian/Ubuntu: `sudo apt-get install dataset-fashion-mnist` "
        f"(installs them in {DEBIAN_FASHION_MNIST_DIR}; they are unpacked into the data root on first use);\n"
        f"  2. online: run once with download=True, e.g. "
        f"`resque.load_dataset('fashion_mnist', root={str(root)!r}, download=True)`, "
        f"or copy the files (gzipped or not) from a machine that has them to {raw}/.\n"
        f"The data root is the `root` argument, else ${DATA_ROOT_ENV}, else a per-user cache "
        f"(~/.cache/resque/data)."
    )


def prepare_fashion_mnist(
    root: str | os.PathLike | None = None,
    debian_dir: str | os.PathLike | None = None,
    download: bool = False,
) -> Path:
    """Make sure ``ROOT/FashionMNIST/raw/`` holds the four unpacked Fashion-MNIST files.

    Each file is taken, in this order, from the data root (unpacked, or as
    ``.gz`` which is unpacked in place), from `debian_dir` (Debian's
    ``dataset-fashion-mnist`` package, unpacked into the root), or, when
    `download` is true, from the internet through torchvision.

    Parameters
    ----------
    root : str or path-like, optional
        Data root; default :func:`data_root`.
    debian_dir : str or path-like, optional
        Folder with the gzipped files; default ``DEBIAN_FASHION_MNIST_DIR``
        (read at call time, so it can be patched).
    download : bool, default False
        Fetch what is still missing with torchvision.

    Returns
    -------
    pathlib.Path
        The ``raw`` folder holding the four files.

    Raises
    ------
    DataError
        Some files are nowhere to be found (or the download failed); the
        message gives both ways to get them.
    """
    root = data_root(root)
    debian_dir = Path(debian_dir) if debian_dir is not None else Path(DEBIAN_FASHION_MNIST_DIR)
    raw = root / "FashionMNIST" / "raw"
    missing = []
    for filename in FASHION_MNIST_FILES:
        target = raw / filename
        if target.is_file():
            continue
        candidates = (raw / f"{filename}.gz", debian_dir / f"{filename}.gz")
        packed = next((c for c in candidates if c.is_file()), None)
        if packed is None:
            missing.append(filename)
            continue
        try:
            _unpack_gzip(packed, target)
        except (OSError, EOFError) as error:  # EOFError: a truncated .gz
            raise DataError(
                f"could not unpack {packed} into {raw}: {error}. If the data root is not writable, "
                f"pass root= or set ${DATA_ROOT_ENV} to a writable folder."
            ) from error
    if not missing:
        return raw
    if not download:
        raise DataError(
            _fashion_mnist_missing_message(
                root, missing, f"not in {debian_dir} either, and download=False"
            )
        )
    try:
        with _download_timeout():
            _torchvision_class("FashionMNIST")(str(root), train=True, download=True)
    except (RuntimeError, URLError, OSError) as error:
        raise DataError(
            _fashion_mnist_missing_message(root, missing, f"downloading them failed ({error})")
        ) from error
    return raw


#: Fashion-MNIST's class names, by label (those of the dataset's authors, as torchvision has them).
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                         "Ankle boot")


@DATASETS.register("fashion_mnist")
def _fashion_mnist(root: Path, train: bool, download: bool, debian_dir: str | os.PathLike | None = None) -> _Parts:
    """Fashion-MNIST (Xiao et al., 2017): 28x28 grey, 10 classes, 60,000 / 10,000.

    Read straight from the IDX files (the images as one uint8 array), the
    values torchvision's ``FashionMNIST`` gives, without importing torchvision
    (about 3 s, paid by every notebook of a study).
    """
    raw = prepare_fashion_mnist(root, debian_dir=debian_dir, download=download)
    prefix = "train" if train else "t10k"
    try:
        images = read_idx(raw / f"{prefix}-images-idx3-ubyte", dimensions=3)  # (N, 28, 28) uint8
        labels = read_idx(raw / f"{prefix}-labels-idx1-ubyte", dimensions=1)  # (N,) uint8
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
    except (ValueError, OSError) as error:
        raise DataError(
            f"the Fashion-MNIST files in {root / 'FashionMNIST' / 'raw'} cannot be read ({error}); "
            "delete them and load again to unpack or download fresh copies"
        ) from error
    return _Parts(_Images(torch.from_numpy(images)), torch.from_numpy(labels.astype(np.int64)), FASHION_MNIST_CLASSES)


def read_idx(path: str | os.PathLike, dimensions: int) -> np.ndarray:
    """An IDX file of unsigned bytes (the MNIST family's format) as a numpy array.

    The header is two zero bytes, the type code ``0x08`` (unsigned byte), the
    number of dimensions, then each size as a big-endian 32-bit integer.

    Raises
    ------
    ValueError
        If the header is not that of a `dimensions`-dimensional uint8 IDX file,
        or the data are shorter or longer than the sizes say.
    """
    data = Path(path).read_bytes()
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or data[3] != dimensions:
        raise ValueError(f"{Path(path).name} is not a {dimensions}-dimensional IDX file of unsigned bytes")
    header = 4 + 4 * dimensions
    shape = tuple(int(size) for size in np.frombuffer(data, dtype=">u4", count=dimensions, offset=4))
    if len(data) - header != int(np.prod(shape)):
        raise ValueError(f"{Path(path).name} holds {len(data) - header} bytes of data, its header says {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


class _Images(Sequence):
    """``images[i]`` as the 1-tuple ``(image,)`` that :class:`LabelledImages` reads from a source."""

    def __init__(self, images: torch.Tensor):
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index):
        return (self.images[index],)


# ---------------------------------------------------------------------------
# scikit-learn's digits: offline, inside scikit-learn
# ---------------------------------------------------------------------------


@DATASETS.register("digits")
def _digits(root: Path, train: bool, download: bool) -> _Parts:
    """UCI handwritten digits as shipped by scikit-learn: 8x8 grey, 17 levels, 10 classes.

    There is no official split; a stratified 80/20 split with seed
    ``DIGITS_SPLIT_SEED`` gives 1,438 training and 359 test images.
    `root` and `download` are unused: the data ship inside scikit-learn.
    """
    from sklearn.datasets import load_digits  # deferred: scikit-learn is slow to import

    bunch = load_digits()
    images = torch.from_numpy(bunch.images).float().div_(16.0).unsqueeze(1)  # (N, 1, 8, 8), levels 0..16
    labels = torch.from_numpy(bunch.target).long()
    train_idx, test_idx = stratified_partition(
        labels, (1.0 - DIGITS_TEST_FRACTION, DIGITS_TEST_FRACTION), seed=DIGITS_SPLIT_SEED
    )
    chosen = train_idx if train else test_idx
    return _Parts(TensorDataset(images[chosen]), labels[chosen], [str(d) for d in range(10)])


# ---------------------------------------------------------------------------
# Online datasets through torchvision
# ---------------------------------------------------------------------------


def _torchvision_class(class_name: str) -> type:
    """Looked up at call time so tests can substitute stand-ins on ``torchvision.datasets``."""
    import torchvision.datasets

    return getattr(torchvision.datasets, class_name)


@contextlib.contextmanager
def _download_timeout() -> Iterator[None]:
    """Give sockets opened meanwhile a timeout; torchvision's downloads have none."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


@dataclass(frozen=True)
class _Online:
    """How one torchvision dataset differs from the others."""

    class_name: str
    folder: str  # where under the root torchvision keeps it (for messages)
    size: str  # rough download size (train + test), so the user knows what they are asking for
    split_argument: bool = False  # split="train"/"test" instead of train=True/False
    extra: tuple[tuple[str, Any], ...] = ()
    classes: tuple[str, ...] | None = None  # when torchvision gives none


_STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")

_ONLINE = {
    "mnist": _Online("MNIST", "MNIST/raw", "about 12 MB"),
    "kmnist": _Online("KMNIST", "KMNIST/raw", "about 20 MB"),
    # "balanced": 47 classes, the same number of images in each.
    "emnist": _Online("EMNIST", "EMNIST/raw", "about 550 MB", extra=(("split", "balanced"),)),
    "cifar10": _Online("CIFAR10", "cifar-10-batches-py", "about 170 MB"),
    "cifar100": _Online("CIFAR100", "cifar-100-python", "about 170 MB"),
    "svhn": _Online("SVHN", "train_32x32.mat and test_32x32.mat", "about 180 MB + 65 MB", split_argument=True,
                    classes=tuple(str(d) for d in range(10))),
    "stl10": _Online("STL10", "stl10_binary", "about 2.6 GB", split_argument=True, classes=_STL10_CLASSES),
    "gtsrb": _Online("GTSRB", "gtsrb", "about 270 MB + 90 MB", split_argument=True,
                     classes=tuple(str(i) for i in range(43))),
}


def _targets_of_torchvision(dataset: Any, name: str) -> Any:
    """Labels without reading images: ``.targets`` (MNIST family, CIFAR), ``.labels``
    (SVHN, STL-10, both 0-based already), or GTSRB's ``._samples`` (path, label) list."""
    for attribute in ("targets", "labels"):
        labels = getattr(dataset, attribute, None)
        if labels is not None:
            return labels
    samples = getattr(dataset, "_samples", None)
    if samples is not None:
        return [label for _, label in samples]
    raise DataError(
        f"cannot read the labels of {name!r} without its images: the torchvision dataset has no "
        "`targets`, `labels` or `_samples`; this torchvision version may be unsupported"
    )


def _open_online(name: str, spec: _Online, root: Path, train: bool, download: bool) -> Any:
    dataset_class = _torchvision_class(spec.class_name)
    kwargs = dict(spec.extra)
    if spec.split_argument:
        kwargs["split"] = "train" if train else "test"
    else:
        kwargs["train"] = train
    try:
        if download:
            root.mkdir(parents=True, exist_ok=True)
            with _download_timeout():
                return dataset_class(str(root), download=True, **kwargs)
        return dataset_class(str(root), download=False, **kwargs)
    except (RuntimeError, URLError, OSError) as error:
        where = f"{root} (torchvision looks there for {spec.folder})"
        if download:
            message = (
                f"dataset {name!r} is not in {where} and downloading it ({spec.size}) failed: {error}. "
                f"This machine may be offline: run `resque.load_dataset({name!r}, download=True)` once on a "
                f"machine with internet access and copy its data root here (to {root}, or to a folder named "
                f"by ${DATA_ROOT_ENV})."
            )
        else:
            message = (
                f"dataset {name!r} is not in {where}; torchvision said: {error}. It needs a one-time download "
                f"of {spec.size}: call `resque.load_dataset({name!r}, download=True)` on a machine with internet "
                f"access, or copy an existing data root holding it to {root} (or set ${DATA_ROOT_ENV} to one)."
            )
        raise DataError(message) from error


def _register_online(name: str, spec: _Online) -> None:
    def load(root: Path, train: bool, download: bool) -> _Parts:
        dataset = _open_online(name, spec, root, train, download)
        if spec.class_name == "EMNIST":
            # EMNIST's files store each image transposed relative to MNIST's
            # convention; torchvision does not undo it, so letters come out
            # mirrored and rotated unless flipped back once here.
            dataset.data = dataset.data.transpose(-1, -2).contiguous()
        classes = getattr(dataset, "classes", None) or spec.classes
        return _Parts(dataset, _targets_of_torchvision(dataset, name), classes)

    load.__doc__ = f"torchvision's {spec.class_name} ({spec.size} download)."
    DATASETS.register(name)(load)


for _name, _spec in _ONLINE.items():
    _register_online(_name, _spec)
del _name, _spec
