"""Datasets, derived tasks and splits (resque.data.datasets, resque.data.tasks, resque.data.splits).

The network is blocked for every test here: online datasets are exercised
through stand-ins for the torchvision classes that hand out images of the
same kind (PIL images from arrays laid out as the real class lays them out).
"""

from __future__ import annotations

import gzip
import shutil
import socket
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets
from PIL import Image
from torch.utils.data import ConcatDataset, Subset

from resque.data import datasets as ds
from resque.data.datasets import (
    DATASETS,
    LabelledImages,
    ToModelInput,
    data_root,
    list_datasets,
    load_dataset,
    prepare_fashion_mnist,
    to_model_input,
)
from resque.data.tasks import TaskSpec, derive_task, get_task, list_tasks, load_task, task_labels
from resque.errors import DataError, InvalidParameterError
from resque.data.splits import (
    protocol_split,
    stratified_partition,
    subsample_per_class,
    subset,
    targets_of,
    validation_split,
)

ONLINE = ["cifar10", "cifar100", "emnist", "gtsrb", "kmnist", "mnist", "stl10", "svhn"]
FASHION_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
DEBIAN_FILES_PRESENT = all(
    (ds.DEBIAN_FASHION_MNIST_DIR / f"{name}.gz").is_file() for name in ds.FASHION_MNIST_FILES
)
needs_debian_files = pytest.mark.skipif(
    not DEBIAN_FILES_PRESENT, reason="needs `apt-get install dataset-fashion-mnist`"
)


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail any attempt to reach the network, as on an offline machine."""

    def refuse(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "network blocked in tests")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(autouse=True)
def isolated_data_root(tmp_path, monkeypatch):
    """Never read or write the user's real data root."""
    monkeypatch.setenv("RESQUE_DATA", str(tmp_path / "default_root"))


@pytest.fixture(scope="session")
def fashion_root(tmp_path_factory):
    if not DEBIAN_FILES_PRESENT:
        pytest.skip("needs `apt-get install dataset-fashion-mnist`")
    root = tmp_path_factory.mktemp("fashion_root")
    prepare_fashion_mnist(root)
    return root


@pytest.fixture(scope="session")
def fashion_train(fashion_root):
    return load_dataset("fashion_mnist", "train", root=fashion_root)


@pytest.fixture(scope="session")
def fashion_test(fashion_root):
    return load_dataset("fashion_mnist", "test", root=fashion_root)


@pytest.fixture(scope="session")
def digits_train():
    return load_dataset("digits", "train")


