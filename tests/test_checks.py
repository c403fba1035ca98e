"""The constraint vocabulary (resque.checks), the atomic writer (resque.io) and their use at the boundary."""

import os
import stat

import numpy as np
import pytest
import torch

import resque
from resque.checks import check_choice, check_int, check_real, check_seed, did_you_mean
from resque.errors import InvalidParameterError, ResqueError
from resque.io import atomic_path, write_json
from resque.registry import Registry


def test_check_int_accepts_numpy_integers_and_refuses_bools_and_floats():
    assert check_int("n", np.int64(3), minimum=1) == 3 and type(check_int("n", np.int32(3))) is int
    for bad in (True, 2.0, "2", None):
        with pytest.raises(InvalidParameterError, match=r"n=.* is not allowed; expected an integer"):
            check_int("n", bad)
    with pytest.raises(InvalidParameterError, match=r"expected an integer in \[1, 3\]"):
        check_int("n", 4, minimum=1, maximum=3)


def test_check_real_bounds_and_finiteness():
    assert check_real("p", np.float32(0.5), minimum=0, maximum=1) == 0.5
    with pytest.raises(InvalidParameterError, match=r"in \[0, 1\)"):
        check_real("p", 1.0, minimum=0, maximum=1, closed_max=False)
    for bad in (float("nan"), float("inf"), False, "0.5"):
        with pytest.raises(InvalidParameterError):
            check_real("p", bad)


def test_check_choice_suggests_close_names():
    assert check_choice("pool", "mean", ("mean", "flatten")) == "mean"
    with pytest.raises(InvalidParameterError, match="Did you mean 'mean'"):
        check_choice("pool", "maen", ("mean", "flatten"))
    with pytest.raises(InvalidParameterError):
        check_choice("pool", ["unhashable"], ("mean",))
    assert did_you_mean("zzz", ["mean"]) == ""


def test_seeds_mean_the_same_everywhere():
    # One rule for every seed: non-negative integers, numpy integers included.
    assert check_seed(np.int64(3)) == 3
    data = torch.arange(40) % 2  # labels stand for the dataset
    images = torch.rand(2, 1, 6, 6)
    resque.protocol_split(data, seed=np.int64(3))
    resque.apply_shift(images, "gaussian_noise", 0.1, seed=np.int64(3))
    for call in (lambda: resque.protocol_split(data, seed=-1), lambda: resque.apply_shift(images, "gaussian_noise", 0.1, seed=-1)):
        with pytest.raises(InvalidParameterError, match="seed=-1 is not allowed; expected a non-negative integer"):
            call()


def test_shift_baselines_accept_a_numpy_seed():
    from resque.predictors.shift import mmd
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    data = torch.utils.data.TensorDataset(torch.rand(20, 1, 6, 6), torch.arange(20) % 2)
    other = torch.utils.data.TensorDataset(torch.rand(20, 1, 6, 6), torch.arange(20) % 2)
    value = float(mmd(model, data, other, "3", seed=np.int64(1), max_images=10, progress=False))
    assert value == float(mmd(model, data, other, "3", seed=1, max_images=10, progress=False))


def test_registry_errors_are_resque_errors():
    registry = Registry("thing")
    registry.register("one")(lambda: 1)
    with pytest.raises(ResqueError, match="already registered"):
        registry.register("one")(lambda: 2)
    with pytest.raises(ResqueError, match="lowercase"):
        registry.register("Two")(lambda: 2)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_atomic_writes_respect_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        path = write_json(tmp_path / "a.json", {"x": 1})
        plain = tmp_path / "plain"
        plain.write_text("x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~umask


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "record.json"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as temporary:
            temporary.write_text("half")
            raise RuntimeError("killed")
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


def test_records_checkpoints_and_fingerprints_are_readable_by_others(tmp_path):
    previous = os.umask(0o022)
    try:
        model = resque.create_model("small_cnn", num_classes=2, image_size=8)
        checkpoint = resque.save_checkpoint(model, tmp_path / "m.safetensors")
        data = torch.utils.data.TensorDataset(torch.rand(8, 1, 8, 8), torch.arange(8) % 2)
        fp = resque.fingerprint(model, data, resque.default_layer(model), progress=False)
        fp.save(tmp_path / "m.fingerprint.safetensors")
        record = resque.RunRecord(run_id="r", kind="shift", seed=0).save(tmp_path / "r.json")
    finally:
        os.umask(previous)
    for path in (checkpoint, tmp_path / "m.fingerprint.safetensors", record):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644, path


# --- the forward-pass options: one type, checked once ---------------------------------------------


def test_forward_options_refuse_devices_this_machine_lacks():
    from resque.index.embedding import ForwardOptions

    with pytest.raises(InvalidParameterError, match="device='gpu' is not allowed.*Did you mean 'cpu'"):
        ForwardOptions(device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(InvalidParameterError, match="no CUDA GPU"):
            ForwardOptions(device="cuda")
    assert ForwardOptions(device="cpu").device == torch.device("cpu")
    with pytest.raises(InvalidParameterError, match="batch_size=0"):
        ForwardOptions(batch_size=0)


def test_every_estimator_checks_the_device_before_the_pass():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    data = torch.utils.data.TensorDataset(torch.rand(4, 1, 5, 5), torch.arange(4) % 2)
    for call in (lambda: resque.resque_dist(model, data, data, "0", device="gpu"),
                 lambda: resque.resque_task(model, data, "0", device="gpu"),
                 lambda: resque.fingerprint(model, data, "0", device="gpu")):
        with pytest.raises(InvalidParameterError, match="device='gpu'"):
            call()


def test_unknown_forward_option_names_the_known_ones():
    from resque.predictors.transfer import task_scores

    with pytest.raises(InvalidParameterError, match="Did you mean 'batch_size'"):
        task_scores(torch.nn.Identity(), None, "x", batchsize=3)
