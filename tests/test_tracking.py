"""Tests for resque.cost.tracking and resque.cost.energy: each measure against a slow, direct computation."""

from __future__ import annotations

import json
import math
import os
import sys
import time

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from resque.cost.energy import EnergyMeter, EnergyReport, NvmlEnergyReader, MILLIJOULES_PER_KWH
from resque.errors import InvalidParameterError, ResqueError
from resque.cost.tracking import (
    CostTracker,
    EpochCosts,
    TrackingStateError,
    TrainingCosts,
    global_grad_norm,
    parameter_change,
    training_step_flops,
)


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))


def _batches(n: int, batch: int = 5, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    return [(torch.randn(batch, 3, generator=generator), torch.randint(0, 2, (batch,), generator=generator)) for _ in range(n)]


def _direct_grad_norm(model: nn.Module) -> float:
    """Slow reference: the norm of all gradients concatenated into one vector."""
    return torch.cat([p.grad.flatten() for p in model.parameters()]).double().norm().item()


def _direct_change(now: dict, ref: dict, names: list[str]) -> float:
    """Slow reference: |theta - theta_ref| / sqrt(n) over the concatenated parameters `names`."""
    diff = torch.cat([(now[n] - ref[n]).flatten().double() for n in names])
    return (diff.norm() / math.sqrt(diff.numel())).item()


def _snapshot(model: nn.Module) -> dict:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _train_epoch(model, optimizer, tracker, batches, grad_norms=None):
    tracker.start_epoch()
    for x, y in batches:
        F.cross_entropy(model(x), y).backward()
        if grad_norms is not None:
            grad_norms.append(_direct_grad_norm(model))
        tracker.after_backward()
        optimizer.step()
        tracker.after_step(batch_size=len(x))
        optimizer.zero_grad()


# -- gradient norm --------------------------------------------------------------


def test_global_grad_norm_matches_concatenated_vector():
    model = _mlp()
    x, y = _batches(1)[0]
    F.cross_entropy(model(x), y).backward()
    assert global_grad_norm(model.parameters()).item() == pytest.approx(_direct_grad_norm(model), rel=1e-6)
    model.zero_grad(set_to_none=True)
    assert global_grad_norm(model.parameters()) is None


def test_grad_norm_last_is_the_last_full_batch():
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    norms = []
    with CostTracker(model, energy=False) as tracker:
        tracker.start_epoch()
        for index, (x, y) in enumerate(_batches(3)):
            F.cross_entropy(model(x[: 2 if index == 2 else None]), y[: 2 if index == 2 else None]).backward()
            norms.append(_direct_grad_norm(model))
            tracker.after_backward(full_batch=index < 2)  # the third batch is ragged
            optimizer.step()
            tracker.after_step(batch_size=2 if index == 2 else len(x))
            optimizer.zero_grad()
        record = tracker.end_epoch()
    assert record.grad_norm_last == pytest.approx(norms[1], rel=1e-6)  # not the ragged batch's
    assert record.grad_norm_mean == pytest.approx(sum(norms) / 3, rel=1e-6)  # which still counts in the mean


def test_grad_norm_last_and_mean_per_epoch_and_in_total():
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    norms: list[list[float]] = [[], []]
    with CostTracker(model, energy=False) as tracker:
        for epoch in range(2):
            _train_epoch(model, optimizer, tracker, _batches(3, seed=epoch), norms[epoch])
            tracker.end_epoch()
    for record, expected in zip(tracker.epochs, norms):
        assert record.steps == 3 and record.samples == 15
        assert record.grad_norm_last == pytest.approx(expected[-1], rel=1e-6)
        assert record.grad_norm_mean == pytest.approx(sum(expected) / 3, rel=1e-6)
    totals = tracker.totals()
    assert totals.grad_norm_mean == pytest.approx(sum(norms[0] + norms[1]) / 6, rel=1e-6)
    assert totals.grad_norm_last == pytest.approx(norms[1][-1], rel=1e-6)
    assert (totals.intervals, totals.steps, totals.samples) == (2, 6, 30)


# -- parameter change -----------------------------------------------------------


def test_parameter_change_per_layer_and_global_against_start_and_previous_epoch():
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    snapshots = [_snapshot(model)]
    with CostTracker(model, energy=False) as tracker:
        for epoch in range(2):
            _train_epoch(model, optimizer, tracker, _batches(2, seed=epoch))
            tracker.end_epoch()
            snapshots.append(_snapshot(model))
    layers = {"0": ["0.weight", "0.bias"], "2": ["2.weight", "2.bias"]}
    every = layers["0"] + layers["2"]
    for epoch, record in enumerate(tracker.epochs):
        now, start, previous = snapshots[epoch + 1], snapshots[0], snapshots[epoch]
        assert record.param_change_from_start == pytest.approx(_direct_change(now, start, every), rel=1e-5)
        assert record.param_change_from_previous == pytest.approx(_direct_change(now, previous, every), rel=1e-5)
        assert list(record.layer_change_from_start) == ["0", "2"]
        for layer, names in layers.items():
            assert record.layer_change_from_start[layer] == pytest.approx(_direct_change(now, start, names), rel=1e-5)
            assert record.layer_change_from_previous[layer] == pytest.approx(
                _direct_change(now, previous, names), rel=1e-5
            )
    first = tracker.epochs[0]
    assert first.param_change_from_previous == pytest.approx(first.param_change_from_start)
    assert tracker.epochs[1].param_change_from_previous != pytest.approx(tracker.epochs[1].param_change_from_start)
    assert tracker.totals().param_change_from_start == tracker.epochs[1].param_change_from_start


def test_parameter_change_skips_frozen_parameters_and_is_zero_without_training():
    model = _mlp()
    model[0].weight.requires_grad_(False)
    with CostTracker(model, energy=False) as tracker:
        tracker.start_epoch()
        record = tracker.end_epoch()
    assert record.param_change_from_start == 0.0
    assert record.layer_change_from_start == {"0": 0.0, "2": 0.0}
    assert record.grad_norm_last is None and record.grad_norm_mean is None
    assert parameter_change({}, {}) == (0.0, {})


# -- FLOPs ----------------------------------------------------------------------


def test_flops_of_one_linear_layer_follow_the_counter_formula():
    batch, fan_in, fan_out = 8, 5, 3
    model = nn.Linear(fan_in, fan_out)
    x, y = torch.randn(batch, fan_in), torch.randint(0, fan_out, (batch,))
    # Forward: one (B, in) @ (in, out) product, 2*B*in*out. Backward: only the
    # weight gradient (the input needs none), another 2*B*in*out. The bias and
    # the loss are element-wise and not counted.
    assert training_step_flops(model, x, y) == 4 * batch * fan_in * fan_out


def test_flops_of_two_linear_layers_count_the_input_gradient_of_the_second():
    batch, a, b, c = 6, 5, 4, 3
    model = nn.Sequential(nn.Linear(a, b), nn.ReLU(), nn.Linear(b, c))
    x, y = torch.randn(batch, a), torch.randint(0, c, (batch,))
    forward = 2 * batch * (a * b + b * c)
    backward = 2 * batch * a * b + 2 * 2 * batch * b * c  # layer 1: weight; layer 2: weight and input
    assert training_step_flops(model, x, y) == forward + backward


def test_flop_count_leaves_the_model_unchanged_and_scales_with_samples():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Dropout(0.5), nn.Linear(6, 2)).eval()
    x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))
    F.cross_entropy(model(x), y).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.random.get_rng_state()
    with CostTracker(model, energy=False, flops_sample=(x, y)) as tracker:
        assert all(torch.equal(p.grad, g) for p, g in zip(model.parameters(), grads))
        assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
        assert not model.training and not model[1].training
        assert torch.equal(torch.random.get_rng_state(), rng)
        tracker.start_epoch()
        for _ in range(3):
            tracker.after_step(batch_size=8)
        record = tracker.end_epoch()
    per_sample = training_step_flops(model, x, y) / 8
    assert tracker.flops_per_sample == per_sample
    assert record.train_flops == per_sample * 24
    assert tracker.totals().train_flops == per_sample * 24
    assert tracker.totals().provenance["flop_counter"].endswith("FlopCounterMode")


