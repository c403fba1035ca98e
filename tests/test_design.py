"""The spread criteria a pilot must meet before a profile's numbers are published."""

import pytest

from resque.cost.records import RunRecord

pytest.importorskip("pandas")

from resque.study.design import meets_spread, spread  # noqa: E402


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
