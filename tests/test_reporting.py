"""Tables, sentences and figures the experiment notebooks show (resque.study.reporting and .plots)."""

import math

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere

import matplotlib.pyplot as plt
import pandas as pd
import numpy as np
import pytest
import torch

from resque import DistResult, InvalidParameterError, TaskResult
from resque.cost.records import RunRecord
from resque.study import plots, reporting


def _epoch(index, val_accuracy, kwh=1e-6, sources=("estimate", "estimate")):
    return {
        "epoch": index, "train_loss": 1.0 / (index + 1), "val_accuracy": val_accuracy,
        "grad_norm_last": 2.0, "grad_norm_mean": 3.0, "param_change_from_start": 0.01 * (index + 1),
        "energy_kwh": kwh,
        "energy_parts": {"cpu": {"kwh": kwh / 2, "source": sources[0]}, "ram": {"kwh": kwh / 2, "source": sources[1]}},
    }


def make_record(run_id="shift-x-seed0", kind="shift", accuracies=(0.4, 0.6), stop_reason="reached",
                seconds=2.0, kwh=4e-6, gpu=None, complete=True):
    parts = {"cpu": {"kwh": kwh / 4, "source": "estimate"}, "ram": {"kwh": kwh / 4, "source": "estimate"}}
    unavailable = {"gpu": "no CUDA device"}
    if gpu is not None:
        parts["gpu"] = {"kwh": kwh / 2, "source": gpu}
        unavailable = {}
    else:
        parts = {name: {"kwh": kwh / 2, "source": "estimate"} for name in ("cpu", "ram")}
    return RunRecord(
        run_id=run_id, kind=kind,
        config={"target_accuracy": 0.5, "max_epochs": 2, "cutoff1_delta": 0.01, "cutoff1_evals": 5,
                "cutoff2_delta": 0.03, "cutoff2_evals": 10},
        evaluations=[_epoch(i, a) for i, a in enumerate(accuracies)],
        totals={"epochs": len(accuracies), "steps": 10 * len(accuracies), "train_seconds": seconds * 0.9,
                "eval_seconds": seconds * 0.1, "train_flops": 1e9, "grad_norm_mean": 3.0, "grad_norm_last": 2.0,
                "param_change_from_start": 0.02, "energy_kwh": kwh, "energy_estimated_kwh": kwh,
                "carbon_kg": kwh * 0.4, "carbon_intensity": 0.4, "country_iso_code": "USA",
                "energy_parts": parts, "energy_unavailable": unavailable},
        stop_reason=stop_reason, test_accuracy=0.55, complete=complete,
    )


# --------------------------------------------------------------------------- stop reasons and costs


def test_describe_stop_reached_and_censored():
    reached = reporting.describe_stop(make_record())
    assert "**reached**" in reached and "0.500" in reached and "2 epochs" in reached
    assert not reporting.is_censored(make_record())

    capped = make_record(accuracies=(0.3, 0.45), stop_reason="cap")
    text = reporting.describe_stop(capped)
    assert reporting.is_censored(capped)
    assert text.startswith("**Censored run**") and "epoch cap (2 epochs)" in text and "best: 0.450" in text
    cutoff = reporting.describe_stop(make_record(stop_reason="cutoff-2"))
    assert "cutoff rule 2 (within 0.03 of the target for 10 checks" in cutoff


def test_describe_stop_unknown_reason_is_named():
    assert "'something-new'" in reporting.describe_stop(make_record(stop_reason="something-new"))


def test_costs_table_has_units_and_values():
    table = reporting.costs_table(make_record(kwh=4e-6))
    assert table.loc["Energy", "value"] == pytest.approx(4e-6)
    assert table.loc["Energy", "unit"] == "kWh"
    assert table.loc["Carbon", "unit"] == "kg CO2-eq"
    assert table.loc["Epochs", "value"] == 2


