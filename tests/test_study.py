"""Profiles, the experiment grid, and the study's experiment functions on a tiny grid."""

import pytest

import resque
import torch
from resque.study import expand, list_profiles, load_profile
from resque.study.experiments import load_source, run_shift, run_source, run_task
from resque.errors import ProfileError
from resque.study.results import ResultsDir

needs_fashion = pytest.mark.skipif(
    not resque.data.datasets.DEBIAN_FASHION_MNIST_DIR.exists(),
    reason="needs Debian's dataset-fashion-mnist (make test installs it)",
)

TINY = """
description: test grid
n_per_class: 20
seeds: [0]
source: {target_accuracy: 0.5, max_epochs: 2, batch_size: 32}
retrain: {target_accuracy: 0.5, max_epochs: 1, batch_size: 32}
shifts: {gaussian_noise: [0.05, 0.3]}
tasks: [fashion_coarse4]
energy: false
"""


def write_profile(tmp_path, text=TINY, name="tiny.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name", list_profiles())
def test_shipped_profiles_load_and_expand(name):
    profile = load_profile(name)
    experiments = expand(profile, name, f"results/{name}")
    kinds = [e.kind for e in experiments]
    n_sources = len(profile.seeds)
    assert kinds[:n_sources] == ["source"] * n_sources  # sources first: the rest load them
    assert kinds[-2:] == ["energy", "analysis"]
    assert len({e.run_id for e in experiments}) == len(experiments)
    n_shift = (sum(len(v) for v in profile.shifts.values()) - len(profile.duplicate_shifts())) * len(profile.seeds)
    shift_runs = [run for e in experiments if e.kind == "shift" for run, _ in e.runs()]
    assert len(shift_runs) == n_shift and len(set(shift_runs)) == n_shift  # one record per intensity, none twice
    assert kinds.count("shift") <= len(profile.shifts) * len(profile.seeds)  # one page per family and seed
    task_runs = [run for e in experiments if e.kind == "task" for run, _ in e.runs()]
    assert len(set(task_runs)) == len(task_runs) == len(profile.tasks) * len(profile.seeds)
    assert kinds.count("task") == (len(profile.seeds) if profile.tasks else 0)  # one page per seed


def test_required_profiles_exist():
    assert {"smoke", "quick", "full", "paper"} <= set(list_profiles())
    quick = load_profile("quick")
    assert quick.dataset == "fashion_mnist" and quick.model == "small_cnn" and len(quick.seeds) >= 3
    # every family but salt-and-pepper (impulse noise on grey images), each with its intensity-0 control
    assert set(quick.shifts) == set(resque.list_shifts()) - {"salt_and_pepper"} and not quick.duplicate_shifts().keys() - {
        (family, 0.0) for family in quick.shifts}
    assert all(len(v) >= 5 and v[0] == 0 for v in quick.shifts.values())
    assert len(quick.tasks) >= 8 and "digits" in quick.tasks and quick.source["target_accuracy"] is None
    full = load_profile("full")
    assert len(full.seeds) >= 5 and len(full.tasks) >= 12
    paper = load_profile("paper")
    assert paper.dataset == "cifar10" and paper.model == "resnet18"


def test_run_ids_name_the_experiment(tmp_path):
    experiments = expand(load_profile(write_profile(tmp_path)), "tiny", tmp_path)
    assert [e.run_id for e in experiments] == [
        "source-seed0", "shift-gaussian_noise-seed0", "task-seed0", "energy", "analysis",
    ]
    assert experiments[2].runs() == [("task-fashion_coarse4-seed0", {**experiments[2].parameters,
                                                                      "task": "fashion_coarse4"})]
    page = experiments[1]  # one notebook for the family's grid, one record per intensity
    assert page.parameters == {"profile": "tiny", "results_dir": str(tmp_path), "seed": 0,
                               "shift": "gaussian_noise", "intensities": [0.05, 0.3]}
    assert [run for run, _ in page.runs()] == ["shift-gaussian_noise-0.05-seed0", "shift-gaussian_noise-0.3-seed0"]
    assert page.runs()[1][1]["intensity"] == 0.3


