"""RESQUE_task: agreement with a slow reference and its expected extremes."""

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

import resque
from toy import patterned_images, reference_ari, reference_embeddings, reference_kmeans, toy_cnn


def blobs(n_per_class: int, classes: int, spread: float, seed: int = 0) -> TensorDataset:
    """(1, 1, D) "images" around one-hot centres; `spread` controls the overlap."""
    g = torch.Generator().manual_seed(seed)
    centres = 5.0 * torch.eye(classes)
    x = torch.cat([centres[k] + spread * torch.randn(n_per_class, classes, generator=g) for k in range(classes)])
    y = torch.arange(classes).repeat_interleave(n_per_class)
    return TensorDataset(x[:, None, None, :], y)


FLAT = torch.nn.Sequential(torch.nn.Flatten())  # layer "0": the input itself, (B, D)


@pytest.mark.parametrize("pool", ["mean", "flatten"])
@pytest.mark.parametrize("layer", [1, 2])
def test_matches_numpy_lloyd_from_centroids(pool, layer):
    model = toy_cnn(2)
    data = patterned_images(25, seed=4)
    got = resque.resque_task(model, data, str(layer), pool=pool, progress=False)
    x = reference_embeddings(model, data, layer, flatten=pool == "flatten")
    y = data.tensors[1].numpy()
    centres = np.stack([x[y == k].mean(axis=0) for k in range(3)])
    ari = reference_ari(y, reference_kmeans(x, centres))
    assert got.ari == pytest.approx(ari, abs=1e-9)
    assert float(got) == pytest.approx(1 - ari, abs=1e-9)
    assert (got.n_images, got.n_classes, got.pool, got.init) == (75, 3, pool, "centroids")


@pytest.mark.filterwarnings("ignore::resque.errors.PixelRangeWarning")  # properties hold for any real-valued data
def test_perfectly_separated_classes_score_zero():
    for init in ("centroids", "k-means++"):
        assert float(resque.resque_task(FLAT, blobs(30, 4, 0.05), "0", init=init, progress=False)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.filterwarnings("ignore::resque.errors.PixelRangeWarning")  # properties hold for any real-valued data
def test_random_labels_score_high():
    data = blobs(50, 4, 0.05)
    shuffled = data.tensors[1][torch.randperm(200, generator=torch.Generator().manual_seed(0))]
    result = resque.resque_task(FLAT, TensorDataset(data.tensors[0], shuffled), "0", progress=False)
    assert float(result) > 0.9


@pytest.mark.filterwarnings("ignore::resque.errors.PixelRangeWarning")  # properties hold for any real-valued data
def test_score_rises_as_classes_overlap():
    values = [float(resque.resque_task(FLAT, blobs(60, 3, s), "0", progress=False)) for s in (0.1, 2.0, 6.0)]
    assert values[0] < values[1] < values[2], values


def test_identical_seeds_identical_results():
    model = toy_cnn(3)
    data = patterned_images(20, seed=1)
    a = resque.resque_task(model, data, "2", init="k-means++", seed=7, progress=False)
    b = resque.resque_task(model, data, "2", init="k-means++", seed=7, progress=False)
    assert a == b


@pytest.mark.filterwarnings("ignore::resque.errors.PixelRangeWarning")  # properties hold for any real-valued data
def test_labels_need_not_be_contiguous():
    data = blobs(20, 3, 0.5)
    relabelled = TensorDataset(data.tensors[0], data.tensors[1] * 5 + 2)  # labels 2, 7, 12
    assert float(resque.resque_task(FLAT, relabelled, "0", progress=False)) == float(
        resque.resque_task(FLAT, data, "0", progress=False)
    )


def test_variants_equal_the_single_calls():
    model = toy_cnn(1)
    data = patterned_images(15)
    variants = resque.resque_task_variants(model, data, "2", seed=3, progress=False)
    assert set(variants) == {(p, i) for p in ("mean", "flatten") for i in ("centroids", "k-means++")}
    for (pool, init), result in variants.items():
        assert result == resque.resque_task(model, data, "2", pool=pool, init=init, seed=3, progress=False)