def test_costs_table_missing_measure_is_nan():
    record = make_record()
    del record.totals["train_flops"]
    assert math.isnan(reporting.costs_table(record).loc["FLOPs", "value"])


def test_compare_costs_ratio_and_without_scratch():
    reuse = make_record(kwh=2e-6, seconds=1.0)
    scratch = make_record(run_id="scratch-shift-x-seed0", kind="scratch", accuracies=(0.1, 0.2, 0.3),
                          stop_reason="cap", kwh=8e-6, seconds=4.0)
    table = reporting.compare_costs(reuse, scratch)
    assert list(table.columns) == ["unit", "reuse", "from scratch", "reuse / scratch"]
    assert table.loc["Energy", "reuse / scratch"] == pytest.approx(0.25)
    assert table.loc["Epochs", "reuse / scratch"] == pytest.approx(2 / 3)
    assert table.loc["stop reason", "from scratch"] == "cap"
    assert math.isnan(table.loc["stop reason", "reuse / scratch"])

    alone = reporting.compare_costs(reuse)
    assert list(alone.columns) == ["unit", "reuse"]
    assert alone.loc["final validation accuracy", "reuse"] == pytest.approx(0.6)


def test_format_table_keeps_small_numbers_and_text():
    table = pd.DataFrame({"x": [1.234567e-6, float("nan"), 1e10], "y": ["a", True, 3]})
    shown = reporting.format_table(table)
    assert list(shown["x"]) == ["1.235e-06", "n/a", "1e+10"]
    assert shown.loc[0, "y"] == "a" and shown.loc[1, "y"] is True


def _variants(flat_differs=False):
    variants = {}
    for pool in ("mean", "flatten"):
        for init, value in (("centroids", 0.2), ("k-means++", 0.3)):
            value += 0.1 if flat_differs and pool == "flatten" else 0.0
            variants[(pool, init)] = TaskResult(value, 1 - value, pool, init, 40, 4, 5, "embedding")
    return variants


def test_task_variants_table_marks_default_first():
    table = reporting.task_variants_table(_variants())
    assert len(table) == 4
    assert table.loc[0, "default"] and table["default"].sum() == 1
    assert (table.loc[0, "pooling"], table.loc[0, "k-means init"]) == ("mean", "centroids")
    assert table.loc[0, "RESQUE_task"] == pytest.approx(0.2)


def test_describe_task_variants_says_when_pooling_is_moot():
    assert "already a vector" in reporting.describe_task_variants(_variants())
    assert reporting.describe_task_variants(_variants(flat_differs=True)) == ""


def test_sample_images_and_example_titles():
    data = torch.utils.data.TensorDataset(torch.rand(5, 1, 6, 6), torch.tensor([0, 1, 2, 1, 0]))
    images, labels = reporting.sample_images(data, 3)
    assert images.shape == (3, 1, 6, 6) and labels == [0, 1, 2]
    assert reporting.sample_images(data, 10)[0].shape[0] == 5

    class Outcome:
        def __init__(self):
            self.classes = ["a", "b", "c"]

    assert reporting.example_titles(Outcome()) is None
    outcome = Outcome()
    outcome.example_labels = torch.tensor([2, 0])
    assert reporting.example_titles(outcome) == ["c", "a"]


# --------------------------------------------------------------------------- energy


def test_load_records_skips_unfinished(tmp_path):
    make_record("b-run").save(tmp_path / "records" / "b-run.json")
    make_record("a-run").save(tmp_path / "records" / "a-run.json")
    make_record("c-run", complete=False).save(tmp_path / "records" / "c-run.json")
    assert [r.run_id for r in reporting.load_records(tmp_path)] == ["a-run", "b-run"]
    assert len(reporting.load_records(tmp_path, complete_only=False)) == 3
    assert reporting.load_records(tmp_path / "nowhere").records == []
    (tmp_path / "records" / "c-run.json").write_text('{"schema": "resque-run/2", "ru')  # cut off by a kill
    found = reporting.load_records(tmp_path)
    assert len(found) == 2 and "c-run.json" in found.describe_unreadable()