@pytest.mark.parametrize(
    "text, match",
    [
        ("shifts: {gausian_noise: [0.1]}", r"shifts='gausian_noise'"),
        ("shifts: {gaussian_noise: [5.0]}", r"intensity=5\.0.*\[0, 1\]"),
        ("tasks: [cifar]", r"tasks='cifar'"),
        ("model: resnet", r"model='resnet'"),
        ("seeds: []", r"seeds=\[\]"),
        ("sources: {}", r"\['sources'\].*Did you mean 'sources' -> 'source'"),
        ("retrain: {target_accuracy: 88}", r"target_accuracy=88"),
        ("retrain: {epochs: 3}", r"retrain keys=\['epochs'\]"),
    ],
)
def test_bad_profiles_are_refused_before_anything_runs(tmp_path, text, match):
    with pytest.raises(resque.InvalidParameterError, match=match):
        load_profile(write_profile(tmp_path, text))


def test_unknown_profile_name_lists_the_known_ones():
    with pytest.raises(resque.InvalidParameterError, match=r"profile='quik'.*'quick'"):
        load_profile("quik")


@needs_fashion
def test_experiment_functions_write_their_records(tmp_path):
    profile = load_profile(write_profile(tmp_path))
    results = ResultsDir(tmp_path / "results")
    with pytest.raises(resque.DataError, match="run the source experiment first"):
        load_source(results.root, 0)

    source = run_source(profile, 0, results.root, progress=False)
    assert results.complete("source-seed0") and source.kind == "source"
    assert results.source_model(0).exists() and results.source_fingerprint(0).exists()

    outcome = run_shift(profile, 0, "gaussian_noise", 0.3, results.root, progress=False)
    record = resque.load_record(results.record("shift-gaussian_noise-0.3-seed0"), require_complete=True)
    assert record.estimators["resque_dist"] == float(outcome.dist)
    # the next page of the seed in this process reuses the passes over the clean data, unless the source changed
    from resque.study import experiments

    first = experiments._shift_setting(profile, 0, results.root, False)
    assert experiments._shift_setting(profile, 0, results.root, False).on_clean is first.on_clean
    original = results.source_model(0).read_bytes()
    changed = load_source(results.root, 0)[0]
    with torch.no_grad():
        next(changed.parameters()).add_(1.0)
    resque.save_checkpoint(changed, results.source_model(0))
    recomputed = experiments._shift_setting(profile, 0, results.root, False)
    assert recomputed.on_clean is not first.on_clean and recomputed.on_clean.accuracy is not None
    results.source_model(0).write_bytes(original)
    assert {"resque_dist_paired", "accuracy_drop"} <= set(record.estimators)
    assert record.experiment["scratch_run_id"] == "scratch-shift-gaussian_noise-0.3-seed0"
    assert resque.load_record(results.record("scratch-shift-gaussian_noise-0.3-seed0")).kind == "scratch"
    assert outcome.clean_examples.shape == outcome.shifted_examples.shape == (8, 1, 28, 28)

    task = run_task(profile, 0, "fashion_coarse4", results.root, progress=False)
    keys = set(task.record.estimators)
    assert {"resque_task", "resque_task_mean_centroids", "resque_task_mean_kmeanspp",
            "resque_task_flatten_centroids", "resque_task_flatten_kmeanspp"} <= keys
    assert task.record.estimators["resque_task"] == task.record.estimators["resque_task_mean_centroids"]
    assert task.record.experiment["num_classes"] == 4


