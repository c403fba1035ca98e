"""Tests of resque.data.shifts: properties of every family, slow references, errors, ShiftedDataset."""

from __future__ import annotations

import colorsys
import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from resque.data import shifts
from resque.errors import DataError, InvalidParameterError
from resque.data.shifts import ShiftedDataset, apply_shift, create_shift, list_shifts, recommended_grid

FAMILIES = list_shifts()
RANDOM_FAMILIES = [name for name in FAMILIES if create_shift(name).random]
CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def make_images(channels: int = 3, batch: int = 6, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth random images with full-range values, like natural images."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, channels, size // 4, size // 4, generator=generator)
    images = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
    return images.clamp(0, 1)


def middle(name: str) -> float:
    return recommended_grid(name)[2]


# --------------------------------------------------------------------------- #
# Properties of every family
# --------------------------------------------------------------------------- #


def test_registry_holds_the_protocol_families():
    expected = {"gaussian_noise", "shot_noise", "impulse_noise", "salt_and_pepper",
                "gaussian_blur", "frost", "contrast", "brightness"}
    assert expected <= set(FAMILIES)
    assert list_shifts("*noise") == ["gaussian_noise", "impulse_noise", "shot_noise"]


@pytest.mark.parametrize("name", FAMILIES)
def test_metadata_documents_the_scale(name):
    family = create_shift(name)
    assert family.name == name and family.scale and family.reference
    assert len(family.grid) == 5 and list(family.grid) == sorted(family.grid)
    assert 0 < family.grid[0] and family.grid[-1] <= family.max_intensity


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", FAMILIES)
def test_shape_dtype_and_range_are_kept(name, dtype, channels):
    images = make_images(channels).to(dtype)
    for intensity in (*recommended_grid(name), create_shift(name).max_intensity):
        shifted = apply_shift(images, name, intensity, seed=3)
        assert shifted.shape == images.shape
        assert shifted.dtype == dtype and shifted.device == images.device
        assert float(shifted.min()) >= 0.0 and float(shifted.max()) <= 1.0


@pytest.mark.parametrize("name", FAMILIES)
def test_half_precision_is_kept(name):
    images = make_images(3).half()
    shifted = apply_shift(images, name, middle(name), seed=0)
    assert shifted.dtype == torch.float16 and float(shifted.min()) >= 0 and float(shifted.max()) <= 1


@pytest.mark.parametrize("name", FAMILIES)
def test_same_seed_same_output(name):
    images = make_images(3)
    first = apply_shift(images, name, middle(name), seed=11)
    second = apply_shift(images, name, middle(name), seed=11)
    assert torch.equal(first, second)


@pytest.mark.parametrize("name", RANDOM_FAMILIES)
def test_different_seed_different_output(name):
    images = make_images(3)
    assert not torch.equal(apply_shift(images, name, middle(name), seed=0), apply_shift(images, name, middle(name), seed=1))


@pytest.mark.parametrize("name", sorted(set(FAMILIES) - set(RANDOM_FAMILIES)))
def test_deterministic_families_ignore_the_seed(name):
    images = make_images(3)
    assert torch.equal(apply_shift(images, name, middle(name), seed=0), apply_shift(images, name, middle(name), seed=1))


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", FAMILIES)
def test_intensity_zero_is_the_identity(name, channels):
    images = make_images(channels)
    shifted = apply_shift(images, name, 0.0, seed=5)
    assert torch.equal(shifted, images)
    assert shifted.data_ptr() != images.data_ptr()  # a copy: shifting never aliases the input


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("name", FAMILIES)
def test_distortion_grows_along_the_grid(name, channels):
    images = make_images(channels, batch=16)
    changes = [float(((apply_shift(images, name, t, seed=0) - images) ** 2).mean()) for t in recommended_grid(name)]
    assert all(a < b for a, b in zip(changes, changes[1:])), changes
    assert changes[0] > 0


@pytest.mark.parametrize("name", FAMILIES)
def test_each_image_depends_only_on_seed_and_index(name):
    images = make_images(3, batch=9)
    whole = apply_shift(images, name, middle(name), seed=4)
    tail = apply_shift(images[5:], name, middle(name), seed=4, first_index=5)
    single = apply_shift(images[2:3], name, middle(name), seed=4, first_index=2)
    assert torch.equal(whole[5:], tail)
    assert torch.equal(whole[2:3], single)


@pytest.mark.parametrize("name", FAMILIES)
def test_empty_batch(name):
    images = torch.zeros(0, 3, 32, 32)
    assert apply_shift(images, name, middle(name)).shape == (0, 3, 32, 32)


@pytest.mark.parametrize("name", FAMILIES)
def test_mnist_size_grey_images(name):
    images = make_images(1, batch=4, size=28)
    shifted = apply_shift(images, name, create_shift(name).max_intensity, seed=0)
    assert shifted.shape == (4, 1, 28, 28) and float(shifted.min()) >= 0 and float(shifted.max()) <= 1


@CUDA
@pytest.mark.parametrize("name", FAMILIES)
def test_cuda_stays_on_device_and_is_reproducible(name):
    images = make_images(3).cuda()
    first = apply_shift(images, name, middle(name), seed=2)
    assert first.device == images.device
    assert torch.equal(first, apply_shift(images, name, middle(name), seed=2))
    cpu = apply_shift(images.cpu(), name, middle(name), seed=2)
    assert cpu.shape == first.shape


# --------------------------------------------------------------------------- #
# Slow, obvious references
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("sigma", [0.4, 1.0, 2.5])
def test_gaussian_blur_matches_scipy(sigma):
    images = make_images(3, batch=2).double()
    expected = np.stack([
        np.stack([ndimage.gaussian_filter(plane.numpy(), sigma, mode="nearest", truncate=4.0) for plane in image])
        for image in images
    ])
    shifted = apply_shift(images, "gaussian_blur", sigma)
    np.testing.assert_allclose(shifted.numpy(), np.clip(expected, 0, 1), atol=1e-12)


def test_gaussian_blur_kernel_wider_than_the_image():
    images = make_images(1, batch=2, size=8)
    shifted = apply_shift(images, "gaussian_blur", 8.0)  # radius 32 px on an 8 px image
    means = images.mean(dim=(2, 3), keepdim=True)
    assert float((shifted - means).abs().max()) < 0.2


def test_brightness_matches_an_hsv_round_trip():
    images = make_images(3, batch=2, size=8).double()
    images[0, :, 0, 0] = 0.0  # a black pixel: hue undefined, becomes grey
    amount = 0.2
    expected = torch.empty_like(images)
    for b in range(images.shape[0]):
        for i in range(images.shape[2]):
            for j in range(images.shape[3]):
                h, s, v = colorsys.rgb_to_hsv(*images[b, :, i, j].tolist())
                expected[b, :, i, j] = torch.tensor(colorsys.hsv_to_rgb(h, s, min(v + amount, 1.0)), dtype=torch.float64)
    torch.testing.assert_close(apply_shift(images, "brightness", amount), expected, atol=1e-12, rtol=0)


def test_brightness_on_grey_adds_and_clips():
    images = make_images(1)
    torch.testing.assert_close(apply_shift(images, "brightness", 0.3), (images + 0.3).clamp(max=1))


def test_contrast_pulls_each_channel_to_its_mean():
    images = make_images(3).double()
    means = images.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(apply_shift(images, "contrast", 0.6), means + 0.4 * (images - means))
    flat = apply_shift(images, "contrast", 1.0)
    torch.testing.assert_close(flat, means.expand_as(images))


def test_gaussian_noise_has_the_requested_std():
    images = torch.full((64, 3, 32, 32), 0.5)  # far from the clamp
    noise = apply_shift(images, "gaussian_noise", 0.05, seed=0) - images
    assert abs(float(noise.mean())) < 0.002
    assert abs(float(noise.std()) - 0.05) < 0.002


def test_shot_noise_is_poisson_with_the_documented_std():
    intensity = 0.1  # 100 photons per unit intensity
    images = torch.full((64, 1, 32, 32), 0.25)
    shifted = apply_shift(images, "shot_noise", intensity, seed=0)
    counts = shifted * 100
    torch.testing.assert_close(counts, counts.round())  # whole photon counts
    assert abs(float(shifted.mean()) - 0.25) < 0.003  # unbiased
    expected_std = intensity * math.sqrt(0.25)  # std at x is intensity * sqrt(x)
    assert abs(float(shifted.std()) - expected_std) < 0.003


@pytest.mark.parametrize("name", ["impulse_noise", "salt_and_pepper"])
def test_impulses_hit_the_requested_fraction(name):
    amount = 0.05
    images = torch.full((32, 3, 32, 32), 0.5)
    shifted = apply_shift(images, name, amount, seed=0)
    hit = shifted != 0.5
    assert abs(float(hit.float().mean()) - amount) < 0.005
    assert set(shifted[hit].unique().tolist()) == {0.0, 1.0}
    assert abs(float((shifted[hit] == 1.0).float().mean()) - 0.5) < 0.03  # salt and pepper equally likely


def test_salt_and_pepper_hits_whole_pixels_impulse_noise_single_channels():
    images = torch.full((32, 3, 32, 32), 0.5)
    pixels = apply_shift(images, "salt_and_pepper", 0.05, seed=0)
    assert torch.equal(pixels.amin(dim=1), pixels.amax(dim=1))  # black or white pixels only
    values = apply_shift(images, "impulse_noise", 0.05, seed=0)
    assert not torch.equal(values.amin(dim=1), values.amax(dim=1))  # coloured specks


def test_frost_blends_texture_with_the_documented_weights():
    images = torch.zeros(8, 3, 32, 32)
    texture = apply_shift(images, "frost", 1.0, seed=0)  # (1 - 1) * x + 1 * frost
    frosted = apply_shift(images, "frost", 0.4, seed=0)
    torch.testing.assert_close(frosted, 0.4 * texture)
    bright = torch.full((8, 3, 32, 32), 0.5)
    torch.testing.assert_close(apply_shift(bright, "frost", 0.4, seed=0), (0.84 * bright + 0.4 * texture).clamp(0, 1))


def test_procedural_frost_plates_have_the_photographs_colour_statistics():
    for plate, (mean, std) in zip(shifts._base_plates("procedural"), shifts._FROST_PLATE_STATS):
        assert plate.shape == (3, shifts._FROST_PLATE_SIZE, shifts._FROST_PLATE_SIZE)
        torch.testing.assert_close(plate.mean(dim=(1, 2)), torch.tensor(mean), atol=0.02, rtol=0)
        torch.testing.assert_close(plate.std(dim=(1, 2)), torch.tensor(std), atol=0.02, rtol=0)


def test_frost_covers_images_larger_than_its_plates():
    images = make_images(3, batch=2, size=160)
    shifted = apply_shift(images, "frost", 0.45, seed=0)
    assert shifted.shape == images.shape and float(shifted.min()) >= 0 and float(shifted.max()) <= 1


def test_frost_reads_imagecorruptions_photographs_when_asked(tmp_path, monkeypatch):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name in ("frost1.png", "frost2.png", "frost3.png", "frost4.jpg", "frost5.jpg"):
        Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(tmp_path / name)
    monkeypatch.setattr(shifts, "_imagecorruptions_frost_dir", lambda: str(tmp_path))
    shifts._base_plates.cache_clear()
    shifts._frost_plates.cache_clear()
    try:
        plates = shifts._base_plates("imagecorruptions")
        assert [tuple(p.shape) for p in plates] == [(3, 60, 80)] * 5  # scaled by 0.2
        images = make_images(3)
        photo = apply_shift(images, "frost", 0.3, seed=0, textures="imagecorruptions")
        assert torch.equal(photo, apply_shift(images, "frost", 0.3, seed=0, textures="imagecorruptions"))
        assert not torch.equal(photo, apply_shift(images, "frost", 0.3, seed=0))
    finally:
        shifts._base_plates.cache_clear()
        shifts._frost_plates.cache_clear()


# --------------------------------------------------------------------------- #
# One test per error message
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("name", FAMILIES)
def test_negative_intensity_names_parameter_value_and_range(name):
    with pytest.raises(InvalidParameterError, match=r"intensity=-0\.1 is not allowed.*\[0, ") as info:
        apply_shift(make_images(), name, -0.1)
    assert info.value.parameter == "intensity" and info.value.value == -0.1
    assert create_shift(name).scale in str(info.value)


@pytest.mark.parametrize("name", FAMILIES)
def test_intensity_above_the_scale_is_rejected_with_the_grid(name):
    too_big = create_shift(name).max_intensity + 1
    with pytest.raises(InvalidParameterError, match="recommended grid"):
        apply_shift(make_images(), name, too_big)


@pytest.mark.parametrize("bad", [float("nan"), "0.1", True, None])
def test_intensity_must_be_a_number(bad):
    with pytest.raises(InvalidParameterError, match="intensity="):
        apply_shift(make_images(), "gaussian_noise", bad)


def test_unknown_family_suggests_close_names():
    with pytest.raises(InvalidParameterError, match=r"shift='gausian_noise'.*Did you mean 'gaussian_noise'"):
        apply_shift(make_images(), "gausian_noise", 0.1)


def test_three_dimensional_images_are_rejected_with_a_fix():
    with pytest.raises(DataError, match=r"4-D \(B, C, H, W\); got shape \(3, 32, 32\).*unsqueeze"):
        apply_shift(make_images()[0], "gaussian_noise", 0.1)


def test_non_tensor_images_are_rejected():
    with pytest.raises(DataError, match="must be a torch.Tensor.*got ndarray"):
        apply_shift(make_images().numpy(), "gaussian_noise", 0.1)


def test_integer_images_are_rejected():
    with pytest.raises(DataError, match=r"floating point.*torch.uint8"):
        apply_shift((make_images() * 255).to(torch.uint8), "gaussian_noise", 0.1)


def test_images_outside_unit_range_are_rejected():
    with pytest.raises(DataError, match=r"values in \[0, 1\].*max 251.*Divide 8-bit images by 255"):
        apply_shift(make_images() * 255, "gaussian_noise", 0.1)


def test_nan_images_are_rejected():
    images = make_images()
    images[0, 0, 0, 0] = float("nan")
    with pytest.raises(DataError, match="no NaN"):
        apply_shift(images, "contrast", 0.5)


def test_unknown_option_is_rejected():
    with pytest.raises(InvalidParameterError, match=r"options=\['textures'\].*no keyword options"):
        apply_shift(make_images(), "gaussian_noise", 0.1, textures="procedural")


def test_unknown_frost_texture_source_is_rejected():
    with pytest.raises(InvalidParameterError, match=r"textures='photos'.*'procedural', 'imagecorruptions'"):
        apply_shift(make_images(), "frost", 0.3, textures="photos")


def test_missing_imagecorruptions_says_how_to_install(monkeypatch):
    monkeypatch.setattr(shifts.importlib.util, "find_spec", lambda name: None)
    shifts._base_plates.cache_clear()
    shifts._frost_plates.cache_clear()
    with pytest.raises(InvalidParameterError, match="pip install imagecorruptions"):
        apply_shift(make_images(), "frost", 0.3, textures="imagecorruptions")


def test_frost_rejects_other_channel_counts():
    with pytest.raises(DataError, match="grey \\(C=1\\) or RGB \\(C=3\\).*C=2"):
        apply_shift(make_images(2), "frost", 0.3)


@pytest.mark.parametrize("parameter, kwargs", [("seed", {"seed": 1.5}), ("first_index", {"first_index": -1})])
def test_seed_and_index_must_be_integers(parameter, kwargs):
    with pytest.raises(InvalidParameterError, match=f"{parameter}="):
        apply_shift(make_images(), "gaussian_noise", 0.1, **kwargs)


# --------------------------------------------------------------------------- #
# ShiftedDataset
# --------------------------------------------------------------------------- #


class ToyImages(torch.utils.data.Dataset):
    """Images with integer labels, counting how often each item is read."""

    def __init__(self, images: torch.Tensor):
        self.images = images
        self.reads = 0

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        self.reads += 1
        return self.images[index], index % 3


@pytest.fixture
def toy() -> ToyImages:
    return ToyImages(make_images(1, batch=23, size=28))


@pytest.mark.parametrize("name", FAMILIES)
def test_shifted_dataset_shifts_each_image_once(name, toy):
    shifted = ShiftedDataset(toy, name, middle(name), seed=7, batch_size=8)
    reads = toy.reads
    assert reads == len(toy)
    first, second = shifted[4], shifted[4]
    assert torch.equal(first[0], second[0])
    assert toy.reads == reads  # reading never touches the wrapped data again
    assert torch.equal(shifted.images_, apply_shift(toy.images, name, middle(name), seed=7))


def test_a_loader_reads_a_shifted_dataset_in_batches_as_item_by_item(toy):
    from torch.utils.data import DataLoader

    shifted = ShiftedDataset(toy, "gaussian_noise", 0.1, seed=3)
    images, labels = next(iter(DataLoader(shifted, batch_size=len(shifted), shuffle=False)))
    assert torch.equal(images, torch.stack([shifted[i][0] for i in range(len(shifted))]))
    assert labels.tolist() == [int(shifted[i][1]) for i in range(len(shifted))]
    assert [int(label) for _, label in shifted.__getitems__([5, 0, 5])] == [int(shifted[i][1]) for i in (5, 0, 5)]


@pytest.mark.parametrize("name", RANDOM_FAMILIES)
def test_shifted_dataset_does_not_depend_on_batch_size(name, toy):
    one = ShiftedDataset(toy, name, middle(name), seed=1, batch_size=1).images_
    assert torch.equal(one, ShiftedDataset(toy, name, middle(name), seed=1, batch_size=5).images_)
    assert torch.equal(one, ShiftedDataset(toy, name, middle(name), seed=1, batch_size=1000).images_)


def test_shifted_dataset_keeps_labels_and_length(toy):
    shifted = ShiftedDataset(toy, "gaussian_noise", 0.08, progress=True)
    assert len(shifted) == len(toy)
    assert [shifted[i][1] for i in range(len(shifted))] == [toy[i][1] for i in range(len(toy))]
    assert all(type(label) is int for label in shifted.labels_)
    assert shifted.images_.shape == toy.images.shape
    assert "gaussian_noise" in repr(shifted)


def test_shifted_dataset_checks_intensity_before_reading(toy):
    with pytest.raises(InvalidParameterError, match="intensity=2"):
        ShiftedDataset(toy, "contrast", 2)
    assert toy.reads == 0


def test_shifted_dataset_needs_tensor_images():
    data = [(np.zeros((28, 28, 1), dtype=np.float32), 0)]
    with pytest.raises(DataError, match="ToTensor"):
        ShiftedDataset(data, "gaussian_noise", 0.1)


def test_shifted_dataset_needs_one_image_shape():
    data = [(torch.zeros(1, 28, 28), 0), (torch.zeros(1, 32, 32), 1)]
    with pytest.raises(DataError, match="differs from.*resize"):
        ShiftedDataset(data, "gaussian_noise", 0.1)


def test_shifted_dataset_rejects_empty_data():
    with pytest.raises(DataError, match="empty"):
        ShiftedDataset([], "gaussian_noise", 0.1)


def test_shifted_dataset_rejects_bad_batch_size(toy):
    with pytest.raises(InvalidParameterError, match=r"batch_size=0.*>= 1"):
        ShiftedDataset(toy, "gaussian_noise", 0.1, batch_size=0)


def test_frost_photographs_are_scaled_on_cv2s_sampling_grid():
    # cv2.resize(fx=0.2) samples output pixel i at input (i + 0.5) * 5 - 0.5, whatever the side's length;
    # resizing to round(527 * 0.2) = 105 pixels would step by 527 / 105 = 5.019 and drift by up to 2 pixels.
    width, height = 527, 13
    ramp = torch.arange(width, dtype=torch.float32).repeat(1, height, 1)  # (1, H, W): value = column index
    scaled = shifts._scale_like_cv2(ramp, 0.2)
    assert scaled.shape == (1, round(height * 0.2), round(width * 0.2))
    expected = (torch.arange(scaled.shape[2]) + 0.5) * 5 - 0.5  # 2, 7, 12, ...
    torch.testing.assert_close(scaled[0, 0], expected.clamp(max=width - 1))
    reference = torch.nn.functional.interpolate(ramp[None], scale_factor=0.2, mode="bilinear",
                                                align_corners=False, recompute_scale_factor=False)[0]
    torch.testing.assert_close(scaled[..., : reference.shape[1], : reference.shape[2]], reference)


@pytest.mark.parametrize("name", FAMILIES)
def test_shifted_dataset_reads_a_tensor_dataset_as_slices_with_the_same_result(name, toy):
    images = toy.images.clone()
    labels = torch.arange(len(toy)) % 3
    tensors = torch.utils.data.TensorDataset(images, labels)
    sliced = ShiftedDataset(tensors, name, middle(name), seed=3, batch_size=8)
    item_by_item = ShiftedDataset(toy, name, middle(name), seed=3, batch_size=8)
    assert torch.equal(sliced.images_, item_by_item.images_)
    assert [int(label) for label in sliced.labels_] == item_by_item.labels_
    assert torch.equal(images, toy.images)  # the wrapped tensors are not shifted in place