def test_energy_table_labels_sources():
    table = reporting.energy_table([make_record("est", kwh=4e-6, seconds=2.0),
                                    make_record("gpu", kwh=4e-6, gpu="nvml")])
    est, gpu = table.iloc[0], table.iloc[1]
    assert est["status"] == "estimated" and est["cpu_source"] == "estimate"
    assert est["gpu_source"] == "unavailable: no CUDA device" and math.isnan(est["gpu_kwh"])
    assert est["seconds"] == pytest.approx(2.0)
    assert est["mean_watts"] == pytest.approx(4e-6 * 3.6e6 / 2.0)
    assert gpu["status"] == "partly measured" and gpu["gpu_source"] == "nvml"
    assert gpu["gpu_kwh"] == pytest.approx(2e-6)
    assert est["country"] == "USA" and est["kg_co2_per_kwh"] == pytest.approx(0.4)


def test_energy_table_of_untracked_run():
    record = make_record()
    record.totals.update(energy_parts={}, energy_kwh=None, carbon_kg=None,
                         energy_unavailable={p: "energy=False" for p in ("cpu", "ram", "gpu")})
    row = reporting.energy_table([record]).iloc[0]
    assert row["status"] == "not tracked" and row["cpu_source"] == "unavailable: energy=False"
    assert reporting.describe_energy(record).startswith("Energy: no part could be read")


def test_describe_energy_flags_estimates():
    text = reporting.describe_energy(make_record())
    assert "ESTIMATE" in text and "gpu: no CUDA device" in text and "0.4 kg CO2-eq per kWh (USA)" in text
    measured = reporting.describe_energy(make_record(gpu="nvml"))
    assert "measured, nvml" in measured


class FakeCounter:
    source = "nvml"

    def __init__(self):
        self.kwh = 1.0

    def read_kwh(self):
        return self.kwh


def test_measure_gpu_energy_with_a_fake_counter():
    counter = FakeCounter()

    def work():
        counter.kwh += 1e-6  # 3.6 J

    reading = reporting.measure_gpu_energy(work, counter)
    assert reading["kwh"] == pytest.approx(1e-6)
    assert reading["joules"] == pytest.approx(3.6)
    assert reading["source"] == "nvml" and reading["seconds"] >= 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU answer")
def test_gpu_energy_demo_without_cuda():
    assert reporting.gpu_energy_demo() is None


# --------------------------------------------------------------------------- plots (smoke tests)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.mark.parametrize("shape", [(4, 1, 8, 8), (3, 3, 8, 8), (5, 8, 8)])
def test_image_grid(shape):
    images, titles = torch.rand(shape), [f"image {i}" for i in range(shape[0])]
    figure = plots.image_grid(images, titles, nrows=2, row_labels=["top", "bottom"], title="grid")
    (ax,) = figure.axes  # one picture of tiles, not an axes per image
    assert [t.get_text() for t in ax.texts] == titles and ax.get_title() == "grid"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["top", "bottom"]
    canvas, pictures = np.asarray(ax.images[0].get_array()), plots._as_images(images)
    h, w = pictures.shape[1:3]

    def places(picture):
        return [(y, x) for y in range(canvas.shape[0] - h + 1) for x in range(canvas.shape[1] - w + 1)
                if np.array_equal(canvas[y:y + h, x:x + w], picture)]

    found = [places(picture) for picture in pictures]
    assert all(len(p) == 1 for p in found)  # every image is in the picture, once, unchanged
    corners = [p[0] for p in found]
    assert corners == sorted(corners) and len({y for y, _ in corners}) == 2  # row by row, in two rows


