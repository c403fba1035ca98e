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
#: Shift predictors the band model can stand in for: the untrained control needs a registry model to copy.
#: The design's baselines (constant, intensity rank) read the shift's intensity, not its images.
DESIGN = [name for name in SHIFT if resque.get_predictor(name).design]
ON_BANDS = [name for name in SHIFT if name != "resque_dist_untrained" and name not in DESIGN]


def test_the_registry_lists_every_predictor_once_with_its_facts():
    assert sorted(SHIFT + TASK) == resque.list_predictors()
    assert {"resque_dist", "resque_dist_paired", "accuracy_drop", "mmd", "frechet", "cka"} <= set(SHIFT)
    assert {"resque_task", "logme", "leep", "nce", "h_score", "gbc", "knn_accuracy", "linear_probe_accuracy"} <= set(TASK)
    for name in SHIFT + TASK:
        p = resque.get_predictor(name)
        assert p.name == name and p.label and p.reading and p.sign in (-1, 1)
    # what each rival computes from one pass is exactly what the registry lists
    assert set(shift.METRICS) | {"resque_dist", "resque_dist_paired", "pixel_distance", "resque_dist_untrained",
                                 "constant", "intensity_rank"} == set(SHIFT)
    assert DESIGN == ["constant", "intensity_rank"]
    assert set(transfer.SCORES) <= set(TASK)


def test_unknown_names_and_kinds_are_refused_with_suggestions():
    with pytest.raises(ResqueError, match="Did you mean 'frechet'"):
        resque.get_predictor("frechett")
    with pytest.raises(ResqueError, match="kind='dist'"):
        resque.list_predictors("dist")


@pytest.mark.parametrize("name", ON_BANDS)
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


@pytest.mark.parametrize("name", ON_BANDS + TASK)
def test_predictor_refuses_empty_data_with_a_resque_error(name):
    predictor, model = resque.get_predictor(name), BandModel()
    empty = TensorDataset(torch.zeros(0, 1, SIZE, SIZE), torch.zeros(0, dtype=torch.long))
    data = (stripes(), empty) if predictor.kind == "shift" else (empty,)
    with pytest.raises(ResqueError):
        score(predictor, model, *data)


@pytest.mark.parametrize("name", ON_BANDS + TASK)
def test_predictor_reads_each_dataset_in_one_pass(name):
    predictor, model = resque.get_predictor(name), BandModel()
    data = (stripes(), mixed_with_noise(stripes(), 0.5)) if predictor.kind == "shift" else (stripes(),)
    predictor(model, *data, LAYER, batch_size=10, progress=False)
    batches = math.ceil(CLASSES * PER_CLASS / 10)
    assert model.calls == (0 if name == "pixel_distance" else batches * len(data))  # the pixels need no model


def test_pixel_distance_is_the_rms_difference_of_paired_images():
    clean = stripes()
    assert shift.pixel_rms_distance(clean.tensors[0], clean.tensors[0]) == 0.0
    assert shift.pixel_rms_distance(torch.zeros(2, 1, 3, 3), torch.ones(2, 1, 3, 3)) == 1.0
    assert shift.pixel_rms_distance(torch.zeros(1, 1, 2, 2), torch.tensor([[[[0.0, 0.0], [0.0, 0.4]]]])) == pytest.approx(0.2)
    noisy = mixed_with_noise(clean, 0.5)
    expected = float(((clean.tensors[0].double() - noisy.tensors[0].double()) ** 2).mean().sqrt())
    assert resque.get_predictor("pixel_distance")(None, clean, noisy, progress=False) == pytest.approx(expected)
    with pytest.raises(ResqueError, match="shapes differ"):
        shift.pixel_rms_distance(torch.zeros(2, 1, 3, 3), torch.zeros(3, 1, 3, 3))
    with pytest.raises(ResqueError, match="labels differ"):
        shift.pixel_distance(None, clean, random_labels(noisy))


def test_untrained_control_is_resque_dist_of_a_fresh_network_of_the_same_architecture():
    model = resque.create_model("small_cnn", num_classes=3, image_size=SIZE)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5)  # stands for training: the copy must not share these weights
    fresh, again = shift.untrained_copy(model, seed=4), shift.untrained_copy(model, seed=4)
    assert type(fresh) is type(model) and not fresh.training
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), again.state_dict().values()))
    assert not torch.equal(fresh.classifier.weight, model.classifier.weight)
    clean, noisy = stripes(), mixed_with_noise(stripes(), 0.5)
    layer = resque.default_layer(model)
    value = resque.get_predictor("resque_dist_untrained")(model, clean, noisy, layer, seed=4, progress=False)
    assert value == pytest.approx(float(resque.resque_dist(fresh, clean, noisy, layer, progress=False)))
    with pytest.raises(ResqueError, match="resque_config"):
        shift.untrained_copy(BandModel())


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


def test_the_design_baselines_read_the_shift_not_the_images():
    clean = stripes()
    rank, constant = resque.get_predictor("intensity_rank"), resque.get_predictor("constant")
    grid = resque.recommended_grid("gaussian_noise")
    for position, intensity in enumerate((0.0,) + tuple(grid)):
        shifted = resque.ShiftedDataset(clean, "gaussian_noise", intensity, seed=0, progress=False)
        assert rank(None, clean, shifted) == position  # 0 = no shift, then the grid in order
        assert constant(None, clean, shifted) == 0.0
    off_grid = resque.ShiftedDataset(clean, "gaussian_noise", 0.5 * grid[0], seed=0, progress=False)
    with pytest.raises(ResqueError, match="grid"):
        rank(None, clean, off_grid)  # not on the grid it ranks: refused, not given a rank it does not have
    assert rank(None, clean, off_grid, grid=[0.5 * grid[0], grid[0]]) == 1  # on the study's own grid
    with pytest.raises(ResqueError, match="ShiftedDataset"):
        rank(None, clean, mixed_with_noise(clean, 0.5))
