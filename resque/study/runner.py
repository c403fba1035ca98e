"""Run a study: one papermill notebook per experiment, resumable, failure-tolerant.

:func:`run_study` validates a profile, expands its grid
(:func:`~resque.study.profiles.expand`) and executes the template of each
experiment into ``<results>/notebooks/<run_id>.ipynb``, in stages: source
models, then shifts and tasks (they start from a source model), then the
energy page, then the analysis.

Resume rule
    An experiment is skipped only when it is done (:mod:`resque.study.resume`):
    its record complete and made with the profile's current settings, the
    records and files it owns whole (the scratch yardstick, a source's
    checkpoint and fingerprint), its executed notebook finished, and no failure
    file. Anything else runs again, and the reason is shown. Records made with
    other settings are refused before any kernel starts, unless
    ``rerun_changed`` asks to run those experiments again. A shift or task run
    whose source model was trained again in this invocation runs again too, so
    that no record comes from another source model than its seed's.
    ``energy`` and ``analysis`` write no record of their own: they summarise the
    others, so they run again whenever an experiment finished in this
    invocation, and are skipped only when nothing new finished, their executed
    notebook is finished, their template is not newer than it, and they did not
    fail last time. Delete an executed notebook to force its re-run.

Failure rule
    When papermill raises, the executed notebook (papermill writes it up to the
    failing cell) is kept, ``failed/<run_id>.json`` says why, and the other
    experiments go on. A later success removes the failure file. Shifts and
    tasks whose source model failed *in the same invocation* are not attempted
    (status ``"blocked"``): each would only start a kernel to fail in
    :func:`~resque.study.experiments.load_source`. They count against the exit
    code and run at the next invocation.

Executors
    ``"local"`` (default) runs one notebook after another: energy trackers
    measure the whole machine, so parallel trainings would count each other's
    energy. They share one kernel, wiped clean between notebooks
    (:mod:`resque.study.kernels`), unless ``fresh_kernels`` asks for a kernel
    per notebook. ``"dask"`` runs each stage on the workers of a Dask scheduler
    (dask-jobqueue turns Slurm/PBS jobs into workers); all workers must see the
    results folder at the same path, on a shared filesystem.

Parameters injected
    Exactly :attr:`Experiment.parameters` (``profile``, ``results_dir``,
    ``seed`` and the experiment's own keys). The ``run_id`` is *not* injected:
    the templates do not declare it (papermill would log "Passed unknown
    parameter" for every notebook) and every experiment function derives it
    from those parameters, the way :func:`expand` names it.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import socket
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..cost.records import RecordError, load_record
from ..errors import InvalidParameterError, ResqueError
from ..io import write_json
from .profiles import NOTEBOOKS, Experiment, expand, list_profiles, load_profile
from .kernels import WarmKernel
from .profiles import Profile
from .results import SUMMARY_IDS, ResultsDir, run_id as make_run_id
from .resume import State, check_settings, experiment_state

__all__ = [
    "EXECUTORS",
    "STAGES",
    "Outcome",
    "StudySummary",
    "default_results_dir",
    "plan_study",
    "run_experiment",
    "run_study",
    "templates_dir",
]

EXECUTORS = ("local", "dask")
#: Experiment kinds in the order they must run; kinds in one stage may run together.
STAGES = (("source",), ("shift", "task"), ("energy",), ("analysis",))
#: Kinds that start from the source model of their seed.
DEPENDENT_KINDS = ("shift", "task")


@dataclass(frozen=True)
class Outcome:
    """What happened to one experiment in one invocation.

    Attributes
    ----------
    run_id, kind : str
    status : str
        ``"done"``, ``"skipped"`` (nothing to do), ``"failed"`` or ``"blocked"``
        (not attempted: the source model of its seed failed in this invocation).
    reason : str
        Why it was skipped, blocked or run again (a cut-off notebook, a corrupt
        yardstick record...), or the one-line error of a failure.
    seconds : float
        Wall time of the notebook execution (0 when nothing ran).
    notebook : str or None
        The executed notebook, when one was written.
    """

    run_id: str
    kind: str
    status: str
    reason: str = ""
    seconds: float = 0.0
    notebook: str | None = None


@dataclass
class StudySummary:
    """The result of :func:`run_study`.

    Attributes
    ----------
    profile : str
        The profile's name.
    results_dir : pathlib.Path
    done, skipped, blocked : list of str
        Run ids executed successfully, skipped (already done), and not attempted
        because their source model failed.
    failed : dict of str to str
        Run id -> one-line error, in execution order.
    seconds : float
        Total wall time of the invocation.
    outcomes : list of Outcome
        Every selected experiment, in grid order.
    """

    profile: str
    results_dir: Path
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    blocked: list[str] = field(default_factory=list)
    seconds: float = 0.0
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing failed and nothing was blocked."""
        return not self.failed and not self.blocked

    def report(self) -> str:
        """A few lines for the end of a run: counts, each failure, wall time."""
        lines = [
            f"Study {self.profile!r} in {self.results_dir}: {len(self.done)} done, {len(self.skipped)} skipped, "
            f"{len(self.failed)} failed" + (f", {len(self.blocked)} blocked" if self.blocked else "")
            + f" in {_duration(self.seconds)}."
        ]
        for run_id, error in self.failed.items():
            lines.append(f"  FAILED {run_id}: {error}")
        again = [(o.run_id, o.reason) for o in self.outcomes
                 if o.status == "done" and o.reason and o.reason not in ("no record yet", "no executed notebook")]
        for run_id, reason in again:
            lines.append(f"  ran again, {run_id}: {reason}")
        if self.blocked:
            lines.append(f"  not attempted (their source model failed): {', '.join(self.blocked)}")
        if self.failed:
            lines.append(f"  executed notebooks: {ResultsDir(self.results_dir).notebook('<run_id>')}; "
                         f"reasons: {ResultsDir(self.results_dir).failure('<run_id>')}")
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


