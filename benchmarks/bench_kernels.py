"""How the study's kernels are run: one kernel for the study against one per notebook, and glibc's allocator tuning.

Two side-by-side measurements, each alternating its two settings so that a
machine that speeds up or slows down hurts both alike:

1. ``run_study`` of a profile (default: smoke) into fresh folders, once with a
   kernel per notebook (``fresh_kernels=True``) and once in one kernel wiped
   clean between notebooks (the default), ``--repeats`` times each: the wall
   times and their ratio.
2. One shift page (``run_shift_grid`` of frost at two intensities, seed 0 of the
   quick profile, with its yardsticks and repeats) in a new Python process,
   with the C libraries' defaults, with glibc's allocator tuned
   (:data:`resque.study.kernels.MALLOC_TUNING`) and with OpenBLAS's tuned too
   (:data:`~resque.study.kernels.KERNEL_TUNING`, what the study's kernels get):
   the page's wall time, its training and evaluation (its records'
   ``train_seconds + eval_seconds``), the rest, and the ratios to the
   defaults. The source model is trained once, first, in a temporary folder.

Usage::

    python benchmarks/bench_kernels.py                # about 4 minutes on 2 cores
    python benchmarks/bench_kernels.py --repeats 3

Time is machine time: run it on a quiet machine, and label the figures with it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from resque.study import run_study
from resque.study.experiments import run_source
from resque.study.kernels import KERNEL_TUNING, MALLOC_TUNING

PAGE = """
import json, sys, time
from pathlib import Path
from resque.study.experiments import run_shift_grid
results = Path(sys.argv[1])
start = time.perf_counter()
run_shift_grid("quick", 0, "frost", [0.3, 0.5], results, progress=False)
wall = time.perf_counter() - start
spent = 0.0
for path in (results / "records").glob("*shift-frost-*.json"):
    record = json.loads(path.read_text())
    totals = [record["totals"]] + [r["totals"] for r in record.get("replicates", [])]
    spent += sum(t["train_seconds"] + t["eval_seconds"] for t in totals)
print(json.dumps({"wall": wall, "train_eval": spent}))
"""


def one_page(results: Path, tuning: dict) -> dict:
    for path in (results / "records").glob("*shift-frost-*.json"):
        path.unlink()
    env = {k: v for k, v in os.environ.items() if k not in KERNEL_TUNING}
    env.update(tuning)
    done = subprocess.run([sys.executable, "-c", PAGE, str(results)], env=env, check=True, capture_output=True,
                          text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="smoke", help="profile of the study comparison (default: smoke)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="resque-bench-kernels-") as folder:
        folder = Path(folder)
        walls = {True: [], False: []}
        for repeat in range(args.repeats):
            for fresh in (True, False):
                start = time.perf_counter()
                summary = run_study(args.profile, folder / f"study-{repeat}-{fresh}", progress=False,
                                    fresh_kernels=fresh)
                walls[fresh].append(time.perf_counter() - start)
                if not summary.ok:
                    raise SystemExit(f"the study failed: {summary.failed}")
        print(f"Profile {args.profile!r}, run_study wall time ({args.repeats} runs each, alternating):")
        print(f"  a kernel per notebook  {', '.join(f'{w:.1f} s' for w in walls[True])}")
        print(f"  one kernel, wiped      {', '.join(f'{w:.1f} s' for w in walls[False])}")
        print(f"  ratio (one / per notebook, medians): {_median(walls[False]) / _median(walls[True]):.2f}")

        results = folder / "page"
        run_source("quick", 0, results, progress=False)
        settings = {"defaults": {}, "MALLOC_TUNING": MALLOC_TUNING, "KERNEL_TUNING": KERNEL_TUNING}
        pages = {name: [] for name in settings}
        for _ in range(args.repeats):
            for name, tuning in settings.items():
                pages[name].append(one_page(results, tuning))
        for page in (p for runs in pages.values() for p in runs):
            page["rest"] = page["wall"] - page["train_eval"]
        print("\nOne shift page (quick, frost at 0.3 and 0.5, seed 0, yardsticks and repeats) in a new process:")
        for name, runs in pages.items():
            listed = ", ".join(f"{p['wall']:.1f} s (training {p['train_eval']:.1f} s)" for p in runs)
            print(f"  {name:<14} {listed}")
        for key, label in (("wall", "wall time"), ("train_eval", "training and evaluation"), ("rest", "rest")):
            default = _median([p[key] for p in pages["defaults"]])
            ratios = ", ".join(f"{name} {_median([p[key] for p in pages[name]]) / default:.2f}"
                               for name in settings if name != "defaults")
            print(f"  ratio of the {label} to the defaults (medians): {ratios}")


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


if __name__ == "__main__":
    main()
