"""Every entry of the predictor registry, checked the same way (parametrised over list_predictors()).

For each predictor: its sign convention on a constructed case with a known
answer, a clear error on bad input, and one forward pass over each dataset.
"""

import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import resque
from resque.errors import ResqueError
from resque.predictors import shift, transfer

SIZE, CLASSES, PER_CLASS = 9, 3, 12
LAYER = "1"  # the (B, 3) band means


class BandModel(nn.Sequential):
    """Logits = mean brightness of three horizontal bands; class k is a bright stripe in band k."""

    def __init__(self):
        super().__init__(nn.AdaptiveAvgPool2d((CLASSES, 1)), nn.Flatten(), nn.Identity())
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return super().forward(x)


def stripes(seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    images, labels = [], []
    for k in range(CLASSES):
        x = 0.2 * torch.rand(PER_CLASS, 1, SIZE, SIZE, generator=g)
        x[:, :, 3 * k: 3 * k + 2, :] += 0.7
        images.append(x)
        labels.append(torch.full((PER_CLASS,), k))
    return TensorDataset(torch.cat(images), torch.cat(labels))


def mixed_with_noise(data: TensorDataset, weight: float, seed: int = 1) -> TensorDataset:
    """The same images, a share `weight` of each pixel replaced by uniform noise."""
    images, labels = data.tensors
    noise = torch.rand(images.shape, generator=torch.Generator().manual_seed(seed))
    return TensorDataset((1 - weight) * images + weight * noise, labels)


def random_labels(data: TensorDataset) -> TensorDataset:
    images, labels = data.tensors
    return TensorDataset(images, labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(5))])


def score(predictor, model, *data):
    return predictor(model, *data, LAYER, progress=False)


SHIFT = resque.list_predictors("shift")
TASK = resque.list_predictors("task")


def test_the_registry_lists_every_predictor_once_with_its_facts():
    assert sorted(SHIFT + TASK) == resque.list_predictors()
    assert {"resque_dist", "resque_dist_paired", "accuracy_drop", "mmd", "frechet", "cka"} <= set(SHIFT)
    assert {"resque_task", "logme", "leep", "nce", "h_score", "gbc", "knn_accuracy", "linear_probe_accuracy"} <= set(TASK)
    for name in SHIFT + TASK:
        p = resque.get_predictor(name)
        assert p.name == name and p.label and p.reading and p.sign in (-1, 1)
    # what each rival computes from one pass is exactly what the registry lists
    assert set(shift.METRICS) | {"resque_dist", "resque_dist_paired"} == set(SHIFT)
    assert set(transfer.SCORES) <= set(TASK)


def test_unknown_names_and_kinds_are_refused_with_suggestions():
    with pytest.raises(ResqueError, match="Did you mean 'frechet'"):
        resque.get_predictor("frechett")
    with pytest.raises(ResqueError, match="kind='dist'"):
        resque.list_predictors("dist")


@pytest.mark.parametrize("name", SHIFT)
def test_shift_predictor_orders_a_mild_and_a_severe_shift(name):
    predictor, model, clean = resque.get_predictor(name), BandModel(), stripes()
    mild, severe = mixed_with_noise(clean, 0.1), mixed_with_noise(clean, 0.9)
    # `clean` is the same images before the shift, as paired predictors need (unpaired ones accept it too)
    oriented = [predictor.sign * score(predictor, model, clean, shifted) for shifted in (mild, severe)]
    assert all(math.isfinite(v) for v in oriented)
    assert oriented[1] > oriented[0], f"{name}: sign * value should grow with the shift"


@pytest.mark.parametrize("name", TASK)
def test_task_predictor_orders_an_easy_and_a_hopeless_task(name):
    predictor, model, task = resque.get_predictor(name), BandModel(), stripes()
    easy = predictor.sign * score(predictor, model, task)  # the classes are what the features encode
    hopeless = predictor.sign * score(predictor, model, random_labels(task))
    assert hopeless > easy, f"{name}: sign * value should be higher for a task the features cannot separate"


@pytest.mark.parametrize("name", SHIFT + TASK)
def test_predictor_refuses_empty_data_with_a_resque_error(name):
    predictor, model = resque.get_predictor(name), BandModel()
    empty = TensorDataset(torch.zeros(0, 1, SIZE, SIZE), torch.zeros(0, dtype=torch.long))
    data = (stripes(), empty) if predictor.kind == "shift" else (empty,)
    with pytest.raises(ResqueError):
        score(predictor, model, *data)


@pytest.mark.parametrize("name", SHIFT + TASK)
def test_predictor_reads_each_dataset_in_one_pass(name):
    predictor, model = resque.get_predictor(name), BandModel()
    data = (stripes(), mixed_with_noise(stripes(), 0.5)) if predictor.kind == "shift" else (stripes(),)
    predictor(model, *data, LAYER, batch_size=10, progress=False)
    batches = math.ceil(CLASSES * PER_CLASS / 10)
    assert model.calls == batches * len(data)


def test_all_rivals_together_still_take_one_pass():
    model, clean = BandModel(), stripes()
    shift.baseline_scores(model, clean, mixed_with_noise(clean, 0.5), LAYER, metrics=shift.METRICS,
                          batch_size=10, progress=False)
    assert model.calls == 2 * math.ceil(CLASSES * PER_CLASS / 10)
    model = BandModel()
    got = transfer.task_scores(model, clean, LAYER, batch_size=10, progress=False)
    assert list(got) == list(transfer.SCORES) and model.calls == math.ceil(CLASSES * PER_CLASS / 10)
    with pytest.raises(ResqueError, match="Did you mean 'logme'"):
        transfer.task_scores(model, clean, LAYER, names=("logmee",), progress=False)
