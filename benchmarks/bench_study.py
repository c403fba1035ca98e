"""Does the study spend its time training? The runner's throughput ratio, measured in one run.

Runs a profile (default: smoke) into a fresh temporary results folder with
``resque study run`` and prints, from the run's own ``summary.json``, the wall
time, the time its runs spent training and evaluating (their records'
``train_seconds + eval_seconds``, yardsticks included) and their ratio. The
issue's target is ``wall / (train + eval) <= 1.5``; whatever is above 1 is
overhead: kernel starts, imports, data loading, RESQUE and the baselines, plots.

Then, from the executed notebooks' own timings (papermill records each cell's
duration), the cells that took longest summed over all notebooks, so the
overhead can be attributed.

With ``--results DIR`` it runs nothing and reads a study that already ran
(e.g. the one ``make book`` left in ``results/quick``). Per kind of notebook it
also prints the papermill duration, the time inside cells, and the rest (the
kernel's start and papermill's own work).

Usage::

    python benchmarks/bench_study.py                 # smoke, about a minute
    python benchmarks/bench_study.py --profile quick # the real study (many minutes)
    python benchmarks/bench_study.py --results results/quick   # read a finished study

Time is machine time: run it on a quiet machine, and label the figures with it.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from resque.study import run_study


def cell_seconds(notebooks: Path, top: int = 8) -> list[tuple[str, float, int]]:
    """(first line of the cell, seconds summed over notebooks, notebooks) for the slowest cells."""
    totals: dict[str, list[float]] = defaultdict(list)
    for path in notebooks.glob("*.ipynb"):
        notebook = json.loads(path.read_text())
        for cell in notebook.get("cells", []):
            if cell.get("cell_type") != "code":
                continue
            seconds = cell.get("metadata", {}).get("papermill", {}).get("duration")
            source = "".join(cell.get("source", "")).strip().splitlines()
            if seconds is None or not source:
                continue
            first = next((line for line in source if not line.startswith("#")), source[0])
            totals[f"{path.stem.split('-')[0]}: {first[:60]}"].append(float(seconds))
    rows = [(label, sum(values), len(values)) for label, values in totals.items()]
    return sorted(rows, key=lambda row: row[1], reverse=True)[:top]


def notebook_seconds(notebooks: Path) -> dict[str, tuple[int, float, float]]:
    """Kind of notebook -> (notebooks, papermill seconds, seconds inside cells); the rest is kernel start and papermill."""
    kinds: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for path in notebooks.glob("*.ipynb"):
        notebook = json.loads(path.read_text())
        entry = kinds[path.stem.split("-")[0]]
        entry[0] += 1
        entry[1] += float(notebook.get("metadata", {}).get("papermill", {}).get("duration") or 0.0)
        entry[2] += sum(float(c.get("metadata", {}).get("papermill", {}).get("duration") or 0.0)
                        for c in notebook.get("cells", []) if c.get("cell_type") == "code")
    return {kind: (int(n), papermill, cells) for kind, (n, papermill, cells) in kinds.items()}


def training_by_kind(results: Path) -> dict[str, float]:
    """Kind of run -> its records' training and evaluating seconds, counted as the runner counts them."""
    from resque.study.results import ResultsDir
    from resque.study.runner import _training_seconds

    folder = ResultsDir(results)
    kinds: dict[str, list[str]] = defaultdict(list)
    for record in folder.read_records().complete():
        if record.kind != "scratch":  # a yardstick is counted with the run it is the yardstick of
            kinds[record.kind].append(record.run_id)
    return {kind: _training_seconds(folder, ids) for kind, ids in kinds.items()}


def report(results: Path, label: str) -> None:
    throughput = json.loads((results / "summary.json").read_text())["throughput"]
    print(f"\n{label}:")
    print(f"  wall time of the run            {throughput['wall_seconds']:8.1f} s")
    print(f"  training + evaluation (records) {throughput['train_eval_seconds']:8.1f} s")
    print(f"  overhead                        {throughput['overhead_seconds']:8.1f} s")
    print(f"  wall / (train + eval)           {throughput['ratio']:8.2f}   (target <= 1.5)")
    training = training_by_kind(results)
    print("\nPer kind of notebook: papermill duration; inside its cells; of that, training and evaluating (its "
          "records, yardsticks and repeats included) and the rest; outside the cells (kernel start, papermill):")
    print(f"  {'':<9} {'':13} {'papermill':>9} {'in cells':>9} {'training':>9} {'rest':>7} {'outside':>8}")
    for kind, (n, papermill, cells) in sorted(notebook_seconds(results / "notebooks").items(), key=lambda i: -i[1][1]):
        trained = training.get(kind, 0.0)
        print(f"  {kind:<9} {n:3d} notebooks  {papermill:7.1f} s {cells:7.1f} s {trained:7.1f} s "
              f"{cells - trained:5.1f} s {papermill - cells:6.1f} s")
    print("\nSlowest cells, summed over the executed notebooks:")
    for label, seconds, count in cell_seconds(results / "notebooks"):
        print(f"  {seconds:7.1f} s  in {count:2d} notebook(s)  {label}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--results", default=None, help="read this finished study instead of running one")
    args = parser.parse_args()
    if args.results:
        if not (Path(args.results) / "summary.json").exists():
            raise SystemExit(f"{args.results} has no summary.json: run the study first (resque study run).")
        report(Path(args.results), f"The study in {args.results}")
        return
    with tempfile.TemporaryDirectory(prefix="resque-bench-study-") as folder:
        results = Path(folder) / "results"
        start = time.perf_counter()
        run_study(args.profile, results, progress=True)
        elapsed = time.perf_counter() - start
        report(results, f"Profile {args.profile!r} on {platform.machine()} ({platform.processor() or 'cpu'}), "
                        f"{elapsed:.1f} s in all")


if __name__ == "__main__":
    main()
