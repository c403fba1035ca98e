"""RESQUE_dist: how far a distribution shift turns each class's mean embedding.

See the method page (book/method.md), "RESQUE_dist: a distribution shift". The estimator streams: one forward pass per
dataset, and only the per-class embedding sums (``K x C`` numbers) are kept, so
memory does not grow with the number of images. Those sums, computed once on a
model's original data, are its *fingerprint*: saved next to the model, they
let a later shift be scored from the new data alone.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field

import torch
from torch import nn

from .embedding import ForwardOptions, layer_outputs
from ..errors import ClassMismatchError, DataError, FingerprintError
from ..io import atomic_path
from .functional import accumulate_class_sums, class_angles, pool_embedding

__all__ = ["ClassSums", "DistResult", "fingerprint", "load_fingerprint", "resque_dist", "model_digest"]

FINGERPRINT_FORMAT = "resque-fingerprint/1"


def model_digest(model: nn.Module) -> str:
    """SHA-256 of a model's state dict (names, shapes, dtypes and values).

    Used to tell whether a fingerprint belongs to these exact weights.
    """
    digest = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach()
        digest.update(f"{key}|{tuple(tensor.shape)}|{tensor.dtype}".encode())
        digest.update(tensor.cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


@dataclass
class ClassSums:
    """Per-class sums of embeddings: the streaming state of RESQUE_dist.

    Rows are indexed by label value; classes absent from the data have count 0.
    Two ``ClassSums`` of the same layer add up (:meth:`merge`), which is how
    sums from several workers or data shards combine.

    Attributes
    ----------
    sums : torch.Tensor
        ``(K, C)`` float64 sums of pooled embeddings, row ``k`` for label ``k``.
    counts : torch.Tensor
        ``(K,)`` int64 images per label.
    layer : str
        The layer the embeddings come from.
    model_digest : str
        :func:`model_digest` of the model that produced them ("" if unknown).
    """

    sums: torch.Tensor = field(default_factory=lambda: torch.zeros(0, 0, dtype=torch.float64))
    counts: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.int64))
    layer: str = ""
    model_digest: str = ""

    def update(self, embedding: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch: `embedding` ``(B, C)``, `labels` ``(B,)`` int64 on the same device."""
        if self.sums.device != embedding.device:
            self.sums = self.sums.to(embedding.device)
            self.counts = self.counts.to(embedding.device)
        self.sums, self.counts = accumulate_class_sums(self.sums, self.counts, embedding, labels)

    def merge(self, other: "ClassSums") -> "ClassSums":
        """Sums of both (e.g. two shards of the same data); the inputs are left unchanged."""
        if other.layer != self.layer:
            raise FingerprintError(f"Cannot merge class sums of layer {self.layer!r} with layer {other.layer!r}.")
        parts = [part for part in (self, other) if part.counts.numel()]
        if not parts:
            return ClassSums(layer=self.layer, model_digest=self.model_digest)
        width = parts[0].sums.shape[1]
        if any(part.sums.shape[1] != width for part in parts):
            raise FingerprintError("Cannot merge class sums of different embedding widths.")
        rows = max(part.counts.shape[0] for part in parts)
        sums = torch.zeros(rows, width, dtype=torch.float64)
        counts = torch.zeros(rows, dtype=torch.int64)
        for part in parts:
            sums[: part.sums.shape[0]] += part.sums.cpu()
            counts[: part.counts.shape[0]] += part.counts.cpu()
        return ClassSums(sums, counts, self.layer, self.model_digest)

    @property
    def classes(self) -> list[int]:
        """Labels with at least one image, ascending."""
        return torch.nonzero(self.counts).flatten().tolist()

    @property
    def n_images(self) -> int:
        return int(self.counts.sum())

    def save(self, path: str | os.PathLike) -> None:
        """Write the fingerprint as a safetensors file (tensors and text only, no pickle).

        The file is written to a temporary name and renamed, so an interrupted
        save never leaves a truncated fingerprint behind.
        """
        from safetensors.torch import save_file

        metadata = {
            "format": FINGERPRINT_FORMAT,
            "layer": self.layer,
            "model_digest": self.model_digest,
            "classes": json.dumps(self.classes),
        }
        tensors = {"sums": self.sums.cpu().contiguous(), "counts": self.counts.cpu().contiguous()}
        with atomic_path(path) as temporary:
            save_file(tensors, str(temporary), metadata=metadata)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ClassSums":
        """Read a fingerprint written by :meth:`save`."""
        from safetensors import safe_open

        path = os.fspath(path)
        if not os.path.exists(path):
            raise FingerprintError(f"No fingerprint file at {path!r}; create one with resque.fingerprint(...).save(path).")
        try:
            with safe_open(path, framework="pt") as handle:
                metadata = handle.metadata() or {}
                tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        except Exception as exc:  # safetensors raises several types for corrupt headers
            raise FingerprintError(f"{path!r} is not a readable fingerprint file ({exc}); recompute it.") from exc
        if metadata.get("format") != FINGERPRINT_FORMAT or set(tensors) != {"sums", "counts"}:
            raise FingerprintError(
                f"{path!r} is not a {FINGERPRINT_FORMAT} file (format={metadata.get('format')!r}); recompute it."
            )
        sums, counts = tensors["sums"], tensors["counts"]
        if sums.dtype != torch.float64 or counts.dtype != torch.int64 or sums.shape[0] != counts.shape[0]:
            raise FingerprintError(f"{path!r} has inconsistent tables; recompute it.")
        return cls(sums, counts, metadata.get("layer", ""), metadata.get("model_digest", ""))


