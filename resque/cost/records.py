"""One JSON record per run: what was trained, how, what RESQUE said before, what it cost.

The schema is versioned (:data:`SCHEMA`); :func:`load_record` reads the
previous versions (``resque-run/1``, which had no ``settings``, and
``resque-run/2``, whose series was per epoch under ``epochs``, with whole
epochs as costs and no check before the first update) and refuses others with
a clear message. Old records are read for inspection; a study refuses to
resume over them, since their settings differ. Records are written to a temporary file and
renamed, so a process killed while writing leaves either the previous file or
none, never a truncated one; and only a record with ``complete=True`` counts as
a finished run.

Schema ``resque-run/3`` (all keys always present):

=================  =====================================================================
key                meaning
=================  =====================================================================
schema             ``"resque-run/3"``
run_id             unique name of the run (e.g. ``shift-gaussian_noise-0.08-seed0``)
kind               ``"source"``, ``"shift"``, ``"task"`` or ``"scratch"``
experiment         what changed: ``{"shift": ..., "intensity": ...}`` or ``{"task": ...}``
seed               the run's seed
config             the :class:`~resque.cost.training.TrainConfig`, as a dict
model              ``{"name": ..., "kwargs": {...}}`` from the model registry
estimators         values computed *before* retraining, e.g. ``{"resque_dist": 0.07}``
evaluations        one row per validation check, the one before any update first
                   (``evaluation`` 0): ``epoch`` (fractional), cumulative ``steps`` and
                   ``samples``, ``val_loss``/``val_accuracy``, the interval's ``train_loss``,
                   and the tracker's costs of the interval since the previous check
                   (seconds, CPU seconds, gradient norms, parameter change, kWh...)
totals             whole-run costs, which are the costs *to the stopping evaluation*:
                   ``steps``, ``samples``, ``epochs`` (= samples / ``train_size``, a
                   fraction; 0 when the model met its target before any update),
                   ``evaluations``, ``evals_per_epoch`` (the resolution), train/eval/CPU
                   seconds, gradient norms (``grad_norm_last``: last full batch),
                   parameter change, FLOPs (``flops_per_sample`` x samples, so
                   proportional to samples), kWh, kg CO2-eq; ``target_accuracy`` (null for
                   a run to the plateau), ``final_val_accuracy`` (validation accuracy of
                   the weights the run ended with: ``a_src`` of a source model,
                   ``a_ref`` of a yardstick trained to its plateau), ``best_evaluation``;
                   a task's yardstick, trained on to its plateau, keeps what that whole
                   training cost under ``plateau`` (epochs, steps, seconds, kWh...)
stop_reason        one of :data:`~resque.cost.training.STOP_REASONS`; a run whose reason
                   is not ``reached`` (or ``plateau`` for a run without a target) is
                   *censored*: its costs are lower bounds (:attr:`RunRecord.censored`)
test_accuracy      accuracy on the test split after the last epoch (or null)
provenance         versions of resque / torch / Python, machine, git commit, UTC time
complete           true only once the run finished and everything above is filled
error              the error message of a failed run, else null
settings           the settings the run's results depend on (a study's profile fields, see
                   :meth:`resque.study.profiles.Profile.run_settings`); ``{}`` outside a study
replicates         the same retraining repeated with other retraining seeds (data order,
                   dropout, a task's new head), for test-retest reliability: one dict
                   per repeat, ``retrain_seed``, ``stop_reason``, ``censored``,
                   ``test_accuracy`` and its ``totals`` (the cost keys above); ``[]``
                   for a run without repeats (and in /3 records written before them)
=================  =====================================================================
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import RecordError
from ..io import write_json

__all__ = ["SCHEMA", "RunRecord", "RecordError", "RecordsRead", "load_record", "read_records", "provenance"]

SCHEMA = "resque-run/3"
#: Older schemas read by :func:`load_record` (upgraded in memory: their missing keys take their defaults,
#: their per-epoch ``epochs`` series becomes ``evaluations``).
READABLE_SCHEMAS = ("resque-run/1", "resque-run/2", SCHEMA)


@dataclass
class RunRecord:
    """One run's record (see the module docstring for the schema)."""

    run_id: str
    kind: str
    experiment: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=dict)
    estimators: dict[str, float] = field(default_factory=dict)
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    totals: dict[str, Any] = field(default_factory=dict)
    stop_reason: str = ""
    test_accuracy: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict)
    complete: bool = False
    error: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    replicates: list[dict[str, Any]] = field(default_factory=list)
    schema: str = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def censored(self) -> bool:
        """The run stopped without reaching its target: its costs are lower bounds of reaching it.

        A run to the plateau (no target) that stopped on its plateau is not censored.
        """
        from .training import FINISHED

        return self.stop_reason not in FINISHED

    def save(self, path: str | os.PathLike) -> Path:
        """Write the record as JSON, atomically (temporary file + rename)."""
        return write_json(path, self.to_dict(), allow_nan=True, default=_jsonable)