# --------------------------------------------------------------------------- inputs


def default_results_dir(profile_name: str) -> Path:
    """``$RESQUE_RESULTS/<profile>``, else ``results/<profile>`` under the current directory (absolute)."""
    base = os.environ.get("RESQUE_RESULTS") or "results"
    return (Path(base).expanduser() / profile_name).resolve()


def templates_dir(path: str | os.PathLike | None = None) -> Path:
    """The folder of the notebook templates.

    Parameters
    ----------
    path : str or path-like, optional
        Used when given; else ``$RESQUE_NOTEBOOKS``; else the ``notebooks/``
        folder of the repository resque is installed from (an editable install).

    Raises
    ------
    InvalidParameterError
        The folder does not exist (e.g. resque installed from a wheel, which
        carries no notebooks).
    """
    if path is not None:
        folder, source = Path(path).expanduser(), "notebooks_dir"
    elif os.environ.get("RESQUE_NOTEBOOKS"):
        folder, source = Path(os.environ["RESQUE_NOTEBOOKS"]).expanduser(), "RESQUE_NOTEBOOKS"
    else:
        import resque

        folder, source = Path(resque.__file__).resolve().parents[1] / "notebooks", "notebooks_dir"
    if not folder.is_dir():
        raise InvalidParameterError(
            source, str(folder), "an existing folder of notebook templates",
            "Run from a clone of the resque repository (pip install -e .), or pass notebooks_dir= "
            "(--notebooks) or set $RESQUE_NOTEBOOKS to the folder holding "
            + ", ".join(sorted(set(NOTEBOOKS.values()))) + ".",
        )
    return folder.resolve()


def _profile_ref(profile: str | os.PathLike) -> str:
    """What the notebooks receive as ``profile``: a shipped name, or an absolute YAML path.

    Absolute, because a kernel (or a Dask worker) need not share our working directory.
    """
    if not isinstance(profile, (str, os.PathLike)):
        raise InvalidParameterError(
            "profile", profile, "a profile name (" + ", ".join(list_profiles()) + ") or the path of a YAML file",
        )
    path = Path(profile)
    if path.suffix in (".yaml", ".yml"):
        return str(path.expanduser().resolve())
    return str(profile)


def _select(experiments: list[Experiment], only: str | None) -> list[Experiment]:
    if only is None:
        return experiments
    chosen = [e for e in experiments if fnmatch.fnmatchcase(e.run_id, only)]
    if not chosen:
        shown = [e.run_id for e in experiments]
        shown = shown if len(shown) <= 12 else shown[:6] + ["..."] + shown[-5:]
        raise InvalidParameterError("only", only, "a glob matching at least one run_id, among " + ", ".join(shown))
    return chosen


