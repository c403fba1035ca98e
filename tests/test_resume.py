"""Resuming the smoke study: never mixes settings, never keeps a half-made experiment, survives kills.

One uninterrupted smoke run is the reference. Copies of it are edited (a profile
with other settings, a notebook cut off, a yardstick record truncated) and
resumed; and a fresh run is SIGKILLed at the worst moments and resumed until it
finishes. Each time the records must agree with the reference on every
deterministic number, and every executed notebook must be whole.
"""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import resque
from resque.errors import SettingsChangedError
from resque.study import run_study
from resque.study.profiles import PROFILE_DIR
from resque.study.resume import notebook_problem
from resque.study.results import ResultsDir
from resque.study.runner import plan_study

pytestmark = pytest.mark.skipif(
    not resque.data.datasets.DEBIAN_FASHION_MNIST_DIR.exists(),
    reason="needs Debian's dataset-fashion-mnist (make test installs it)",
)

SMOKE = PROFILE_DIR / "smoke.yaml"
#: The experiments with a record of their own; a shift family's page writes one per intensity.
RUN_IDS = ["source-seed0", "shift-gaussian_noise-seed0", "shift-frost-seed0", "task-seed0"]
#: Values that move with the machine's load, not with the computation.
UNSTABLE = ("seconds", "energy", "carbon", "kwh", "_kg", "per_second", "time")


def deterministic_values(record_path: Path) -> dict:
    def walk(value, prefix):
        if isinstance(value, dict):
            for key, item in value.items():
                yield from walk(item, f"{prefix}.{key}")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                yield from walk(item, f"{prefix}[{index}]")
        elif not any(word in prefix.lower() for word in UNSTABLE):
            yield prefix, value

    record = json.loads(record_path.read_text())
    parts = {key: record[key] for key in ("kind", "seed", "estimators", "evaluations", "totals", "stop_reason",
                                          "test_accuracy", "settings", "complete")}
    return dict(walk(parts, ""))


def assert_same_study(results: Path, reference: Path) -> None:
    names = sorted(p.name for p in (results / "records").glob("*.json"))
    assert names == sorted(p.name for p in (reference / "records").glob("*.json"))
    for name in names:
        got, expected = deterministic_values(results / "records" / name), deterministic_values(reference / "records" / name)
        differ = [k for k in expected if got.get(k) != expected[k]
                  and not (isinstance(expected[k], float) and math.isnan(expected[k]) and math.isnan(got.get(k)))]
        assert not differ and set(got) == set(expected), (name, differ[:5])
    notebooks = sorted(p.name for p in (results / "notebooks").glob("*.ipynb"))
    assert notebooks == sorted(p.name for p in (reference / "notebooks").glob("*.ipynb"))
    for name in notebooks:
        assert notebook_problem(results / "notebooks" / name) == "", name
    assert not list(results.rglob("*.tmp")) and not (results / "failed").exists()


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    results = tmp_path_factory.mktemp("reference") / "results"
    summary = run_study("smoke", results, progress=False)
    assert summary.ok and len(summary.done) == 6
    return results


def copy_of(reference: Path, tmp_path: Path) -> Path:
    target = tmp_path / "results"
    shutil.copytree(reference, target)
    return target


def test_an_edited_profile_is_refused_not_mixed(reference, tmp_path):
    results = copy_of(reference, tmp_path)
    edited = tmp_path / "smoke.yaml"  # same file name, so by default the same results/<stem>
    text = SMOKE.read_text()
    assert "rho: 0.98" in text and "retrain: {max_epochs: 2" in text
    edited.write_text(text.replace("rho: 0.98", "rho: 0.9").replace("retrain: {max_epochs: 2", "retrain: {max_epochs: 3"))
    with pytest.raises(SettingsChangedError) as refused:
        run_study(edited, results, progress=False)
    message = str(refused.value)
    assert "rho: 0.98 -> 0.9" in message and "retrain.max_epochs: 2 -> 3" in message
    assert "--results" in message and "--rerun-changed" in message
    assert set(refused.value.changed) == set(RUN_IDS[1:])  # the source model's settings did not change
    states = {e.run_id: s.status for e, s in plan_study(edited, results)[2]}
    assert states["source-seed0"] == "done" and states["shift-frost-seed0"] == "changed"

    again = run_study(edited, results, only="shift-frost-*", rerun_changed=True, progress=False)
    assert again.done == ["shift-frost-seed0"]
    record = resque.load_record(ResultsDir(results).record("shift-frost-0.3-seed0"))
    a_src = record.experiment["a_src"]
    assert record.config["target_accuracy"] == pytest.approx(0.9 * a_src) and record.settings["retrain"]["max_epochs"] == 3


