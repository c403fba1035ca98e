"""Run ids and the results folder (resque.study.results), and the one reader of record folders."""

import pytest

from resque.cost.records import RunRecord, read_records
from resque.errors import InvalidParameterError
from resque.study.profiles import expand, load_profile
from resque.study.results import ResultsDir, format_intensity, parse_run_id, run_id, scratch_run_id


@pytest.mark.parametrize("name", [
    "source-seed0", "shift-gaussian_noise-0.08-seed2", "shift-salt_and_pepper-1e-05-seed3", "shift-frost-1-seed10",
    "task-fashion_coarse4-seed1", "scratch-shift-frost-0.3-seed0", "scratch-task-digits_even_odd-seed4",
    "energy", "analysis", "shift-gaussian_noise-seed2", "task-seed1",
])
def test_run_ids_read_back_to_themselves(name):
    assert parse_run_id(name).run_id == name


def test_run_id_parts():
    shift = parse_run_id("shift-salt_and_pepper-1e-05-seed3")
    assert (shift.kind, shift.shift, shift.intensity, shift.seed) == ("shift", "salt_and_pepper", 1e-05, 3)
    scratch = parse_run_id(scratch_run_id("task-fashion_coarse4-seed1"))
    assert scratch.kind == "scratch" and scratch.of.task == "fashion_coarse4" and scratch.of.seed == 1
    assert run_id("shift", seed=0, shift="frost", intensity=0.30000001) == "shift-frost-0.3-seed0"
    assert format_intensity(0.1) == format_intensity(0.1000001)  # the rounding a profile check must use
    page = parse_run_id("shift-frost-seed4")  # the page of a family's grid: no intensity
    assert (page.kind, page.shift, page.intensity, page.seed) == ("shift", "frost", None, 4)
    assert run_id("shift", seed=4, shift="frost") == "shift-frost-seed4"
    tasks = parse_run_id("task-seed2")  # the page of a seed's tasks
    assert (tasks.kind, tasks.task, tasks.seed) == ("task", None, 2) and run_id("task", seed=2) == "task-seed2"


@pytest.mark.parametrize("bad", ["shift--seed0", "foo", "task--seed1", "source-seedx", "shift-frost-abc-seed0", 3])
def test_malformed_run_ids_are_refused_with_the_forms(bad):
    with pytest.raises(InvalidParameterError, match="shift-<family>-<intensity>-seed<k>"):
        parse_run_id(bad)


def test_every_experiment_of_every_profile_has_a_parsable_id():
    for name in ("smoke", "quick", "full"):
        for experiment in expand(load_profile(name), name, "results"):
            assert parse_run_id(experiment.run_id).kind == experiment.kind
            for each_id, parameters in experiment.runs():  # and so has each record it writes
                name_ = parse_run_id(each_id)
                assert name_.kind == experiment.kind and name_.seed == parameters["seed"]
                assert name_.intensity == parameters.get("intensity")


def test_a_shift_page_runs_its_family_grid_without_the_duplicates():
    profile = load_profile("quick")
    pages = {e.run_id: e for e in expand(profile, "quick", "results") if e.kind == "shift"}
    assert len(pages) == len(profile.seeds) * len(profile.shifts)  # one page per family and seed
    gaussian, shot = pages["shift-gaussian_noise-seed0"], pages["shift-shot_noise-seed0"]
    assert gaussian.parameters["intensities"] == [float(i) for i in profile.shifts["gaussian_noise"]]
    assert 0.0 not in shot.parameters["intensities"]  # the control runs once per seed, in the first family
    assert [p["intensity"] for _, p in shot.runs()] == shot.parameters["intensities"]


def test_a_corrupt_record_is_named_never_dropped(tmp_path):
    results = ResultsDir(tmp_path)
    RunRecord("source-seed0", "source", complete=True).save(results.record("source-seed0"))
    results.record("shift-frost-0.3-seed0").write_text('{"schema": "resque-run/1", "run_')  # truncated by a kill
    found = results.read_records()
    assert [r.run_id for r in found.records] == ["source-seed0"]
    assert list(found.unreadable) == ["shift-frost-0.3-seed0.json"]
    assert "shift-frost-0.3-seed0.json" in found.describe_unreadable() and "not a JSON run record" in found.describe_unreadable()
    assert not results.complete("shift-frost-0.3-seed0") and results.complete("source-seed0")
    assert read_records(tmp_path / "nowhere").missing


def test_a_run_names_the_page_that_makes_it():
    assert parse_run_id("shift-frost-0.3-seed1").page == "shift-frost-seed1"
    assert parse_run_id("task-digits-seed2").page == "task-seed2"
    assert parse_run_id("source-seed0").page == "source-seed0"
    assert parse_run_id("shift-frost-seed1").is_page and parse_run_id("task-seed2").is_page
    assert not parse_run_id("shift-frost-0.3-seed1").is_page and not parse_run_id("source-seed0").is_page