def _check_templates(experiments: list[Experiment], folder: Path) -> None:
    missing = sorted({e.notebook for e in experiments if not (folder / e.notebook).is_file()})
    if missing:
        raise InvalidParameterError(
            "notebooks_dir", str(folder), "a folder holding " + ", ".join(sorted({e.notebook for e in experiments})),
            f"Missing: {', '.join(missing)}. Pass notebooks_dir= (--notebooks) or set $RESQUE_NOTEBOOKS.",
        )


def _check_kernel(kernel_name: str) -> None:
    try:
        import papermill  # noqa: F401  (checked here, or every experiment would fail on it)
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    except ImportError as error:
        raise ResqueError(
            f"The study runner needs papermill and a Jupyter kernel ({error}): pip install papermill ipykernel"
        ) from None

    manager = KernelSpecManager()
    try:
        manager.get_kernel_spec(kernel_name)
    except NoSuchKernel:
        raise InvalidParameterError(
            "kernel_name", kernel_name, sorted(manager.find_kernel_specs()),
            "Register one with: python -m ipykernel install --user --name NAME",
        ) from None


def _check_executor(executor: str, scheduler: Any) -> None:
    if executor not in EXECUTORS:
        raise InvalidParameterError("executor", executor, list(EXECUTORS))
    if executor == "dask" and scheduler is None:
        raise InvalidParameterError(
            "scheduler", None, "a scheduler address (tcp://host:8786), a distributed.Client or a cluster object",
            "executor='dask' needs a running scheduler: start one with `dask scheduler` and `dask worker ADDRESS`, "
            "or with dask-jobqueue on Slurm/PBS.",
        )
    if executor == "local" and scheduler is not None:
        # Refused rather than ignored: the user meant to run on the cluster.
        raise InvalidParameterError("scheduler", str(scheduler), "None with executor='local'",
                                    "Pass executor='dask' (--executor dask) to use a scheduler.")


@dataclass(frozen=True)
class _Plan:
    profile_name: str
    results: ResultsDir
    experiments: list[Experiment]
    profile: Profile

    def states(self) -> dict[str, State]:
        """Where each experiment stands (:func:`~resque.study.resume.experiment_state`)."""
        return {e.run_id: experiment_state(e, self.results, self.profile) for e in self.experiments}


def plan_study(
    profile: str | os.PathLike, results_dir: str | os.PathLike | None = None, *, only: str | None = None,
) -> tuple[str, Path, list[tuple[Experiment, State]]]:
    """The experiments :func:`run_study` would consider and where each stands, without running anything.

    Validates exactly what :func:`run_study` validates about the profile and
    the results folder (everything but the executor, templates and kernel).

    Returns
    -------
    name : str
        The profile's name.
    results_dir : pathlib.Path
        Absolute results folder (the default applied).
    experiments : list of (Experiment, State)
        In execution order, filtered by `only`; each with its
        :class:`~resque.study.resume.State` (done, to run and why, changed, failed).
    """
    plan = _plan(profile, results_dir, only)
    states = plan.states()
    return plan.profile_name, plan.results.root, [(e, states[e.run_id]) for e in plan.experiments]


def _plan(profile, results_dir, only) -> _Plan:
    ref = _profile_ref(profile)
    loaded = load_profile(ref)  # validates names and ranges (Profile.__post_init__)
    root = default_results_dir(loaded.name) if results_dir is None else Path(results_dir).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise InvalidParameterError("results_dir", str(root), "a folder (it is created when missing)",
                                    "It is a file; pass the folder the study's results go to.")
    experiments = _select(expand(loaded, ref, root), only)
    loaded.check_runnable()  # the country code, model arguments and datasets, before any kernel starts
    return _Plan(loaded.name, ResultsDir(root), experiments, loaded)


# --------------------------------------------------------------------------- one experiment


