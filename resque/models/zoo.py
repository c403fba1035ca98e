"""Image classifiers sized for small images, one registry, and what RESQUE needs to know about them.

Every model built by :func:`create_model` carries three things besides its weights:

``model.resque_config``
    ``{"name": <registry name>, "kwargs": {<every constructor argument>}}``, with
    defaults filled in, so :func:`resque.models.checkpoint.load_checkpoint` can rebuild the
    same architecture even if a builder's defaults change later.
``model.resque_layer``
    The default embedding layer for RESQUE: a name in ``model.named_modules()``
    whose output feeds the classifier. Read it with :func:`default_layer`.
``model.resque_head``
    The name of the final ``nn.Linear`` classifier, which a task change replaces
    (see :func:`replace_head`). Read it with :func:`head_name`.

A model built elsewhere joins in by setting ``resque_layer`` and ``resque_head``
itself; :func:`default_layer` and :func:`head_name` then work on it too.

============  ===============  ==================  ========================  ===========
name          input (default)  default layer       its output                head
============  ===============  ==================  ========================  ===========
small_cnn     (1, 28, 28)      ``"embedding"``     (B, 128)                  ``"classifier"``
resnet18      (3, 32, 32)      ``"pool"``          (B, 512)                  ``"classifier"``
vgg11_bn      (3, 32, 32)      ``"pool"``          (B, 512)                  ``"classifier"``
vgg16_bn      (3, 32, 32)      ``"pool"``          (B, 512)                  ``"classifier"``
vit_tiny      (3, 32, 32)      ``"norm"``          (B, 64, 192) tokens       ``"classifier"``
============  ===============  ==================  ========================  ===========

The ViT's default layer is the final LayerNorm, a token output ``(B, T, D)``. The
model classifies the *mean* of those tokens (it has no class token), so RESQUE's
token averaging yields exactly the vector its classifier sees.

Examples
--------
>>> from resque.models import create_model, default_layer, head_name, list_models
>>> list_models("vgg*")
['vgg11_bn', 'vgg16_bn']
>>> model = create_model("resnet18", num_classes=100)
>>> default_layer(model), head_name(model)
('pool', 'classifier')
"""

from __future__ import annotations

import inspect
import json
import math

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import InvalidParameterError
from ..checks import check_int, check_real
from ..registry import Registry

__all__ = [
    "MODELS",
    "list_models",
    "create_model",
    "default_layer",
    "head_name",
    "replace_head",
    "input_shape",
    "SmallCNN",
    "ResNet",
    "VGG",
    "VisionTransformer",
]

MODELS = Registry("model")


# --------------------------------------------------------------------------- checks


def _check_shape(num_classes, in_channels, image_size, min_size: int = 1) -> None:
    check_int("num_classes", num_classes, minimum=1)
    check_int("in_channels", in_channels, minimum=1)
    check_int("image_size", image_size, minimum=min_size)


def _is_plain(value) -> bool:
    """True for values that survive a JSON round trip unchanged (so a checkpoint can store them)."""
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


# --------------------------------------------------------------------------- shared parts


class GlobalAvgPool(nn.Module):
    """Average over the spatial axes: ``(B, C, H, W) -> (B, C)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    # No conv bias: the batch norm that follows has its own shift.
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


# --------------------------------------------------------------------------- small CNN


class ChannelsLast(nn.Module):
    """Identity on values that lays activations out channels-last (NHWC in memory).

    On CPU, max pooling and convolutions of channels-last activations are
    much faster than of the default layout (``benchmarks/bench_models.py``
    prints the ratio); the results are the same up to rounding. No parameters,
    so it changes no checkpoint.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


