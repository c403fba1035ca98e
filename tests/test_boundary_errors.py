"""Bad input at every door gets one clear error (or warning) that names the problem and the fix.

The estimators (image batches the model cannot take), the profile files (YAML form,
duplicates, what a run needs), the study's results folder, and ``resque forecast``.
"""

import math
import textwrap

import pytest
import torch
from torch.utils.data import TensorDataset

import resque
from resque.cli import main
from resque.errors import DataError, InvalidParameterError, PixelRangeWarning, ProfileError
from resque.study.profiles import load_profile

from test_forecast import synthetic_records


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return resque.create_model("small_cnn", num_classes=2, in_channels=1, image_size=12)


def labelled(images: torch.Tensor) -> TensorDataset:
    return TensorDataset(images, torch.arange(len(images)) % 2)


GOOD = torch.rand(6, 1, 12, 12)


@pytest.mark.parametrize("images, message", [
    (torch.rand(6, 3, 12, 12), r"3 channel\(s\).*the model takes 1.*to_model_input"),
    (torch.rand(6, 12, 12), r"without a channel axis; add one \(images.unsqueeze\(1\)"),
    (torch.rand(6, 12, 12, 1), r"look channels-last.*permute\(0, 3, 1, 2\)"),
    (torch.rand(6, 1, 16, 16), r"16x16 images.*built for 12x12.*image_size=12"),
    ((torch.rand(6, 1, 12, 12) * 255).to(torch.uint8), r"dtype uint8; resque expects floats in \[0, 1\].*/ 255"),
])
def test_batches_the_model_cannot_take_are_named(model, images, message):
    for call in (lambda d: resque.resque_dist(model, labelled(GOOD), d, "embedding", progress=False),
                 lambda d: resque.resque_task(model, d, "embedding", progress=False)):
        with pytest.raises(DataError, match=message) as caught:
            call(labelled(images))
        assert "The model takes float batches of shape (B, 1, 12, 12)" in str(caught.value)


def test_a_half_precision_model_is_named(model):
    half = resque.create_model("small_cnn", num_classes=2, in_channels=1, image_size=12).half()
    with pytest.raises(DataError, match=r"dtype float32 but the model's weights are float16.*model.float\(\)"):
        resque.resque_task(half, labelled(GOOD), "embedding", progress=False)


def test_a_forward_error_inside_a_foreign_model_says_what_came_in():
    foreign = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(144, 2))
    with pytest.raises(DataError, match=r"cannot run on a batch of `data` of shape \(6, 1, 10, 10\) and dtype float32"):
        resque.resque_task(foreign, labelled(torch.rand(6, 1, 10, 10)), "1", progress=False)


def test_a_foreign_model_that_expands_grey_to_rgb_is_left_alone():
    # Its first Conv2d takes 3 channels, but it makes them itself: nothing to refuse.
    torch.manual_seed(0)
    expand = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 1), torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(),
                                 torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    value = float(resque.resque_task(expand, labelled(torch.rand(6, 1, 12, 12)), "1", progress=False))
    assert 0.0 <= value <= 1.0


def test_images_in_0_255_warn_once_and_are_scored_as_given(model):
    with pytest.warns(PixelRangeWarning, match=r"pixel values up to 2\d\d.*divide 0-255 images by 255") as caught:
        value = float(resque.resque_task(model, labelled(GOOD * 255), "embedding", batch_size=2, progress=False))
    assert len(caught) == 1 and math.isfinite(value)


@pytest.mark.parametrize("device", ["gpu", "cuda"])
def test_devices_this_machine_lacks(model, device):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(InvalidParameterError, match=f"device='{device}'"):
        resque.resque_dist(model, labelled(GOOD), labelled(GOOD), "embedding", device=device)


# --------------------------------------------------------------------------- profiles


def write_profile(tmp_path, body: str):
    path = tmp_path / "mine.yaml"
    path.write_text(textwrap.dedent(body))
    return path


def test_a_list_where_a_mapping_belongs_names_the_file_and_line(tmp_path):
    path = write_profile(tmp_path, """\
        dataset: fashion_mnist
        seeds: [0]
        shifts: []
    """)
    with pytest.raises(ProfileError, match=r"mine.yaml, line 3: `shifts` must be a mapping of shift family"):
        load_profile(path)


def test_a_yaml_syntax_error_names_the_line(tmp_path):
    path = write_profile(tmp_path, """\
        dataset: fashion_mnist
        seeds: [0, 1
        tasks: []
    """)
    with pytest.raises(ProfileError, match=r"mine.yaml, line 3: not valid YAML"):
        load_profile(path)