# -- timing ---------------------------------------------------------------------


def test_train_and_eval_times_are_recorded_separately():
    model = _mlp()
    with CostTracker(model, energy=False) as tracker:
        tracker.start_epoch()
        time.sleep(0.03)
        with tracker.evaluation():
            time.sleep(0.06)
        record = tracker.end_epoch()
    assert 0.03 <= record.train_seconds < 0.06 + 0.5
    assert record.eval_seconds >= 0.06
    totals = tracker.totals()
    assert totals.train_seconds == record.train_seconds and totals.eval_seconds == record.eval_seconds


# -- energy ---------------------------------------------------------------------


class ScriptedNvml:
    """Stand-in for the pynvml module: a GPU whose counter returns the scripted millijoules in turn."""

    def __init__(self, counters_mj):
        self.counters = list(counters_mj)
        self.calls = []

    def nvmlInit(self):
        self.calls.append("init")

    def nvmlShutdown(self):
        self.calls.append("shutdown")

    def nvmlDeviceGetHandleByIndex(self, index):
        return ("gpu", index)

    def nvmlDeviceGetHandleByUUID(self, uuid):
        return ("gpu", uuid)

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        return self.counters.pop(0)


def test_nvml_reader_turns_millijoule_counters_into_kwh_per_interval():
    # probe at construction, then begin/end of two intervals
    nvml = ScriptedNvml([5_000, 10_000, 10_000 + 3.6e9, 10_000 + 3.6e9, 10_000 + 4.5e9])
    reader = NvmlEnergyReader(0, nvml=nvml)
    meter = EnergyMeter(gpu_counter=reader, host=False)
    meter.start()
    reports = []
    for _ in range(2):
        meter.begin()
        reports.append(meter.end())
    meter.stop()
    assert [r.parts["gpu"].kwh for r in reports] == pytest.approx([1.0, 0.25])
    assert all(r.parts["gpu"].source == "nvml" and r.parts["gpu"].measured for r in reports)
    assert reports[0].estimated_kwh == 0.0 and reports[0].carbon_kg is None  # no grid data without codecarbon
    assert set(reports[0].unavailable) == {"cpu", "ram"}
    assert nvml.calls == ["init", "shutdown"]
    total = reports[0] + reports[1]
    assert total.kwh == pytest.approx(1.25) and total.parts["gpu"].source == "nvml"