class SmallCNN(nn.Module):
    """Three conv blocks and one hidden linear layer: the CPU default.

    Trains to about 90 % test accuracy on Fashion-MNIST in under two minutes on two
    CPU cores (see ``benchmarks/train_small_cnn.py``).

    Parameters
    ----------
    num_classes : int
    in_channels : int
    image_size : int
        Side of the square input; at least 8 (three 2x2 poolings).
    width : int, default 16
        Channels of the first block; the second and third have ``2 * width``.
        16 reaches about 91 % on Fashion-MNIST in three epochs at a third of
        the compute of 32.
    hidden : int, default 128
        Width of the embedding layer.
    dropout : float, default 0.3
        Dropout before the classifier (training only).

    Shapes
    ------
    ``(B, in_channels, image_size, image_size) -> (B, num_classes)``;
    ``embedding`` outputs ``(B, hidden)``.
    """

    resque_layer = "embedding"
    resque_head = "classifier"

    def __init__(self, num_classes, in_channels, image_size, width=16, hidden=128, dropout=0.3):
        super().__init__()
        side = image_size // 8  # three 2x2 max-pools, each flooring odd sides (28 -> 14 -> 7 -> 3)
        self.features = nn.Sequential(
            # channels-last after the first block (ChannelsLast; parameter names unchanged)
            _conv_bn_relu(in_channels, width).append(ChannelsLast()),
            nn.MaxPool2d(2),
            _conv_bn_relu(width, 2 * width),
            nn.MaxPool2d(2),
            _conv_bn_relu(2 * width, 2 * width),
            nn.MaxPool2d(2),
        )
        # Flatten rather than global pooling: on 28x28 images the position of a
        # feature (collar, sole) carries class information that pooling throws away.
        self.embedding = nn.Sequential(
            nn.Flatten(),
            nn.Linear(2 * width * side * side, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, 2w, S/8, S/8)
        x = self.embedding(x)  # (B, hidden)
        return self.classifier(self.dropout(x))  # (B, num_classes)


@MODELS.register("small_cnn")
def small_cnn(*, num_classes=10, in_channels=1, image_size=28, width=16, hidden=128, dropout=0.3):
    """Small CNN for 28x28 grey images (Fashion-MNIST); see :class:`SmallCNN`."""
    _check_shape(num_classes, in_channels, image_size, min_size=8)
    check_int("width", width, minimum=1)
    check_int("hidden", hidden, minimum=1)
    check_real("dropout", dropout, minimum=0.0, maximum=1.0, closed_max=False)
    return SmallCNN(num_classes, in_channels, image_size, width, hidden, dropout)


# --------------------------------------------------------------------------- ResNet


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (He et al., 2016)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            # A 1x1 projection so the residual matches the new shape.
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet: a 3x3 stem without max-pool, four stages, global average pooling.

    The ImageNet stem (7x7 stride-2 conv, then max-pool) would shrink a 32x32 image
    to 8x8 before the first stage; this one keeps 32x32 (He et al., 2016, Sec. 4.2).

    Parameters
    ----------
    num_classes, in_channels : int
    blocks : sequence of 4 int
        Basic blocks per stage; ``(2, 2, 2, 2)`` is ResNet-18.
    width : int, default 64
        Channels of the first stage; each later stage doubles them.

    Shapes
    ------
    ``(B, in_channels, S, S) -> (B, num_classes)``; ``pool`` outputs ``(B, 8 * width)``.
    """

    resque_layer = "pool"
    resque_head = "classifier"

    def __init__(self, num_classes, in_channels, blocks=(2, 2, 2, 2), width=64):
        super().__init__()
        self.stem = _conv_bn_relu(in_channels, width)
        channels = width
        stages = []
        for index, count in enumerate(blocks):
            out_channels = width * 2**index
            stride = 1 if index == 0 else 2
            layers = []
            for block in range(count):
                layers.append(BasicBlock(channels, out_channels, stride if block == 0 else 1))
                channels = out_channels
            stages.append(nn.Sequential(*layers))
        # Named layer1..layer4 as in torchvision, so layer names carry over.
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = GlobalAvgPool()
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, w, S, S)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 8w, S/8, S/8)
        return self.classifier(self.pool(x))  # (B, 8w) -> (B, num_classes)


@MODELS.register("resnet18")
def resnet18(*, num_classes=10, in_channels=3, image_size=32, width=64):
    """ResNet-18, CIFAR-style (3x3 stem, no max-pool); see :class:`ResNet`."""
    _check_shape(num_classes, in_channels, image_size)
    check_int("width", width, minimum=1)
    return ResNet(num_classes, in_channels, blocks=(2, 2, 2, 2), width=width)


# --------------------------------------------------------------------------- VGG

# Channels per conv, "M" for a 2x2 max-pool (Simonyan & Zisserman, 2015, Table 1, A and D).
VGG_LAYOUTS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """VGG with batch norm, sized for 32x32: the conv stack, global pooling, one linear layer.

    The ImageNet VGG ends in two 4096-wide layers over a 7x7 map; on 32x32 inputs
    the five poolings leave 1x1, so one linear layer over the 512 channels suffices.

    Parameters
    ----------
    num_classes, in_channels : int
    layout : list of int or "M"
        See ``VGG_LAYOUTS``.

    Shapes
    ------
    ``(B, in_channels, S, S) -> (B, num_classes)``; ``pool`` outputs ``(B, 512)``.
    """

    resque_layer = "pool"
    resque_head = "classifier"

    def __init__(self, num_classes, in_channels, layout):
        super().__init__()
        layers, channels = [], in_channels
        for item in layout:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers.append(_conv_bn_relu(channels, item))
                channels = item
        self.features = nn.Sequential(*layers)
        self.pool = GlobalAvgPool()
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, 512, S/32, S/32)
        return self.classifier(self.pool(x))  # (B, 512) -> (B, num_classes)


def _vgg(variant: str, num_classes, in_channels, image_size) -> VGG:
    _check_shape(num_classes, in_channels, image_size, min_size=32)
    return VGG(num_classes, in_channels, VGG_LAYOUTS[variant])


@MODELS.register("vgg11_bn")
def vgg11_bn(*, num_classes=10, in_channels=3, image_size=32):
    """VGG-11 with batch norm, for 32x32 inputs; see :class:`VGG`."""
    return _vgg("vgg11", num_classes, in_channels, image_size)


@MODELS.register("vgg16_bn")
def vgg16_bn(*, num_classes=10, in_channels=3, image_size=32):
    """VGG-16 with batch norm, for 32x32 inputs; see :class:`VGG`."""
    return _vgg("vgg16", num_classes, in_channels, image_size)


# --------------------------------------------------------------------------- ViT


class Attention(nn.Module):
    """Multi-head self-attention over tokens ``(B, T, D)``."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, T, D/heads)
        x = F.scaled_dot_product_attention(q, k, v)  # (B, heads, T, D/heads)
        return self.proj(x.transpose(1, 2).reshape(batch, tokens, dim))


class TransformerBlock(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm(x))``, then ``x + mlp(norm(x))``.

    Written out rather than ``nn.TransformerEncoderLayer`` because that layer's
    inference fast path skips its submodules, so hooks on them (and RESQUE
    embeddings of inner layers) would silently see nothing in ``eval()`` mode.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """A small Vision Transformer (Dosovitskiy et al., 2021) that classifies the mean token.

    No class token: the classifier sees the average of the final tokens, which is
    what RESQUE computes from the token output of ``norm``.

    Parameters
    ----------
    num_classes, in_channels : int
    image_size : int
        Divisible by `patch_size`.
    patch_size : int
    dim : int
        Token width ``D``; divisible by `num_heads`.
    depth : int
        Number of transformer blocks.
    num_heads : int
    mlp_ratio : float
        Hidden width of each block's MLP, as a multiple of `dim`.

    Shapes
    ------
    ``(B, in_channels, S, S) -> (B, num_classes)``; ``norm`` outputs tokens
    ``(B, T, D)`` with ``T = (S / patch_size) ** 2``.
    """

    resque_layer = "norm"
    resque_head = "classifier"

    def __init__(self, num_classes, in_channels, image_size, patch_size, dim, depth, num_heads, mlp_ratio):
        super().__init__()
        num_tokens = (image_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.Sequential(*[TransformerBlock(dim, num_heads, mlp_ratio) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.classifier = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)  # (B, D, S/p, S/p)
        x = x.flatten(2).transpose(1, 2) + self.pos_embed  # (B, T, D)
        x = self.norm(self.blocks(x))  # (B, T, D)
        return self.classifier(x.mean(dim=1))  # (B, D) -> (B, num_classes)


@MODELS.register("vit_tiny")
def vit_tiny(
    *, num_classes=10, in_channels=3, image_size=32, patch_size=4, dim=192, depth=6, num_heads=3, mlp_ratio=2.0
):
    """A 6-block ViT with 4x4 patches for 32x32 inputs (64 tokens of width 192); see :class:`VisionTransformer`."""
    _check_shape(num_classes, in_channels, image_size)
    for parameter, value in [("patch_size", patch_size), ("dim", dim), ("depth", depth), ("num_heads", num_heads)]:
        check_int(parameter, value, minimum=1)
    if image_size % patch_size:
        raise InvalidParameterError(
            "patch_size", patch_size, f"a divisor of image_size={image_size}", "Patches must tile the image."
        )
    if dim % num_heads:
        raise InvalidParameterError("num_heads", num_heads, f"a divisor of dim={dim}")
    if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float)) or not mlp_ratio > 0:
        raise InvalidParameterError("mlp_ratio", mlp_ratio, "a positive number")
    return VisionTransformer(num_classes, in_channels, image_size, patch_size, dim, depth, num_heads, mlp_ratio)


# --------------------------------------------------------------------------- public API


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted; `pattern` filters with shell wildcards.

    Examples
    --------
    >>> list_models("vgg*")
    ['vgg11_bn', 'vgg16_bn']
    """
    return MODELS.names(pattern)


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_channels: int | None = None,
    image_size: int | None = None,
    **kwargs,
) -> nn.Module:
    """Build the model registered as `name`, freshly initialised, in training mode.

    Parameters
    ----------
    name : str
        One of :func:`list_models`.
    num_classes : int, optional
        Outputs of the classifier; default 10.
    in_channels : int, optional
        Channels of the input images; default 1 for ``small_cnn``, else 3.
    image_size : int, optional
        Side of the square input images; default 28 for ``small_cnn``, else 32.
    **kwargs
        Model-specific options (e.g. ``width``, ``dropout`` for ``small_cnn``,
        ``depth`` for ``vit_tiny``); plain JSON values only, so that a checkpoint
        can record them.

    Returns
    -------
    torch.nn.Module
        Maps ``(B, in_channels, image_size, image_size)`` to logits ``(B, num_classes)``.
        Carries ``resque_config`` (name and every constructor argument),
        ``resque_layer`` and ``resque_head``.

    Raises
    ------
    InvalidParameterError
        Unknown `name` (the message lists the known ones), an option the model
        does not take, or a value out of range.

    Examples
    --------
    >>> model = create_model("small_cnn")
    >>> model(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """
    builder = MODELS.get(name)
    for key, value in [("num_classes", num_classes), ("in_channels", in_channels), ("image_size", image_size)]:
        if value is not None:
            kwargs[key] = value
    signature = inspect.signature(builder)
    unknown = sorted(set(kwargs) - set(signature.parameters))
    if unknown:
        raise InvalidParameterError(
            unknown[0], kwargs[unknown[0]], f"an option of {name!r}: " + ", ".join(signature.parameters)
        )
    for key, value in kwargs.items():
        if not _is_plain(value):
            raise InvalidParameterError(
                key, value, "a plain JSON value (number, string, bool, None, list or dict of them)",
                "Checkpoints store the constructor arguments as JSON.",
            )
    # Record every argument, defaults included, so a checkpoint rebuilds this very
    # architecture even if a builder's defaults change later.
    bound = signature.bind(**kwargs)
    bound.apply_defaults()
    config_kwargs = json.loads(json.dumps(bound.arguments))  # tuples -> lists, as after a reload
    model = builder(**kwargs)
    model.resque_config = {"name": name, "kwargs": config_kwargs}
    return model


def _declared(model: nn.Module, attribute: str, what: str) -> str:
    if not isinstance(model, nn.Module):
        raise InvalidParameterError("model", type(model).__name__, "a torch.nn.Module")
    name = getattr(model, attribute, None)
    if not isinstance(name, str):
        raise InvalidParameterError(
            "model",
            type(model).__name__,
            f"a model that declares its {what} in `model.{attribute}`",
            f"Build it with resque.models.create_model, set model.{attribute} to a name from "
            "model.named_modules(), or pass the layer name explicitly.",
        )
    if name not in dict(model.named_modules()):
        raise InvalidParameterError(
            f"model.{attribute}", name, "a name from model.named_modules()",
            "The model's layers were renamed or removed after it was built.",
        )
    return name


def default_layer(model: nn.Module) -> str:
    """The name of `model`'s default RESQUE embedding layer (``model.resque_layer``).

    It is the layer whose output feeds the classifier: a 2-D ``(B, D)`` output
    for the CNNs here, a token output ``(B, T, D)`` for ``vit_tiny``.

    Raises
    ------
    InvalidParameterError
        The model declares no such layer, or declares one it does not have.
    """
    return _declared(model, "resque_layer", "default embedding layer")


def head_name(model: nn.Module) -> str:
    """The name of `model`'s final ``nn.Linear`` classifier (``model.resque_head``).

    Raises
    ------
    InvalidParameterError
        The model declares no head, or declares one it does not have.
    """
    return _declared(model, "resque_head", "classifier layer")


def replace_head(model: nn.Module, num_classes: int) -> nn.Linear:
    """Swap the classifier for a freshly initialised one with `num_classes` outputs (a task change).

    Also updates ``model.resque_config`` (when present) so that a checkpoint of
    the adapted model rebuilds with the new number of classes.

    Parameters
    ----------
    model : torch.nn.Module
        A model that declares its head (see :func:`head_name`). Changed in place.
    num_classes : int
        Classes of the new task.

    Returns
    -------
    torch.nn.Linear
        The new head, on the old head's device and dtype.
    """
    check_int("num_classes", num_classes, minimum=1)
    name = head_name(model)
    old = model.get_submodule(name)
    if not isinstance(old, nn.Linear):
        raise InvalidParameterError(f"model.{name}", type(old).__name__, "an nn.Linear classifier")
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    new = new.to(device=old.weight.device, dtype=old.weight.dtype)
    parent_name, _, child_name = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child_name, new)
    config = getattr(model, "resque_config", None)
    if isinstance(config, dict) and "num_classes" in config.get("kwargs", {}):
        config["kwargs"]["num_classes"] = num_classes
    return new


def input_shape(model: nn.Module) -> tuple[int, int, int]:
    """``(in_channels, image_size, image_size)`` that a model from :func:`create_model` expects.

    Raises
    ------
    InvalidParameterError
        The model was not built by :func:`create_model`.
    """
    config = getattr(model, "resque_config", None)
    try:
        kwargs = config["kwargs"]
        return (kwargs["in_channels"], kwargs["image_size"], kwargs["image_size"])
    except (TypeError, KeyError):
        raise InvalidParameterError(
            "model", type(model).__name__, "a model built with resque.models.create_model"
        ) from None