@needs_fashion
def test_replicate_seeds_repeat_each_retraining_and_task_runs_score_a_conv_layer(tmp_path):
    from resque.study.profiles import REPLICATE_SEED_OFFSET

    text = TINY.replace("seeds: [0]", "seeds: [0, 1]") + "replicate_seeds: [1]\ntask_conv_layer: features\n"
    profile = load_profile(write_profile(tmp_path, text))
    assert profile.run_settings("shift", 1, shift="gaussian_noise", intensity=0.3)["replicates"] == [1 + REPLICATE_SEED_OFFSET]
    assert profile.run_settings("task", 0, task="fashion_coarse4")["replicates"] == []
    results = ResultsDir(tmp_path / "results")
    for seed in (0, 1):
        run_source(profile, seed, results.root, progress=False)
    plain = run_shift(profile, 0, "gaussian_noise", 0.3, results.root, progress=False).record
    assert plain.replicates == []
    record = run_shift(profile, 1, "gaussian_noise", 0.3, results.root, progress=False).record
    (repeat,) = resque.load_record(results.record("shift-gaussian_noise-0.3-seed1")).replicates
    assert repeat["retrain_seed"] == 1 + REPLICATE_SEED_OFFSET and record.seed == 1
    assert repeat["stop_reason"] in resque.cost.training.STOP_REASONS and repeat["censored"] == (
        repeat["stop_reason"] not in ("reached", "plateau"))
    assert repeat["totals"]["steps"] >= 0 and repeat["totals"]["epochs"] == repeat["totals"]["samples"] / record.totals["train_size"]
    task = run_task(profile, 1, "fashion_coarse4", results.root, progress=False).record
    (task_repeat,) = task.replicates
    assert task_repeat["retrain_seed"] == 1 + REPLICATE_SEED_OFFSET
    # and RESQUE_task's variants at the convolutional layer, where pooling and flattening see different inputs
    conv = {key: value for key, value in task.estimators.items() if key.startswith("resque_task_conv_")}
    assert sorted(conv) == ["resque_task_conv_flatten_centroids", "resque_task_conv_flatten_kmeanspp",
                            "resque_task_conv_mean_centroids", "resque_task_conv_mean_kmeanspp"]
    assert task.experiment["task_conv_layer"] == "features"
    assert all(resque.get_predictor(key).kind == "task" for key in conv)
    bad = load_profile(write_profile(tmp_path, TINY + "task_conv_layer: featurez\n", "badlayer.yaml"))
    with pytest.raises(resque.InvalidParameterError, match="task_conv_layer.*'features'"):
        bad.check_runnable()
    with pytest.raises(resque.InvalidParameterError, match="replicate_seeds"):
        load_profile(write_profile(tmp_path, TINY + "replicate_seeds: [5]\n", "bad.yaml"))


def test_paper_profile_code_path_on_stand_in_data(tmp_path, monkeypatch):
    """The `paper` profile (CIFAR-10 source, ResNet-18, SVHN as a task) on small random stand-ins
    for torchvision's CIFAR10 and SVHN, since neither can be downloaded here."""
    import dataclasses

    import numpy as np
    import torchvision
    from PIL import Image

    class StandInCIFAR10:  # what torchvision.datasets.CIFAR10 exposes: .data (HWC uint8), .targets, .classes
        def __init__(self, root, train=True, transform=None, target_transform=None, download=False):
            rng = np.random.default_rng(0 if train else 1)
            n = 400 if train else 100
            self.targets = [i % 10 for i in range(n)]
            base = rng.integers(0, 256, (10, 32, 32, 3))  # one colour pattern per class, so it is learnable
            noise = rng.integers(-40, 40, (n, 32, 32, 3))
            self.data = np.clip(base[self.targets] + noise, 0, 255).astype(np.uint8)
            self.classes = [f"class{k}" for k in range(10)]

        def __getitem__(self, index):
            return Image.fromarray(self.data[index]), self.targets[index]

        def __len__(self):
            return len(self.data)

    class StandInSVHN:  # torchvision.datasets.SVHN: .data (N, 3, 32, 32), .labels, split=
        def __init__(self, root, split="train", transform=None, target_transform=None, download=False):
            rng = np.random.default_rng(2 if split == "train" else 3)
            n = 300 if split == "train" else 100
            self.data = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
            self.labels = (np.arange(n) % 10).astype(np.int64)

        def __getitem__(self, index):
            return Image.fromarray(np.transpose(self.data[index], (1, 2, 0))), int(self.labels[index])

        def __len__(self):
            return len(self.data)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", StandInCIFAR10)
    monkeypatch.setattr(torchvision.datasets, "SVHN", StandInSVHN)
    paper = load_profile("paper")
    profile = dataclasses.replace(
        paper, n_per_class=20, seeds=[0], shifts={"frost": [0.3]}, tasks=["svhn"], energy=False,
        model_kwargs={"width": 8},  # a narrow ResNet-18: the same code, a fraction of the compute
        source={**paper.source, "max_epochs": 1}, retrain={**paper.retrain, "max_epochs": 1},
    )
    results = ResultsDir(tmp_path / "results")
    source = run_source(profile, 0, results.root, progress=False)
    assert source.model["name"] == "resnet18" and source.model["kwargs"]["image_size"] == 32
    assert source.config["augmentation"] == "crop_flip"
    shift = run_shift(profile, 0, "frost", 0.3, results.root, progress=False)
    assert shift.clean_examples.shape == (8, 3, 32, 32) and 0 <= float(shift.dist) <= 1
    task = run_task(profile, 0, "svhn", results.root, progress=False)
    assert task.record.experiment["num_classes"] == 10 and task.record.complete