def _jsonable(value: Any) -> Any:
    """Turn numpy/torch scalars and paths into JSON values."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def load_record(path: str | os.PathLike, *, require_complete: bool = False) -> RunRecord:
    """Read a record written by :meth:`RunRecord.save`.

    Raises
    ------
    RecordError
        Missing file, invalid JSON, a schema other than :data:`SCHEMA`, unknown
        keys, or (with `require_complete`) a run that did not finish.
    """
    path = Path(path)
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise RecordError(f"No run record at {str(path)!r}.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RecordError(f"{str(path)!r} is not a JSON run record ({error}); delete it and rerun.") from None
    if not isinstance(values, dict) or values.get("schema") not in READABLE_SCHEMAS:
        found = values.get("schema") if isinstance(values, dict) else type(values).__name__
        raise RecordError(
            f"{str(path)!r} has schema {found!r}; this version of resque reads {' and '.join(map(repr, READABLE_SCHEMAS))}. "
            "Rerun the experiment, or read it with the resque version that wrote it."
        )
    if values.get("schema") != SCHEMA and "epochs" in values:
        values["evaluations"] = values.pop("epochs")  # resque-run/1 and /2: one row per epoch
    known = {f.name for f in fields(RunRecord)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise RecordError(f"{str(path)!r} has unknown keys {unknown} for schema {SCHEMA!r}.")
    record = RunRecord(**{**values, "schema": SCHEMA})
    if require_complete and not record.complete:
        raise RecordError(f"{str(path)!r} is the record of a run that did not finish ({record.error or 'no error recorded'}).")
    return record


@dataclass
class RecordsRead:
    """What :func:`read_records` found in a folder.

    Attributes
    ----------
    records : list of RunRecord
        Every readable record, complete or not, sorted by file name.
    unreadable : dict of str to str
        File name -> why it could not be read (corrupt, foreign schema...).
        Never dropped silently: pages and tables that count records name these.
    folder : Path
    missing : bool
        The folder does not exist (a study not run yet).
    """

    records: list[RunRecord]
    unreadable: dict[str, str]
    folder: Path
    missing: bool = False

    def __iter__(self):
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def complete(self, kind: str | None = None) -> list[RunRecord]:
        """The records of finished runs, of one `kind` if given."""
        return [r for r in self.records if r.complete and (kind is None or r.kind == kind)]

    def describe_unreadable(self) -> str:
        """One sentence naming the unreadable files and why, or ``""``."""
        if not self.unreadable:
            return ""
        names = "; ".join(f"{name}: {why}" for name, why in sorted(self.unreadable.items()))
        return f"{len(self.unreadable)} unreadable record file(s) in {str(self.folder)!r}: {names}"


def read_records(folder: str | os.PathLike) -> RecordsRead:
    """Every ``*.json`` record in `folder` (or in its ``records/`` subfolder), with the unreadable ones named.

    This is the one reader of record folders: the study's analysis, book,
    energy page, summary and the forecast use it (the runner reads the records
    of single experiments with :func:`load_record`), so a corrupt file is
    treated the same way everywhere: it is listed in ``unreadable`` with the
    reason, never skipped without a word.
    """
    root = Path(folder)
    folder = root / "records" if (root / "records").is_dir() else root
    if not folder.is_dir():
        return RecordsRead([], {}, folder, missing=True)
    records, unreadable = [], {}
    for path in sorted(folder.glob("*.json")):
        try:
            records.append(load_record(path))
        except RecordError as error:  # named by its file name: the reason travels into pages and tables
            unreadable[path.name] = str(error).replace(repr(str(path)), path.name)
    return RecordsRead(records, unreadable, folder)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=5, check=True,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance() -> dict[str, Any]:
    """Versions, machine and time, saved with every record."""
    import torch

    from .._version import __version__

    info = {
        "resque": __version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "git_commit": _git_commit(),
        "utc_time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return info
