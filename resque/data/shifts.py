"""Image shifts: the corruptions that produce the shifted data of a study.

See the method page (book/method.md), "The data protocol". Every family maps a batch ``(B, C, H, W)`` of floats
in ``[0, 1]`` to a batch of the same shape, dtype and device, clamped to
``[0, 1]``. Each takes one number, its *intensity*, on a scale documented in
its table entry (:func:`create_shift`), where ``0`` leaves the images exactly
unchanged.

The definitions follow CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019,
``make_cifar_c.py``), whose severities were chosen for 32x32 images; the
ImageNet-C severities destroy images that small. Each family's
:attr:`ShiftFamily.grid` is CIFAR-10-C's five severities written on our
intensity scale.

Randomness is drawn per image: image ``i`` of a call with ``seed`` and
``first_index`` uses a random stream keyed by ``(seed, first_index + i)`` only.
So a shift does not depend on how the images were batched, which is what lets
:class:`ShiftedDataset` precompute a dataset in any batch size. Streams come
from a ``torch.Generator`` on the images' device; CPU and CUDA generators are
different algorithms, so the same seed gives different (equally valid) noise on
CPU and on GPU.

Examples
--------
>>> images = torch.rand(8, 3, 32, 32)
>>> noisy = apply_shift(images, "gaussian_noise", 0.08, seed=0)
>>> list_shifts("*noise")
['gaussian_noise', 'impulse_noise', 'shot_noise']
>>> recommended_grid("gaussian_blur")
(0.4, 0.6, 0.7, 0.8, 1.0)
"""

from __future__ import annotations

import functools
import importlib.util
import math
import numbers
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ..errors import DataError, InvalidParameterError
from ..checks import check_int, check_seed
from ..registry import Registry

__all__ = [
    "SHIFTS",
    "ShiftFamily",
    "ShiftedDataset",
    "apply_shift",
    "create_shift",
    "list_shifts",
    "recommended_grid",
]

SHIFTS = Registry("shift")

# --------------------------------------------------------------------------- #
# Per-image random streams
# --------------------------------------------------------------------------- #

_MASK64 = (1 << 64) - 1


def _splitmix64(value: int) -> int:
    """One step of SplitMix64: a bijective 64-bit mix with good avalanche.

    Used to turn ``(seed, image index, draw)`` into a generator seed; plain
    ``seed + index`` would make seed 0 / image 1 collide with seed 1 / image 0.
    """
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


