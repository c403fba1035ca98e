"""Every bad input gets a clear error that names the problem and the fix (one test per message)."""

import pytest
import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

import resque
from toy import patterned_images, toy_cnn


@pytest.fixture
def model():
    return toy_cnn()


@pytest.fixture
def data():
    return patterned_images(6)


def test_unknown_layer_suggests_close_names(model, data):
    named = torch.nn.Sequential()
    named.add_module("features", model)
    with pytest.raises(resque.LayerNotFoundError, match=r"Did you mean 'features\.1'") as info:
        resque.resque_dist(named, data, data, "featurs.1", progress=False)
    assert "named_modules" in str(info.value)
    assert isinstance(info.value, KeyError)


def test_layer_must_be_a_string(model, data):
    with pytest.raises(resque.InvalidParameterError, match="layer=3"):
        resque.resque_task(model, data, 3, progress=False)


def test_class_missing_from_shifted(model, data):
    images, labels = data.tensors
    keep = labels != 2
    with pytest.raises(resque.ClassMismatchError, match=r"classes \[2\] are in `original` but not in `shifted`"):
        resque.resque_dist(model, data, TensorDataset(images[keep], labels[keep]), "1", progress=False)


def test_extra_class_in_shifted(model, data):
    images, labels = data.tensors
    extra = TensorDataset(images, torch.where(labels == 0, 9, labels))
    with pytest.raises(resque.ClassMismatchError, match=r"\[9\] are in `shifted` but not in `original`"):
        resque.resque_dist(model, data, extra, "1", progress=False)


def test_empty_dataset(model, data):
    empty = TensorDataset(torch.zeros(0, 1, 10, 10), torch.zeros(0, dtype=torch.long))
    with pytest.raises(resque.DataError, match="`shifted` is empty"):
        resque.resque_dist(model, data, empty, "1", progress=False)
    with pytest.raises(resque.DataError, match="`data` is empty"):
        resque.resque_task(model, empty, "1", progress=False)


def test_empty_iterable_loader(model, data):
    class Nothing(torch.utils.data.IterableDataset):
        def __iter__(self):
            return iter(())

    with pytest.raises(resque.DataError, match="`original` is empty"):
        resque.resque_dist(model, DataLoader(Nothing(), batch_size=2), data, "1", progress=False)


def test_float_labels(model, data):
    images, labels = data.tensors
    with pytest.raises(resque.DataError, match="labels of dtype torch.float32.*must be integers"):
        resque.resque_dist(model, data, TensorDataset(images, labels.float()), "1", progress=False)


def test_one_hot_labels(model, data):
    images, labels = data.tensors
    one_hot = torch.nn.functional.one_hot(labels)
    with pytest.raises(resque.DataError, match="argmax"):
        resque.resque_task(model, TensorDataset(images, one_hot), "1", progress=False)


def test_negative_labels(model, data):
    images, labels = data.tensors
    with pytest.raises(resque.DataError, match="negative label"):
        resque.resque_task(model, TensorDataset(images, labels - 1), "1", progress=False)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_images(model, data, bad):
    images, labels = data.tensors
    images = images.clone()
    images[3, 0, 0, 0] = bad
    with pytest.raises(resque.DataError, match="NaN or Inf"):
        resque.resque_dist(model, data, TensorDataset(images, labels), "1", progress=False)


@pytest.mark.filterwarnings("ignore::resque.errors.PixelRangeWarning")  # properties hold for any real-valued data
def test_all_zero_embeddings_for_a_class(data):
    # Layer "1" is a ReLU of a conv with a strongly negative bias: zero for dim images.
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.ReLU())
    with torch.no_grad():
        model[0].weight.fill_(1.0)
        model[0].bias.fill_(-0.5)
    images, labels = data.tensors
    dim = torch.where((labels == 1)[:, None, None, None], images * 0.0, images + 1.0)
    with pytest.raises(resque.DegenerateEmbeddingError, match=r"classes \[1\].*choose the layer before"):
        resque.resque_dist(model, TensorDataset(images + 1.0, labels), TensorDataset(dim, labels), "1", progress=False)


def test_constant_embeddings_for_task(data):
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.ReLU())
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].bias.fill_(-1.0)
    with pytest.raises(resque.DegenerateEmbeddingError, match="same embedding"):
        resque.resque_task(model, data, "1", progress=False)


def test_pool_not_allowed(model, data):
    with pytest.raises(resque.InvalidParameterError, match="pool='max'.*'mean', 'flatten'"):
        resque.resque_task(model, data, "1", pool="max", progress=False)


def test_init_not_allowed(model, data):
    with pytest.raises(resque.InvalidParameterError, match="init='random'.*'centroids', 'k-means\\+\\+'"):
        resque.resque_task(model, data, "1", init="random", progress=False)


def test_single_class_task(model, data):
    images, labels = data.tensors
    with pytest.raises(resque.DataError, match="at least 2 classes"):
        resque.resque_task(model, TensorDataset(images, torch.zeros_like(labels)), "1", progress=False)


def test_not_a_dataset(model, data):
    with pytest.raises(resque.DataError, match="TensorDataset"):
        resque.resque_dist(model, data.tensors, data, "1", progress=False)


def test_batches_without_labels(model):
    class ImagesOnly(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.zeros(1, 10, 10)

    with pytest.raises(resque.DataError, match=r"must yield \(image, label\) pairs"):
        resque.resque_task(model, ImagesOnly(), "1", progress=False)


def test_bad_batch_size(model, data):
    with pytest.raises(resque.InvalidParameterError, match="batch_size=0"):
        resque.resque_dist(model, data, data, "1", batch_size=0, progress=False)


def test_layer_that_runs_twice(data):
    shared = torch.nn.Conv2d(1, 1, 1)

    class Twice(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = shared

        def forward(self, x):
            return self.conv(self.conv(x))

    with pytest.raises(resque.DataError, match="ran 2 times"):
        resque.resque_dist(Twice(), data, data, "conv", progress=False)


def test_every_error_is_a_resque_error():
    for name in resque.__all__:
        obj = getattr(resque, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, resque.ResqueError)
