"""The ``resque`` command line.

::

    resque study list                      profiles, their descriptions and sizes
    resque study plan --profile quick      the experiments, in order, and which are done
    resque study run --profile quick       execute them (resumes; see resque.study.runner)

Exit status: 0 when every experiment ran or was already done, 1 when one
failed (or was blocked by a failed source model), 2 for bad input (an
unknown profile, executor...), reported in one line without a traceback.

Each command is one ``_add_<group>`` function (its subparsers) and one
``_cmd_<group>_<command>`` function (``args -> exit status``); a new group
(``resque book``, ``resque forecast``) adds its own pair and one line in
:func:`build_parser`. The study machinery is imported inside the commands
that need it; option values are checked by the library (one message per
mistake, whichever door it came through).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

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
    run.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    run.set_defaults(func=_cmd_study_run)


def _add_book(commands: argparse._SubParsersAction) -> None:
    from .study.book import add_book_arguments, book_command

    book = commands.add_parser("book", help="build the Jupyter Book from a study's results",
                               description="Render the executed notebooks of a study into the HTML book.")
    sub = book.add_subparsers(dest="book_command", metavar="COMMAND", required=True)
    build = sub.add_parser("build", help="assemble and build the book (Sphinx warnings are errors)")
    add_book_arguments(build)
    build.set_defaults(func=book_command)


def _add_forecast(commands: argparse._SubParsersAction) -> None:
    from .forecast import add_forecast_arguments, forecast_command

    forecast = commands.add_parser(
        "forecast", help="predict the cost of retraining a model on new data",
        description="Compute RESQUE_dist of new data for a model and predict the epochs, energy (kWh) and "
                    "carbon (kg CO2-eq) of retraining, with prediction intervals, from a study's runs.",
    )
    add_forecast_arguments(forecast)
    forecast.set_defaults(func=forecast_command)


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
    from .study.experiments import ResultsDir
    from .study.runner import SUMMARY_KINDS, plan_study

    name, root, experiments = plan_study(args.profile, args.results, only=args.only)
    results = ResultsDir(root)
    plural = "" if len(experiments) == 1 else "s"
    print(f"Profile {name!r}: {len(experiments)} experiment{plural}, results in {root}")
    width = max(len(e.run_id) for e in experiments)
    for index, exp in enumerate(experiments, 1):
        if results.failure(exp.run_id).exists():
            state = "failed"
        elif results.complete(exp.run_id) or (exp.kind in SUMMARY_KINDS and results.notebook(exp.run_id).exists()):
            state = "done"  # summaries have no record: their executed notebook is their result
        else:
            state = "to run"
        own = {k: v for k, v in exp.parameters.items() if k not in ("profile", "results_dir")}
        settings = " ".join(f"{k}={v}" for k, v in own.items())
        print(f"{index:>4}  {exp.run_id:<{width}}  {exp.notebook:<15} {state:<7} {settings}")
    return EXIT_OK


def _cmd_study_run(args: argparse.Namespace) -> int:
    from .study.runner import run_study

    summary = run_study(
        args.profile, args.results, executor=args.executor, scheduler=args.scheduler,
        notebooks_dir=args.notebooks, only=args.only, kernel_name=args.kernel, progress=args.progress,
    )
    return EXIT_OK if summary.ok else EXIT_FAILED


# --------------------------------------------------------------------------- entry point


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

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
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
