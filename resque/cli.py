"""The ``resque`` command line.

::

    resque study list                      profiles, their descriptions and sizes
    resque study plan --profile quick      the experiments, in order, and which are done
    resque study run --profile quick       execute them (resumes; see resque.study.runner)
    resque book build --profile quick      the Jupyter Book of a study's results
    resque book check                      the built book, page by page, in headless Chromium
    resque book tutorial                   run and time the tutorial's code (for a class)
    resque forecast --checkpoint ...       RESQUE_dist of new data and the retraining cost it predicts

Exit status: 0 when every experiment ran or was already done, 1 when one
failed (or was blocked by a failed source model, or the book build failed),
2 for bad input (an unknown profile, executor...) or a missing extra, reported
in one line without a traceback.

Each command is one ``_add_<group>`` function (its subparsers) and one
``_cmd_<group>[_<command>]`` function (``args -> exit status``). The library is
imported inside the commands that need it, so ``resque --help`` works on a bare
install; option values are checked by the library (one message per mistake,
whichever door it came through).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_parser", "main"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


# --------------------------------------------------------------------------- study


def _add_study(commands: argparse._SubParsersAction) -> None:
    study = commands.add_parser("study", help="run the study: profiles -> notebooks -> records",
                                description="Run the study of a profile: one papermill notebook per experiment.")
    sub = study.add_subparsers(dest="study_command", metavar="COMMAND", required=True)

    listing = sub.add_parser("list", help="list the shipped profiles")
    listing.set_defaults(func=_cmd_study_list)

    def grid_options(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--profile", required=True, help="profile name (see `resque study list`) or a YAML path")
        parser.add_argument("--results", metavar="DIR", default=None,
                            help="results folder (default: $RESQUE_RESULTS/<profile> or results/<profile>)")
        parser.add_argument("--only", metavar="RUN_ID_GLOB", default=None,
                            help="only experiments whose run_id matches, e.g. 'shift-frost-*'")

    plan = sub.add_parser("plan", help="print the experiments of a profile without running them")
    grid_options(plan)
    plan.set_defaults(func=_cmd_study_plan)

    def folder_options(parser: argparse.ArgumentParser) -> None:
        """The options of a command that reads a study's results folder."""
        parser.add_argument("--profile", required=True, help="profile name or YAML path (gives the default folder)")
        parser.add_argument("--results", metavar="DIR", default=None,
                            help="results folder (default: $RESQUE_RESULTS/<profile> or results/<profile>)")

    spread = sub.add_parser(
        "spread", help="how much the cost of a study's shift runs spreads, and whether the design criteria hold",
        description="Per shift family and pooled: runs, distinct costs, min / median / max, interquartile range and "
                    "censored runs of the cost in epochs, from the study's records; then whether the criteria of a "
                    "publishable design hold (no family where every run costs the same, IQR >= 1 epoch, at most "
                    "15 %% censored). Exit status 0 either way: it reports.",
    )
    folder_options(spread)
    spread.add_argument("--measure", default="epochs", help="a cost in the records' totals (default: epochs)")
    spread.set_defaults(func=_cmd_study_spread)

    report = sub.add_parser(
        "report", help="the study's answers as Markdown tables (what the README and the book quote)",
        description="From a study's records (or a runs table saved with --save-table): does RESQUE_dist predict each "
                    "cost within and between families and beyond the intensity, Harrell's C, the test-retest "
                    "ceiling, every shift predictor against RESQUE_dist by paired two-way bootstrap with Holm's "
                    "correction, and the task predictors. Printed as Markdown.",
    )
    folder_options(report)
    report.add_argument("--table", metavar="CSV", default=None,
                        help="read this runs table (written by --save-table) instead of the records")
    report.add_argument("--save-table", metavar="CSV", default=None, help="also write the runs table read, as CSV")
    report.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (default: 2000)")
    report.add_argument("--measures", default=None, metavar="COST,COST",
                        help="the costs to report, comma-separated (default: the distinct ones: "
                             "epochs,grad_norm_last,grad_norm_mean,param_change_from_start,energy_kwh)")
    report.set_defaults(func=_cmd_study_report)

    run = sub.add_parser(
        "run", help="execute the experiments of a profile",
        description="Execute every experiment of a profile as a papermill notebook. Experiments with a complete "
                    "record are skipped; a failure is recorded in failed/<run_id>.json and the others go on.",
    )
    grid_options(run)
    run.add_argument("--executor", default="local", metavar="{local,dask}",
                     help="local (default): one notebook at a time, because energy trackers measure the whole "
                          "machine and parallel runs on one machine would count each other's energy. dask: send "
                          "notebooks to the workers of --scheduler (every worker must see --results at the same "
                          "path; dask-jobqueue turns Slurm/PBS jobs into workers)")
    run.add_argument("--scheduler", metavar="ADDRESS", default=None, help="Dask scheduler, e.g. tcp://host:8786")
    run.add_argument("--notebooks", metavar="DIR", default=None,
                     help="folder of the notebook templates "
                          "(default: $RESQUE_NOTEBOOKS or the repository's notebooks/)")
    run.add_argument("--kernel", default="python3", help="Jupyter kernel name (default: python3)")
    run.add_argument("--fresh-kernels", action="store_true",
                     help="a kernel per notebook (default, locally: one kernel for the whole study, wiped clean "
                          "between notebooks, which saves each its kernel start and imports; a failed notebook's "
                          "kernel is always replaced)")
    run.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    run.add_argument("--rerun-changed", action="store_true",
                     help="run again the experiments whose records were made with other settings than the profile's "
                          "(without it, such records stop the run: a results folder never mixes settings)")
    run.set_defaults(func=_cmd_study_run)