class _ImageStreams:
    """Random draws in which image ``b``'s numbers depend only on its own key.

    One generator is re-seeded per image and per draw and fills that image's
    slice of a preallocated batch in place: about 10 us per image (60 000
    Fashion-MNIST images in ~0.5 s on 2 cores), a third of the cost of a new
    generator and a new tensor per image.
    """

    def __init__(self, seed: int, first_index: int, count: int, device: torch.device):
        base = _splitmix64(seed & _MASK64)
        self._keys = [_splitmix64(base ^ (first_index + b)) for b in range(count)]
        self._generator = torch.Generator(device=device)
        self._device = device
        self._draws = 0

    def _fill(self, out: torch.Tensor, method: str) -> torch.Tensor:
        draw = self._draws
        self._draws += 1  # a family's second draw must not repeat its first
        for key, view in zip(self._keys, out.unbind(0)):
            self._generator.manual_seed(_splitmix64(key ^ draw))
            getattr(view, method)(generator=self._generator)
        return out

    def uniform(self, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        """``(B, *shape)`` uniform on ``[0, 1)``."""
        out = torch.empty((len(self._keys), *shape), dtype=dtype, device=self._device)
        return self._fill(out, "uniform_")

    def normal(self, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
        """``(B, *shape)`` standard normal."""
        out = torch.empty((len(self._keys), *shape), dtype=dtype, device=self._device)
        return self._fill(out, "normal_")

    def poisson(self, rates: torch.Tensor) -> torch.Tensor:
        """Poisson counts with the given ``(B, ...)`` rates."""
        draw = self._draws
        self._draws += 1
        out = torch.empty_like(rates)
        for key, rate, view in zip(self._keys, rates.unbind(0), out.unbind(0)):
            self._generator.manual_seed(_splitmix64(key ^ draw))
            view.copy_(torch.poisson(rate, generator=self._generator))
        return out


# --------------------------------------------------------------------------- #
# Family table
# --------------------------------------------------------------------------- #

ShiftFunction = Callable[..., torch.Tensor]


@dataclass(frozen=True)
class ShiftFamily:
    """One shift family: its function and the documented meaning of its intensity.

    Attributes
    ----------
    name : str
        Registry name, e.g. ``"gaussian_noise"``.
    function : callable
        ``function(images, intensity, streams, **options) -> images`` on a
        validated ``(B, C, H, W)`` batch with ``intensity > 0``. Prefer
        :meth:`apply`, which validates and handles intensity 0.
    scale : str
        What the intensity means, with units.
    max_intensity : float
        Largest accepted intensity; the range is ``[0, max_intensity]``.
    grid : tuple of float
        Recommended five intensities for 28-32 px images: CIFAR-10-C's
        severities 1-5 on this scale (see `reference`).
    reference : str
        The CIFAR-10-C definition and how `grid` was derived from it.
    random : bool
        Whether the family draws random numbers (the seed matters).
    options : tuple of str
        Keyword options the family accepts (e.g. ``("textures",)`` for frost).
    """

    name: str
    function: ShiftFunction
    scale: str
    max_intensity: float
    grid: tuple[float, ...]
    reference: str
    random: bool = True
    options: tuple[str, ...] = ()

    def check_intensity(self, intensity) -> float:
        """`intensity` as a float, or :class:`InvalidParameterError` if off the scale."""
        allowed = f"a number in [0, {self.max_intensity:g}] for {self.name} ({self.scale})"
        if isinstance(intensity, torch.Tensor) and intensity.numel() == 1:
            intensity = intensity.item()
        if isinstance(intensity, bool) or not isinstance(intensity, numbers.Real):
            raise InvalidParameterError("intensity", intensity, allowed)
        value = float(intensity)
        if not (0.0 <= value <= self.max_intensity):  # also rejects NaN
            hint = f"The recommended grid for 28-32 px images is {list(self.grid)}."
            raise InvalidParameterError("intensity", intensity, allowed, hint)
        return value

    def check_options(self, options: dict) -> None:
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            allowed = list(self.options) if self.options else "no keyword options"
            raise InvalidParameterError(
                "options", unknown, allowed, f"Shift {self.name!r} does not take {', '.join(unknown)}."
            )

    def apply(
        self, images: torch.Tensor, intensity: float, seed: int = 0, *, first_index: int = 0, **options
    ) -> torch.Tensor:
        """Shift a batch; see :func:`apply_shift` for the parameters."""
        _check_images(images)
        value = self.check_intensity(intensity)
        seed = check_seed(seed)
        first_index = check_int("first_index", first_index, minimum=0)
        self.check_options(options)
        if value == 0.0 or images.shape[0] == 0:
            return images.clone()  # the identity, exactly, with no float round trip
        # Half precision has too few bits for Poisson rates and blur weights.
        work = images.float() if images.dtype in (torch.float16, torch.bfloat16) else images
        streams = _ImageStreams(seed, first_index, images.shape[0], images.device)
        shifted = self.function(work, value, streams, **options)  # (B, C, H, W)
        return shifted.clamp_(0.0, 1.0).to(images.dtype)


def _family(
    name: str, *, scale: str, max_intensity: float, grid: Sequence[float], reference: str,
    random: bool = True, options: tuple[str, ...] = (),
) -> Callable[[ShiftFunction], ShiftFunction]:
    """Register `function` as shift `name` with its intensity metadata."""

    def register(function: ShiftFunction) -> ShiftFunction:
        family = ShiftFamily(name, function, scale, float(max_intensity), tuple(grid), reference, random, options)
        SHIFTS.register(name)(family)
        return function

    return register


def list_shifts(pattern: str | None = None) -> list[str]:
    """Names of the shift families, sorted; `pattern` filters with shell wildcards (``"*noise"``)."""
    return SHIFTS.names(pattern)


def create_shift(name: str) -> ShiftFamily:
    """The :class:`ShiftFamily` registered as `name` (unknown names list close matches)."""
    return SHIFTS.get(name)


def recommended_grid(name: str) -> tuple[float, ...]:
    """Five intensities of family `name` suited to 28-32 px images (CIFAR-10-C severities 1-5)."""
    return create_shift(name).grid


def apply_shift(
    images: torch.Tensor, name: str, intensity: float, seed: int = 0, *, first_index: int = 0, **options
) -> torch.Tensor:
    """Apply shift family `name` at `intensity` to a batch of images.

    Parameters
    ----------
    images : torch.Tensor
        ``(B, C, H, W)`` floating point, values in ``[0, 1]``, on any device.
        ``C`` is 1 (grey) or 3 (RGB); most families accept any ``C``.
    name : str
        A family from :func:`list_shifts`.
    intensity : float
        On the family's scale (``create_shift(name).scale``), in
        ``[0, max_intensity]``; ``0`` returns an exact copy of `images`.
    seed : int, default 0
        Seed of the random streams; the same seed gives the same output.
    first_index : int, default 0
        Index of ``images[0]`` in a larger collection: image ``b`` draws from the
        stream of ``(seed, first_index + b)``, so shifting a dataset in chunks
        gives the same result as shifting it whole.
    **options
        Family-specific keyword options (``textures=`` for ``"frost"``).

    Returns
    -------
    torch.Tensor
        ``(B, C, H, W)``, same dtype and device as `images`, values in ``[0, 1]``.

    Raises
    ------
    DataError
        If `images` is not a 4-D floating tensor with values in ``[0, 1]``.
    InvalidParameterError
        If `name`, `intensity`, `seed` or an option is not allowed.

    Examples
    --------
    >>> x = torch.rand(4, 1, 28, 28)
    >>> y = apply_shift(x, "shot_noise", 0.1, seed=1)
    >>> y.shape, bool(y.min() >= 0 and y.max() <= 1)
    (torch.Size([4, 1, 28, 28]), True)
    """
    return create_shift(name).apply(images, intensity, seed, first_index=first_index, **options)


# --------------------------------------------------------------------------- #
# Validation at the boundary
# --------------------------------------------------------------------------- #


def _check_images(images) -> None:
    if not isinstance(images, torch.Tensor):
        raise DataError(
            f"images must be a torch.Tensor of shape (B, C, H, W); got {type(images).__name__}. "
            "Convert with torchvision.transforms.functional.to_tensor and stack the batch."
        )
    if images.ndim != 4:
        hint = " Add the batch axis with images.unsqueeze(0)." if images.ndim == 3 else ""
        raise DataError(f"images must be 4-D (B, C, H, W); got shape {tuple(images.shape)}.{hint}")
    if not images.is_floating_point():
        raise DataError(
            f"images must be floating point with values in [0, 1]; got dtype {images.dtype}. "
            "Convert with images.float() / 255 for 8-bit images."
        )
    if images.numel() and not bool(((images >= 0) & (images <= 1)).all()):  # NaN fails both tests
        low, high = float(images.min()), float(images.max())
        hint = " Divide 8-bit images by 255." if high > 1.5 else ""
        raise DataError(
            f"images must have values in [0, 1] (no NaN); got min {low:g}, max {high:g}. "
            f"Shift images before normalising them.{hint}"
        )


# --------------------------------------------------------------------------- #
# Noise families
# --------------------------------------------------------------------------- #


@_family(
    "gaussian_noise",
    scale="standard deviation of additive Gaussian noise, in [0, 1] pixel units",
    max_intensity=1.0,
    grid=(0.04, 0.06, 0.08, 0.09, 0.10),
    reference="CIFAR-10-C gaussian_noise: clip(x + N(0, c^2)), c = 0.04, 0.06, 0.08, 0.09, 0.10.",
)
def _gaussian_noise(images: torch.Tensor, sigma: float, streams: _ImageStreams) -> torch.Tensor:
    noise = streams.normal(images.shape[1:], images.dtype)  # (B, C, H, W)
    return images + sigma * noise


_SHOT_PHOTONS = (500, 250, 100, 75, 50)  # CIFAR-10-C's photon counts per unit intensity


@_family(
    "shot_noise",
    scale=(
        "noise standard deviation at a white pixel, in [0, 1] pixel units: 1/sqrt(photons), "
        "so the output is Poisson(x * photons) / photons"
    ),
    max_intensity=1.0,
    grid=tuple(1.0 / math.sqrt(c) for c in _SHOT_PHOTONS),
    reference=(
        "CIFAR-10-C shot_noise: clip(Poisson(x * c) / c), c = 500, 250, 100, 75, 50 photons; "
        "intensity = 1/sqrt(c), which puts it on the same scale as gaussian_noise."
    ),
)
def _shot_noise(images: torch.Tensor, intensity: float, streams: _ImageStreams) -> torch.Tensor:
    photons = 1.0 / intensity**2
    return streams.poisson(images * photons) / photons


def _replace_with_salt_or_pepper(images: torch.Tensor, amount: float, draws: torch.Tensor) -> torch.Tensor:
    """Set a fraction `amount` of positions to 0 or 1 (even odds); `draws` is ``(B, 2, c, H, W)``."""
    hit = draws[:, 0] < amount
    salt = draws[:, 1] < 0.5
    out = images.masked_fill(hit & salt, 1.0)  # masks broadcast over C when c == 1
    return out.masked_fill(hit & ~salt, 0.0)


@_family(
    "impulse_noise",
    scale="fraction of values (each channel of each pixel separately) set to 0 or 1, in [0, 1]",
    max_intensity=1.0,
    grid=(0.01, 0.02, 0.03, 0.05, 0.07),
    reference=(
        "CIFAR-10-C impulse_noise: skimage random_noise(mode='s&p', amount=c), which hits every "
        "channel value independently (coloured specks on RGB), c = 0.01, 0.02, 0.03, 0.05, 0.07."
    ),
)
def _impulse_noise(images: torch.Tensor, amount: float, streams: _ImageStreams) -> torch.Tensor:
    _, channels, height, width = images.shape
    draws = streams.uniform((2, channels, height, width), images.dtype)  # (B, 2, C, H, W)
    return _replace_with_salt_or_pepper(images, amount, draws)


@_family(
    "salt_and_pepper",
    scale="fraction of pixels (all channels together) set to black or white, in [0, 1]",
    max_intensity=1.0,
    grid=(0.01, 0.02, 0.03, 0.05, 0.07),
    reference=(
        "Not in CIFAR-10-C; the RESQUE authors' salt-and-pepper hits whole pixels. It differs from "
        "impulse_noise only on colour images (black/white pixels instead of coloured specks), so it "
        "takes impulse_noise's grid."
    ),
)
def _salt_and_pepper(images: torch.Tensor, amount: float, streams: _ImageStreams) -> torch.Tensor:
    _, _, height, width = images.shape
    draws = streams.uniform((2, 1, height, width), images.dtype)  # (B, 2, 1, H, W): one draw per pixel
    return _replace_with_salt_or_pepper(images, amount, draws)


# --------------------------------------------------------------------------- #
# Deterministic families
# --------------------------------------------------------------------------- #


def _gaussian_kernel(sigma: float) -> list[float]:
    """Sampled, normalised 1-D Gaussian weights, truncated at 4 sigma like scipy.ndimage."""
    radius = int(4.0 * sigma + 0.5)
    weights = [math.exp(-0.5 * (tap / sigma) ** 2) for tap in range(-radius, radius + 1)]
    total = math.fsum(weights)
    return [w / total for w in weights]


def _blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur over H and W of each channel, edges repeated ('nearest').

    Written as sums of shifted slices: for kernels this small that is ~10x faster on
    the CPU than ``conv2d`` with one input channel.
    """
    _, _, height, width = images.shape
    kernel = _gaussian_kernel(sigma)
    radius = len(kernel) // 2
    padded = F.pad(images, (radius, radius, radius, radius), mode="replicate")  # (B, C, H+2r, W+2r)
    along_width = torch.zeros_like(padded[..., :width])  # (B, C, H+2r, W)
    for tap, weight in enumerate(kernel):
        along_width.add_(padded[..., tap : tap + width], alpha=weight)
    blurred = torch.zeros_like(images)  # (B, C, H, W)
    for tap, weight in enumerate(kernel):
        blurred.add_(along_width[..., tap : tap + height, :], alpha=weight)
    return blurred


@_family(
    "gaussian_blur",
    scale="standard deviation of the Gaussian kernel, in pixels",
    max_intensity=8.0,
    grid=(0.4, 0.6, 0.7, 0.8, 1.0),
    reference=(
        "CIFAR-10-C gaussian_blur: skimage gaussian(sigma=c) per channel, edges 'nearest', kernel "
        "truncated at 4 sigma, c = 0.4, 0.6, 0.7, 0.8, 1.0 px. (The RESQUE authors' blur reflects "
        "at the edges instead.)"
    ),
    random=False,
)
def _gaussian_blur(images: torch.Tensor, sigma: float, streams: _ImageStreams) -> torch.Tensor:
    return _blur(images, sigma)


@_family(
    "contrast",
    scale=(
        "fraction of contrast removed, in [0, 1]: each channel is pulled towards its image mean, "
        "x -> mean + (1 - intensity) * (x - mean); 1 gives a flat image"
    ),
    max_intensity=1.0,
    grid=(0.25, 0.5, 0.6, 0.7, 0.85),
    reference=(
        "CIFAR-10-C contrast: (x - m) * c + m with m the per-channel image mean, "
        "c = 0.75, 0.5, 0.4, 0.3, 0.15; intensity = 1 - c so that 0 is the identity."
    ),
    random=False,
)
def _contrast(images: torch.Tensor, intensity: float, streams: _ImageStreams) -> torch.Tensor:
    means = images.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
    return means + (1.0 - intensity) * (images - means)


@_family(
    "brightness",
    scale="amount added to the HSV value (max over channels), in [0, 1] pixel units; hue and saturation kept",
    max_intensity=1.0,
    grid=(0.05, 0.1, 0.15, 0.2, 0.3),
    reference="CIFAR-10-C brightness: HSV value V -> clip(V + c), c = 0.05, 0.1, 0.15, 0.2, 0.3.",
    random=False,
)
def _brightness(images: torch.Tensor, amount: float, streams: _ImageStreams) -> torch.Tensor:
    # With hue and saturation fixed every channel is proportional to V = max(channels), so
    # the HSV round trip is a rescaling by V'/V; black pixels (V = 0, saturation 0) become grey V'.
    value = images.amax(dim=1, keepdim=True)  # (B, 1, H, W)
    new_value = (value + amount).clamp(max=1.0)
    ratio = new_value / value.clamp(min=torch.finfo(images.dtype).tiny)
    return torch.where(value > 0, images * ratio, new_value.expand_as(images))


# --------------------------------------------------------------------------- #
# Frost
# --------------------------------------------------------------------------- #

#: Per-channel RGB mean and standard deviation of the five frost photographs CIFAR-10-C
#: draws from (imagecorruptions 1.1.2 frost1-frost5, scaled by 0.2 as CIFAR-10-C does;
#: frost2 and frost3 are the same photograph). The procedural plates copy these statistics.
_FROST_PLATE_STATS = (
    ((0.304, 0.584, 0.650), (0.105, 0.064, 0.060)),
    ((0.787, 0.805, 0.841), (0.084, 0.087, 0.089)),
    ((0.787, 0.805, 0.841), (0.084, 0.087, 0.089)),
    ((0.541, 0.601, 0.649), (0.114, 0.114, 0.119)),
    ((0.440, 0.483, 0.528), (0.174, 0.169, 0.163)),
)
_FROST_PLATE_SIZE = 128  # px; CIFAR-10-C's scaled photographs are 63-120 px high
_FROST_SEED = 20190101  # fixed: the plates are data, the same in every run and on every machine
_NEEDLE_ANGLES = 12
_TEXTURE_SOURCES = ("procedural", "imagecorruptions")
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as PIL's "L" conversion


def _smooth_field(field: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur a ``(1, 1, H, W)`` float32 field (used only to build the plates)."""
    return _blur(field, sigma)


@functools.lru_cache(maxsize=4)
def _needle_kernels(length: float, width: float = 0.6) -> torch.Tensor:
    """``(ANGLES, 1, k, k)`` thin, pointed line segments at evenly spaced angles."""
    radius = math.ceil(length / 2)
    axis = torch.arange(-radius, radius + 1, dtype=torch.float32)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    kernels = []
    for k in range(_NEEDLE_ANGLES):
        angle = math.pi * k / _NEEDLE_ANGLES
        along = x * math.cos(angle) + y * math.sin(angle)
        across = -x * math.sin(angle) + y * math.cos(angle)
        taper = (1 - along.abs() / (length / 2)).clamp(min=0)  # bright at the root, sharp tip
        kernels.append(taper * torch.exp(-0.5 * (across / width) ** 2))
    return torch.stack(kernels)[:, None]


def _procedural_plate(generator: torch.Generator, size: int, mean, std) -> torch.Tensor:
    """One ``(3, size, size)`` frost plate: ice needles over a soft haze, given RGB mean/std."""
    margin = 8  # needles near the border need their neighbours outside the plate
    full = size + 2 * margin
    # Neighbouring crystals grow in similar directions: a smooth field sets the local angle.
    orientation = _smooth_field(torch.randn(1, 1, full, full, generator=generator), 6.0)
    orientation = (orientation - orientation.mean()) / orientation.std()
    needles = torch.zeros(1, 1, full, full)
    for length, density, weight in ((11.0, 0.02, 1.0), (5.0, 0.06, 0.6)):  # long needles, short side growth
        jitter = torch.randint(-1, 2, (1, 1, full, full), generator=generator)
        angle_index = (torch.floor(orientation * _NEEDLE_ANGLES / 2) + jitter).remainder(_NEEDLE_ANGLES).long()
        roots = (torch.rand(1, 1, full, full, generator=generator) < density).float()
        roots = roots * torch.rand(1, 1, full, full, generator=generator)  # needles differ in brightness
        by_angle = torch.zeros(1, _NEEDLE_ANGLES, full, full).scatter_(1, angle_index, roots)
        kernels = _needle_kernels(length)
        drawn = F.conv2d(by_angle, kernels, padding=kernels.shape[-1] // 2, groups=_NEEDLE_ANGLES)
        needles += weight * drawn.sum(dim=1, keepdim=True)
    haze = _smooth_field(torch.rand(1, 1, full, full, generator=generator), 5.0)
    pattern = 0.8 * (needles - needles.mean()) / needles.std() + 0.6 * (haze - haze.mean()) / haze.std()
    pattern = (pattern - pattern.mean()) / pattern.std()
    pattern = pattern[0, :, margin:-margin, margin:-margin]  # (1, size, size), zero mean, unit std
    rgb = torch.tensor(mean).view(3, 1, 1) + torch.tensor(std).view(3, 1, 1) * pattern
    return rgb.clamp(0.0, 1.0)


def _imagecorruptions_frost_dir() -> str:
    """Folder of the frost photographs of an installed `imagecorruptions`, without importing it.

    Importing the package would import OpenCV and scikit-image; only its data files are needed.
    """
    spec = importlib.util.find_spec("imagecorruptions")
    if spec is None or not spec.submodule_search_locations:
        raise InvalidParameterError(
            "textures", "imagecorruptions", list(_TEXTURE_SOURCES),
            "The 'imagecorruptions' package is not installed; `pip install imagecorruptions==1.1.2` "
            "or use textures='procedural'.",
        )
    return os.path.join(list(spec.submodule_search_locations)[0], "frost")


def _photograph_plates() -> list[torch.Tensor]:
    """CIFAR-10-C's five frost photographs, RGB in [0, 1], scaled by 0.2 as CIFAR-10-C does."""
    from PIL import Image  # Pillow comes with torchvision

    folder = _imagecorruptions_frost_dir()
    plates = []
    for filename in ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg"):
        with Image.open(os.path.join(folder, filename)) as photo:
            rgb = torch.frombuffer(bytearray(photo.convert("RGB").tobytes()), dtype=torch.uint8)
            rgb = rgb.view(photo.height, photo.width, 3).permute(2, 0, 1).float() / 255.0
        plates.append(_scale_like_cv2(rgb, 0.2).clamp(0, 1))  # cv2.resize(fx=fy=0.2), as in make_cifar_c.py
    return plates


def _scale_like_cv2(image: torch.Tensor, factor: float) -> torch.Tensor:
    """``cv2.resize(image, None, fx=factor, fy=factor)`` (bilinear) of a ``(C, H, W)`` tensor.

    cv2 makes the output ``round(H * factor)`` pixels high and samples output
    pixel ``i`` at input coordinate ``(i + 0.5) / factor - 0.5`` -- the exact
    factor, not ``H / round(H * factor)`` as resizing to a size would (for a
    527-pixel side that is a step of 5.02 instead of 5). Coordinates below 0 are
    clamped to 0 and the last input pixel is repeated beyond the edge, as in
    cv2 and torch's ``align_corners=False``.
    """
    def axis(n_in: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n_out = max(1, round(n_in * factor))
        source = ((torch.arange(n_out, dtype=torch.float64) + 0.5) / factor - 0.5).clamp(min=0)
        low = source.floor().long().clamp(max=n_in - 1)
        high = (low + 1).clamp(max=n_in - 1)
        return low, high, (source - low).clamp(0, 1).to(image.dtype)

    rows_low, rows_high, dy = axis(image.shape[1])
    cols_low, cols_high, dx = axis(image.shape[2])
    rows = image[:, rows_low] * (1 - dy)[:, None] + image[:, rows_high] * dy[:, None]  # (C, H', W)
    return rows[:, :, cols_low] * (1 - dx) + rows[:, :, cols_high] * dx  # (C, H', W')


@functools.lru_cache(maxsize=2)
def _base_plates(source: str) -> tuple[torch.Tensor, ...]:
    """The frost plates of `source`, ``(3, h, w)`` each, on the CPU (built once per process)."""
    if source == "procedural":
        generator = torch.Generator().manual_seed(_FROST_SEED)
        return tuple(_procedural_plate(generator, _FROST_PLATE_SIZE, mean, std) for mean, std in _FROST_PLATE_STATS)
    return tuple(_photograph_plates())


@functools.lru_cache(maxsize=8)
def _frost_plates(source: str, min_height: int, min_width: int, device: torch.device):
    """``(P, 3, Hmax, Wmax)`` plates (zero-padded) and their ``(P, 2)`` true sizes, on `device`.

    Built on the CPU from a fixed seed, so every device sees the same textures; plates
    smaller than the images are enlarged to cover them, like `imagecorruptions` does.
    """
    resized = []
    for plate in _base_plates(source):
        factor = max(min_height / plate.shape[1], min_width / plate.shape[2])
        if factor > 1:
            size = (math.ceil(plate.shape[1] * factor * 1.1), math.ceil(plate.shape[2] * factor * 1.1))
            plate = F.interpolate(plate[None], size=size, mode="bilinear", align_corners=False)[0].clamp(0, 1)
        resized.append(plate)
    height = max(p.shape[1] for p in resized)
    width = max(p.shape[2] for p in resized)
    stack = torch.zeros(len(resized), 3, height, width)
    for k, plate in enumerate(resized):
        stack[k, :, : plate.shape[1], : plate.shape[2]] = plate
    sizes = torch.tensor([[p.shape[1], p.shape[2]] for p in resized])
    return stack.to(device), sizes.to(device)


def _frost_texture(images: torch.Tensor, streams: _ImageStreams, source: str) -> torch.Tensor:
    """A random crop of a random plate per image: ``(B, C, H, W)``, grey if ``C == 1``."""
    _, channels, height, width = images.shape
    plates, sizes = _frost_plates(source, height, width, images.device)  # (P, 3, Hm, Wm), (P, 2)
    if channels == 1:  # convert before cropping: a third of the gathering
        luma = torch.tensor(_LUMA, device=images.device).view(1, 3, 1, 1)
        plates = (plates * luma).sum(dim=1, keepdim=True)  # (P, 1, Hm, Wm)
    count, _, plate_height, plate_width = plates.shape
    draws = streams.uniform((3,), torch.float64)  # (B, 3): plate, top, left
    plate = (draws[:, 0] * count).long().clamp(max=count - 1)  # (B,)
    top = (draws[:, 1] * (sizes[plate, 0] - height + 1)).long()  # (B,) in [0, H_plate - H]
    left = (draws[:, 2] * (sizes[plate, 1] - width + 1)).long()
    # One flat gather from a (pixel, channel) table is faster than 4-D advanced indexing.
    table = plates.permute(0, 2, 3, 1).reshape(-1, channels).to(images.dtype)  # (P*Hm*Wm, C)
    rows = top[:, None] + torch.arange(height, device=images.device)  # (B, H)
    cols = left[:, None] + torch.arange(width, device=images.device)  # (B, W)
    pixel = (plate * plate_height * plate_width)[:, None, None] + rows[:, :, None] * plate_width + cols[:, None, :]
    return table[pixel].permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, C, H, W)


@_family(
    "frost",
    scale=(
        "weight b of the frost texture, in [0, 1]: x -> (1 - b^2) * x + b * frost, so the image "
        "fades as the frost thickens"
    ),
    max_intensity=1.0,
    grid=(0.2, 0.3, 0.35, 0.4, 0.45),
    reference=(
        "CIFAR-10-C frost: clip(a * x + b * frost) with (a, b) = (1, .2), (1, .3), (.9, .4), "
        "(.85, .4), (.75, .45), frost a random 32x32 crop of one of five photographs scaled by 0.2. "
        "One number needs a curve through those pairs: a = 1 - b^2 is within 0.1 of each. "
        "Severities 3 and 4 share b = 0.4, so the grid puts 0.35 between 0.3 and 0.4."
    ),
    options=("textures",),
)
def _frost(images: torch.Tensor, weight: float, streams: _ImageStreams, textures: str = "procedural") -> torch.Tensor:
    """Frost over the image.

    Textures (``textures=``):

    - ``"procedural"`` (default): five 128x128 plates generated once from a fixed
      seed: thin, pointed ice needles whose directions follow a smooth random field,
      over a soft haze, with the per-channel mean and contrast of the five
      photographs CIFAR-10-C uses. They look like frost and have its first-order
      statistics, but they are not those photographs, so results are close to, not
      equal to, CIFAR-10-C's.
    - ``"imagecorruptions"``: the photographs themselves, read from an installed
      ``imagecorruptions`` package (not a dependency of resque: it requires OpenCV
      and scikit-image). Nothing is downloaded.

    Each image gets a random plate and a random crop of its size, from its own stream.
    """
    if textures not in _TEXTURE_SOURCES:
        raise InvalidParameterError("textures", textures, list(_TEXTURE_SOURCES))
    if images.shape[1] not in (1, 3):
        raise DataError(f"frost needs grey (C=1) or RGB (C=3) images; got C={images.shape[1]}.")
    frost = _frost_texture(images, streams, textures)  # (B, C, H, W)
    return (1.0 - weight**2) * images + weight * frost


# --------------------------------------------------------------------------- #
# A dataset shifted once
# --------------------------------------------------------------------------- #


class ShiftedDataset(Dataset):
    """A map-style dataset whose images are shifted once, at construction.

    book/method.md: a shift experiment applies the shift once per image, fixed, not
    re-drawn per epoch. All images are shifted in batches when the object is
    built and kept in memory (Fashion-MNIST: 60 000 x 784 float32 = 188 MB).
    Image ``i`` is shifted with the random stream of ``(seed, i)``, so the result
    does not depend on `batch_size`.

    Parameters
    ----------
    dataset : torch.utils.data.Dataset
        Map-style, with ``len()``; item ``i`` is ``(image, label, ...)`` where
        `image` is a ``(C, H, W)`` float tensor in ``[0, 1]`` (e.g. after
        ``transforms.ToTensor()``) and all images share one shape.
    shift : str
        A family from :func:`list_shifts`.
    intensity : float
        On the family's scale (see :func:`create_shift`).
    seed : int, default 0
    batch_size : int, default 1024
        Images shifted per step; affects speed and memory only.
    progress : bool, default False
        Show a tqdm progress bar.
    device : torch.device or str, optional
        Where to compute (default: where the images are). Results are kept on the
        CPU. CPU and CUDA random streams differ, so noise depends on the device.
    **options
        Family options (``textures=`` for frost).

    Attributes
    ----------
    images_ : torch.Tensor
        ``(N, C, H, W)`` shifted images, on the CPU.
    labels_ : list
        Labels as the wrapped dataset returned them.

    Examples
    --------
    >>> shifted = ShiftedDataset(train_set, "gaussian_noise", 0.08, seed=0)  # doctest: +SKIP
    >>> image, label = shifted[0]  # doctest: +SKIP
    """

    def __init__(
        self, dataset, shift: str, intensity: float, seed: int = 0, batch_size: int = 1024,
        progress: bool = False, device=None, **options,
    ):
        family = create_shift(shift)
        family.check_intensity(intensity)
        family.check_options(options)
        seed = check_seed(seed)
        batch_size = check_int("batch_size", batch_size, minimum=1)
        self.dataset = dataset
        self.shift = shift
        self.intensity = intensity
        self.seed = seed
        self.batch_size = batch_size
        self.device = device
        self.options = options
        try:
            count = len(dataset)
        except TypeError as exc:
            raise DataError(
                f"ShiftedDataset needs a map-style dataset with len(); got {type(dataset).__name__}."
            ) from exc
        if count == 0:
            raise DataError("The dataset is empty; there are no images to shift.")
        chunks, self.labels_ = [], []
        with tqdm(total=count, desc=f"{shift} {intensity:g}", unit="img", disable=not progress) as bar:
            for start in range(0, count, batch_size):
                indices = range(start, min(count, start + batch_size))
                images, labels = _collect(dataset, indices)  # (b, C, H, W)
                if device is not None:
                    images = images.to(device)
                shifted = family.apply(images, intensity, seed, first_index=start, **options)
                chunks.append(shifted.cpu())
                self.labels_.extend(labels)
                bar.update(len(indices))
        self.images_ = torch.cat(chunks)  # (N, C, H, W)

    def __len__(self) -> int:
        return len(self.labels_)

    def __getitem__(self, index: int):
        return self.images_[index], self.labels_[index]

    def __getitems__(self, indices):
        """A loader's batch in one indexing of the shifted images, the items of ``__getitem__``."""
        indices = [int(i) for i in indices]
        return list(zip(self.images_[indices].unbind(0), [self.labels_[i] for i in indices]))

    def __repr__(self) -> str:
        return (
            f"ShiftedDataset(shift={self.shift!r}, intensity={self.intensity!r}, seed={self.seed}, "
            f"n={len(self)}, image_shape={tuple(self.images_.shape[1:])})"
        )


def _collect(dataset, indices: range) -> tuple[torch.Tensor, list]:
    """Stack items ``indices`` of `dataset` into ``(b, C, H, W)`` images and a list of labels."""
    tensors = getattr(dataset, "tensors", None) if isinstance(dataset, torch.utils.data.TensorDataset) else None
    if tensors is not None and len(tensors) >= 2 and tensors[0].ndim == 4:
        # images already decoded into one tensor: the same items, read as one slice (a copy: shifts work in place)
        window = slice(indices.start, indices.stop)
        return tensors[0][window].clone(), list(tensors[1][window])
    images, labels = [], []
    for index in indices:
        item = dataset[index]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise DataError(f"Item {index} of the dataset is not an (image, label) pair; got {type(item).__name__}.")
        image = item[0]
        if not isinstance(image, torch.Tensor) or image.ndim != 3:
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise DataError(
                f"Item {index}: the image must be a (C, H, W) tensor; got {shape}. "
                "Add transforms.ToTensor() to the dataset."
            )
        if images and image.shape != images[0].shape:
            raise DataError(
                f"Item {index}: image shape {tuple(image.shape)} differs from {tuple(images[0].shape)}; "
                "resize all images to one shape first."
            )
        images.append(image)
        labels.append(item[1])
    return torch.stack(images), labels