@dataclass(frozen=True)
class DistResult:
    """The outcome of :func:`resque_dist`. ``float(result)`` is the index.

    Attributes
    ----------
    value : float
        RESQUE_dist in ``[0, 1]``: the unweighted mean of the class angles.
    angles : dict[int, float]
        ``theta_k`` per class label, each in ``[0, 1]``.
    counts_original, counts_shifted : dict[int, int]
        Images per class in each dataset.
    layer : str
    """

    value: float
    angles: dict[int, float]
    counts_original: dict[int, int]
    counts_shifted: dict[int, int]
    layer: str

    def __float__(self) -> float:
        return self.value

    def __repr__(self) -> str:
        return f"DistResult(value={self.value:.6f}, classes={len(self.angles)}, layer={self.layer!r})"


def _class_sums(model, data, layer, name, forward: ForwardOptions) -> ClassSums:
    state = ClassSums(layer=layer)
    for output, labels in layer_outputs(model, data, layer, name=name, forward=forward):
        state.update(pool_embedding(output, "mean"), labels)
    state.sums, state.counts = state.sums.cpu(), state.counts.cpu()
    return state


def fingerprint(
    model: nn.Module,
    data,
    layer: str,
    *,
    device=None,
    batch_size: int | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> ClassSums:
    """Per-class embedding sums of `data` at `layer`: a model's fingerprint.

    Compute it once on the model's original data, ``save`` it next to the
    model, and pass it (or :func:`load_fingerprint` of the file) to
    :func:`resque_dist` as `original`; the result is the same as passing the data.

    Parameters are those of :func:`resque_dist`.

    Examples
    --------
    >>> fp = resque.fingerprint(model, train_set, "features")   # doctest: +SKIP
    >>> fp.save("model.fingerprint.safetensors")                 # doctest: +SKIP
    """
    forward = ForwardOptions(device=device, batch_size=batch_size, num_workers=num_workers, progress=progress)
    state = _class_sums(model, data, layer, "original", forward)
    state.model_digest = model_digest(model)
    return state


def load_fingerprint(path: str | os.PathLike) -> ClassSums:
    """Load a fingerprint saved with ``ClassSums.save``."""
    return ClassSums.load(path)


def resque_dist(
    model: nn.Module,
    original,
    shifted,
    layer: str,
    *,
    device=None,
    batch_size: int | None = None,
    num_workers: int = 0,
    progress: bool = True,
    check_model: bool = True,
) -> DistResult:
    """RESQUE_dist between original and shifted data for one model layer.

    For each class ``k``, the embeddings (layer output, averaged over space or
    tokens) of its images are summed in each dataset; ``theta_k`` is the angle
    between the two sums divided by pi, and RESQUE_dist is the unweighted mean
    of ``theta_k`` over classes. 0 means no change in any class direction.

    Parameters
    ----------
    model : torch.nn.Module
        The trained source model. It is run in ``eval()`` mode without gradients;
        its previous mode (and device) is restored afterwards.
    original : Dataset, DataLoader or ClassSums
        Labelled data the model was trained on, or its fingerprint.
    shifted : Dataset, DataLoader or ClassSums
        Labelled data after the shift, over the same classes.
    layer : str
        Name from ``model.named_modules()``, usually the penultimate layer.
    device : str or torch.device, optional
        Where to run. Default: the device of the model's parameters.
    batch_size : int, optional
        Batch size for Datasets (default 256). Ignored for DataLoaders.
    num_workers : int, default 0
        DataLoader workers for Datasets.
    progress : bool, default True
        Show a progress bar per dataset.
    check_model : bool, default True
        Refuse a fingerprint that was computed with different weights.

    Returns
    -------
    DistResult
        ``float(result)`` is RESQUE_dist in ``[0, 1]``; ``result.angles`` the per-class angles.

    Examples
    --------
    >>> result = resque.resque_dist(model, clean_set, noisy_set, layer="features")  # doctest: +SKIP
    >>> float(result)                                                               # doctest: +SKIP
    0.0731
    """
    forward = ForwardOptions(device=device, batch_size=batch_size, num_workers=num_workers, progress=progress)
    sums = {}
    for name, data in (("original", original), ("shifted", shifted)):
        if isinstance(data, ClassSums):
            if data.layer and data.layer != layer:
                raise FingerprintError(
                    f"The `{name}` fingerprint was computed at layer {data.layer!r}, not layer={layer!r}; "
                    "use the same layer or recompute the fingerprint."
                )
            if check_model and data.model_digest and data.model_digest != model_digest(model):
                raise FingerprintError(
                    f"The `{name}` fingerprint was computed with different model weights; recompute it "
                    "for this model (or pass check_model=False if you changed the weights on purpose)."
                )
            if data.n_images == 0:
                raise DataError(f"The `{name}` fingerprint holds no images; recompute it on labelled data.")
            sums[name] = data
        else:
            sums[name] = _class_sums(model, data, layer, name, forward)
    return dist_from_sums(sums["original"], sums["shifted"])


def dist_from_sums(original: ClassSums, shifted: ClassSums) -> DistResult:
    """RESQUE_dist from two sets of class sums (the `_compute` step of the estimator)."""
    classes_o, classes_s = set(original.classes), set(shifted.classes)
    if classes_o != classes_s:
        raise ClassMismatchError(sorted(classes_o - classes_s), sorted(classes_s - classes_o))
    if original.sums.shape[1] != shifted.sums.shape[1]:
        raise DataError(
            f"Embedding widths differ: {original.sums.shape[1]} (original) vs {shifted.sums.shape[1]} "
            "(shifted); both must come from the same layer of the same model."
        )
    classes = sorted(classes_o)
    index = torch.tensor(classes)
    angles = class_angles(original.sums.cpu()[index], shifted.sums.cpu()[index], classes)
    return DistResult(
        value=float(angles.mean()),
        angles=dict(zip(classes, angles.tolist())),
        counts_original={k: int(original.counts[k]) for k in classes},
        counts_shifted={k: int(shifted.counts[k]) for k in classes},
        layer=original.layer or shifted.layer,
    )