def write_idx(path: Path, array: np.ndarray) -> None:
    """A gzipped IDX file (the MNIST format): magic 0x08 (uint8) + ndim, big-endian sizes, bytes."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as out:
        out.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def tiny_debian_dir(tmp_path):
    """A stand-in for /usr/share/datasets/fashion-mnist: 20 train and 10 test images."""
    folder = tmp_path / "debian"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 20), ("t10k", 10)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", np.arange(n) % 10)
    return folder


# Stand-ins for torchvision's online datasets: same constructor arguments,
# same attributes, same kind of images as the real classes (read for facts
# from torchvision 0.29).

N_FAKE = 12
CALLS: list[tuple[str, dict]] = []


class FakeMNIST:
    n_classes = 10

    def __init__(self, root, train=True, transform=None, target_transform=None, download=False, **kwargs):
        CALLS.append((type(self).__name__, {"train": train, "download": download, **kwargs}))
        generator = torch.Generator().manual_seed(1 if train else 2)
        self.data = torch.randint(0, 256, (N_FAKE, 28, 28), dtype=torch.uint8, generator=generator)
        self.targets = torch.arange(N_FAKE) % self.n_classes
        self.classes = [f"c{i}" for i in range(self.n_classes)]

    def __getitem__(self, index):
        return Image.fromarray(self.data[index].numpy(), mode="L"), int(self.targets[index])

    def __len__(self):
        return len(self.data)


class FakeKMNIST(FakeMNIST):
    pass


class FakeEMNIST(FakeMNIST):
    n_classes = 47

    def __init__(self, root, split, **kwargs):
        super().__init__(root, split=split, **kwargs)


class FakeCIFAR10:
    n_classes = 10

    def __init__(self, root, train=True, transform=None, target_transform=None, download=False):
        CALLS.append((type(self).__name__, {"train": train, "download": download}))
        rng = np.random.default_rng(3)
        self.data = rng.integers(0, 256, (N_FAKE, 32, 32, 3), dtype=np.uint8)  # HWC, as torchvision keeps it
        self.targets = [i % self.n_classes for i in range(N_FAKE)]  # a list, as in torchvision
        self.classes = [f"c{i}" for i in range(self.n_classes)]

    def __getitem__(self, index):
        return Image.fromarray(self.data[index]), self.targets[index]

    def __len__(self):
        return len(self.data)


class FakeCIFAR100(FakeCIFAR10):
    n_classes = 100


class FakeSVHN:
    """Images stored (N, 3, 32, 32); labels in `.labels`; no `.classes`."""

    size = 32

    def __init__(self, root, split="train", transform=None, target_transform=None, download=False):
        CALLS.append((type(self).__name__, {"split": split, "download": download}))
        rng = np.random.default_rng(4)
        self.data = rng.integers(0, 256, (N_FAKE, 3, self.size, self.size), dtype=np.uint8)
        self.labels = (np.arange(N_FAKE) % 10).astype(np.int64)

    def __getitem__(self, index):
        return Image.fromarray(np.transpose(self.data[index], (1, 2, 0))), int(self.labels[index])

    def __len__(self):
        return len(self.data)


class FakeSTL10(FakeSVHN):
    """96x96 colour, uint8 labels; `.classes` only when class_names.txt exists (not here)."""

    size = 96

    def __init__(self, root, split="train", folds=None, transform=None, target_transform=None, download=False):
        super().__init__(root, split=split, download=download)
        self.labels = self.labels.astype(np.uint8)


class FakeGTSRB:
    """Images of varying size read from files; labels only inside `._samples`."""

    def __init__(self, root, split="train", transform=None, target_transform=None, download=False):
        CALLS.append((type(self).__name__, {"split": split, "download": download}))
        self._samples = [(f"{root}/img_{i:05d}.ppm", (7 * i) % 43) for i in range(N_FAKE)]

    def __getitem__(self, index):
        path, target = self._samples[index]
        side = 25 + index  # GTSRB images range from about 15 to 250 pixels a side
        pixels = np.random.default_rng(index).integers(0, 256, (side, side + 3, 3), dtype=np.uint8)
        return Image.fromarray(pixels).convert("RGB"), target

    def __len__(self):
        return len(self._samples)


FAKES = {
    "mnist": ("MNIST", FakeMNIST, 10),
    "kmnist": ("KMNIST", FakeKMNIST, 10),
    "emnist": ("EMNIST", FakeEMNIST, 47),
    "cifar10": ("CIFAR10", FakeCIFAR10, 10),
    "cifar100": ("CIFAR100", FakeCIFAR100, 100),
    "svhn": ("SVHN", FakeSVHN, 10),
    "stl10": ("STL10", FakeSTL10, 10),
    "gtsrb": ("GTSRB", FakeGTSRB, 43),
}


@pytest.fixture
def fake_torchvision(monkeypatch):
    CALLS.clear()
    for class_name, fake, _ in FAKES.values():
        monkeypatch.setattr(torchvision.datasets, class_name, fake)
    return CALLS


# ---------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------


def test_list_datasets_names_every_dataset():
    assert list_datasets() == sorted(["digits", "fashion_mnist", *ONLINE])
    assert list_datasets("*mnist") == ["emnist", "fashion_mnist", "kmnist", "mnist"]
    assert sorted(FAKES) == ONLINE  # every online dataset has a stand-in below
    for name in list_datasets():
        assert callable(DATASETS.get(name)) and name in DATASETS


def test_unknown_dataset_lists_known_names():
    with pytest.raises(InvalidParameterError) as caught:
        load_dataset("fashion-mnist")
    message = str(caught.value)
    assert "'fashion_mnist'" in message and "Did you mean" in message
    for name in list_datasets():
        assert repr(name) in message


def test_unknown_split_and_options_rejected():
    with pytest.raises(InvalidParameterError, match="split='validation'"):
        load_dataset("digits", split="validation")
    with pytest.raises(InvalidParameterError, match="debian_dir"):
        load_dataset("mnist", debian_dir="/tmp")  # only fashion_mnist takes it


@pytest.mark.parametrize("name", list_datasets())
@pytest.mark.parametrize("split", ["train", "test"])
def test_every_dataset_loads_to_model_input(name, split, fake_torchvision, request):
    # fashion_root skips the test when the Debian files are not installed.
    root = request.getfixturevalue("fashion_root") if name == "fashion_mnist" else None
    data = load_dataset(name, split, root=root, image_size=32, channels=3)
    assert isinstance(data, LabelledImages)
    assert data.targets.dtype == torch.long and data.targets.shape == (len(data),)
    assert int(data.targets.max()) < len(data.classes)
    for index in (0, len(data) - 1):
        image, label = data[index]
        assert image.shape == (3, 32, 32) and image.dtype == torch.float32
        assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
        assert isinstance(label, int) and label == int(data.targets[index])


# ---------------------------------------------------------------------------
# Fashion-MNIST
# ---------------------------------------------------------------------------


@needs_debian_files
def test_fashion_mnist_from_debian_files(fashion_root, fashion_train, fashion_test):
    assert len(fashion_train) == 60_000 and len(fashion_test) == 10_000
    assert fashion_train.classes == FASHION_CLASSES
    assert torch.equal(torch.bincount(fashion_train.targets), torch.full((10,), 6000))
    assert torch.equal(torch.bincount(fashion_test.targets), torch.full((10,), 1000))
    for name in ds.FASHION_MNIST_FILES:  # unpacked into the root, where torchvision looks
        assert (fashion_root / "FashionMNIST" / "raw" / name).is_file()
    raw = fashion_train.source.images
    assert raw.shape == (60_000, 28, 28) and int(raw.min()) == 0 and int(raw.max()) == 255
    image, label = fashion_train[0]
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert torch.equal(image[0], raw[0].float() / 255) and label == int(fashion_train.targets[0])


@needs_debian_files
def test_fashion_mnist_read_from_the_idx_files_is_what_torchvision_reads(fashion_root, fashion_train, fashion_test):
    torchvision_datasets = pytest.importorskip("torchvision.datasets")
    for ours, train in ((fashion_train, True), (fashion_test, False)):
        theirs = torchvision_datasets.FashionMNIST(str(fashion_root), train=train, download=False)
        assert ours.classes == list(theirs.classes) and torch.equal(ours.targets, theirs.targets)
        assert torch.equal(ours.source.images, theirs.data)
        for index in (0, 1, len(theirs) - 1):  # and decoded alike, through the PIL image torchvision hands out
            assert torch.equal(ours[index][0], ds.to_model_input(theirs[index][0]))


def test_truncated_idx_file_is_refused_with_its_sizes(tmp_path):
    truncated = tmp_path / "images-idx3-ubyte"
    truncated.write_bytes(b"\x00\x00\x08\x03" + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") * 2 + bytes(17))
    with pytest.raises(ValueError, match=r"17 bytes of data, its header says \(2, 3, 3\)"):
        ds.read_idx(truncated, dimensions=3)
    labels = tmp_path / "labels-idx1-ubyte"
    labels.write_bytes(b"\x00\x00\x08\x01" + (2).to_bytes(4, "big") + bytes([3, 7]))
    assert ds.read_idx(labels, dimensions=1).tolist() == [3, 7]
    with pytest.raises(ValueError, match="not a 3-dimensional IDX"):
        ds.read_idx(labels, dimensions=3)


def test_fashion_mnist_unpacks_from_debian_dir_argument(tmp_path, tiny_debian_dir):
    data = load_dataset("fashion_mnist", root=tmp_path / "root", debian_dir=tiny_debian_dir)
    assert len(data) == 20 and data.targets.tolist() == [i % 10 for i in range(20)]
    assert len(load_dataset("fashion_mnist", "test", root=tmp_path / "root", debian_dir=tiny_debian_dir)) == 10
    assert not list((tmp_path / "root" / "FashionMNIST" / "raw").glob("*.part"))


def test_fashion_mnist_prefers_files_already_in_root(tmp_path, tiny_debian_dir, monkeypatch):
    raw = tmp_path / "root" / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for path in tiny_debian_dir.iterdir():  # copied in gzipped, as a user might
        shutil.copy(path, raw / path.name)
    monkeypatch.setattr(ds, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "nowhere")
    assert len(load_dataset("fashion_mnist", root=tmp_path / "root")) == 20


@pytest.mark.parametrize("download", [False, True])
def test_fashion_mnist_missing_offline_says_how_to_get_it(tmp_path, monkeypatch, download):
    empty = tmp_path / "empty_debian"
    empty.mkdir()
    monkeypatch.setattr(ds, "DEBIAN_FASHION_MNIST_DIR", empty)  # the module constant is the default
    with pytest.raises(DataError) as caught:
        load_dataset("fashion_mnist", root=tmp_path / "root", download=download)
    message = str(caught.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "download=True" in message
    assert str(tmp_path / "root" / "FashionMNIST" / "raw") in message
    if download:  # torchvision tried, the blocked network refused
        assert "downloading them failed" in message


def test_fashion_mnist_corrupt_file_is_a_data_error(tmp_path, tiny_debian_dir):
    prepare_fashion_mnist(tmp_path, debian_dir=tiny_debian_dir)
    (tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"not an idx file")
    with pytest.raises(DataError, match="cannot be read"):
        load_dataset("fashion_mnist", root=tmp_path, debian_dir=tiny_debian_dir)


# ---------------------------------------------------------------------------
# Data root
# ---------------------------------------------------------------------------


def test_resque_data_env_var_is_the_default_root(tmp_path, monkeypatch, tiny_debian_dir):
    monkeypatch.setenv("RESQUE_DATA", str(tmp_path / "from_env"))
    assert data_root() == tmp_path / "from_env"
    load_dataset("fashion_mnist", debian_dir=tiny_debian_dir)
    assert (tmp_path / "from_env" / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file()
    assert data_root(tmp_path / "explicit") == tmp_path / "explicit"  # the argument wins


def test_default_root_is_per_user_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("RESQUE_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert data_root() == tmp_path / "cache" / "resque" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data_root() == Path.home() / ".cache" / "resque" / "data"


# ---------------------------------------------------------------------------
# scikit-learn digits
# ---------------------------------------------------------------------------


def test_digits_split_is_stratified_fixed_and_complete(digits_train):
    from sklearn.datasets import load_digits

    test = load_dataset("digits", "test")
    assert (len(digits_train), len(test)) == (1438, 359)
    total = torch.bincount(torch.from_numpy(load_digits().target))
    assert torch.equal(torch.bincount(digits_train.targets) + torch.bincount(test.targets), total)
    assert torch.all((torch.bincount(test.targets) - 0.2 * total).abs() <= 0.5)
    again = load_dataset("digits", "train")
    assert torch.equal(again.targets, digits_train.targets)
    assert torch.equal(again.source.tensors[0], digits_train.source.tensors[0])
    image, label = digits_train[0]
    assert image.shape == (1, 8, 8) and digits_train.classes == [str(d) for d in range(10)]
    levels = torch.unique(digits_train.source.tensors[0] * 16)
    assert torch.equal(levels, torch.arange(17, dtype=levels.dtype))  # 17 grey levels, 0..1


# ---------------------------------------------------------------------------
# Online datasets, on stand-ins
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ONLINE)
def test_online_dataset_wrapper(name, fake_torchvision, tmp_path):
    class_name, fake, n_classes = FAKES[name]
    train = load_dataset(name, "train", root=tmp_path, download=True)
    test = load_dataset(name, "test", root=tmp_path)
    expected = fake(str(tmp_path), **({"split": "balanced"} if name == "emnist" else {}))
    assert len(train) == N_FAKE and len(train.classes) == n_classes
    expected_labels = [label for _, label in (expected[i] for i in range(N_FAKE))]
    assert train.targets.tolist() == expected_labels
    image, label = train[3]
    assert label == expected_labels[3]
    channels = 1 if name in ("mnist", "kmnist", "emnist") else 3
    assert image.dtype == torch.float32 and image.shape[0] == channels
    # Arguments the real classes need: split= vs train=, EMNIST's "balanced".
    calls = [kwargs for called, kwargs in fake_torchvision if called == fake.__name__]
    if name in ("svhn", "stl10", "gtsrb"):
        assert calls[0]["split"] == "train" and calls[1]["split"] == "test"
    else:
        assert calls[0]["train"] is True and calls[1]["train"] is False
    if name == "emnist":
        assert calls[0]["split"] == "balanced"
    assert calls[0]["download"] is True and calls[1]["download"] is False
    assert len(test) == N_FAKE


def test_online_pixels_are_the_source_pixels(fake_torchvision, tmp_path):
    cifar = load_dataset("cifar10", root=tmp_path)
    assert torch.equal(cifar[5][0], torch.from_numpy(cifar.source.data[5]).permute(2, 0, 1).float() / 255)
    svhn = load_dataset("svhn", root=tmp_path)
    assert torch.equal(svhn[5][0], torch.from_numpy(svhn.source.data[5]).float() / 255)
    stl = load_dataset("stl10", root=tmp_path, image_size=32)
    assert stl[0][0].shape == (3, 32, 32) and stl.classes[0] == "airplane"
    assert load_dataset("gtsrb", root=tmp_path)[1][0].shape == (3, 26, 29)  # native sizes vary


def test_emnist_images_are_transposed_back(fake_torchvision, tmp_path):
    emnist = load_dataset("emnist", root=tmp_path)
    original = FakeEMNIST(str(tmp_path), split="balanced").data  # as stored in EMNIST's files
    assert torch.equal(emnist[0][0][0], original[0].T.float() / 255)


@pytest.mark.parametrize("name", ONLINE)
def test_online_dataset_missing_says_it_needs_a_download(name, tmp_path):
    # The real torchvision classes, on an empty root, without download: no network touched.
    with pytest.raises(DataError) as caught:
        load_dataset(name, root=tmp_path)
    message = str(caught.value)
    assert f"load_dataset({name!r}, download=True)" in message and "internet" in message


@pytest.mark.parametrize("name", ["cifar10", "mnist"])
def test_online_download_failure_is_a_data_error(name, tmp_path):
    # The real classes try to download; the blocked network makes them fail at once.
    with pytest.raises(DataError) as caught:
        load_dataset(name, root=tmp_path, download=True)
    assert "downloading it" in str(caught.value) and "offline" in str(caught.value)


# ---------------------------------------------------------------------------
# The transform
# ---------------------------------------------------------------------------


def test_transform_grey_28_to_rgb_32():
    grey = np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)
    for image in (grey, Image.fromarray(grey, mode="L"), torch.from_numpy(grey)):
        out = ToModelInput(image_size=32, channels=3)(image)
        assert out.shape == (3, 32, 32) and out.dtype == torch.float32
        assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
        assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])


def test_transform_keeps_zero_one_scale_without_normalising():
    assert torch.equal(to_model_input(torch.full((1, 28, 28), 0.5)), torch.full((1, 28, 28), 0.5))
    assert torch.equal(to_model_input(np.full((4, 4), 255, dtype=np.uint8)), torch.ones(1, 4, 4))


def test_transform_rgb_to_grey_matches_pil():
    rgb = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    ours = to_model_input(Image.fromarray(rgb), channels=1)
    pil = torch.from_numpy(np.array(Image.fromarray(rgb).convert("L"))).float() / 255
    assert ours.shape == (1, 32, 32)
    assert float((ours[0] - pil).abs().max()) <= 1 / 255 + 1e-6


def test_transform_batch_and_downscale():
    batch = torch.rand(5, 3, 96, 96)
    out = to_model_input(batch, image_size=(32, 32), channels=1)
    assert out.shape == (5, 1, 32, 32)
    assert torch.allclose(out[2], to_model_input(batch[2], image_size=32, channels=1))


def test_transform_rejects_bad_arguments_and_images():
    with pytest.raises(InvalidParameterError, match="channels=2"):
        ToModelInput(channels=2)
    with pytest.raises(InvalidParameterError, match="image_size=0"):
        load_dataset("digits", image_size=0)
    with pytest.raises(DataError, match=r"\[0, 1\]"):
        to_model_input(torch.full((1, 4, 4), 16.0))
    with pytest.raises(DataError, match="channels"):
        to_model_input(torch.rand(4, 8, 8), channels=3)


# ---------------------------------------------------------------------------
# Derived tasks
# ---------------------------------------------------------------------------


def test_task_registry_round_trip():
    names = list_tasks()
    assert {"fashion_coarse4", "fashion_subset_0_4", "fashion_permuted", "fashion_inverted", "digits"} <= set(names)
    for name in names:
        assert isinstance(get_task(name), TaskSpec)
        assert get_task(name).dataset in list_datasets()
    with pytest.raises(InvalidParameterError) as caught:
        get_task("fashion_coarse")
    assert "fashion_coarse4" in str(caught.value)


@pytest.mark.parametrize("name", list_tasks())
def test_every_preset_derives(name, request):
    spec = get_task(name)
    if spec.dataset in ("fashion_mnist", "digits"):
        base = request.getfixturevalue("fashion_train" if spec.dataset == "fashion_mnist" else "digits_train")
    else:  # an online dataset as a whole task: a small stand-in carrying its name
        images = torch.rand(12, 3, 8, 8)
        base = LabelledImages([(x, 0) for x in images], torch.arange(12) % 3, ["a", "b", "c"], name=spec.dataset, split="train")
    task = derive_task(base, name)
    assert len(task.classes) == int(task.targets.max()) + 1
    assert torch.equal(torch.unique(task.targets), torch.arange(len(task.classes)))
    image, label = task[0]
    assert image.shape == base[0][0].shape and label == int(task.targets[0])


@needs_debian_files
def test_fashion_coarse4_mapping(fashion_train):
    task = derive_task(fashion_train, "fashion_coarse4")
    assert task.classes == ["tops", "bottoms", "footwear", "bags"]
    assert len(task) == 60_000
    coarse_of = {"T-shirt/top": 0, "Pullover": 0, "Coat": 0, "Shirt": 0, "Trouser": 1, "Dress": 1,
                 "Sandal": 2, "Sneaker": 2, "Ankle boot": 2, "Bag": 3}
    source_labels = fashion_train.targets[task.indices]
    expected = torch.tensor([coarse_of[FASHION_CLASSES[k]] for k in source_labels.tolist()])
    assert torch.equal(task.targets, expected)
    assert torch.bincount(task.targets).tolist() == [24_000, 12_000, 18_000, 6000]


def test_subset_keeps_only_chosen_classes_relabelled(digits_train):
    task = derive_task(digits_train, TaskSpec("digits", classes=[7, 2, 9]))
    source = digits_train.targets
    assert torch.equal(task.indices, torch.nonzero((source == 7) | (source == 2) | (source == 9)).flatten())
    assert task.classes == ["7", "2", "9"]
    mapping = {7: 0, 2: 1, 9: 2}
    assert task.targets.tolist() == [mapping[k] for k in source[task.indices].tolist()]
    image, label = task[0]
    assert torch.equal(image, digits_train[int(task.indices[0])][0])


def test_permutation_is_a_reproducible_bijection(digits_train):
    task = derive_task(digits_train, TaskSpec("digits", permutation_seed=3))
    pairs = set(zip(digits_train.targets.tolist(), task.targets.tolist()))
    mapping = dict(pairs)
    assert len(pairs) == 10 and sorted(mapping.values()) == list(range(10))  # a function, one-to-one, onto
    for old, new in mapping.items():
        assert task.classes[new] == digits_train.classes[old]  # names travel with their images
    again = derive_task(digits_train, TaskSpec("digits", permutation_seed=3))
    other = derive_task(digits_train, TaskSpec("digits", permutation_seed=4))
    assert torch.equal(again.targets, task.targets)
    assert not torch.equal(other.targets, task.targets)


def test_inverted_and_rotated_images(digits_train):
    inverted = derive_task(digits_train, TaskSpec("digits", transform="invert"))
    rotated = derive_task(digits_train, TaskSpec("digits", transform="rotate90"))
    for index in (0, 17):
        original, label = digits_train[index]
        assert torch.equal(inverted[index][0], 1.0 - original) and inverted[index][1] == label
        assert torch.equal(rotated[index][0], torch.rot90(original, 1, dims=(1, 2)))


def test_task_labels_functional_core():
    targets = torch.tensor([0, 1, 2, 3, 2, 1, 0])
    indices, new, names = task_labels(targets, ["a", "b", "c", "d"], TaskSpec("x", relabel={"ab": [0, 1], "d": [3]}))
    assert indices.tolist() == [0, 1, 3, 5, 6] and new.tolist() == [0, 0, 1, 0, 0] and names == ["ab", "d"]


def test_task_spec_validation():
    with pytest.raises(InvalidParameterError, match="classes"):
        TaskSpec("digits", classes=[1, 2], relabel={"a": [1]})
    with pytest.raises(InvalidParameterError, match="relabel"):
        TaskSpec("digits", relabel={"a": [1, 2], "b": [2]})  # overlapping groups
    with pytest.raises(InvalidParameterError, match="classes"):
        TaskSpec("digits", classes=[1, 1])
    with pytest.raises(InvalidParameterError, match="transform='blur'"):
        TaskSpec("digits", transform="blur")
    with pytest.raises(InvalidParameterError, match="permutation_seed"):
        TaskSpec("digits", permutation_seed=-1)
    assert hash(TaskSpec("digits", relabel={"a": [1]})) == hash(TaskSpec("digits", relabel={"a": (1,)}))


def test_derive_task_checks_dataset_and_classes(digits_train):
    with pytest.raises(InvalidParameterError, match="dataset='digits'"):
        derive_task(digits_train, "fashion_coarse4")
    with pytest.raises(InvalidParameterError, match=r"\[0, 9\]"):
        derive_task(digits_train, TaskSpec("digits", classes=[3, 12]))


def test_load_task_in_one_call():
    task = load_task("digits_subset_0_4", split="test", image_size=32, channels=3)
    assert task.classes == ["0", "1", "2", "3", "4"] and task[0][0].shape == (3, 32, 32)


# ---------------------------------------------------------------------------
# Splits
# ---------------------------------------------------------------------------


def reference_partition(labels: np.ndarray, fractions, seed: int) -> list[set[int]]:
    """Slow and obvious: shuffle, walk each class, cut at rounded cumulative shares."""
    order = np.random.default_rng(seed).permutation(len(labels))
    parts = [set() for _ in fractions]
    for label in sorted(set(labels.tolist())):
        members = [int(i) for i in order if labels[i] == label]
        cuts = [int(np.floor(len(members) * sum(fractions[: j + 1]) + 0.5)) for j in range(len(fractions) - 1)]
        bounds = [0, *cuts, len(members)]
        for j in range(len(fractions)):
            parts[j].update(members[bounds[j] : bounds[j + 1]])
    return parts


def test_partition_matches_reference():
    labels = np.random.default_rng(5).integers(0, 7, 503)
    fast = stratified_partition(labels, (0.5, 0.3, 0.2), seed=11)
    assert [set(p.tolist()) for p in fast] == reference_partition(labels, (0.5, 0.3, 0.2), 11)


def test_protocol_split_per_class_shares():
    labels = torch.from_numpy(np.random.default_rng(6).integers(0, 10, 5003))
    split = protocol_split(labels, seed=0)
    counts = torch.bincount(labels).double()
    for part, share in zip((split.s0, split.s1, split.s2), (0.5, 0.3, 0.2)):
        per_class = torch.bincount(labels[part], minlength=10).double()
        assert torch.all((per_class - share * counts).abs() <= 1.0)
    everything = torch.cat([split.s0, split.s1, split.s2])
    assert torch.equal(torch.sort(everything).values, torch.arange(len(labels)))  # disjoint and covering
    assert torch.equal(split.original, torch.sort(torch.cat([split.s0, split.s2])).values)
    assert torch.equal(split.shifted, torch.sort(torch.cat([split.s1, split.s2])).values)


@needs_debian_files
def test_protocol_split_on_fashion_mnist_is_exact_and_seeded(fashion_train):
    split = protocol_split(fashion_train, seed=0)
    for part, n in ((split.s0, 3000), (split.s1, 1800), (split.s2, 1200)):
        assert torch.equal(torch.bincount(fashion_train.targets[part]), torch.full((10,), n))
    same = protocol_split(fashion_train, seed=0)
    other = protocol_split(fashion_train, seed=1)
    assert all(torch.equal(a, b) for a, b in zip((split.s0, split.s1, split.s2), (same.s0, same.s1, same.s2)))
    assert not torch.equal(split.s0, other.s0)


def test_validation_split_of_a_subset(digits_train):
    split = protocol_split(digits_train, seed=0)
    new_data = subset(digits_train, split.shifted)
    assert torch.equal(new_data.targets, digits_train.targets[split.shifted])
    assert new_data.classes == digits_train.classes
    fit, val = validation_split(new_data, fraction=0.2, seed=0)
    assert len(set(fit.tolist()) & set(val.tolist())) == 0 and len(fit) + len(val) == len(new_data)
    counts = torch.bincount(new_data.targets).double()
    assert torch.all((torch.bincount(new_data.targets[val]) - 0.2 * counts).abs() <= 1.0)
    assert torch.equal(validation_split(new_data, 0.2, seed=0)[1], val)
    assert not torch.equal(validation_split(new_data, 0.2, seed=1)[1], val)
    image, label = subset(new_data, val)[0]
    assert label == int(new_data.targets[val[0]])


def test_subsample_per_class(digits_train):
    chosen = subsample_per_class(digits_train, 20, seed=0)
    assert torch.equal(torch.bincount(digits_train.targets[chosen]), torch.full((10,), 20))
    assert torch.equal(subsample_per_class(digits_train, 20, seed=0), chosen)
    assert not torch.equal(subsample_per_class(digits_train, 20, seed=1), chosen)
    assert set(subsample_per_class(digits_train, 5, seed=0).tolist()) != set(chosen.tolist())
    with pytest.raises(InvalidParameterError, match="allow_fewer"):
        subsample_per_class(digits_train, 500)
    assert len(subsample_per_class(digits_train, 500, allow_fewer=True)) == len(digits_train)


def test_targets_of_reads_labels_without_images(digits_train):
    half = Subset(digits_train, list(range(0, len(digits_train), 2)))
    assert torch.equal(targets_of(half), digits_train.targets[::2])
    both = ConcatDataset([digits_train, half])
    assert torch.equal(targets_of(both), torch.cat([digits_train.targets, digits_train.targets[::2]]))
    assert torch.equal(targets_of([1, 0, 2]), torch.tensor([1, 0, 2]))
    with pytest.raises(DataError, match="no `.targets`"):
        targets_of(torch.utils.data.TensorDataset(torch.zeros(3)))
    with pytest.raises(DataError, match="integers"):
        targets_of(torch.rand(4))


def test_split_argument_errors(digits_train):
    labels = torch.arange(4).repeat(5)
    with pytest.raises(InvalidParameterError, match="fractions"):
        stratified_partition(labels, (0.5, 0.6))
    with pytest.raises(InvalidParameterError, match="seed"):
        protocol_split(labels, seed=-1)
    with pytest.raises(InvalidParameterError, match="fraction=1.5"):
        validation_split(labels, fraction=1.5)
    with pytest.raises(InvalidParameterError, match="n_per_class=0"):
        subsample_per_class(labels, 0)
    with pytest.raises(InvalidParameterError, match="indices"):
        subset(digits_train, [10_000])


def test_splitting_60000_labels_is_fast():
    import time

    labels = torch.arange(10).repeat(6000)
    start = time.perf_counter()
    protocol_split(labels, seed=0)
    subsample_per_class(labels, 100)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("options", [{}, {"image_size": 32, "channels": 3}])
def test_a_loader_reads_batches_exactly_as_it_reads_images_one_by_one(fashion_root, options):
    # LabelledImages and TaskDataset convert a loader's batch in one call (__getitems__);
    # what comes out must be what __getitem__ gives, image for image
    from torch.utils.data import DataLoader

    data = load_dataset("fashion_mnist", "test", root=fashion_root, **options)
    picked = subset(data, list(range(0, 2000, 7)))
    task = derive_task(picked, TaskSpec("fashion_mnist", classes=[0, 3, 9], transform="rotate90"))
    assert task.num_classes == 3 and "classes=3" in repr(task)
    for dataset in (picked, task, load_dataset("digits", "test", **options)):
        images, labels = next(iter(DataLoader(dataset, batch_size=len(dataset), shuffle=False)))
        one_by_one = [dataset[i] for i in range(len(dataset))]
        assert torch.equal(images, torch.stack([image for image, _ in one_by_one]))
        assert labels.tolist() == [label for _, label in one_by_one]
        assert len(dataset.__getitems__([2, 0, 2])) == 3
