"""Tracked, recorded runs on real Fashion-MNIST, and the record files they write."""

import dataclasses
import json

import pytest
import torch

import resque
from resque.cost.records import SCHEMA
from resque.cost.runs import retrain_shift, retrain_task, run_training, train_from_scratch
from resque.cost.training import TrainConfig

pytestmark = pytest.mark.skipif(
    not resque.data.datasets.DEBIAN_FASHION_MNIST_DIR.exists(),
    reason="needs Debian's dataset-fashion-mnist (make test installs it)",
)

FAST = TrainConfig(target_accuracy=0.6, max_epochs=4, batch_size=64, lr=2e-3)


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    train = resque.load_dataset("fashion_mnist", root=root)
    test = resque.load_dataset("fashion_mnist", split="test", root=root)
    split = resque.protocol_split(train, seed=0)
    original = resque.subset(train, split.original)
    shifted = resque.subset(train, split.shifted)
    pick = lambda data, n: resque.subset(data, resque.subsample_per_class(data, n, seed=0))  # noqa: E731
    return {
        "source_train": pick(original, 100),
        "source_val": pick(resque.subset(original, resque.subsample_per_class(original, 400, seed=1)), 30),
        "shifted": pick(shifted, 60),
        "test": pick(test, 30),
    }


@pytest.fixture(scope="module")
def source(fashion):
    model, record = train_from_scratch(
        "small_cnn", fashion["source_train"], fashion["source_val"], FAST, kind="source", run_id="source",
        energy=False, progress=False,
    )
    return model, record


def test_source_run_learns_and_records(source):
    model, record = source
    assert record.complete and record.kind == "source" and record.stop_reason == "reached"
    assert record.evaluations[-1]["val_accuracy"] >= 0.6
    assert record.model["name"] == "small_cnn"
    assert record.evaluations[0]["evaluation"] == 0 and record.evaluations[0]["steps"] == 0
    assert record.totals["samples"] == record.evaluations[-1]["samples"]
    assert record.totals["epochs"] == record.totals["samples"] / record.totals["train_size"] == record.totals["samples"] / 1000
    assert record.totals["evaluations"] == len(record.evaluations)


def test_shift_retraining_writes_a_complete_record(source, fashion, tmp_path):
    model, _ = source
    model = _copy(model)
    shifted = resque.ShiftedDataset(fashion["shifted"], "gaussian_noise", 0.1, seed=0)
    before = float(resque.resque_dist(model, fashion["source_train"], shifted, resque.default_layer(model), progress=False))
    path = tmp_path / "shift.json"
    record = retrain_shift(
        # a target out of reach in one epoch, so that there is training to record (0.6 holds before any update)
        model, shifted, fashion["source_val"], dataclasses.replace(FAST, target_accuracy=0.99, max_epochs=1),
        run_id="shift-gaussian_noise-0.1", record_path=path,
        experiment={"shift": "gaussian_noise", "intensity": 0.1}, estimators={"resque_dist": before},
        test_data=fashion["test"], energy=True, country_iso_code="FRA", progress=False,
    )
    assert record.complete and record.stop_reason == "cap" and record.censored
    loaded = resque.load_record(path, require_complete=True)
    assert loaded == record
    on_disk = json.loads(path.read_text())
    assert on_disk["schema"] == SCHEMA and on_disk["estimators"]["resque_dist"] == before
    assert on_disk["totals"]["energy_parts"]["cpu"]["source"] == "estimate"  # no RAPL on this VM
    assert on_disk["totals"]["country_iso_code"] == "FRA"
    assert on_disk["totals"]["train_flops"] > 0 and on_disk["totals"]["grad_norm_mean"] > 0
    assert 0 <= on_disk["test_accuracy"] <= 1
    assert on_disk["provenance"]["torch"] == torch.__version__
    assert not list(tmp_path.glob("*.tmp"))