def test_image_grid_titles_one_row_when_every_row_shows_the_same_images():
    # a shift page: the clean row and a row per intensity; the classes are written once, above the first row
    images = torch.rand(9, 1, 8, 8)
    figure = plots.image_grid(images, ["a", "b", "c"], nrows=3, row_labels=["clean", "0.1", "0.2"])
    (ax,) = figure.axes
    canvas = np.asarray(ax.images[0].get_array())
    assert [t.get_text() for t in ax.texts] == ["a", "b", "c"]
    gap, band = 1, round(0.3 * 8)
    assert canvas.shape[0] == band + 3 * (8 + gap)  # room for titles above the first row only
    assert np.array_equal(canvas[band:band + 8, :8], plots._as_images(images)[0])
    assert np.array_equal(canvas[band + 9:band + 17, :8], plots._as_images(images)[3])
    title_y = [t.get_position()[1] for t in ax.texts]
    row_y = [tick for tick in ax.get_yticks()]
    assert all(y < row_y[0] for y in title_y)  # the titles sit above the first row, not between rows


def test_training_curves_with_and_without_scratch():
    reuse, scratch = make_record(), make_record(kind="scratch", accuracies=(0.1, 0.2, 0.3), stop_reason="cap")
    figure = plots.training_curves(reuse, scratch)
    assert len(figure.axes) == 4
    for ax in figure.axes:
        assert ax.get_xlabel() == "epoch" and ax.get_ylabel() and ax.get_title()
    accuracy = figure.axes[0]
    assert len(accuracy.get_lines()) == 3  # reuse, scratch, target
    assert len(figure.axes[1].get_lines()) == 4  # mean and last, for both runs

    alone = plots.training_curves(reuse, measures=("val_accuracy", "train_loss"))
    assert [ax.get_title() for ax in alone.axes] == ["Validation accuracy", "Training loss"]


def test_training_curves_rejects_unknown_measure():
    with pytest.raises(InvalidParameterError, match="measures"):
        plots.training_curves(make_record(), measures=("val_acc",))


def test_angle_bars():
    dist = DistResult(0.02, {0: 0.01, 1: 0.03}, {0: 5, 1: 5}, {0: 5, 1: 5}, "embedding")
    paired = DistResult(0.015, {0: 0.01, 1: 0.02}, {0: 5, 1: 5}, {0: 5, 1: 5}, "embedding")
    figure = plots.angle_bars(dist, ["cat", "dog"], paired)
    ax = figure.axes[0]
    assert len(ax.patches) == 4
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog"]
    assert ax.get_xlabel() and ax.get_ylabel() and ax.get_title()


def test_energy_vs_time():
    table = reporting.energy_table([make_record("a", kind="shift"), make_record("b", kind="scratch", gpu="nvml")])
    figure = plots.energy_vs_time(table)
    ax = figure.axes[0]
    assert ax.get_xlabel() == "training + validation time (s)" and ax.get_ylabel() == "energy (kWh)"
    assert len(ax.collections) == 2
    plots.energy_vs_time(reporting.energy_table([]))  # no runs: an empty, labelled plot


# --------------------------------------------------------------------------- pages of several runs


def _shift_outcomes():
    from types import SimpleNamespace

    dist = DistResult(0.02, {0: 0.01, 1: 0.03}, {0: 5, 1: 5}, {0: 5, 1: 5}, "embedding")
    outcomes = []
    for intensity, accuracies, stop in ((0.0, (0.6,), "reached"), (0.2, (0.4, 0.6), "reached"),
                                        (0.4, (0.3, 0.4), "cap")):
        record = make_record(f"shift-x-{intensity:g}-seed0", accuracies=accuracies, stop_reason=stop)
        record.experiment = {"target_accuracy": 0.5, "intensity": intensity}
        record.totals["epochs"] = len(accuracies) - 1.0
        scratch = make_record(kind="scratch", accuracies=(0.1, 0.3, 0.5), stop_reason="reached")
        outcomes.append(SimpleNamespace(intensity=intensity, record=record, scratch=scratch, dist=dist,
                                        dist_paired=None, accuracy_shifted=accuracies[0], classes=["a", "b"]))
    return outcomes


