"""One batched, gradient-free forward pass that captures a layer's output.

Everything that reads embeddings out of a model goes through
:func:`model_outputs` (or :func:`layer_outputs`): it resolves the layer name,
turns a ``Dataset`` into a ``DataLoader``, validates each batch (integer
labels, finite images), puts the model in ``eval()`` mode on the right device
and restores it afterwards. How the pass runs (device, batch size, loader
workers, progress bar) is one :class:`ForwardOptions`, built once at the public
boundary from the caller's keyword arguments.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset

from ..checks import check_int, close_matches, did_you_mean
from ..errors import DataError, InvalidParameterError, LayerNotFoundError, PixelRangeWarning

__all__ = ["find_layer", "as_loader", "model_device", "layer_outputs", "model_outputs", "DEFAULT_BATCH_SIZE"]

#: Batch size used when a ``Dataset`` (not a ``DataLoader``) is passed.
DEFAULT_BATCH_SIZE = 256


@dataclass(frozen=True)
class ForwardOptions:
    """How a forward pass runs: the options every estimator and baseline takes.

    Attributes
    ----------
    device : str or torch.device, optional
        Where the pass runs; default where the model's parameters are.
    batch_size : int, optional
        Batch size when the data is a ``Dataset`` (default 256).
    num_workers : int, default 0
        ``DataLoader`` workers when the data is a ``Dataset``.
    progress : bool, default True
        Show a tqdm progress bar.
    """

    device: str | torch.device | None = None
    batch_size: int | None = None
    num_workers: int = 0
    progress: bool = True

    def __post_init__(self):
        if self.batch_size is not None:
            object.__setattr__(self, "batch_size",
                               check_int("batch_size", self.batch_size, minimum=1, allowed="a positive integer"))
        object.__setattr__(self, "num_workers",
                           check_int("num_workers", self.num_workers, minimum=0, allowed="a non-negative integer"))
        if self.device is not None:
            object.__setattr__(self, "device", _check_device(self.device))

    @classmethod
    def from_kwargs(cls, options: Mapping, *, others: str = "") -> "ForwardOptions":
        """From ``**options`` of a public function; an unknown key is refused, naming the known ones."""
        known = [f.name for f in fields(cls)]
        for key in options:
            if key not in known:
                hint = " ".join(part for part in (did_you_mean(key, known), others) if part)
                raise InvalidParameterError("options", key, known, hint)
        return cls(**options)


def _check_device(device) -> torch.device:
    """`device` as a torch.device that exists on this machine, or an error saying what is available."""
    available = ["cpu"] + (["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
                           if torch.cuda.is_available() else [])
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise InvalidParameterError("device", device, available, did_you_mean(device, ["cpu", "cuda", "mps"])) from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise InvalidParameterError("device", device, available, "This machine has no CUDA GPU (torch.cuda.is_available() is False).")
    if parsed.type == "cuda" and parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise InvalidParameterError("device", device, available, f"This machine has {torch.cuda.device_count()} CUDA device(s).")
    return parsed


def find_layer(model: nn.Module, layer: str) -> nn.Module:
    """Return the submodule called `layer` (a name from ``model.named_modules()``)."""
    if not isinstance(layer, str):
        raise InvalidParameterError(
            "layer", layer, "a module name from model.named_modules(), as a string"
        )
    modules = dict(model.named_modules())
    if layer in modules and layer != "":
        return modules[layer]
    valid = [name for name in modules if name]
    close = close_matches(layer, valid, cutoff=0.5)
    raise LayerNotFoundError(layer, close, valid)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a stateless model)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def as_loader(
    data, name: str, batch_size: int | None = None, num_workers: int = 0, pin_memory: bool = False
) -> DataLoader:
    """A ``DataLoader`` over `data` (returned as is when it already is one).

    `name` is the argument's name, used in error messages.
    """
    if isinstance(data, DataLoader):
        if batch_size is not None and data.batch_size is not None and batch_size != data.batch_size:
            warnings.warn(
                f"batch_size={batch_size} is ignored because `{name}` is already a DataLoader "
                f"(batch_size={data.batch_size}); pass the Dataset to let resque batch it.",
                stacklevel=3,
            )
        loader = data
    elif isinstance(data, Dataset):
        loader = DataLoader(
            data,
            batch_size=batch_size or DEFAULT_BATCH_SIZE,
            shuffle=False,
            num_workers=num_workers,
            pin_memory=pin_memory,
        )
    else:
        raise DataError(
            f"`{name}` must be a torch Dataset or DataLoader yielding (image, label), got "
            f"{type(data).__name__}. Wrap tensors with torch.utils.data.TensorDataset(images, labels)."
        )
    if not isinstance(loader.dataset, IterableDataset):
        try:
            empty = len(loader.dataset) == 0
        except TypeError:  # a map-style dataset without __len__: find out while iterating
            empty = False
        if empty:
            raise DataError(f"`{name}` is empty (0 images); RESQUE needs labelled images.")
    return loader


def expected_input(model: nn.Module) -> tuple[int | None, int | None]:
    """``(channels, image size)`` the model takes, where it says so (``None`` where it does not).

    A model of the zoo records both (``model.resque_config``). Any other model
    is taken at its word: what it cannot run on is reported from its own error.
    """
    kwargs = (getattr(model, "resque_config", None) or {}).get("kwargs", {})
    return kwargs.get("in_channels"), kwargs.get("image_size")


def _model_dtype(model: nn.Module) -> torch.dtype | None:
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), None)


def _describe_expected(channels, size) -> str:
    if channels is None:
        return ""
    shape = f"(B, {channels}, {size}, {size})" if size else f"(B, {channels}, H, W)"
    return f" The model takes float batches of shape {shape}."


def _check_images(images: torch.Tensor, name: str, channels: int | None, size: int | None,
                  model_dtype: torch.dtype | None) -> None:
    """Refuse a batch the model cannot take, saying what it takes and what came instead."""
    if channels is None:  # a model that does not say what it takes: its own errors speak
        return
    expected = _describe_expected(channels, size)
    got = f"shape {tuple(images.shape)} and dtype {str(images.dtype).replace('torch.', '')}"
    if not images.is_floating_point():
        raise DataError(
            f"`{name}` yields images of {got}; resque expects floats in [0, 1]. Convert them "
            "(e.g. images.float() / 255, torchvision.transforms.ToTensor, or resque.to_model_input)." + expected
        )
    if images.ndim == 3 and images.shape[1] != channels:
        raise DataError(f"`{name}` yields images of {got}, without a channel axis; add one "
                        f"(images.unsqueeze(1) for grey images)." + expected)
    if images.ndim != 4:
        raise DataError(f"`{name}` yields images of {got}; expected 4-D (B, C, H, W) batches." + expected)
    if images.shape[1] != channels:
        if images.shape[-1] == channels:
            raise DataError(f"`{name}` yields images of {got}, which look channels-last; the model wants "
                            "channels first: images.permute(0, 3, 1, 2)." + expected)
        raise DataError(f"`{name}` yields images with {images.shape[1]} channel(s) ({got}); the model takes "
                        f"{channels}. resque.to_model_input converts grey and colour images." + expected)
    if size is not None and tuple(images.shape[2:]) != (size, size):
        raise DataError(f"`{name}` yields {images.shape[2]}x{images.shape[3]} images ({got}); the model was "
                        f"built for {size}x{size}. Resize them (resque.to_model_input(image_size={size}))."
                        + expected)
    if model_dtype is not None and images.dtype != model_dtype:
        raise DataError(f"`{name}` yields images of dtype {str(images.dtype).replace('torch.', '')} but the model's "
                        f"weights are {str(model_dtype).replace('torch.', '')}; cast one to the other (model.float(), "
                        "or images of the model's dtype).")


def _split_batch(batch, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise DataError(
            f"`{name}` must yield (image, label) pairs; a batch was a {type(batch).__name__}"
            + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else "")
            + "."
        )
    images, labels = batch[0], batch[1]
    if not isinstance(images, torch.Tensor):
        raise DataError(
            f"`{name}` yielded images of type {type(images).__name__}; convert them to tensors "
            "(e.g. with torchvision.transforms.ToTensor())."
        )
    labels = torch.as_tensor(labels)
    if labels.dtype == torch.bool or labels.is_floating_point() or labels.is_complex():
        raise DataError(
            f"`{name}` yielded labels of dtype {labels.dtype}; class labels must be integers "
            "(e.g. convert them with labels.long(), or use a target_transform)."
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(
            f"`{name}` yielded labels of shape {tuple(labels.shape)} for {images.shape[0]} images; "
            "expected one integer class per image (for one-hot labels use labels.argmax(1))."
        )
    if labels.numel() and int(labels.min()) < 0:
        raise DataError(f"`{name}` yielded a negative label ({int(labels.min())}); class labels must be >= 0.")
    return images, labels


@contextlib.contextmanager
def _inference_mode(model: nn.Module, device: torch.device):
    """eval(), no gradients, on `device`; the previous mode and device come back afterwards."""
    was_training = model.training
    previous_device = model_device(model)
    moved = previous_device != device
    if moved:
        model.to(device)
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)
        if moved:
            model.to(previous_device)


def layer_outputs(
    model: nn.Module,
    data,
    layer: str,
    *,
    name: str = "data",
    forward: ForwardOptions | None = None,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(layer_output, labels)`` for each batch of one forward pass over `data`.

    Parameters
    ----------
    model : torch.nn.Module
    data : Dataset or DataLoader yielding ``(image, label)``
    layer : str
        Name from ``model.named_modules()`` whose output is captured.
    name : str
        How `data` is called in error messages and on the progress bar.
    forward : ForwardOptions, optional
        Device, batch size, workers and progress bar (defaults: see :class:`ForwardOptions`).

    Yields
    ------
    (output, labels) : the raw layer output for the batch (on the pass's
        device) and the ``(B,)`` int64 labels on the same device.
    """
    for output, _, labels in model_outputs(model, data, layer, name=name, forward=forward):
        yield output, labels