def test_nvml_reader_that_fails_mid_run_is_recorded_not_raised():
    class Failing(ScriptedNvml):
        def nvmlDeviceGetTotalEnergyConsumption(self, handle):
            if not self.counters:
                raise RuntimeError("NVML_ERROR_GPU_IS_LOST")
            return self.counters.pop(0)

    meter = EnergyMeter(gpu_counter=NvmlEnergyReader(nvml=Failing([0, 0])), host=False)
    meter.begin()
    report = meter.end()
    assert report.parts == {} and "GPU_IS_LOST" in report.unavailable["gpu"]
    assert MILLIJOULES_PER_KWH == 3.6e9


def test_real_codecarbon_labels_cpu_energy_and_writes_no_file(tmp_path, monkeypatch):
    pytest.importorskip("codecarbon")
    monkeypatch.chdir(tmp_path)
    from resque.cost.energy import carbon_intensity

    nvml = ScriptedNvml([0, 0, 36_000])  # probe, then 0.00001 kWh over the epoch
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with CostTracker(model, country_iso_code="FRA", gpu_energy_reader=NvmlEnergyReader(nvml=nvml)) as tracker:
        _train_epoch(model, optimizer, tracker, _batches(2))
        time.sleep(0.2)
        record = tracker.end_epoch()
    cpu, ram, gpu = (record.energy_parts[p] for p in ("cpu", "ram", "gpu"))
    assert cpu["source"] in ("estimate", "rapl")
    if not os.path.exists("/sys/class/powercap/intel-rapl"):  # no RAPL (this VM, most containers)
        assert cpu["source"] == "estimate"
    assert ram["source"] == "estimate"
    assert gpu == {"kwh": pytest.approx(1e-5), "source": "nvml"}
    assert cpu["kwh"] > 0 and ram["kwh"] > 0
    assert record.energy_kwh == pytest.approx(cpu["kwh"] + ram["kwh"] + gpu["kwh"])
    estimated = ram["kwh"] + (cpu["kwh"] if cpu["source"] == "estimate" else 0.0)
    assert record.energy_estimated_kwh == pytest.approx(estimated)
    intensity = carbon_intensity("FRA")
    assert 0.0 < intensity < 1.0
    assert record.carbon_kg == pytest.approx(record.energy_kwh * intensity)
    totals = tracker.totals()
    assert totals.carbon_intensity == intensity and totals.country_iso_code == "FRA"
    assert totals.provenance["codecarbon"]
    assert record.energy_unavailable == {}
    assert nvml.calls[-1] == "shutdown"
    assert list(tmp_path.iterdir()) == []  # no emissions.csv, no lock file