def _one_line(text: str, limit: int = 200) -> str:
    line = next((part.strip() for part in str(text).splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _describe(error: Exception) -> tuple[str, str]:
    """(type, message) of an error; for a failed cell, the error raised inside the notebook."""
    ename = getattr(error, "ename", None)
    if ename:  # PapermillExecutionError: the kernel's exception is what the user needs to see
        return str(ename), str(getattr(error, "evalue", "") or "")
    return type(error).__name__, str(error)


def _record_failure(experiment: Experiment, results: ResultsDir, error: Exception, *, notebook: str | None,
                    template: str | os.PathLike | None, seconds: float) -> Outcome:
    """Write ``failed/<run_id>.json`` and return the failed outcome."""
    error_type, message = _describe(error)
    write_json(results.failure(experiment.run_id), {
        "run_id": experiment.run_id,
        "kind": experiment.kind,
        "error_type": error_type,
        "error": message,
        "notebook": notebook,
        "template": None if template is None else str(template),
        "parameters": experiment.parameters,
        "host": socket.gethostname(),
        "seconds": seconds,
        "utc_time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }, default=str)
    return Outcome(experiment.run_id, experiment.kind, "failed", _one_line(f"{error_type}: {message}"),
                   seconds, notebook)


def run_experiment(
    experiment: Experiment, template: str | os.PathLike, results_dir: str | os.PathLike,
    *, kernel_name: str = "python3", kernel: WarmKernel | None = None,
) -> Outcome:
    """Execute one experiment's notebook with papermill; never raises for a failed notebook.

    This is the task a Dask worker runs, so it handles its own failures: the
    executed notebook is kept, ``failed/<run_id>.json`` records run_id, kind,
    error type and message, notebook path, parameters, host and UTC time; a
    success removes a stale failure file.

    Parameters
    ----------
    experiment : Experiment
    template : path-like
        The template notebook.
    results_dir : path-like
        The study's results folder (must be the one in ``experiment.parameters``).
    kernel_name : str, default "python3"
    kernel : WarmKernel, optional
        Execute in this kernel, wiped clean first, instead of a kernel of the
        notebook's own (:mod:`resque.study.kernels`). A failure shuts it down,
        so that the next notebook starts in a fresh one.

    Returns
    -------
    Outcome
        Status ``"done"`` or ``"failed"``.
    """
    import papermill

    results = ResultsDir(results_dir)
    output = results.notebook(experiment.run_id)
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    reuse = {} if kernel is None else {"km": kernel.manager()}
    try:
        papermill.execute_notebook(
            str(template), str(output), parameters=dict(experiment.parameters), kernel_name=kernel_name,
            progress_bar=False,  # the study's bar is the one to watch
            # The kernel listens on loopback only; its "TCP without encryption" warning, once per
            # notebook, would bury the study's own output. Its errors still show.
            extra_arguments=["--IPKernelApp.log_level=ERROR"], **reuse,
        )
    except Exception as error:  # any failure is recorded, never propagated: the study goes on
        if kernel is not None:
            kernel.discard()  # what the failed notebook left behind never reaches the next one
        notebook = str(output) if output.exists() else None
        return _record_failure(experiment, results, error, notebook=notebook, template=template,
                               seconds=time.perf_counter() - start)
    if kernel is not None:
        kernel.release()
    results.failure(experiment.run_id).unlink(missing_ok=True)
    return Outcome(experiment.run_id, experiment.kind, "done", "", time.perf_counter() - start, str(output))


# --------------------------------------------------------------------------- decisions


def _summary_is_current(experiment: Experiment, state: State, results: ResultsDir, template: Path,
                        anything_new: bool) -> bool:
    executed = results.notebook(experiment.run_id)
    return not anything_new and state.done and template.stat().st_mtime <= executed.stat().st_mtime


def _triage(
    stage: list[Experiment], results: ResultsDir, folder: Path, outcomes: dict[str, Outcome],
    states: dict[str, State],
) -> tuple[list[Outcome], list[Experiment]]:
    """Split a stage into outcomes decided without a kernel and experiments to execute."""
    sources = {o.run_id: o.status for o in outcomes.values() if o.kind == "source"}
    anything_new = any(o.status == "done" and o.kind not in SUMMARY_IDS for o in outcomes.values())
    decided, to_run = [], []
    for exp in stage:
        state = states[exp.run_id]
        source_id = make_run_id("source", seed=exp.parameters["seed"])
        if exp.kind in SUMMARY_IDS:
            if _summary_is_current(exp, state, results, folder / exp.notebook, anything_new):
                decided.append(Outcome(exp.run_id, exp.kind, "skipped", "nothing new since its last run",
                                       notebook=str(results.notebook(exp.run_id))))
                continue
        elif exp.kind in DEPENDENT_KINDS and sources.get(source_id) == "failed":
            decided.append(Outcome(exp.run_id, exp.kind, "blocked", f"{source_id} failed"))
            continue
        elif state.done and not (exp.kind in DEPENDENT_KINDS and sources.get(source_id) == "done"):
            decided.append(Outcome(exp.run_id, exp.kind, "skipped", "done: record, notebook and yardstick complete"))
            continue
        elif state.done:
            states[exp.run_id] = State(exp.run_id, "to run", f"its source model {source_id} was trained again")
        to_run.append(exp)
    return decided, to_run


def _why(outcome: Outcome, states: dict[str, State]) -> Outcome:
    """A finished run carries the reason it ran (a partial notebook, a corrupt yardstick...)."""
    if outcome.status != "done":
        return outcome
    return dataclasses.replace(outcome, reason=states[outcome.run_id].reason)


def _stages(experiments: list[Experiment]) -> list[list[Experiment]]:
    known = {kind for stage in STAGES for kind in stage}
    stages = [[e for e in experiments if e.kind in kinds] for kinds in STAGES]
    # A kind added to NOTEBOOKS but not to STAGES still runs, last, rather than silently never.
    stages.append([e for e in experiments if e.kind not in known])
    return [s for s in stages if s]


# --------------------------------------------------------------------------- executors


def _run_local(stages, results, folder, kernel_name, bar, states, fresh_kernels) -> dict[str, Outcome]:
    outcomes: dict[str, Outcome] = {}
    with WarmKernel(kernel_name, reuse=not fresh_kernels) as kernel:
        for stage in stages:
            decided, to_run = _triage(stage, results, folder, outcomes, states)
            for outcome in decided:
                outcomes[outcome.run_id] = outcome
                bar.update(1)
            for exp in to_run:
                bar.set_description(exp.run_id)
                outcome = run_experiment(exp, folder / exp.notebook, results.root, kernel_name=kernel_name,
                                         kernel=kernel)
                outcomes[exp.run_id] = _why(outcome, states)
                bar.update(1)
    return outcomes


def _run_dask(stages, results, folder, kernel_name, bar, scheduler, states) -> dict[str, Outcome]:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise ResqueError("executor='dask' needs dask.distributed: pip install 'dask[distributed]'.") from None

    own_client = not isinstance(scheduler, Client)
    client = Client(scheduler) if own_client else scheduler
    outcomes: dict[str, Outcome] = {}
    try:
        # Stage by stage, waiting in between: shifts and tasks need the source
        # checkpoints on disk, and the summaries need every record.
        for stage in stages:
            decided, to_run = _triage(stage, results, folder, outcomes, states)
            for outcome in decided:
                outcomes[outcome.run_id] = outcome
                bar.update(1)
            if not to_run:
                continue
            futures = client.map(
                run_experiment, to_run, [str(folder / e.notebook) for e in to_run],
                [str(results.root)] * len(to_run), kernel_name=kernel_name, pure=False,
                key=[f"resque-{e.run_id}-{uuid.uuid4().hex[:8]}" for e in to_run],
            )
            experiment_of = {future.key: exp for future, exp in zip(futures, to_run)}
            for future in as_completed(futures):
                try:
                    outcome = future.result()
                except Exception as error:  # a lost worker, not a notebook failure (those come back as Outcome)
                    exp = experiment_of[future.key]
                    executed = results.notebook(exp.run_id)
                    outcome = _record_failure(exp, results, error, template=folder / exp.notebook, seconds=0.0,
                                              notebook=str(executed) if executed.exists() else None)
                outcomes[outcome.run_id] = _why(outcome, states)
                bar.set_description(outcome.run_id)
                bar.update(1)
    finally:
        if own_client:
            client.close()
    return outcomes


# --------------------------------------------------------------------------- entry point


def run_study(
    profile: str | os.PathLike,
    results_dir: str | os.PathLike | None = None,
    *,
    executor: str = "local",
    scheduler: Any = None,
    notebooks_dir: str | os.PathLike | None = None,
    only: str | None = None,
    kernel_name: str = "python3",
    progress: bool = True,
    rerun_changed: bool = False,
    fresh_kernels: bool = False,
) -> StudySummary:
    """Execute every experiment of a profile as a papermill notebook; resume and survive failures.

    Everything is validated before the first kernel starts: the profile
    (names, ranges, unknown keys), the executor, the scheduler, `only`, the
    templates and (locally) the kernel. Then experiments run in stages:
    source models, shifts and tasks, energy, analysis. See the module
    docstring for what is skipped, how failures are recorded, and which
    parameters each notebook receives.

    Parameters
    ----------
    profile : str or path-like
        A shipped profile name (:func:`~resque.study.profiles.list_profiles`)
        or the path of a YAML file.
    results_dir : str or path-like, optional
        Default ``$RESQUE_RESULTS/<profile>``, else ``results/<profile>`` under
        the current directory. Made absolute before it is passed to notebooks.
    executor : {"local", "dask"}, default "local"
        ``"local"`` runs one notebook at a time. That is the default because
        the energy trackers (CodeCarbon, RAPL, NVML) measure the whole machine:
        two trainings side by side on one machine would each count the other's
        energy. ``"dask"`` sends notebooks to the workers of a Dask scheduler;
        give each worker a machine (or a GPU) of its own if energy matters.
        dask-jobqueue (``SLURMCluster``, ``PBSCluster``) turns batch-system jobs
        into Dask workers. Every worker must see `results_dir` at the same path
        (a shared filesystem) and have resque, papermill and the kernel
        installed; start workers with ``--nthreads 1`` so that each runs one
        notebook at a time.
    scheduler : str or distributed.Client or cluster, optional
        For ``executor="dask"`` (required there): an address such as
        ``"tcp://host:8786"``, a ``Client`` (left open), or a cluster object
        such as ``LocalCluster`` (a client is opened and closed here).
    notebooks_dir : str or path-like, optional
        Folder of the templates; default ``$RESQUE_NOTEBOOKS``, else the
        repository's ``notebooks/``.
    only : str, optional
        Run only experiments whose run_id matches this glob
        (``"shift-frost-*"``). Their source models are not added: run those first.
    kernel_name : str, default "python3"
        Jupyter kernel the notebooks run in.
    progress : bool, default True
        Show a tqdm bar over experiments (its description is the current run_id).
    rerun_changed : bool, default False
        Run again the experiments whose records were made with other settings
        than the profile's current ones (replacing those records). Without it
        such records stop the run before any kernel starts
        (:class:`~resque.errors.SettingsChangedError`), so that one folder
        never mixes settings.
    fresh_kernels : bool, default False
        Locally, the notebooks run one after another in one kernel, wiped
        clean between them, which saves each the start of a kernel and its
        imports (:mod:`resque.study.kernels`; a failure gets the next notebook
        a fresh kernel). True gives every notebook a kernel of its own. Either
        way the kernels start with :data:`~resque.study.kernels.KERNEL_TUNING`.
        Dask workers start their own kernels, one per notebook.

    Returns
    -------
    StudySummary
        Also printed (:meth:`StudySummary.report`) at the end.

    Raises
    ------
    InvalidParameterError
        Unknown profile (the known ones are listed), invalid profile values,
        unknown executor, dask without scheduler, `only` matching nothing,
        missing templates or kernel. Failing notebooks never raise.

    Examples
    --------
    >>> summary = run_study("smoke", "/tmp/smoke")  # doctest: +SKIP
    >>> summary.ok, summary.failed  # doctest: +SKIP
    (True, {})
    """
    start = time.perf_counter()
    _check_executor(executor, scheduler)
    plan = _plan(profile, results_dir, only)
    folder = templates_dir(notebooks_dir)
    _check_templates(plan.experiments, folder)
    if executor == "local":
        _check_kernel(kernel_name)  # on a cluster, the workers' kernels are what counts
    states = plan.states()
    check_settings(states, plan.results, rerun_changed=rerun_changed)
    for line in plan.profile.describe_duplicates():
        print(f"note: {line}", file=sys.stderr)

    from tqdm.auto import tqdm

    stages = _stages(plan.experiments)
    with tqdm(total=len(plan.experiments), desc=plan.profile_name, unit="notebook", disable=not progress,
              file=sys.stderr) as bar:
        if executor == "local":
            outcomes = _run_local(stages, plan.results, folder, kernel_name, bar, states, fresh_kernels)
        else:
            outcomes = _run_dask(stages, plan.results, folder, kernel_name, bar, scheduler, states)

    ordered = [outcomes[e.run_id] for e in plan.experiments]
    summary = StudySummary(
        profile=plan.profile_name,
        results_dir=plan.results.root,
        done=[o.run_id for o in ordered if o.status == "done"],
        skipped=[o.run_id for o in ordered if o.status == "skipped"],
        failed={o.run_id: o.reason for o in ordered if o.status == "failed"},
        blocked=[o.run_id for o in ordered if o.status == "blocked"],
        seconds=time.perf_counter() - start,
        outcomes=ordered,
    )
    throughput = _write_summary(plan.results.root, summary, plan.experiments)
    print(summary.report())
    if throughput["ratio"] is not None:
        print(f"  training and evaluation took {_duration(throughput['train_eval_seconds'])} of "
              f"{_duration(throughput['wall_seconds'])}: wall / (train + eval) = {throughput['ratio']:.2f} "
              f"(summary.json, 'throughput').")
    return summary


def _training_seconds(results: ResultsDir, run_ids) -> float:
    """``train_seconds + eval_seconds`` of the records of `run_ids`, their repeats and the yardsticks they name (to their plateau)."""
    total = 0.0
    for run_id in run_ids:
        try:
            record = load_record(results.record(run_id))
        except RecordError:
            continue
        records = [record]
        scratch = record.experiment.get("scratch_run_id")
        if scratch:
            try:
                records.append(load_record(results.record(scratch)))
            except RecordError:
                pass
        for each in records:
            totals = each.totals or {}
            # a yardstick trained past its target to its plateau: its costs stop at the target, but
            # all of its training is what the study spent (totals["plateau"])
            spent = totals.get("plateau") if isinstance(totals.get("plateau"), dict) else totals
            total += float(spent.get("train_seconds") or 0.0) + float(spent.get("eval_seconds") or 0.0)
            for repeat in each.replicates:  # test-retest repeats are training the study did too
                costs = repeat.get("totals") or {}
                total += float(costs.get("train_seconds") or 0.0) + float(costs.get("eval_seconds") or 0.0)
    return total


def _throughput(wall: float, training: float) -> dict:
    """How much of the wall time went into training and evaluating: the study's useful work."""
    return {"wall_seconds": wall, "train_eval_seconds": training, "overhead_seconds": wall - training,
            "ratio": wall / training if training > 0 else None}


def _write_summary(root: Path, summary: StudySummary, experiments: list[Experiment]) -> dict:
    """Append this invocation to ``summary.json``; ``wall_seconds`` adds up the invocations that ran something.

    A resumed study is the sum of its pieces, so the book's "how long it took"
    counts every invocation that executed notebooks, not only the last one.

    ``throughput`` (per invocation, and for the study as a whole) compares the
    wall time with the time the runs spent training and evaluating (their
    records' ``train_seconds + eval_seconds``, yardsticks included):
    ``ratio = wall / train_eval`` is 1 for a runner with no overhead at all.
    The whole-study figure counts the invocations that ran something and the
    records of every run of the study. Returns this invocation's figures.
    """
    from ..cost.records import provenance

    results = ResultsDir(root)
    path = results.summary
    try:
        previous = json.loads(path.read_text())
        invocations = list(previous.get("invocations", []))
    except (OSError, ValueError, AttributeError):
        invocations = []
    done = {o.run_id for o in summary.outcomes if o.status == "done"}
    ran = [each_id for e in experiments if e.run_id in done for each_id, _ in e.runs()]  # a shift page: each intensity
    invocations.append({
        "profile": summary.profile,
        "seconds": summary.seconds,
        "done": len(summary.done),
        "skipped": len(summary.skipped),
        "failed": len(summary.failed),
        "blocked": len(summary.blocked),
        "throughput": _throughput(summary.seconds, _training_seconds(results, ran)),
        "machine": provenance(),
    })
    wall = sum(i["seconds"] for i in invocations if i["done"] or i["failed"])
    # every run of the study, counted as this invocation's are (its yardstick to its plateau, its repeats)
    every_run = [r.run_id for r in results.read_records().complete() if r.kind != "scratch"]
    training = _training_seconds(results, every_run)
    content = {
        "profile": summary.profile,
        "wall_seconds": wall,
        "throughput": _throughput(wall, training),
        "invocations": invocations,
    }
    write_json(path, content, default=str)
    return invocations[-1]["throughput"]