def _add_book(commands: argparse._SubParsersAction) -> None:
    book = commands.add_parser("book", help="build the Jupyter Book from a study's results",
                               description="Render the executed notebooks of a study into the HTML book.")
    sub = book.add_subparsers(dest="book_command", metavar="COMMAND", required=True)
    build = sub.add_parser("build", help="assemble and build the book (Sphinx warnings are errors)")
    _book_arguments(build)
    build.set_defaults(func=_cmd_book_build)
    check = sub.add_parser("check", help="open every page of the built book in headless Chromium and check it",
                           description="Open every page of a built book from file://, offline, in headless "
                                       "Chromium: each must load, typeset its math, load its images, keep its code "
                                       "and tables within the text column and show no path of the building "
                                       "machine. Writes screenshots of the front page and the results page.")
    check.add_argument("--html", default="_build/html", help="the built book (default: _build/html)")
    check.add_argument("--browser", default=None, help="the Chromium executable (default: chromium on PATH)")
    check.add_argument("--screenshots", default=None,
                       help="where the screenshots go (default: browser-check/ next to the html folder)")
    check.set_defaults(func=_cmd_book_check)
    tutorial = sub.add_parser("tutorial", help="run the tutorial's code blocks in order and time them",
                              description="Run every Python block of book/tutorial.md (the exercises' solutions "
                                          "included) in order, in one session, and print how long each took.")
    tutorial.add_argument("--book-dir", default=".", help="the book's root, holding book/ (default: .)")
    tutorial.set_defaults(func=_cmd_book_tutorial)


def _add_forecast(commands: argparse._SubParsersAction) -> None:
    forecast = commands.add_parser(
        "forecast", help="predict the cost of retraining a model on new data",
        description="Compute RESQUE_dist of new data for a model and predict the epochs, energy (kWh) and "
                    "carbon (kg CO2-eq) of retraining, with prediction intervals, from a study's runs.",
    )
    _forecast_arguments(forecast)
    forecast.set_defaults(func=_cmd_forecast)


def _cmd_study_list(args: argparse.Namespace) -> int:
    from .study.profiles import expand, list_profiles, load_profile

    rows = []
    for name in list_profiles():
        profile = load_profile(name)
        rows.append((name, str(len(expand(profile, name, "."))), profile.description))
    width = max(len(name) for name, _, _ in rows)
    print(f"{'profile':<{width}}  experiments  description")
    for name, count, description in rows:
        print(f"{name:<{width}}  {count:>11}  {description}")
    return EXIT_OK