def test_energy_off_needs_neither_codecarbon_nor_nvml(monkeypatch):
    # A None entry in sys.modules makes any import of that name fail.
    monkeypatch.setitem(sys.modules, "codecarbon", None)
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with CostTracker(_mlp(), energy=False) as tracker:
        tracker.start_epoch()
        record = tracker.end_epoch()
    assert record.energy_kwh is None and record.carbon_kg is None
    assert record.energy_unavailable == {"gpu": "energy=False", "cpu": "energy=False", "ram": "energy=False"}


def test_missing_codecarbon_is_recorded_and_training_goes_on(monkeypatch):
    monkeypatch.setitem(sys.modules, "codecarbon", None)
    monkeypatch.setattr("resque.cost.energy._WARNED", set())
    with pytest.warns(RuntimeWarning, match=r"pip install 'resque\[energy\]'"):
        with CostTracker(_mlp(), energy=True) as tracker:
            tracker.start_epoch()
            record = tracker.end_epoch()
    assert record.energy_kwh is None
    assert "codecarbon cannot be imported" in record.energy_unavailable["cpu"]
    assert record.energy_unavailable["gpu"] == "no CUDA device"


def test_codecarbon_that_fails_to_start_is_recorded(monkeypatch):
    codecarbon = pytest.importorskip("codecarbon")

    def broken(*args, **kwargs):
        raise OSError("no /proc/cpuinfo")

    monkeypatch.setattr(codecarbon, "OfflineEmissionsTracker", broken)
    with CostTracker(_mlp(), gpu_energy_reader=False) as tracker:
        tracker.start_epoch()
        record = tracker.end_epoch()
    assert "failed to start (OSError: no /proc/cpuinfo)" in record.energy_unavailable["cpu"]
    assert record.energy_unavailable["gpu"] == "gpu_energy_reader=False"


def test_codecarbon_failing_mid_run_is_recorded_and_its_settings_are_quiet(monkeypatch):
    codecarbon = pytest.importorskip("codecarbon")
    from types import SimpleNamespace

    built = []

    class FlakyTracker:
        def __init__(self, **kwargs):
            self.kwargs, self.stops, self._hardware = kwargs, 0, []
            built.append(self)

        def start_task(self, task_name=None):
            pass

        def stop_task(self, task_name=None):
            self.stops += 1
            if self.stops > 2:  # the probe and the first epoch work, then the counter vanishes
                raise RuntimeError("counter went away")
            return SimpleNamespace(cpu_energy=1e-6, ram_energy=2e-6)

        def stop(self):
            pass

    monkeypatch.setattr(codecarbon, "OfflineEmissionsTracker", FlakyTracker)
    with CostTracker(_mlp(), gpu_energy_reader=False) as tracker:
        for _ in range(2):
            tracker.start_epoch()
            tracker.end_epoch()
    first, second = tracker.epochs
    # Hardware codecarbon did not identify is never labelled as measured.
    assert first.energy_parts == {"cpu": {"kwh": 1e-6, "source": "estimate"}, "ram": {"kwh": 2e-6, "source": "estimate"}}
    assert second.energy_kwh is None and "counter went away" in second.energy_unavailable["cpu"]
    totals = tracker.totals()
    assert totals.energy_kwh == pytest.approx(3e-6)  # the first epoch only, and it says so:
    assert "counter went away" in totals.energy_unavailable["cpu"]
    settings = built[0].kwargs
    assert settings["output_methods"] == [] and settings["log_level"] == "error" and settings["allow_multiple_runs"]