def test_duplicate_shifted_data_is_found_by_content_and_run_once(tmp_path):
    text = TINY.replace("shifts: {gaussian_noise: [0.05, 0.3]}",
                        "shifts: {gaussian_noise: [0, 0.05], impulse_noise: [0, 0.1], salt_and_pepper: [0.1, 0.2],"
                        " contrast: [0, 0.5]}")
    profile = load_profile(write_profile(tmp_path, text))
    duplicates = profile.duplicate_shifts()
    # the controls are the clean data in every family; salt-and-pepper is impulse noise on grey images
    assert duplicates == {("impulse_noise", 0.0): ("gaussian_noise", 0.0), ("contrast", 0.0): ("gaussian_noise", 0.0),
                          ("salt_and_pepper", 0.1): ("impulse_noise", 0.1)}
    shifts = [run for e in expand(profile, "tiny", tmp_path) if e.kind == "shift" for run, _ in e.runs()]
    assert shifts == ["shift-gaussian_noise-0-seed0", "shift-gaussian_noise-0.05-seed0", "shift-impulse_noise-0.1-seed0",
                      "shift-salt_and_pepper-0.2-seed0", "shift-contrast-0.5-seed0"]
    lines = profile.describe_duplicates()
    assert "one control per seed" in lines[0] and "impulse_noise, contrast" in lines[0]
    assert "salt_and_pepper gives the same images as impulse_noise at intensities 0.1" in lines[1]
    # on colour images the two families differ (per-channel impulses), so both run
    colour = load_profile(write_profile(tmp_path, text + "channels: 3\n", "colour.yaml"))
    assert ("salt_and_pepper", 0.1) not in colour.duplicate_shifts()


def test_rho_and_tasks_without_yardstick_are_refused(tmp_path):
    with pytest.raises(resque.InvalidParameterError, match=r"rho=1.5.*\(0, 1\]"):
        load_profile(write_profile(tmp_path, TINY + "rho: 1.5\n"))
    with pytest.raises(resque.InvalidParameterError, match=r"scratch=False.*a_ref"):
        load_profile(write_profile(tmp_path, TINY + "scratch: false\n"))


@needs_fashion
def test_task_images_are_disjoint_from_the_source_training_images(tmp_path):
    from resque.study.experiments import study_data, task_images
    from resque.cost.training import as_tensors

    profile = load_profile(write_profile(tmp_path, TINY.replace("n_per_class: 20", "n_per_class: 40")))
    source = as_tensors(study_data(profile, 0).original).images.flatten(1)
    spec = resque.data.tasks.get_task("fashion_subset_0_4")  # keeps the pixels: images can be compared
    task = as_tensors(task_images(profile, 0, spec, {}), "task").images.flatten(1)
    assert len(task) == 5 * 40
    same = (task[:, None, :] == source[None, :, :]).all(dim=2)
    assert not same.any()