def _cmd_study_plan(args: argparse.Namespace) -> int:
    from .study.profiles import load_profile
    from .study.runner import plan_study

    name, root, planned = plan_study(args.profile, args.results, only=args.only)
    plural = "" if len(planned) == 1 else "s"
    print(f"Profile {name!r}: {len(planned)} experiment{plural}, results in {root}")
    for line in load_profile(args.profile).describe_duplicates():
        print(f"  note: {line}")
    width = max(len(e.run_id) for e, _ in planned)
    for index, (exp, state) in enumerate(planned, 1):
        own = {k: v for k, v in exp.parameters.items() if k not in ("profile", "results_dir")}
        settings = " ".join(f"{k}={v}" for k, v in own.items())
        why = f"  ({state.reason})" if state.reason and state.reason != "no record yet" else ""
        print(f"{index:>4}  {exp.run_id:<{width}}  {exp.notebook:<15} {state.status:<7} {settings}{why}")
    return EXIT_OK


def _cmd_study_run(args: argparse.Namespace) -> int:
    from .study.runner import run_study

    summary = run_study(
        args.profile, args.results, executor=args.executor, scheduler=args.scheduler,
        notebooks_dir=args.notebooks, only=args.only, kernel_name=args.kernel, progress=args.progress,
        rerun_changed=args.rerun_changed, fresh_kernels=args.fresh_kernels,
    )
    return EXIT_OK if summary.ok else EXIT_FAILED


def _cmd_study_spread(args: argparse.Namespace) -> int:
    from .study.design import meets_spread, repeatability, spread, yardstick_stops
    from .study.runner import plan_study

    name, root, _ = plan_study(args.profile, args.results)
    table = spread(root, args.measure)
    if not int(table.loc["all", "runs"]):
        print(f"No finished shift run in {root} yet (run `resque study run --profile {args.profile}` first).")
        return EXIT_OK
    print(f"Cost of the shift runs ({args.measure}) in {root}, profile {name!r}:")
    print(table.round(2).to_string())
    ok, problems = meets_spread(table)
    print("design criteria met" if ok else "design criteria NOT met: " + "; ".join(problems))
    for kind, stops in yardstick_stops(root).items():
        print(f"From-scratch yardsticks of the {kind} runs: {sum(stops.values())}, stopped by "
              + ", ".join(f"{reason} {count}" for reason, count in stops.items())
              + " (a yardstick that did not reach the target makes its saving a lower bound).")
    retest = repeatability(root, args.measure)
    if len(retest):
        print(f"\nTest-retest: each repeated run's {args.measure} against its repeat with another retraining seed "
              "(Spearman over the pairs where neither run is censored):")
        print(retest.round(3).to_string())
    else:
        print("\nNo run was repeated with another retraining seed (the profile's replicate_seeds): no test-retest figure.")
    return EXIT_OK


def _cmd_study_report(args: argparse.Namespace) -> int:
    import pandas as pd

    from .study.analysis import load_records
    from .cost.measures import MEASURES
    from .errors import InvalidParameterError
    from .study.analysis.report import DISTINCT, study_report
    from .study.runner import plan_study

    if args.table is not None:
        if not os.path.isfile(args.table):
            raise InvalidParameterError("--table", args.table, "a CSV written by `resque study report --save-table`")
        frame = pd.read_csv(args.table)
    else:
        _, root, _ = plan_study(args.profile, args.results)
        frame = load_records(root)
        if frame.empty:
            print(f"No finished run in {root} yet (run `resque study run --profile {args.profile}` first).")
            return EXIT_OK
    if args.save_table is not None:
        frame.to_csv(args.save_table, index=False)
    measures = DISTINCT if args.measures is None else tuple(m.strip() for m in args.measures.split(",") if m.strip())
    for measure in measures:
        if measure not in MEASURES:
            raise InvalidParameterError("--measures", measure, list(MEASURES))
    print(study_report(frame, n_boot=args.n_boot, measures=measures))
    return EXIT_OK


# --------------------------------------------------------------------------- entry point


# --------------------------------------------------------------------------- book


