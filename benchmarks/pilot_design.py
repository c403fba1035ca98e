"""Pilot a profile's design: run its experiments in one process (no notebooks) and print the spread of the costs.

    python benchmarks/pilot_design.py --profile quick --seeds 0 --results /tmp/pilot

The records are the study's own (resque.study.experiments); a pilot folder can be
read by `resque.study.design.spread` and is never mixed with a study's results
unless you point it there. Prints, per shift family, the cost in epochs (min,
median, max, IQR, censored) and whether the criteria of book/method.md hold.
"""

from __future__ import annotations

import argparse
import time

from resque.study.design import meets_spread, spread
from resque.study.experiments import run_shift_grid, run_source, run_task_grid
from resque.study.profiles import expand, load_profile
from resque.study.results import ResultsDir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--results", required=True)
    parser.add_argument("--seeds", type=int, nargs="*", help="default: the profile's")
    parser.add_argument("--no-tasks", action="store_true")
    args = parser.parse_args()
    profile = load_profile(args.profile)
    if args.seeds:
        profile.seeds = args.seeds
    results = ResultsDir(args.results)
    start = time.perf_counter()
    for experiment in expand(profile, args.profile, args.results):
        p = experiment.parameters
        if experiment.kind in ("energy", "analysis") or all(results.complete(r) for r, _ in experiment.runs()):
            continue
        if experiment.kind == "task" and args.no_tasks:
            continue
        began = time.perf_counter()
        if experiment.kind == "source":
            records = [run_source(profile, p["seed"], args.results, progress=False)]
        elif experiment.kind == "shift":
            records = [o.record for o in run_shift_grid(profile, p["seed"], p["shift"], p["intensities"], args.results,
                                                        progress=False)]
        else:
            records = [o.record for o in run_task_grid(profile, p["seed"], p["tasks"], args.results, progress=False)]
        for record in records:
            t = record.totals
            print(f"{record.run_id:40s} {record.stop_reason:9s} epochs {t['epochs']:6.2f} "
                  f"val {t['final_val_accuracy']:.3f} target {record.experiment.get('target_accuracy') or 0:.3f}",
                  flush=True)
        print(f"  {experiment.run_id}: {time.perf_counter() - began:.1f} s", flush=True)
    table = spread(args.results)
    print(table.round(2).to_string())
    ok, problems = meets_spread(table)
    print("criteria met" if ok else "criteria NOT met: " + "; ".join(problems))
    print(f"pilot wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