def test_grid_table_has_a_row_per_intensity_and_marks_censored_runs():
    table = reporting.grid_table(_shift_outcomes())
    assert list(table.index) == [0.0, 0.2, 0.4]
    assert list(table["reuse epochs"]) == [0.0, 1.0, 1.0]
    assert table.loc[0.4, "reuse stop"] == "cap (censored)" and table.loc[0.0, "reuse stop"] == "reached"
    assert "RESQUE_dist (paired)" not in table and table["scratch epochs"].tolist() == [3.0] * 3


def test_grid_figures_show_every_intensity_and_hollow_censored_markers():
    outcomes = _shift_outcomes()
    costs = plots.grid_costs(outcomes, title="x")
    left, right = costs.axes
    assert list(left.get_lines()[0].get_xdata()) == [0.0, 0.2, 0.4]
    assert len(right.get_lines()) == 2  # reuse and scratch
    faces = [c.get_facecolors() for c in right.collections if len(c.get_offsets())]
    assert any(len(f) == 0 or f[0][3] == 0 for f in faces)  # the censored run is hollow
    assert any(t.get_text().startswith("censored") for t in right.get_legend().get_texts())
    curves = plots.grid_curves(outcomes)
    drawn = [line for line in curves.axes[0].get_lines() if len(line.get_xdata())]
    solid = [line for line in drawn if line.get_linestyle() == "-"]
    dashed = [line for line in drawn if line.get_linestyle() == "--"]
    assert len(solid) == 3 and len(dashed) == 3  # each intensity, and its yardstick in the same colour
    assert [tuple(line.get_color()) for line in solid] == [tuple(line.get_color()) for line in dashed]
    assert len(drawn) == 3 + 3 + 1  # and the shared target, once
    legend = [t.get_text() for t in curves.axes[0].get_legend().get_texts()]
    assert legend == ["0", "0.2", "0.4", "target", "from scratch"]

    panels = plots.grid_curves(outcomes, ("val_accuracy", "grad_norm", "param_change", "energy"), title="t")
    assert [ax.get_title() for ax in panels.axes] == [
        "Validation accuracy", "Gradient norm (mean)", "Parameter change", "Energy per epoch"]
    assert all(ax.get_xlabel() == "epoch" and ax.get_ylabel() for ax in panels.axes)
    with pytest.raises(InvalidParameterError, match="measures"):
        plots.grid_curves(outcomes, ("val_acc",))