def test_a_cut_off_notebook_makes_its_experiment_run_again(reference, tmp_path):
    results = ResultsDir(copy_of(reference, tmp_path))
    path = results.notebook("shift-frost-seed0")
    notebook = json.loads(path.read_text())
    notebook["metadata"]["papermill"]["end_time"] = None  # as papermill leaves it when killed
    notebook["cells"][-1]["metadata"]["papermill"]["status"] = "pending"
    path.write_text(json.dumps(notebook))
    states = {e.run_id: s for e, s in plan_study("smoke", results.root)[2]}
    assert states["shift-frost-seed0"].status == "to run" and "cut off" in states["shift-frost-seed0"].reason

    summary = run_study("smoke", results.root, progress=False)
    assert summary.done == ["shift-frost-seed0", "energy", "analysis"]
    assert any("cut off" in o.reason for o in summary.outcomes if o.run_id == "shift-frost-seed0")
    assert_same_study(results.root, reference)


@pytest.mark.parametrize("damage", ["truncated", "deleted"])
def test_a_broken_yardstick_record_is_named_and_rebuilt(reference, tmp_path, damage):
    results = ResultsDir(copy_of(reference, tmp_path))
    scratch = results.record("scratch-shift-gaussian_noise-0.1-seed0")
    if damage == "truncated":
        scratch.write_text(scratch.read_text()[:100])
    else:
        scratch.unlink()
    state = {e.run_id: s for e, s in plan_study("smoke", results.root)[2]}["shift-gaussian_noise-seed0"]
    assert state.status == "to run" and state.reason.startswith("shift-gaussian_noise-0.1-seed0: ")
    assert "scratch-shift-gaussian_noise-0.1-seed0.json" in state.reason

    summary = run_study("smoke", results.root, progress=False)
    assert summary.done == ["shift-gaussian_noise-seed0", "energy", "analysis"]
    assert_same_study(results.root, reference)
    assert results.read_records().unreadable == {}


def test_a_run_of_a_grid_is_the_run_alone(reference, tmp_path):
    """An intensity run on its family's page (after another) gives the record it gives run by itself."""
    from resque.study.experiments import run_shift

    results = copy_of(reference, tmp_path)
    alone = results / "records" / "shift-gaussian_noise-0.1-seed0.json"
    alone.unlink()
    run_shift("smoke", 0, "gaussian_noise", 0.1, results, progress=False)
    got, expected = deterministic_values(alone), deterministic_values(reference / "records" / alone.name)
    differ = {k: (v, expected.get(k)) for k, v in got.items() if v != expected.get(k)
              and not (isinstance(v, float) and math.isnan(v) and math.isnan(expected.get(k, 0.0)))}
    assert differ == {} and set(got) == set(expected)


def _kill_everything(process: subprocess.Popen) -> None:
    """SIGKILL the runner's process group and its kernels (they run in sessions of their own)."""
    try:
        kernels = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        kernels = []
    os.killpg(process.pid, signal.SIGKILL)
    for child in kernels:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass
    process.wait(timeout=30)
    psutil.wait_procs(kernels, timeout=30)


def _run_until(results: Path, appears: str | None, timeout: float = 600) -> bool:
    """Run the smoke study in a process of its own; SIGKILL it as soon as `appears` exists. True if killed."""
    command = [sys.executable, "-m", "resque.cli", "study", "run", "--profile", "smoke", "--results", str(results),
               "--no-progress"]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:
        while process.poll() is None and time.monotonic() < deadline:
            if appears is not None and (results / appears).exists():
                _kill_everything(process)
                return True
            time.sleep(0.02)
        assert process.poll() == 0, process.stderr.read().decode()[-2000:]
        return False
    finally:
        if process.poll() is None:
            _kill_everything(process)


def test_kills_at_the_worst_moments_then_resume_give_the_uninterrupted_study(reference, tmp_path):
    results = tmp_path / "results"
    moments = [
        "records/source-seed0.json",                          # record written, notebook not finished
        "records/scratch-shift-gaussian_noise-0.1-seed0.json",  # the yardstick written, not the run's own record
        "notebooks/energy.ipynb",                             # every run done, a summary page half executed
    ]
    for moment in moments:
        assert _run_until(results, moment), f"the run finished before {moment} appeared"
    assert not _run_until(results, None)  # the last resume runs to the end
    assert_same_study(results, reference)