def test_task_retraining_gets_a_fresh_head(source, fashion):
    model = _copy(source[0])
    coarse = resque.derive_task(fashion["shifted"], "fashion_coarse4")
    coarse_val = resque.derive_task(fashion["source_val"], "fashion_coarse4")
    record = retrain_task(model, coarse, coarse_val, 4, FAST, run_id="task-coarse4", energy=False, progress=False)
    assert model.classifier.out_features == 4 and record.model["kwargs"]["num_classes"] == 4
    assert record.complete and record.kind == "task"


def test_failing_run_leaves_an_incomplete_record(fashion, tmp_path):
    path = tmp_path / "failed.json"
    model = resque.create_model("small_cnn", num_classes=2)  # too few outputs for 10 classes
    with pytest.raises(resque.DataError):
        run_training(model, fashion["source_train"], fashion["source_val"], FAST, kind="shift", run_id="bad",
                     record_path=path, energy=False, progress=False)
    record = resque.load_record(path)
    assert not record.complete and "head has 2 outputs" in record.error
    with pytest.raises(resque.RecordError, match="did not finish"):
        resque.load_record(path, require_complete=True)


def test_record_of_another_schema_is_refused(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"schema": "resque-run/0", "run_id": "x"}))
    with pytest.raises(resque.RecordError, match="resque-run/0.*reads 'resque-run/1' and 'resque-run/2'"):
        resque.load_record(path)


def test_record_of_the_previous_schema_is_read_without_settings(tmp_path):
    path = tmp_path / "v1.json"
    path.write_text(json.dumps({"schema": "resque-run/1", "run_id": "x", "kind": "shift", "complete": True}))
    record = resque.load_record(path)
    assert record.settings == {} and record.schema == SCHEMA == "resque-run/3" and record.complete


def test_truncated_record_is_refused(tmp_path):
    path = tmp_path / "cut.json"
    path.write_text('{"schema": "resque-run/1", "run_')
    with pytest.raises(resque.RecordError, match="not a JSON run record"):
        resque.load_record(path)


def test_unknown_kind():
    with pytest.raises(resque.InvalidParameterError, match="kind='finetune'"):
        run_training(torch.nn.Linear(2, 2), None, None, kind="finetune", run_id="x")


def _copy(model):
    clone = resque.create_model(model.resque_config["name"], **model.resque_config["kwargs"])
    clone.load_state_dict(model.state_dict())
    return clone


def test_cost_to_target_reads_the_first_evaluation_at_the_target():
    from resque.cost.records import RunRecord
    from resque.cost.runs import cost_to_target

    rows = [{"val_accuracy": a, "steps": 4 * i, "samples": 100 * i, "train_seconds": 1.0, "eval_seconds": 0.5,
             "cpu_seconds": 2.0, "train_flops": 10.0 * (i > 0), "energy_kwh": 0.1, "energy_estimated_kwh": 0.1,
             "carbon_kg": 0.05, "grad_norm_last": None if i == 0 else float(i), "grad_norm_mean": None if i == 0 else 2.0,
             "interval_steps": 0 if i == 0 else 4, "param_change_from_start": 0.01 * i}
            for i, a in enumerate([0.2, 0.5, 0.8, 0.9, 0.85])]
    record = RunRecord("scratch-x", "scratch", evaluations=rows, totals={"train_size": 400, "epochs": 1.0}, complete=True)
    totals, reached = cost_to_target(record, 0.78)
    assert reached and (totals["steps"], totals["samples"], totals["epochs"], totals["evaluations"]) == (8, 200, 0.5, 3)
    assert totals["train_seconds"] == 3.0 and totals["energy_kwh"] == pytest.approx(0.3) and totals["train_flops"] == 20.0
    assert totals["grad_norm_last"] == 2.0 and totals["grad_norm_mean"] == 2.0 and totals["param_change_from_start"] == 0.02
    assert cost_to_target(record, 0.2)[0]["samples"] == 0  # met before any update: costs nothing
    assert cost_to_target(record, 0.95) == (record.totals, False)  # never met: the whole run, a lower bound