def test_grid_angles_shows_each_class_at_each_intensity():
    outcomes = _shift_outcomes()
    outcomes[1].dist = DistResult(0.05, {0: 0.04, 1: 0.06}, {0: 5, 1: 5}, {0: 5, 1: 5}, "embedding")
    figure = plots.grid_angles(outcomes, ["cat", "dog"])
    ax = figure.axes[0]  # the unpaired panel (and the colour bar): no paired index in these outcomes
    assert len(figure.axes) == 2 and ax.get_title() == "unpaired"
    # a row per intensity, a column per class, and their mean: RESQUE_dist
    assert np.allclose(ax.images[0].get_array(), [[0.01, 0.03, 0.02], [0.04, 0.06, 0.05], [0.01, 0.03, 0.02]])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["cat", "dog", "mean"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["0", "0.2", "0.4"]
    assert [t.get_text() for t in ax.texts][:3] == ["0.01", "0.03", "0.02"]
    for outcome in outcomes:
        outcome.dist_paired = outcome.dist
    assert [a.get_title() for a in plots.grid_angles(outcomes).axes[:2]] == ["unpaired", "paired"]


def test_task_grid_table_and_figure():
    from types import SimpleNamespace

    outcomes = []
    for task, value, stop in (("coarse", 0.2, "reached"), ("digits", 0.7, "cutoff-2")):
        record = make_record(f"task-{task}-seed0", kind="task", stop_reason=stop)
        record.estimators = {"resque_task": value}
        record.experiment = {"num_classes": 4, "a_ref": 0.9, "target_accuracy": 0.855}
        outcomes.append(SimpleNamespace(task=task, record=record, scratch=None))
    table = reporting.task_grid_table(outcomes)
    assert list(table.index) == ["coarse", "digits"] and table.loc["digits", "reuse stop"] == "cutoff-2 (censored)"
    assert table.loc["coarse", "a_ref"] == 0.9 and "scratch epochs" not in table
    figure = plots.task_costs(outcomes)
    assert [t.get_text() for t in figure.axes[0].texts] == ["coarse", "digits"]



def _outside_or_overlapping(figure):
    """What a figure shown as drawn (not cropped to its extent) would lose: text out of the canvas, panels on each other."""
    renderer = figure.canvas.get_renderer()
    figure.draw(renderer)
    canvas = figure.bbox.padded(1)

    def inside(box):
        return canvas.x0 <= box.x0 and box.x1 <= canvas.x1 and canvas.y0 <= box.y0 and box.y1 <= canvas.y1

    # an axes' tight box holds what is drawn of it: ticks inside its limits, labels, title, legend
    boxes = {f"axes {i} ({ax.get_label() or ax.get_title()})": ax.get_tightbbox(renderer)
             for i, ax in enumerate(figure.axes)}
    whole = figure.get_tightbbox(renderer).transformed(figure.dpi_scale_trans)  # everything drawn, suptitle too
    boxes["the figure"] = whole
    lost = [name for name, box in boxes.items() if box is not None and not inside(box)]
    panels = [ax.get_tightbbox(renderer) for ax in figure.axes if ax.axison and ax.get_label() != "<colorbar>"]
    return lost + [f"panels {i} and {j} overlap" for i in range(len(panels)) for j in range(i + 1, len(panels))
                   if panels[i].overlaps(panels[j])]


def test_the_page_figures_laid_out_by_hand_fit_their_canvas_without_overlapping_panels():
    # the shift and task pages show these figures uncropped: nothing may stick out of the canvas
    from types import SimpleNamespace

    outcomes = _shift_outcomes()
    tasks = []
    for task, value in (("fashion_coarse4", 0.2), ("digits", 0.7)):
        record = make_record(f"task-{task}-seed0", kind="task")
        record.estimators = {"resque_task": value}
        tasks.append(SimpleNamespace(task=task, record=record, scratch=None))
    images = np.random.default_rng(0).random((10, 1, 28, 28))
    figures = {
        "grid_costs": plots.grid_costs(outcomes, title="gaussian_noise, seed 0"),
        "grid_curves": plots.grid_curves(outcomes, ("val_accuracy", "grad_norm", "param_change", "energy"),
                                         title="Retraining after gaussian_noise, seed 0"),
        "grid_curves, one panel": plots.grid_curves(outcomes, title="t"),
        "grid_angles": plots.grid_angles(outcomes, ["T-shirt/top", "Ankle boot"], title="Per-class angles"),
        "image_grid": plots.image_grid(images, ["Ankle boot"] * 10, nrows=2, row_labels=["clean", "0.25"],
                                       title="gaussian_noise"),
        "task_costs": plots.task_costs(tasks, title="Tasks of seed 0"),
    }
    assert {name: _outside_or_overlapping(figure) for name, figure in figures.items()} == {
        name: [] for name in figures}


def test_describe_no_yardstick_says_which_seeds_have_one():
    from types import SimpleNamespace

    subset = SimpleNamespace(scratch=True, shift_scratch_seeds=[0, 2])
    assert "seeds 0, 2 only" in reporting.describe_no_yardstick(subset, "shift", 1)
    off = SimpleNamespace(scratch=False, shift_scratch_seeds=None)
    assert "scratch: false" in reporting.describe_no_yardstick(off, "shift", 0)
