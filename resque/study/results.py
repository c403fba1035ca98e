"""A study's results folder and the names of its runs, in one place.

Layout of a results folder (``results/<profile>`` by default)::

    records/<run_id>.json                            one RunRecord per run (resque.cost.records)
    notebooks/<run_id>.ipynb                         the executed notebook of each experiment
    models/source-seed<k>.safetensors                source model checkpoint
    models/source-seed<k>.fingerprint.safetensors    its RESQUE_dist fingerprint
    failed/<run_id>.json                             why an experiment failed (removed when it later succeeds)
    summary.json                                     every invocation of the runner, with its timing

Run ids (:func:`run_id`, read back by :func:`parse_run_id`)::

    source-seed0                      the source model of seed 0
    shift-gaussian_noise-0.08-seed0   a shift family at one intensity (written with :func:`format_intensity`)
    shift-gaussian_noise-seed0        the page (notebook) of a family's whole intensity grid, one record per intensity
    task-fashion_coarse4-seed0        a task change
    task-seed0                        the page (notebook) of every task of a seed, one record per task
    scratch-<run id>                  the from-scratch yardstick of a shift or task run
    energy, analysis                  the study's summary pages
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from ..checks import check_choice, check_seed
from ..cost.records import RecordError, RecordsRead, load_record, read_records
from ..errors import InvalidParameterError

__all__ = ["ResultsDir", "RunName", "run_id", "parse_run_id", "scratch_run_id", "format_intensity", "SUMMARY_IDS"]

#: Experiments that summarise the study and have no record of their own.
SUMMARY_IDS = ("energy", "analysis")
_KINDS = ("source", "shift", "task", "scratch") + SUMMARY_IDS
_SEEDED = re.compile(r"^(?P<body>.+)-seed(?P<seed>\d+)$")


def format_intensity(intensity: float) -> str:
    """How an intensity is written in run ids: ``0.08``, ``1``, ``1e-05`` (``%g``, six significant digits).

    Two intensities that format the same would share a run id; profiles refuse such grids.
    """
    return f"{float(intensity):g}"


@dataclass(frozen=True)
class RunName:
    """What a run id says: its kind, seed and experiment (``None`` where it does not apply)."""

    kind: str
    seed: int | None = None
    shift: str | None = None
    intensity: float | None = None
    task: str | None = None
    of: "RunName | None" = None  # for a scratch run: the run it is the yardstick of

    @property
    def run_id(self) -> str:
        if self.kind == "scratch":
            return scratch_run_id(self.of.run_id)
        return run_id(self.kind, seed=self.seed, shift=self.shift, intensity=self.intensity, task=self.task)

    @property
    def is_page(self) -> bool:
        """True for the notebook of several runs: a shift family's grid, or a seed's tasks."""
        return (self.kind == "shift" and self.intensity is None) or (self.kind == "task" and self.task is None)

    @property
    def page(self) -> str:
        """The run id of the notebook that makes this run: its page, or the run itself."""
        if self.kind == "shift" and self.intensity is not None:
            return run_id("shift", seed=self.seed, shift=self.shift)
        if self.kind == "task" and self.task is not None:
            return run_id("task", seed=self.seed)
        return self.run_id


def run_id(kind: str, *, seed: int | None = None, shift: str | None = None, intensity: float | None = None,
           task: str | None = None) -> str:
    """The run id of an experiment (see the module docstring for the forms)."""
    check_choice("kind", kind, ("source", "shift", "task") + SUMMARY_IDS)
    if kind in SUMMARY_IDS:
        return kind
    seed = check_seed(seed)
    if kind == "source":
        return f"source-seed{seed}"
    if kind == "shift":
        if not shift:
            raise InvalidParameterError("shift", shift, "a shift family (and an intensity, or None for its grid's page)")
        if intensity is None:
            return f"shift-{shift}-seed{seed}"
        return f"shift-{shift}-{format_intensity(intensity)}-seed{seed}"
    if not task:  # the page of every task of the seed
        return f"task-seed{seed}"
    return f"task-{task}-seed{seed}"


def scratch_run_id(of_run_id: str) -> str:
    """The run id of the from-scratch yardstick of run `of_run_id`."""
    return f"scratch-{of_run_id}"


def parse_run_id(name: str) -> RunName:
    """Read a run id back into its parts; anything else is an error naming the forms allowed."""
    forms = ("source-seed<k>, shift-<family>-<intensity>-seed<k>, shift-<family>-seed<k>, task-<task>-seed<k>, "
             "task-seed<k>, scratch-<run id>, energy, analysis")
    if not isinstance(name, str):
        raise InvalidParameterError("run_id", name, forms)
    if name in SUMMARY_IDS:
        return RunName(name)
    if name.startswith("scratch-"):
        return RunName("scratch", of=parse_run_id(name[len("scratch-"):]))
    kind, _, rest = name.partition("-")
    seeded = _SEEDED.match(name)
    if kind not in _KINDS or seeded is None:
        raise InvalidParameterError("run_id", name, forms)
    seed, body = int(seeded["seed"]), seeded["body"]
    if kind == "source" and body == "source":
        return RunName("source", seed)
    if kind == "task" and body == "task":  # the page of the seed's tasks
        return RunName("task", seed)
    if kind == "task" and body.startswith("task-") and len(body) > len("task-"):
        return RunName("task", seed, task=body[len("task-"):])
    if kind == "shift":
        family, _, intensity = body[len("shift-"):].partition("-")  # family names have no hyphen
        if family and not intensity:  # the page of the family's grid
            return RunName("shift", seed, shift=family)
        try:
            value = float(intensity)
        except ValueError:
            value = math.nan
        if family and math.isfinite(value):
            return RunName("shift", seed, shift=family, intensity=value)
    raise InvalidParameterError("run_id", name, forms)


@dataclass(frozen=True)
class ResultsDir:
    """Paths of one study's results (see the module docstring), and its records."""

    root: Path

    def __post_init__(self):
        object.__setattr__(self, "root", Path(self.root))

    def record(self, run_id: str) -> Path:
        return self.root / "records" / f"{run_id}.json"

    def notebook(self, run_id: str) -> Path:
        return self.root / "notebooks" / f"{run_id}.ipynb"

    def failure(self, run_id: str) -> Path:
        return self.root / "failed" / f"{run_id}.json"

    def source_model(self, seed: int) -> Path:
        return self.root / "models" / f"{run_id('source', seed=seed)}.safetensors"

    def source_fingerprint(self, seed: int) -> Path:
        return self.root / "models" / f"{run_id('source', seed=seed)}.fingerprint.safetensors"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    def read_records(self) -> RecordsRead:
        """Every record of the study, the unreadable ones named (:func:`resque.cost.records.read_records`)."""
        return read_records(self.root / "records")

    def complete(self, run_id: str) -> bool:
        """True when `run_id` has a readable, complete record (a finished run)."""
        try:
            return load_record(self.record(run_id)).complete
        except RecordError:  # missing, partial or foreign files all mean: run it
            return False
