"""Where a study's wall time went, read from what it wrote (no rerun, nothing timed here).

    python benchmarks/where_time_goes.py results/quick

For each kind of notebook (source, shift, task, energy, analysis) it prints
the number of notebooks, their papermill duration, the time inside their
cells, the rest (kernel start and papermill's own work), and the cells that
took longest, by their first code line. Then the whole study: the runner's
wall time (``summary.json``), the records' ``train_seconds + eval_seconds``
(what the throughput target counts as useful work) and what is left between
notebooks. Every figure comes from the executed notebooks' papermill metadata
and the run records.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path


def first_line(source: str) -> str:
    """The first line of a cell that is code, not a comment or a magic."""
    for line in source.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "%")):
            return line[:60]
    return "(empty)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", help="a study's results folder (results/quick)")
    parser.add_argument("--top", type=int, default=4, help="cells shown per kind of notebook (default 4)")
    args = parser.parse_args(argv)
    root = Path(args.results)
    notebooks = sorted((root / "notebooks").glob("*.ipynb"))
    if not notebooks:
        print(f"{root}/notebooks holds no executed notebook: run the study first.", file=sys.stderr)
        return 2
    kinds: dict[str, dict] = defaultdict(lambda: {"n": 0, "duration": 0.0, "cells": 0.0, "by_cell": defaultdict(float)})
    for path in notebooks:
        notebook = json.loads(path.read_text())
        kind = path.stem.split("-")[0]
        entry = kinds[kind]
        entry["n"] += 1
        entry["duration"] += float(notebook["metadata"].get("papermill", {}).get("duration") or 0.0)
        for cell in notebook["cells"]:
            seconds = float(cell.get("metadata", {}).get("papermill", {}).get("duration") or 0.0)
            if cell["cell_type"] == "code":
                entry["cells"] += seconds
                entry["by_cell"][first_line("".join(cell["source"]))] += seconds
    summary = root / "summary.json"
    content = json.loads(summary.read_text()) if summary.exists() else {}
    wall = content.get("wall_seconds")
    # the runner's own sum (resque.study.runner: plateaus of yardsticks and test-retest repeats included)
    train_eval = float((content.get("throughput") or {}).get("train_eval_seconds") or 0.0)
    print(f"{'notebooks':<10} {'n':>3} {'papermill s':>12} {'in cells s':>11} {'start etc. s':>13}")
    total = 0.0
    for kind, entry in sorted(kinds.items(), key=lambda item: -item[1]["duration"]):
        total += entry["duration"]
        print(f"{kind:<10} {entry['n']:>3} {entry['duration']:>12.1f} {entry['cells']:>11.1f} "
              f"{entry['duration'] - entry['cells']:>13.1f}")
        for line, seconds in sorted(entry["by_cell"].items(), key=lambda item: -item[1])[:args.top]:
            print(f"{'':<15}{seconds:>8.1f} s  {line}")
    print(f"\nall notebooks (papermill): {total:.1f} s")
    if wall is None or not train_eval:
        print("no summary.json with a throughput: the study did not finish a run of resque study run.")
        return 0
    print(f"records' train + eval (summary.json; yardsticks' plateaus and repeats included): {train_eval:.1f} s")
    print(f"runner's wall time: {float(wall):.1f} s; outside the notebooks: {float(wall) - total:.1f} s; "
          f"wall / (train + eval) = {float(wall) / train_eval:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