def _book_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``resque book build``."""
    parser.add_argument("--results", default=None,
                        help="the study's results folder (default: $RESQUE_RESULTS/<profile>, else results/<profile>)")
    parser.add_argument("--profile", default="quick",
                        help="with no --results: read results/<profile> (default: quick)")
    parser.add_argument("--book-dir", default=".", help="the book's root, holding _config.yml (default: .)")
    parser.add_argument("--output", default=None, help="where _build/ goes (default: the book's root)")
    parser.add_argument("--no-strict", dest="strict", action="store_false",
                        help="let warnings pass (the default, like CI, fails on any warning: -W -n)")
    return parser


def _cmd_book_build(args: argparse.Namespace) -> int:
    """``resque book build``: assemble and build the book; print where it is (1 with the build's warnings)."""
    from .errors import BookError
    from .study.book import build
    from .study.runner import default_results_dir  # $RESQUE_RESULTS/<profile>, else results/<profile>

    results = args.results or default_results_dir(args.profile or "quick")
    try:
        index = build(results, args.book_dir, strict=args.strict, output_dir=args.output)
    except BookError as error:
        print(str(error), file=sys.stderr)
        return EXIT_FAILED
    print(f"The book is at {Path(index).resolve()}  (open it in a browser: file://{Path(index).resolve()})")
    return EXIT_OK


def _cmd_book_check(args: argparse.Namespace) -> int:
    """``resque book check``: the built book in headless Chromium; 0 when no page has a problem."""
    from .errors import BookError
    from .study.book.browser import check_book

    try:
        report = check_book(args.html, browser=args.browser, screenshots_dir=args.screenshots)
    except BookError as error:
        print(str(error), file=sys.stderr)
        return EXIT_FAILED
    print(report.summary())
    return EXIT_OK if report.ok else EXIT_FAILED


def _cmd_book_tutorial(args: argparse.Namespace) -> int:
    """``resque book tutorial``: run the tutorial's blocks in a scratch folder and print their times."""
    import os
    import tempfile

    from .study.book.downloads import run_tutorial

    page = Path(args.book_dir) / "book" / "tutorial.md"
    if not page.exists():
        print(f"{page} does not exist: run this from the project's root, or pass --book-dir.", file=sys.stderr)
        return EXIT_FAILED
    with tempfile.TemporaryDirectory(prefix="resque-tutorial-") as scratch:
        run = run_tutorial(page.resolve(), workdir=scratch)
    for number, seconds in enumerate(run.seconds, 1):
        print(f"  block {number:>2}: {seconds:6.1f} s")
    print(f"The tutorial's {len(run.seconds)} blocks ran in {run.total:.1f} s on this machine "
          f"({os.cpu_count()} CPU cores).")
    return EXIT_OK


# --------------------------------------------------------------------------- forecast


def _forecast_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``resque forecast``."""
    parser.add_argument("--checkpoint", required=True, metavar="PATH", help="the source model (resque.save_checkpoint)")
    parser.add_argument("--fingerprint", required=True, metavar="PATH",
                        help="the model's fingerprint file (resque.fingerprint(...).save)")
    parser.add_argument("--data", required=True, metavar="NAME_OR_DIR",
                        help="the new data: a registry dataset (see resque.list_datasets()) or an image folder with "
                             "one subfolder per class, named so that their sorted order is the model's label order")
    parser.add_argument("--calibration", required=True, metavar="RESULTS_DIR",
                        help="a study's results folder: the runs the forecast is fitted on")
    parser.add_argument("--split", default="train", choices=("train", "test"), help="dataset split (default: train)")
    parser.add_argument("--data-root", metavar="DIR", default=None, help="dataset root (default: $RESQUE_DATA or cache)")
    parser.add_argument("--shift", metavar="FAMILY", default=None,
                        help="apply this shift family to the data (see resque.list_shifts())")
    parser.add_argument("--intensity", type=float, default=None, help="the shift's intensity (with --shift)")
    parser.add_argument("--n-per-class", type=int, default=None, metavar="N",
                        help="use a seeded subsample of N images per class (faster)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsample and the shift (default: 0)")
    parser.add_argument("--layer", default=None, help="embedding layer (default: the model's default layer)")
    parser.add_argument("--level", type=float, default=0.9, help="prediction interval level (default: 0.9)")
    parser.add_argument("--min-runs", type=int, default=5, help="fewest calibration runs accepted (default: 5)")
    censored = parser.add_mutually_exclusive_group()
    censored.add_argument("--censored", choices=("model", "drop", "observed"), default="model",
                          help="calibration runs that did not reach their target: lower bounds in a "
                               "censoring-aware line (model, the default), left out (drop), or taken as observed")
    censored.add_argument("--include-censored", action="store_true",
                          help="the same as --censored observed (kept for older scripts)")
    parser.add_argument("--device", default=None, help="torch device (default: where the model is, the CPU)")
    parser.add_argument("--batch-size", type=int, default=None, help="batch size of the forward pass")


def _new_data(args: argparse.Namespace, model):
    """The dataset named or found at ``--data``, subsampled and shifted as asked."""
    from .data.datasets import ToModelInput, list_datasets, load_dataset
    from .errors import DataError, InvalidParameterError
    from .models.zoo import input_shape
    from .data.shifts import ShiftedDataset
    from .data.splits import subsample_per_class, subset

    channels, size, _ = input_shape(model)
    folder = Path(args.data).expanduser()
    if folder.is_dir():
        from torchvision.datasets import ImageFolder

        try:
            data = ImageFolder(str(folder), transform=ToModelInput(image_size=size, channels=channels))
        except (FileNotFoundError, RuntimeError) as error:  # no class subfolders, or no image in them
            raise DataError(
                f"--data {args.data!r} holds no labelled images ({error}). An image folder needs one subfolder "
                "per class, each with image files (.png, .jpg, ...), e.g. DIR/cat/001.png."
            ) from None
    elif args.data not in list_datasets() and (folder.exists() or any(c in args.data for c in "/\\.~")):
        what = "is a file" if folder.exists() else "does not exist"
        raise InvalidParameterError(
            "--data", args.data, "a dataset name (" + ", ".join(list_datasets()) + ") or an image folder",
            f"The path {what}; an image folder needs one subfolder per class.")
    else:
        data = load_dataset(args.data, split=args.split, root=args.data_root, image_size=size, channels=channels)
    if args.n_per_class is not None:
        data = subset(data, subsample_per_class(data, args.n_per_class, seed=args.seed))
    if args.shift is not None:
        if args.intensity is None:
            raise InvalidParameterError("--intensity", None, "a number on the shift family's scale (with --shift)")
        data = ShiftedDataset(data, args.shift, args.intensity, seed=args.seed)
    elif args.intensity is not None:
        raise InvalidParameterError("--shift", None, "a shift family (see resque.list_shifts()) with --intensity")
    return data


def _cmd_forecast(args: argparse.Namespace) -> int:
    """``resque forecast``: print RESQUE_dist of the new data and the forecast; return the exit status."""
    from .forecast import DEFAULT_MEASURES, fit_forecast, forecast
    from .models.checkpoint import load_checkpoint

    import warnings

    from .errors import ForecastWarning, InvalidParameterError

    folder = Path(args.calibration).expanduser()
    if not folder.is_dir():
        raise InvalidParameterError(
            "--calibration", args.calibration, "a study's results folder (e.g. results/quick)",
            f"The path {'is a file' if folder.exists() else 'does not exist'}; run a study first "
            "(resque study run --profile quick) or pass the folder it wrote.")
    # Calibration first: too few runs should fail in a second, not after a forward pass.
    censored = "observed" if args.include_censored else args.censored
    calibration = fit_forecast(args.calibration, "resque_dist", DEFAULT_MEASURES, "shift", args.min_runs,
                               level=args.level, censored=censored)
    model = load_checkpoint(args.checkpoint)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ForecastWarning)
        prediction = forecast(model, _new_data(args, model), args.layer, calibration=calibration,
                              fingerprint=args.fingerprint, level=args.level, device=args.device,
                              batch_size=args.batch_size, calibration_dir=folder)
    print(prediction)
    for warning in caught:
        if issubclass(warning.category, ForecastWarning):
            print(f"Warning: {warning.message}", file=sys.stderr)
        else:
            warnings.showwarning(warning.message, warning.category, warning.filename, warning.lineno)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The full parser; one ``_add_<group>`` call per command group."""
    parser = argparse.ArgumentParser(
        prog="resque", description="RESQUE: estimate the cost of retraining before retraining.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_study(commands)
    _add_book(commands)
    _add_forecast(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with `argv` (default: ``sys.argv[1:]``); return the exit status."""
    from .errors import ResqueError
    from .extras import MissingExtraError, extra_of

    args = build_parser().parse_args(argv)
    try:
        try:
            return args.func(args)
        except ImportError as error:  # an optional dependency the command needs
            if error.name is None or isinstance(error, ResqueError) or extra_of(error.name) is None:
                raise
            raise MissingExtraError(error.name, f"resque {' '.join(argv or sys.argv[1:])}".strip()) from None
    except ResqueError as error:
        # Bad input, explained in one line: a traceback would only bury the message.
        print(f"resque: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # `resque study plan ... | head`: the reader left; say nothing more (Python docs' recipe).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
