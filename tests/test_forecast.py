"""The retraining-cost forecast: OLS recovery, interval coverage, leave-one-out, clipping, errors, CLI."""

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere: tests draw off-screen

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from resque.errors import InvalidParameterError, ResqueError
from resque.forecast import (
    ForecastError,
    Prediction,
    fit_forecast,
    forecast,
    mean_fit,
    ols_fit,
)
from resque.study.analysis import leave_one_out, plot_predicted_vs_measured
from resque.cost.records import RunRecord

INTERCEPT, SLOPE, NOISE = 2.0, 30.0, 1.0
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


def _costs(index: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Known linear costs: epochs = 2 + 30 x + N(0, 1); energy and carbon proportional to it."""
    epochs = INTERCEPT + SLOPE * index + rng.normal(0.0, NOISE, len(index))
    energy = 0.01 * (INTERCEPT + SLOPE * index) + rng.normal(0.0, 0.01 * NOISE, len(index))  # kWh
    return {"epochs": epochs, "energy_kwh": energy, "carbon_kg": 0.4 * energy}  # kg CO2-eq at 0.4 kg/kWh


def synthetic_frame(n: int = 40, seed: int = 0, censored: int = 0) -> pd.DataFrame:
    """A frame shaped like ``load_records``: one run per intensity, yardsticks at 40 epochs."""
    rng = np.random.default_rng(seed)
    index = rng.uniform(0.0, 0.5, n)
    costs = _costs(index, rng)
    scratch_epochs = 40.0 + rng.normal(0.0, 1.0, n)
    frame = pd.DataFrame({
        "run_id": [f"shift-gaussian_noise-{i}" for i in range(n)],
        "kind": "shift", "family": "gaussian_noise", "intensity": np.arange(n) / 100, "task": None, "seed": 0,
        "resque_dist": index, **costs,
        "censored": np.arange(n) < censored,
        "scratch_run_id": [f"scratch-shift-gaussian_noise-{i}" for i in range(n)],
        "scratch_epochs": scratch_epochs, "scratch_energy_kwh": scratch_epochs * 0.01,
        "scratch_carbon_kg": scratch_epochs * 0.004,
    })
    return frame


def synthetic_records(n: int = 40, seed: int = 0) -> list[RunRecord]:
    """The runs of :func:`synthetic_frame` as complete records, each with its from-scratch yardstick."""
    frame = synthetic_frame(n, seed)
    records = []
    for row in frame.itertuples():
        experiment = {"shift": row.family, "intensity": row.intensity}
        scratch_id = row.scratch_run_id
        records.append(RunRecord(
            scratch_id, "scratch", experiment={**experiment, "yardstick_for": row.run_id}, stop_reason="reached",
            totals={"epochs": row.scratch_epochs, "energy_kwh": row.scratch_energy_kwh,
                    "carbon_kg": row.scratch_carbon_kg}, complete=True,
        ))
        records.append(RunRecord(
            row.run_id, "shift", experiment={**experiment, "scratch_run_id": scratch_id},
            estimators={"resque_dist": row.resque_dist}, stop_reason="reached", complete=True,
            totals={"epochs": row.epochs, "energy_kwh": row.energy_kwh, "carbon_kg": row.carbon_kg},
        ))
    return records


# --------------------------------------------------------------------------- the functional core


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_ols_recovers_known_line_and_matches_scipy(seed):
    model = fit_forecast(synthetic_frame(40, seed))
    fit = model.fits["epochs"]
    assert abs(fit.slope - SLOPE) < 4.0  # standard error of the slope is about 1.1
    assert abs(fit.intercept - INTERCEPT) < 1.2
    assert 0.7 < fit.residual_se < 1.3
    frame = synthetic_frame(40, seed)
    reference = stats.linregress(frame["resque_dist"], frame["epochs"])
    np.testing.assert_allclose([fit.slope, fit.intercept, fit.se_slope, fit.se_intercept],
                               [reference.slope, reference.intercept, reference.stderr, reference.intercept_stderr])


def test_prediction_interval_matches_textbook_formula():
    rng = np.random.default_rng(5)
    x, y = rng.uniform(0, 1, 12), rng.normal(0, 1, 12)
    fit = ols_fit(x, y)
    x0, n = 0.8, len(x)
    residuals = y - (fit.intercept + fit.slope * x)
    s = math.sqrt((residuals**2).sum() / (n - 2))
    half = stats.t.ppf(0.95, n - 2) * s * math.sqrt(1 + 1 / n + (x0 - x.mean()) ** 2 / ((x - x.mean()) ** 2).sum())
    point, low, high = fit.predict(x0, 0.9)
    np.testing.assert_allclose([low, high], [point - half, point + half])
    mean = mean_fit(y)
    _, low, high = mean.predict(x0, 0.9)
    np.testing.assert_allclose(high - low, 2 * stats.t.ppf(0.95, n - 1) * y.std(ddof=1) * math.sqrt(1 + 1 / n))


def test_intervals_cover_about_ninety_percent_of_fresh_points():
    rng = np.random.default_rng(123)
    hits = []
    for draw in range(200):
        fit = ols_fit(*_line_sample(rng, 40))
        x_new, y_new = _line_sample(rng, 10)
        _, low, high = fit.predict(x_new, 0.9)
        hits.extend((low <= y_new) & (y_new <= high))
    coverage = np.mean(hits)
    assert 0.8 <= coverage <= 0.97, coverage


def _line_sample(rng, n):
    x = rng.uniform(0.0, 0.5, n)
    return x, INTERCEPT + SLOPE * x + rng.normal(0.0, NOISE, n)


# --------------------------------------------------------------------------- inputs and the saving


def test_records_folder_and_frame_give_the_same_forecast(tmp_path):
    records = synthetic_records(12, seed=4)
    for record in records:
        record.save(tmp_path / "records" / f"{record.run_id}.json")
    from_records = fit_forecast(records).predict(0.2)
    from_folder = fit_forecast(tmp_path).predict(0.2)
    from_frame = fit_forecast(synthetic_frame(12, seed=4)).predict(0.2)
    for measure in ("epochs", "energy_kwh", "carbon_kg"):
        for attribute in ("point", "low", "high", "scratch", "saving"):
            values = [getattr(p[measure], attribute) for p in (from_records, from_folder, from_frame)]
            np.testing.assert_allclose(values, values[0])


def test_saving_is_one_minus_reuse_over_scratch():
    model = fit_forecast(synthetic_frame(40, seed=0))
    assert model.scratch_fits["epochs"].kind == "mean"  # yardsticks do not depend on the index here
    prediction = model.predict(0.3)
    epochs = prediction["epochs"]
    assert epochs.scratch == pytest.approx(40.0, abs=1.0)
    assert epochs.saving == pytest.approx(1 - epochs.point / epochs.scratch)
    assert 0.5 < epochs.saving < 0.8  # about 1 - 11 / 40


def test_censored_runs_count_as_lower_bounds_by_default():
    from resque.forecast import CensoredLineFit, LinearFit

    frame = synthetic_frame(40, seed=0, censored=10)
    frame.loc[frame["censored"], "epochs"] -= 5.0  # stopped early: the recorded cost understates the true one
    model = fit_forecast(frame)
    assert model.n_runs["epochs"] == 40 and isinstance(model.fits["epochs"], CensoredLineFit)
    assert model.fits["epochs"].n_censored == 10
    printed = str(model.predict(0.2))
    assert "a censoring-aware line on 40 calibration runs, 10 of them censored" in printed
    as_observed = fit_forecast(frame, censored="observed")
    dropped = fit_forecast(frame, censored="drop")
    assert isinstance(as_observed.fits["epochs"], LinearFit) and as_observed.n_runs["epochs"] == 40
    assert dropped.n_runs["epochs"] == 30 and "OLS on 30 calibration runs" in str(dropped.predict(0.2))
    # taken as observed, the understated costs pull the line down; as lower bounds they do not
    truth = INTERCEPT + SLOPE * 0.2
    assert abs(model.predict(0.2)["epochs"].point - truth) < abs(as_observed.predict(0.2)["epochs"].point - truth)
    assert fit_forecast(frame, exclude_censored=True).n_runs["epochs"] == 30  # the older switch still works
    with pytest.raises(InvalidParameterError, match="exclude_censored"):
        fit_forecast(frame, exclude_censored=True, censored="observed")  # two switches that disagree
    with pytest.raises(InvalidParameterError, match="censored"):
        fit_forecast(frame, censored="ignore")


def test_a_forecast_for_another_model_warns(tmp_path):
    import torch

    import resque
    from resque.errors import ForecastWarning
    from resque.forecast import _warn_if_not_a_source, calibration_sources, matches_a_source

    source = resque.create_model("small_cnn", num_classes=10)
    (tmp_path / "models").mkdir()
    assert matches_a_source(source, tmp_path) is None  # nothing to compare with: no claim either way
    resque.save_checkpoint(source, tmp_path / "models" / "source-seed0.safetensors")
    torch.save({}, tmp_path / "models" / "source-seed0.fingerprint.safetensors")  # not a model: ignored
    assert [p.name for p in calibration_sources(tmp_path)] == ["source-seed0.safetensors"]
    assert matches_a_source(source, tmp_path) is True
    other = resque.create_model("small_cnn", num_classes=10)
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    assert matches_a_source(other, tmp_path) is False
    with pytest.warns(ForecastWarning, match=r"not one of the source models .*\(source-seed0"):
        _warn_if_not_a_source(other, tmp_path)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_if_not_a_source(source, tmp_path)  # its own source: silent


def test_too_few_runs_raise_with_the_counts():
    frame = synthetic_frame(6, seed=0, censored=3)
    with pytest.raises(ForecastError, match=r"at least min_runs=5 .* found 3 of 6 shift runs \(3 censored") as info:
        fit_forecast(frame, censored="drop")
    assert isinstance(info.value, ResqueError)
    assert (info.value.n_runs, info.value.min_runs) == (3, 5)


def test_one_index_value_raises():
    frame = synthetic_frame(8).assign(resque_dist=0.1)
    with pytest.raises(ForecastError, match="cannot predict another"):
        fit_forecast(frame)


@pytest.mark.parametrize("arguments, parameter", [
    ({"measures": ("energy",)}, "measures"),
    ({"kind": "shfit"}, "kind"),
    ({"estimator": "resque_dst"}, "estimator"),
    ({"min_runs": 2}, "min_runs"),
    ({"level": 1.5}, "level"),
])
def test_bad_arguments_name_the_parameter(arguments, parameter):
    with pytest.raises(InvalidParameterError, match=parameter):
        fit_forecast(synthetic_frame(10), **arguments)


# --------------------------------------------------------------------------- predictions


def test_predict_clips_every_cost_at_zero():
    frame = synthetic_frame(40, seed=0)
    model = fit_forecast(frame)
    prediction = model.predict(-1.0)  # the line gives about 2 - 30 < 0
    assert prediction["epochs"].point == 0.0 and prediction["epochs"].low == 0.0  # a model at its target costs 0
    assert prediction["energy_kwh"].point == 0.0 and prediction["carbon_kg"].low == 0.0
    assert all(m.clipped for m in prediction.measures.values())
    assert prediction.extrapolated
    text = str(prediction)
    assert "clipped" in text and "extrapolated" in text


def test_prediction_str_contains_the_numbers():
    model = fit_forecast(synthetic_frame(40, seed=0))
    prediction = model.predict(0.25)
    text = str(prediction)
    assert "RESQUE_dist = 0.25" in text
    for unit in ("epochs", "kWh", "kg CO2-eq"):
        assert unit in text
    for m in prediction.measures.values():
        assert f"{m.point:.4g}" in text and f"{m.low:.4g}" in text and f"{m.high:.4g}" in text
        assert f"{100 * m.saving:.1f} %" in text
    assert "90 % prediction intervals" in text
    assert list(prediction.to_frame().index) == ["epochs", "energy_kwh", "carbon_kg"]


def test_predict_rejects_a_non_finite_index():
    model = fit_forecast(synthetic_frame(10))
    with pytest.raises(InvalidParameterError, match="index_value"):
        model.predict(float("nan"))


# --------------------------------------------------------------------------- leave-one-out


def test_leave_one_out_coverage_near_level_and_small_error():
    frame = pd.concat([synthetic_frame(40, seed) for seed in range(3)], ignore_index=True)
    frame["run_id"] = [f"run-{i}" for i in range(len(frame))]
    frame["intensity"] = np.arange(len(frame))  # every run its own experiment
    loo = leave_one_out(frame, measures=("epochs", "energy_kwh"))
    assert len(loo) == 2 * 120
    summary = loo.attrs["summary"]
    assert list(summary.index) == ["epochs", "energy_kwh"]
    assert ((summary["coverage"] >= 0.8) & (summary["coverage"] <= 0.97)).all(), summary
    assert (summary["mdape"] < 0.15).all(), summary
    figure = plot_predicted_vs_measured(loo)
    assert len(figure.axes) == 2
    assert "MdAPE" in figure.axes[0].get_title()


def test_leave_one_out_holds_out_all_seeds_of_an_experiment():
    frame = synthetic_frame(12, seed=0)
    frame = pd.concat([frame.assign(seed=0), frame.assign(seed=1)], ignore_index=True)
    loo = leave_one_out(frame, measures=("epochs",))
    assert loo["experiment"].nunique() == 12 and len(loo) == 24
    # both seeds of an experiment are predicted by the same fit, hence the same interval at the same index
    pairs = loo.groupby(["experiment", "index"])[["predicted", "low", "high"]].nunique()
    assert (pairs == 1).all().all()


# --------------------------------------------------------------------------- forecast() and the CLI


@pytest.fixture(scope="module")
def fashion_setup(tmp_path_factory):
    """A small CNN checkpoint, its fingerprint on 5 images per class, and calibration records."""
    if not FASHION_MNIST_DIR.is_dir():
        pytest.skip(f"needs the Debian Fashion-MNIST files in {FASHION_MNIST_DIR} (apt-get install dataset-fashion-mnist)")
    import torch

    import resque

    folder = tmp_path_factory.mktemp("forecast")
    data_root = folder / "data"
    torch.manual_seed(0)
    model = resque.create_model("small_cnn")
    train = resque.load_dataset("fashion_mnist", split="test", root=data_root, image_size=28, channels=1)
    small = resque.subset(train, resque.subsample_per_class(train, 5, seed=1))
    resque.save_checkpoint(model, folder / "model.safetensors")
    resque.fingerprint(model, small, resque.default_layer(model), progress=False).save(folder / "model.fp")
    for record in synthetic_records(12, seed=0):
        record.save(folder / "calibration" / "records" / f"{record.run_id}.json")
    return {"folder": folder, "data_root": data_root, "model": model, "small": small}


def test_forecast_from_model_and_data(fashion_setup):
    import resque

    shifted = resque.ShiftedDataset(fashion_setup["small"], "gaussian_noise", 0.2)
    folder = fashion_setup["folder"]

    prediction = forecast(fashion_setup["model"], shifted, calibration=folder / "calibration",
                          fingerprint=folder / "model.fp")
    direct = resque.resque_dist(fashion_setup["model"], fashion_setup["small"], shifted,
                                resque.default_layer(fashion_setup["model"]), progress=False)
    assert isinstance(prediction, Prediction)
    assert prediction.index_value == pytest.approx(float(direct), abs=1e-6)
    with pytest.raises(InvalidParameterError, match="exactly one"):
        forecast(fashion_setup["model"], shifted, calibration=folder / "calibration")


def test_cli_prints_resque_and_the_three_costs(fashion_setup, capsys):
    from resque.cli import main

    folder = fashion_setup["folder"]
    status = main([
        "forecast", "--checkpoint", str(folder / "model.safetensors"), "--fingerprint", str(folder / "model.fp"),
        "--data", "fashion_mnist", "--split", "test", "--data-root", str(fashion_setup["data_root"]),
        "--shift", "gaussian_noise", "--intensity", "0.2", "--n-per-class", "5",
        "--calibration", str(folder / "calibration"),
    ])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "RESQUE_dist = " in out
    for label in ("Epochs (epochs)", "Energy, estimate (kWh)", "Carbon, estimate (kg CO2-eq)", "saving"):
        assert label in out
    value = float(out.split("RESQUE_dist = ")[1].split()[0])
    assert 0.0 <= value <= 1.0


def test_cli_too_few_calibration_runs_exits_2(tmp_path, capsys):
    from resque.cli import main

    for record in synthetic_records(3, seed=0):
        record.save(tmp_path / "records" / f"{record.run_id}.json")
    status = main([
        "forecast", "--checkpoint", str(tmp_path / "missing.safetensors"), "--fingerprint", str(tmp_path / "fp"),
        "--data", "fashion_mnist", "--calibration", str(tmp_path),
    ])
    err = capsys.readouterr().err
    assert status == 2
    assert "at least min_runs=5" in err and "found 3" in err


def test_a_censored_line_recovers_the_slope_that_dropping_censored_runs_flattens():
    from resque.forecast import censored_line_fit, ols_fit

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 2, size=300)
    true = 1.0 + 2.0 * x + rng.normal(0, 0.3, size=300)
    cap = 3.0  # runs that would have needed more stop at the cap: their cost is a lower bound
    censored = true > cap
    y = np.minimum(true, cap)
    fit = censored_line_fit(x, y, censored)
    assert fit.slope == pytest.approx(2.0, abs=0.1) and fit.scale == pytest.approx(0.3, abs=0.05)
    assert ols_fit(x[~censored], y[~censored]).slope < 1.8  # leaving them out biases the line flat
    plain = censored_line_fit(x, true, np.zeros(300, dtype=bool))  # nothing censored: least squares
    assert plain.slope == pytest.approx(ols_fit(x, true).slope, abs=1e-4)
    point, low, high = plain.predict(1.0, 0.9)
    assert low < point < high and float(high - low) == pytest.approx(2 * 1.6449 * plain.scale, rel=1e-3)
    with pytest.raises(ResqueError, match="at least 2 runs that reached"):
        censored_line_fit([0.0, 1.0, 2.0], [1.0, 2.0, 3.0], [True, True, False])