def test_shift_yardsticks_on_some_seeds_only(tmp_path):
    profile = load_profile(write_profile(tmp_path, TINY.replace("seeds: [0]", "seeds: [0, 1]")
                                         + "shift_scratch_seeds: [0]\n"))
    assert profile.trains_scratch("shift", 0) and not profile.trains_scratch("shift", 1)
    assert profile.trains_scratch("task", 1)  # a task run needs its yardstick: it gives a_ref
    # a change of the subset changes the settings of the runs it moves, and only theirs
    assert profile.run_settings("shift", 1, shift="gaussian_noise", intensity=0.05)["scratch"] is False
    assert profile.run_settings("shift", 0, shift="gaussian_noise", intensity=0.05)["scratch"] is True
    with pytest.raises(resque.InvalidParameterError, match="shift_scratch_seeds"):
        load_profile(write_profile(tmp_path, TINY + "shift_scratch_seeds: [3]\n", "bad.yaml"))


def test_task_scores_chosen_in_the_profile(tmp_path):
    from resque.predictors.transfer import SCORES

    assert load_profile(write_profile(tmp_path, TINY)).task_score_names() == list(SCORES)  # default: all
    chosen = load_profile(write_profile(tmp_path, TINY + "task_scores: [nce, logme]\n", "some.yaml"))
    assert chosen.task_score_names() == ["logme", "nce"]  # in SCORES order
    assert chosen.run_settings("task", 0, task="fashion_coarse4")["task_scores"] == ["logme", "nce"]
    with pytest.raises(resque.InvalidParameterError, match="task_scores.*'logme'"):
        load_profile(write_profile(tmp_path, TINY + "task_scores: [logmee]\n", "bad.yaml"))
    with pytest.raises(ProfileError, match="task_scores"):
        load_profile(write_profile(tmp_path, TINY + "task_scores: logme\n", "bad2.yaml"))
    assert "linear_probe_accuracy" not in load_profile("quick").task_score_names()


def test_every_template_declares_the_parameters_the_runner_injects():
    import json
    from pathlib import Path

    folder = Path(resque.__file__).resolve().parents[1] / "notebooks"
    for experiment in expand(load_profile("quick"), "quick", "results/quick"):
        cells = json.loads((folder / experiment.notebook).read_text())["cells"]
        declared: dict = {}
        exec("".join(next(c for c in cells if "parameters" in c["metadata"].get("tags", []))["source"]), declared)
        missing = set(experiment.parameters) - set(declared)
        assert not missing, (experiment.notebook, missing)  # papermill would inject names the notebook never reads


def test_one_pass_over_a_task_gives_what_each_estimator_gets_from_a_pass_of_its_own():
    from resque.index.embedding import model_outputs
    from resque.index.task import resque_task_variants, variants_from_embeddings
    from resque.models import create_model
    from resque.models.zoo import default_layer
    from resque.predictors.transfer import scores_from_outputs, task_scores
    from resque.study.experiments import _items, _task_pass
    from resque.cost.training import TensorData

    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, image_size=28)
    images = torch.rand(90, 1, 28, 28)
    labels = torch.arange(90) % 3
    images[labels == 1] *= 0.5  # something to separate
    tensors = TensorData(images, labels)
    layers = (default_layer(model), "features")
    embeddings, features, logits, seen = _task_pass(model, tensors, layers, progress=False)
    assert torch.equal(seen, labels)
    for layer, pooled in zip(layers, embeddings):
        assert variants_from_embeddings(pooled, seen, layer, seed=2) == resque_task_variants(
            model, _items(tensors), layer, seed=2, progress=False)
    names = ("logme", "leep", "nce", "h_score", "knn_accuracy")
    assert scores_from_outputs(features, logits, seen.numpy(), names=names, seed=2) == task_scores(
        model, _items(tensors), layers[0], names=names, seed=2, progress=False)
    # model_outputs with several layers: a tuple of their outputs, in order, each as a single-layer pass gives it
    both = [outputs for outputs, _, _ in model_outputs(model, _items(tensors), list(layers))]
    alone = [output for output, _, _ in model_outputs(model, _items(tensors), layers[1])]
    assert all(isinstance(outputs, tuple) and len(outputs) == 2 for outputs in both)
    assert all(torch.equal(pair[1], single) for pair, single in zip(both, alone))
    with pytest.raises(resque.InvalidParameterError, match="non-empty"):
        next(model_outputs(model, _items(tensors), []))
