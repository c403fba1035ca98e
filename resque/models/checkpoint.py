"""Checkpoints that hold tensors and text only, so loading one runs no code.

A checkpoint is a safetensors file: the model's state dict, plus in its text
metadata the registry name and constructor arguments (``model.resque_config``,
see :mod:`resque.models`), any extra JSON the caller adds (dataset, epochs,
accuracy...), and the resque and torch versions that wrote it. Loading rebuilds
the model with :func:`resque.models.create_model` and copies the weights in.

Files written by ``torch.save`` are refused without being opened: they are
pickles, and unpickling can run arbitrary code. Saving goes through a temporary
file in the same folder and an atomic rename, so an interrupted save leaves the
previous checkpoint (or none), never a truncated one.

Examples
--------
>>> from resque.models import create_model
>>> model = create_model("small_cnn")
>>> save_checkpoint(model, "small_cnn.safetensors", dataset="fashion_mnist", epochs=3)  # doctest: +SKIP
>>> model = load_checkpoint("small_cnn.safetensors")                                    # doctest: +SKIP
>>> read_checkpoint_config("small_cnn.safetensors")["extra"]                            # doctest: +SKIP
{'dataset': 'fashion_mnist', 'epochs': 3}
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from ..errors import CheckpointError, InvalidParameterError
from ..io import atomic_path
from .zoo import _is_plain, create_model, list_models

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "read_checkpoint_config"]

#: Written into every file's metadata; a reader refuses formats it does not know.
CHECKPOINT_FORMAT = "resque.checkpoint/1"

# First bytes of what torch.save writes: a zip archive (torch >= 1.6) or a bare pickle.
_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL_OPCODE = b"\x80"


def save_checkpoint(model: nn.Module, path: str | os.PathLike, **extra_config) -> Path:
    """Write `model`'s weights and how to rebuild it to a safetensors file.

    Parameters
    ----------
    model : torch.nn.Module
        A model from :func:`resque.models.create_model` (it carries ``resque_config``).
    path : str or os.PathLike
        Where to write; the folder must exist. An existing file is replaced.
    **extra_config
        Anything else to record (dataset, seed, epochs, accuracy...); plain JSON
        values only. Read it back with :func:`read_checkpoint_config`.

    Returns
    -------
    pathlib.Path
        `path`.

    Raises
    ------
    InvalidParameterError
        `model` was not built by ``create_model``, or an extra value is not plain JSON.
    CheckpointError
        The file could not be written (the previous file, if any, is left as it was).
    """
    from safetensors.torch import save_file

    from .._version import __version__

    config = _model_config(model)
    for key, value in extra_config.items():
        if not _is_plain(value):
            raise InvalidParameterError(
                key, value, "a plain JSON value (number, string, bool, None, list or dict of them)",
                "Convert tensors and arrays with .tolist() or float().",
            )
    path = Path(path)
    if not path.parent.is_dir():
        raise CheckpointError(path, f"cannot save: the folder {str(path.parent)!r} does not exist.")
    # safetensors wants contiguous CPU tensors; detach so no autograd state is touched.
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "config": json.dumps({"name": config["name"], "kwargs": config["kwargs"], "extra": extra_config}),
        "resque_version": __version__,
        "torch_version": torch.__version__,
    }
    try:
        with atomic_path(path) as temporary:
            save_file(tensors, str(temporary), metadata=metadata)
    except Exception as exc:
        raise CheckpointError(path, f"could not be written ({exc}).") from exc
        raise  # KeyboardInterrupt and friends pass through, after the cleanup
    return path


def read_checkpoint_config(path: str | os.PathLike) -> dict:
    """The configuration stored in a checkpoint, without reading its tensors.

    Returns
    -------
    dict
        ``{"name": str, "kwargs": dict, "extra": dict, "resque_version": str,
        "torch_version": str}``.

    Raises
    ------
    CheckpointError
        Missing, unsafe (pickle), corrupt, or not written by :func:`save_checkpoint`.
    """
    from safetensors import safe_open

    path = _checked_path(path)
    try:
        with safe_open(str(path), framework="pt") as reader:
            metadata = reader.metadata() or {}
    except Exception as exc:  # safetensors raises its own error type for every header problem
        raise CheckpointError(path, f"is corrupt or not a safetensors file ({exc}).") from exc
    return _parse_metadata(path, metadata)


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model stored in `path` and load its weights; no code in the file runs.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by :func:`save_checkpoint`.
    map_location : str or torch.device, default "cpu"
        Device for the returned model.

    Returns
    -------
    torch.nn.Module
        The model, in ``eval()`` mode (call ``.train()`` to fine-tune), with its
        ``resque_config`` as saved.

    Raises
    ------
    CheckpointError
        The file is missing; was written by ``torch.save`` (a pickle, refused
        unopened); is corrupt; lacks the resque config; names a model that is not
        registered; or holds weights that do not match the architecture.
    InvalidParameterError
        `map_location` is not a device.
    """
    from safetensors import safe_open

    try:
        device = torch.device(map_location)
    except (RuntimeError, TypeError):
        raise InvalidParameterError("map_location", map_location, "a torch device such as 'cpu' or 'cuda:0'") from None
    path = _checked_path(path)
    try:
        with safe_open(str(path), framework="pt") as reader:
            config = _parse_metadata(path, reader.metadata() or {})
            tensors = {name: reader.get_tensor(name) for name in reader.keys()}
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(path, f"is corrupt or not a safetensors file ({exc}).") from exc

    try:
        model = create_model(config["name"], **config["kwargs"])
    except InvalidParameterError as exc:
        if config["name"] not in list_models():
            problem = (
                f"records model {config['name']!r}, which is not registered; known models: "
                + ", ".join(list_models())
                + ". Import the module that registers it before loading."
            )
        else:
            problem = f"records constructor arguments that {config['name']!r} rejects: {exc}"
        raise CheckpointError(path, problem) from exc
    _check_state_dict(path, config["name"], model.state_dict(), tensors)
    model.load_state_dict(tensors)
    return model.to(device).eval()