def test_one_codecarbon_tracker_serves_every_run_of_a_process(monkeypatch):
    codecarbon = pytest.importorskip("codecarbon")
    from types import SimpleNamespace

    from resque.cost.energy import HostEnergyMeter

    built = []

    class CountingTracker:
        def __init__(self, **kwargs):
            self._hardware, self.stopped, self.fail = [], False, False
            built.append(self)

        def start_task(self, task_name=None):
            pass

        def stop_task(self, task_name=None):
            if self.fail:
                raise RuntimeError("counter went away")
            return SimpleNamespace(cpu_energy=1e-6, ram_energy=2e-6)

        def stop(self):
            self.stopped = True

    monkeypatch.setattr(codecarbon, "OfflineEmissionsTracker", CountingTracker)
    for _ in range(3):  # three runs one after another: one tracker, one hardware probe
        with CostTracker(_mlp(), gpu_energy_reader=False) as tracker:
            tracker.start_epoch()
            assert tracker.end_epoch().energy_parts["cpu"]["kwh"] == 1e-6
    assert len(built) == 1 and not built[0].stopped
    outer, inner = HostEnergyMeter(), HostEnergyMeter()
    outer.start()
    inner.start()  # a meter inside another's run gets a tracker of its own, stopped with it
    assert len(built) == 2 and outer._tracker is built[0] and inner._tracker is built[1]
    inner.stop()
    outer.stop()
    assert built[1].stopped and not built[0].stopped
    built[0].fail = True  # a tracker that fails is stopped and not handed on
    meter = HostEnergyMeter()
    meter.start()
    meter.begin()
    assert meter.end().parts == {} and "counter went away" in meter.unavailable_reason
    assert built[0].stopped
    fresh = HostEnergyMeter()
    fresh.start()
    assert fresh._tracker is built[2]
    fresh.stop()


def test_unknown_country_is_rejected_with_close_matches():
    pytest.importorskip("codecarbon")
    with pytest.raises(InvalidParameterError, match="country_iso_code='FRX'.*'FRA'"):
        with CostTracker(_mlp(), country_iso_code="FRX", gpu_energy_reader=False):
            pass


# -- results --------------------------------------------------------------------


def test_records_round_trip_through_json():
    model = _mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = _batches(1)[0]
    with CostTracker(model, energy=False, flops_sample=(x, y)) as tracker:
        _train_epoch(model, optimizer, tracker, _batches(2))
        record = tracker.end_epoch(val_accuracy=torch.tensor(0.75), note="ok", reached=False, epoch_limit=5)
    totals = tracker.totals()
    for result, kind in ((record, EpochCosts), (totals, TrainingCosts)):
        data = result.to_dict()
        assert json.loads(json.dumps(data)) == data
        assert kind.from_dict(json.loads(json.dumps(data))) == result
    assert record.metrics == {"val_accuracy": 0.75, "note": "ok", "reached": False, "epoch_limit": 5}
    with pytest.raises(InvalidParameterError, match="bogus"):
        EpochCosts.from_dict({**record.to_dict(), "bogus": 1})


# -- misuse ---------------------------------------------------------------------


def _fresh():
    return CostTracker(_mlp(), energy=False)


def _started():
    tracker = _fresh()
    tracker.start()
    return tracker


def _in_epoch():
    tracker = _started()
    tracker.start_epoch()
    return tracker


def _stopped():
    tracker = _started()
    tracker.stop()
    return tracker


