"""The spread criteria a pilot must meet before a profile's numbers are published."""

import pytest

from resque.cost.records import RunRecord

pytest.importorskip("pandas")

from resque.study.design import meets_spread, repeatability, spread  # noqa: E402


def run(family, intensity, epochs, stop="reached"):
    return RunRecord(f"shift-{family}-{intensity}-seed0", "shift", {"shift": family, "intensity": intensity},
                     totals={"epochs": epochs}, stop_reason=stop, complete=True)


def test_a_design_whose_costs_spread_meets_the_criteria():
    records = [run("a", i, e) for i, e in enumerate([0.0, 0.5, 1.25, 3.0])] + \
              [run("b", i, e) for i, e in enumerate([0.25, 1.0, 2.5, 4.0])]
    table = spread(records)
    assert list(table.index) == ["a", "b", "all"] and table.loc["all", "runs"] == 8
    assert meets_spread(table) == (True, [])


def test_flat_families_narrow_spread_and_censoring_are_named():
    records = [run("flat", i, 1.0) for i in range(4)] + [run("b", 0, 1.25), run("b", 1, 1.5, stop="cap")]
    ok, problems = meets_spread(spread(records))
    assert not ok
    assert "every run costs the same in flat" in problems[0]
    assert any("interquartile range" in p for p in problems)
    assert any("17% of runs censored > 15%" in p for p in problems)


def test_only_complete_shift_records_count(tmp_path):
    records = [run("a", 0, 0.0), run("a", 1, 2.0),
               RunRecord("task-x-seed0", "task", {"task": "x"}, totals={"epochs": 9.0}, stop_reason="reached", complete=True),
               RunRecord("shift-a-2-seed0", "shift", {"shift": "a", "intensity": 2}, totals={"epochs": 5.0})]
    for record in records:
        record.save(tmp_path / "records" / f"{record.run_id}.json")
    table = spread(tmp_path)  # a results folder works too
    assert table.loc["all", "runs"] == 2 and table.loc["all", "max"] == 2.0


def test_study_spread_command_prints_the_table_and_the_verdict(tmp_path, capsys):
    from resque.cli import main

    results = tmp_path / "results"
    assert main(["study", "spread", "--profile", "smoke", "--results", str(results)]) == 0
    assert "No finished shift run" in capsys.readouterr().out
    for record in [run("a", i, e) for i, e in enumerate([0.0, 0.5, 1.25, 3.0])] + [run("b", 0, 1.0, stop="cap")]:
        record.save(results / "records" / f"{record.run_id}.json")
    assert main(["study", "spread", "--profile", "smoke", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "iqr" in out and "all" in out
    assert "design criteria NOT met:" in out and "20% of runs censored > 15%" in out
    assert "No run was repeated" in out


def repeated(name, epochs, again, stop="reached", again_stop="reached", kind="shift"):
    record = run(name, 0, epochs, stop)
    record.kind = kind
    record.replicates = [{"retrain_seed": 1000, "stop_reason": again_stop, "censored": again_stop != "reached",
                          "totals": {"epochs": again}}]
    return record


def test_repeatability_of_a_cost_that_repeats_exactly_and_of_one_that_does_not():
    exact = [repeated(f"f{i}", e, e) for i, e in enumerate([0.0, 0.5, 1.25, 3.0])]
    table = repeatability(exact)
    assert table.loc["shift", "spearman"] == pytest.approx(1.0) and table.loc["shift", "median_abs_diff"] == 0.0
    reversed_ = [repeated(f"f{i}", e, 3.0 - e) for i, e in enumerate([0.0, 0.5, 1.25, 3.0])]
    assert repeatability(reversed_).loc["shift", "spearman"] == pytest.approx(-1.0)
    # a censored side is a lower bound, not a value: the pair is counted but not ranked
    mixed = exact + [repeated("c", 9.0, 0.0, again_stop="cap"), repeated("t", 1.0, 1.0, kind="task")]
    table = repeatability(mixed)
    assert table.loc["shift", "pairs"] == 5 and table.loc["shift", "both_finished"] == 4
    assert table.loc["shift", "spearman"] == pytest.approx(1.0)
    assert list(table.index) == ["shift", "task", "all"] and table.loc["all", "pairs"] == 6
    assert pd_isna(table.loc["task", "spearman"])  # one pair: no correlation
    assert repeatability([run("a", 0, 1.0)]).empty  # no repeats, no table


def pd_isna(value):
    import pandas as pd

    return bool(pd.isna(value))


def test_study_spread_prints_the_test_retest_figure(tmp_path, capsys):
    from resque.cli import main

    results = tmp_path / "results"
    for record in [repeated(f"f{i}", e, e + 0.25) for i, e in enumerate([0.0, 0.5, 1.25, 3.0])]:
        record.save(results / "records" / f"{record.run_id}.json")
    assert main(["study", "spread", "--profile", "smoke", "--results", str(results)]) == 0
    out = capsys.readouterr().out
    assert "Test-retest" in out and "spearman" in out and "0.25" in out


def test_retest_statistics_rank_only_pairs_where_both_runs_finished():
    import math

    from resque.study.design import retest_statistics

    first, again = [1.0, 2.0, 3.0, 4.0, 9.0], [1.5, 2.5, 3.5, 4.5, 0.0]
    finished = [True, True, True, True, False]  # the last pair's repeat was censored: not ranked
    stats = retest_statistics(first, again, finished)
    assert stats == {"pairs": 5, "both_finished": 4, "spearman": 1.0, "median_abs_diff": 0.5}
    assert retest_statistics(first, again, [True] * 5)["spearman"] < 1.0  # counted as observed, it would disagree
    assert math.isnan(retest_statistics([1.0, 2.0], [1.0, 2.0], [True, True])["spearman"])  # under 3 pairs
    assert math.isnan(retest_statistics([1.0, 1.0, 1.0], [1.0, 2.0, 3.0], [True] * 3)["spearman"])  # constant


def test_yardstick_stops_count_how_each_kinds_yardsticks_stopped():
    from resque.cost.records import RunRecord
    from resque.study.design import yardstick_stops

    records = [RunRecord("scratch-shift-frost-0.3-seed0", "scratch", stop_reason="cap", complete=True),
               RunRecord("scratch-shift-frost-0.5-seed0", "scratch", stop_reason="cap", complete=True),
               RunRecord("scratch-shift-frost-0.7-seed0", "scratch", stop_reason="reached", complete=True),
               RunRecord("scratch-task-digits-seed0", "scratch", stop_reason="cutoff-2", complete=True),
               RunRecord("scratch-task-tops-seed0", "scratch", stop_reason="cap", complete=False),  # unfinished
               RunRecord("shift-frost-0.3-seed0", "shift", stop_reason="reached", complete=True)]  # not a yardstick
    assert yardstick_stops(records) == {"shift": {"cap": 2, "reached": 1}, "task": {"cutoff-2": 1}}