# --------------------------------------------------------------------------- steps


def _model_config(model) -> dict:
    config = getattr(model, "resque_config", None)
    if not (
        isinstance(model, nn.Module)
        and isinstance(config, dict)
        and isinstance(config.get("name"), str)
        and isinstance(config.get("kwargs"), dict)
    ):
        raise InvalidParameterError(
            "model",
            type(model).__name__,
            "a model built with resque.models.create_model (it carries .resque_config)",
            "A checkpoint must say how to rebuild its model; for another model, save its "
            "state_dict with safetensors.torch.save_file instead.",
        )
    return config


def _checked_path(path) -> Path:
    """`path` as a Path, once it is known to be an existing safetensors file (judged by its first bytes)."""
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidParameterError("path", path, "a file path (str or os.PathLike)")
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such file." if not path.exists() else "is not a regular file.")
    with open(path, "rb") as handle:
        head = handle.read(9)
    # A safetensors file opens with an 8-byte header length, then the JSON header's "{".
    # Check that first: a header length can itself start with the byte 0x80.
    if head[8:9] == b"{":
        return path
    if head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_PROTOCOL_OPCODE):
        raise CheckpointError(
            path,
            "was written by torch.save (a pickle); resque refuses to unpickle it because that "
            "can run arbitrary code. If you trust the file, load it yourself with "
            "torch.load(path, weights_only=True), load the state dict into "
            "resque.models.create_model(...), and save it with resque.save_checkpoint.",
        )
    raise CheckpointError(path, "is corrupt or not a safetensors file (bad header).")


def _parse_metadata(path: Path, metadata: dict) -> dict:
    if "config" not in metadata:
        raise CheckpointError(
            path,
            "has no resque config in its metadata, so the model cannot be rebuilt (a plain "
            "safetensors state dict?). Build the model with resque.models.create_model and "
            "load it with model.load_state_dict(safetensors.torch.load_file(path)).",
        )
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            path, f"has format {metadata.get('format')!r}; this resque reads {CHECKPOINT_FORMAT!r}."
        )
    try:
        config = json.loads(metadata["config"])
    except json.JSONDecodeError as exc:
        raise CheckpointError(path, f"has an unreadable config ({exc}).") from exc
    if not (
        isinstance(config, dict)
        and isinstance(config.get("name"), str)
        and isinstance(config.get("kwargs"), dict)
        and isinstance(config.get("extra", {}), dict)
    ):
        raise CheckpointError(path, 'has a config without a model "name" and "kwargs".')
    return {
        "name": config["name"],
        "kwargs": config["kwargs"],
        "extra": config.get("extra", {}),
        "resque_version": metadata.get("resque_version", "unknown"),
        "torch_version": metadata.get("torch_version", "unknown"),
    }


def _check_state_dict(path: Path, name: str, expected: dict, found: dict) -> None:
    """Raise a CheckpointError listing missing, unexpected and wrongly shaped weights."""
    missing = [key for key in expected if key not in found]
    unexpected = [key for key in found if key not in expected]
    reshaped = [
        f"{key} {tuple(found[key].shape)} (model: {tuple(expected[key].shape)})"
        for key in expected
        if key in found and found[key].shape != expected[key].shape
    ]
    if not (missing or unexpected or reshaped):
        return

    def shown(items: list[str]) -> str:
        return ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")

    parts = []
    if missing:
        parts.append(f"missing {shown(missing)}")
    if unexpected:
        parts.append(f"unexpected {shown(unexpected)}")
    if reshaped:
        parts.append(f"wrong shape {shown(reshaped)}")
    raise CheckpointError(
        path,
        f"its weights do not match the {name!r} architecture it records: "
        + "; ".join(parts)
        + ". The file was edited, or written by a different version of the model.",
    )