def _nested_evaluation(tracker):
    with tracker.evaluation():
        with tracker.evaluation():
            pass


def _end_inside_evaluation(tracker):
    with tracker.evaluation():
        tracker.end_epoch()


@pytest.mark.parametrize(
    "make, misuse, state",
    [
        (_fresh, lambda t: t.start_epoch(), "not started"),
        (_fresh, lambda t: t.after_backward(), "not started"),
        (_fresh, lambda t: t.after_step(4), "not started"),
        (_fresh, lambda t: t.totals(), "not started"),
        (_started, lambda t: t.end_epoch(), "between epochs"),
        (_started, lambda t: t.after_backward(), "between epochs"),
        (_started, lambda t: t.after_step(4), "between epochs"),
        (_started, lambda t: t.evaluation().__enter__(), "between epochs"),
        (_started, lambda t: t.start(), "between epochs"),
        (_in_epoch, lambda t: t.start_epoch(), "in an epoch"),
        (_in_epoch, _nested_evaluation, "in evaluation"),
        (_in_epoch, _end_inside_evaluation, "in evaluation"),
        (_stopped, lambda t: t.start_epoch(), "stopped"),
    ],
)
def test_hooks_out_of_order_raise_a_clear_error(make, misuse, state):
    tracker = make()
    with pytest.raises(TrackingStateError) as caught:
        misuse(tracker)
    assert isinstance(caught.value, ResqueError)
    assert caught.value.state == state
    assert f"while the tracker is {state}" in str(caught.value)


@pytest.mark.parametrize(
    "kwargs, parameter",
    [
        ({"country_iso_code": "FR"}, "country_iso_code"),
        ({"energy": "yes"}, "energy"),
        ({"flops_sample": torch.zeros(2, 3)}, "flops_sample"),
        ({"loss_fn": "cross_entropy"}, "loss_fn"),
        ({"gpu_energy_reader": object()}, "gpu_energy_reader"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs, parameter):
    tracker = CostTracker(_mlp(), **{"energy": False, **kwargs})
    with pytest.raises(InvalidParameterError) as caught:
        tracker.start()
    assert caught.value.parameter == parameter


def test_reader_with_energy_off_and_bad_step_arguments_are_rejected():
    reader = NvmlEnergyReader(nvml=ScriptedNvml([0]))
    with pytest.raises(InvalidParameterError, match="energy=False"):
        CostTracker(_mlp(), energy=False, gpu_energy_reader=reader).start()
    tracker = _in_epoch()
    for bad in (0, -3, 2.5, True):
        with pytest.raises(InvalidParameterError, match="batch_size"):
            tracker.after_step(bad)
    with pytest.raises(InvalidParameterError, match="val_accuracy"):
        tracker.end_epoch(val_accuracy=[0.5])


def test_a_failing_flop_count_releases_the_energy_meter():
    nvml = ScriptedNvml([0])
    tracker = CostTracker(
        _mlp(), flops_sample=(torch.randn(4, 3), torch.zeros(4)), gpu_energy_reader=NvmlEnergyReader(nvml=nvml)
    )
    with pytest.raises(RuntimeError):  # float targets of the wrong shape for cross-entropy
        tracker.start()
    assert nvml.calls[-1] == "shutdown"


def test_an_exception_in_the_loop_stops_the_meter_and_propagates():
    nvml = ScriptedNvml([0, 0])
    with pytest.raises(ZeroDivisionError):
        with CostTracker(_mlp(), gpu_energy_reader=NvmlEnergyReader(nvml=nvml)) as tracker:
            tracker.start_epoch()
            1 / 0
    assert nvml.calls[-1] == "shutdown"
    assert tracker.epochs == []
    assert tracker.totals().intervals == 0


def test_energy_reports_add_part_by_part():
    from resque.cost.energy import EnergyFigure

    a = EnergyReport({"cpu": EnergyFigure(1.0, "estimate")}, {"gpu": "no CUDA device"}, 0.5)
    b = EnergyReport({"cpu": EnergyFigure(2.0, "estimate"), "gpu": EnergyFigure(1.0, "nvml")}, {}, 0.5)
    total = a + b
    assert total.kwh == 4.0 and total.estimated_kwh == 3.0 and total.carbon_kg == 2.0
    assert total.unavailable == {"gpu": "no CUDA device"}  # the GPU's 1 kWh covers interval b only
    assert total.parts["gpu"].source == "nvml" and (b + b).unavailable == {}
    mixed = b + EnergyReport({"cpu": EnergyFigure(1.0, "rapl")}, {}, 0.5)
    assert mixed.parts["cpu"] == EnergyFigure(3.0, "estimate")  # a sum with an estimate in it is an estimate


def test_the_project_training_loop_drives_the_tracker():
    training = pytest.importorskip("resque.cost.training")
    generator = torch.Generator().manual_seed(0)
    # Random labels: the target (100 %) is out of reach, so the cap ends the run after two epochs.
    labels = torch.randint(0, 2, (64,), generator=generator)
    images = torch.rand(64, 1, 8, 8, generator=generator)
    data = torch.utils.data.TensorDataset(images, labels)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 2))
    config = training.TrainConfig(target_accuracy=1.0, max_epochs=2, batch_size=16, evals_per_epoch=1)
    with_tracker = CostTracker(model, energy=False, flops_sample=(images[:16], labels[:16]))
    result = training.train(model, data, data, config, tracker=with_tracker, progress=False)
    totals = with_tracker.totals()
    assert totals.intervals == len(result.history) == 3  # the check before any update, then one per epoch
    assert with_tracker.epochs[0].steps == 0 and with_tracker.epochs[0].eval_seconds > 0
    assert totals.cpu_seconds > 0
    assert totals.steps == 8 and totals.samples == 128
    assert totals.train_flops == 128 * 4 * 64 * 2  # Linear(64, 2): 4*in*out per sample (forward + weight grad)
    assert totals.grad_norm_mean > 0 and totals.param_change_from_start > 0
    assert with_tracker.epochs[-1].metrics["val_accuracy"] == result.history[-1].val_accuracy