def model_outputs(
    model: nn.Module,
    data,
    layer: str | Sequence[str] | None = None,
    *,
    name: str = "data",
    forward: ForwardOptions | None = None,
) -> Iterator[tuple[torch.Tensor | tuple | None, object, torch.Tensor]]:
    """Yield ``(layer_output, model_output, labels)`` per batch of one forward pass.

    The one forward pass every estimator and baseline shares: batches are
    validated (integer labels, finite images), the model runs in ``eval()``
    mode without gradients on `device`, and its mode and device come back
    afterwards. Parameters as in :func:`layer_outputs`; `layer` may be None to
    capture no layer (the first item is then None), or a list or tuple of names
    to capture several layers in the same pass (the first item is then a
    tuple of their outputs, in that order).

    Yields
    ------
    (layer_output, model_output, labels)
        The raw layer output (or None, or a tuple), whatever ``model(images)``
        returned, and the ``(B,)`` int64 labels, all on `device`.
    """
    from tqdm.auto import tqdm

    forward = forward or ForwardOptions()
    several = isinstance(layer, (list, tuple))
    layers = tuple(layer) if several else (() if layer is None else (layer,))
    if several and not layers:
        raise InvalidParameterError("layer", list(layer), "a layer name, a non-empty sequence of names, or None")
    modules = {each: find_layer(model, each) for each in layers}  # one hook per distinct name
    device = forward.device if forward.device is not None else model_device(model)
    loader = as_loader(data, name, forward.batch_size, forward.num_workers, pin_memory=device.type == "cuda")
    captured: dict[str, list] = {each: [] for each in modules}
    handles = [module.register_forward_hook(lambda m, i, o, each=each: captured[each].append(o))
               for each, module in modules.items()]
    seen = 0
    warned_scale = False
    takes = (*expected_input(model), _model_dtype(model))  # (channels, size, dtype), checked on every batch
    try:
        with _inference_mode(model, device):
            try:
                total = len(loader)
            except TypeError:  # an IterableDataset without __len__
                total = None
            bar = tqdm(loader, total=total, desc=f"embedding {name}", unit="batch", disable=not forward.progress, leave=False)
            for batch in bar:
                images, labels = _split_batch(batch, name)
                if images.is_floating_point() and not bool(torch.isfinite(images).all()):
                    raise DataError(
                        f"`{name}` contains images with NaN or Inf values (in the batch after "
                        f"{seen} images); clean or drop them before scoring."
                    )
                _check_images(images, name, *takes)
                if not warned_scale and images.numel() and float(images.max()) > 1.0 + 1e-6:
                    warnings.warn(
                        f"`{name}` holds pixel values up to {float(images.max()):.4g}; resque expects images in "
                        "[0, 1] (divide 0-255 images by 255). RESQUE and the baselines are computed as given.",
                        PixelRangeWarning, stacklevel=4,
                    )
                    warned_scale = True
                images = images.to(device, non_blocking=True)
                labels = labels.to(device=device, dtype=torch.long, non_blocking=True)
                for outputs in captured.values():
                    outputs.clear()
                try:
                    model_output = model(images)
                except RuntimeError as error:  # shape or dtype mismatches inside the model
                    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                    raise DataError(
                        f"The model cannot run on a batch of `{name}` of shape {tuple(images.shape)} and dtype "
                        f"{str(images.dtype).replace('torch.', '')} ({first})." + _describe_expected(*takes[:2])
                    ) from error
                for each, outputs in captured.items():
                    if len(outputs) != 1:
                        raise DataError(
                            f"Layer {each!r} ran {len(outputs)} times in one forward pass; RESQUE and the "
                            "baselines need a layer that runs exactly once per image. Choose another layer."
                        )
                    if not isinstance(outputs[0], torch.Tensor):
                        raise DataError(
                            f"Layer {each!r} returns a {type(outputs[0]).__name__}, not a tensor; choose a "
                            "layer whose output is a tensor (e.g. a submodule of it)."
                        )
                if several:
                    layer_output = tuple(captured[each][0] for each in layers)
                else:
                    layer_output = captured[layers[0]][0] if layers else None
                seen += images.shape[0]
                yield layer_output, model_output, labels
    finally:
        for handle in handles:
            handle.remove()
    if seen == 0:
        raise DataError(f"`{name}` is empty (0 images); RESQUE needs labelled images.")