@pytest.mark.parametrize("grid, message", [
    ("seeds: [0, 0]", r"seeds=\[0, 0\].*0 and 0 are the same experiment"),
    ("seeds: [0]\nshifts: {gaussian_noise: [0.1, 0.1000001]}", r"0.1 and 0.1000001 are the same experiment.*one record"),
    ("seeds: [0]\ntasks: [fashion_coarse4, fashion_coarse4]", r"tasks=.*same experiment"),
])
def test_duplicate_experiments_are_refused(tmp_path, grid, message):
    with pytest.raises(InvalidParameterError, match=message):
        load_profile(write_profile(tmp_path, grid + "\n"))


def test_what_a_run_needs_is_checked_by_study_plan(tmp_path, capsys):
    pytest.importorskip("codecarbon")
    path = write_profile(tmp_path, "seeds: [0]\ncountry_iso_code: XYZ\nshifts: {frost: [0.3]}\n")
    assert main(["study", "plan", "--profile", str(path), "--results", str(tmp_path / "r")]) == 2
    assert "country_iso_code='XYZ'" in capsys.readouterr().err


def test_results_that_is_a_file(tmp_path, capsys):
    (tmp_path / "r").write_text("not a folder")
    assert main(["study", "plan", "--profile", "smoke", "--results", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "results_dir=" in err and "It is a file" in err and "Traceback" not in err


# --------------------------------------------------------------------------- resque forecast


@pytest.fixture(scope="module")
def forecast_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("forecast-errors")
    model = resque.create_model("small_cnn", num_classes=2, in_channels=1, image_size=12)
    resque.save_checkpoint(model, folder / "model.safetensors")
    resque.fingerprint(model, labelled(GOOD), "embedding", progress=False).save(folder / "model.fp")
    for record in synthetic_records(12, seed=0):
        record.save(folder / "calibration" / "records" / f"{record.run_id}.json")
    return folder


def forecast_cli(folder, *extra):
    return main(["forecast", "--checkpoint", str(folder / "model.safetensors"), "--fingerprint",
                 str(folder / "model.fp"), *extra])


@pytest.mark.parametrize("where, message", [("missing", "does not exist"), ("file", "is a file")])
def test_forecast_calibration_path_that_is_wrong(forecast_files, tmp_path, capsys, where, message):
    path = tmp_path / "calib"
    if where == "file":
        path.write_text("x")
    status = forecast_cli(forecast_files, "--data", "fashion_mnist", "--calibration", str(path))
    err = capsys.readouterr().err
    assert status == 2 and f"--calibration='{path}'" in err and message in err and "run more" not in err


def test_forecast_data_folder_that_does_not_exist(forecast_files, tmp_path, capsys):
    status = forecast_cli(forecast_files, "--data", str(tmp_path / "nowhere"),
                          "--calibration", str(forecast_files / "calibration"))
    err = capsys.readouterr().err
    assert status == 2 and "The path does not exist" in err


@pytest.mark.parametrize("content", ["empty", "no images"])
def test_forecast_data_folder_without_images(forecast_files, tmp_path, capsys, content):
    folder = tmp_path / "images"
    folder.mkdir()
    if content == "no images":
        (folder / "cat").mkdir()
        (folder / "cat" / "notes.txt").write_text("not an image")
    status = forecast_cli(forecast_files, "--data", str(folder), "--calibration", str(forecast_files / "calibration"))
    err = capsys.readouterr().err
    assert status == 2 and "holds no labelled images" in err and "one subfolder per class" in err


def test_forecast_on_a_missing_gpu(forecast_files, capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    status = forecast_cli(forecast_files, "--data", "digits", "--device", "cuda",
                          "--calibration", str(forecast_files / "calibration"))
    assert status == 2 and "no CUDA GPU" in capsys.readouterr().err


def test_too_few_runs_names_the_flag(tmp_path, capsys):
    for record in synthetic_records(3, seed=0):
        record.save(tmp_path / "records" / f"{record.run_id}.json")
    assert forecast_cli(tmp_path, "--data", "digits", "--calibration", str(tmp_path)) == 2
    assert "--min-runs" in capsys.readouterr().err


def test_a_clipped_forecast_says_what_the_star_and_a_total_saving_mean():
    from resque.forecast import fit_forecast

    prediction = fit_forecast(synthetic_records(40, seed=0)).predict(-1.0)  # far below the calibration range
    text = str(prediction)
    assert "0*" in text and "100.0 %*" in text
    assert "falls below the least a retraining can cost" in text and "not nothing" in text