def test_a_zoo_model_is_flop_counted_once_per_architecture_and_batch_shape(monkeypatch):
    import resque.cost.tracking as tracking
    from resque.models import create_model

    monkeypatch.setattr(tracking, "_STEP_FLOPS", {})
    counted = []
    real = tracking.training_step_flops

    def counting(model, inputs, targets, loss_fn=None):
        counted.append(tuple(p.shape for p in model.parameters()))
        return real(model, inputs, targets, loss_fn)

    monkeypatch.setattr(tracking, "training_step_flops", counting)
    x, y = torch.rand(4, 1, 28, 28), torch.randint(0, 10, (4,))

    def per_sample(model, inputs=x, targets=y):
        with CostTracker(model, energy=False, flops_sample=(inputs, targets)) as tracker:
            return tracker.flops_per_sample

    first = per_sample(create_model("small_cnn", num_classes=10, image_size=28))
    again = per_sample(create_model("small_cnn", num_classes=10, image_size=28))  # other weights, same network
    assert again == first and len(counted) == 1
    assert first == real(create_model("small_cnn", num_classes=10, image_size=28), x, y) / 4
    # another head, another width, a frozen layer or another batch shape is counted anew, and differs
    head = per_sample(create_model("small_cnn", num_classes=4, image_size=28), targets=torch.randint(0, 4, (4,)))
    wide = per_sample(create_model("small_cnn", num_classes=10, image_size=28, width=32))
    frozen = create_model("small_cnn", num_classes=10, image_size=28)
    next(frozen.parameters()).requires_grad_(False)
    frozen_count = per_sample(frozen)
    assert len(counted) == 4 and len({first, head, wide, frozen_count}) == 4
    per_sample(create_model("small_cnn", num_classes=10, image_size=28), torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,)))
    assert len(counted) == 5
    # a model of the user's own is counted every time: its forward pass may depend on more than its layers
    plain = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))
    per_sample(plain), per_sample(plain)
    assert len(counted) == 7
