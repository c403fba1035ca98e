"""What of a study is already done, and what must run again: the resume rule.

An experiment is done only when everything it owns is there and whole:

- its record, readable and complete, made with the settings the profile asks
  for now (:meth:`~resque.study.profiles.Profile.run_settings`);
- the records it owns besides (the from-scratch yardstick of a shift or task
  run) and, for a source model, its checkpoint and fingerprint;
- its executed notebook, which papermill finished (a notebook cut off by a
  kill has no end time and cells still "pending");
- no failure file from its last attempt.

Anything missing or broken is named in :attr:`State.reason` and the experiment
runs again, rebuilding all it owns. Records made with other settings are never
mixed with new ones: :func:`check_settings` refuses them unless the caller asks
for those experiments to run again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..cost.records import RecordError, load_record
from ..errors import SettingsChangedError
from ..index.dist import ClassSums
from .profiles import Experiment, Profile
from .results import ResultsDir, scratch_run_id

__all__ = ["State", "experiment_state", "check_settings", "notebook_problem", "settings_diff"]


@dataclass(frozen=True)
class State:
    """Where one experiment stands before a run.

    Attributes
    ----------
    run_id : str
    status : {"done", "to run", "changed", "failed"}
        ``"changed"``: complete, but made with other settings (see `changed`).
    reason : str
        Why it is not done ("" when it is).
    changed : tuple of str
        The settings that differ from the profile's (``"retrain.lr"``...).
    """

    run_id: str
    status: str
    reason: str = ""
    changed: tuple[str, ...] = ()

    @property
    def done(self) -> bool:
        return self.status == "done"


def notebook_problem(path: Path) -> str:
    """Why the executed notebook at `path` is not a finished papermill run, or ``""`` when it is."""
    if not path.exists():
        return "no executed notebook"
    try:
        notebook = json.loads(path.read_text())
        papermill = notebook.get("metadata", {}).get("papermill", {})
        cells = notebook.get("cells", [])
    except (OSError, ValueError, AttributeError):
        return f"its executed notebook {path.name} is not readable JSON"
    if not papermill.get("end_time"):
        return f"its executed notebook {path.name} was cut off (papermill never finished it)"
    unfinished = [c for c in cells if c.get("metadata", {}).get("papermill", {}).get("status") in ("pending", "running")]
    if unfinished:
        return f"its executed notebook {path.name} has {len(unfinished)} cell(s) that never ran"
    return ""


def _flatten(values: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def settings_diff(expected: dict, recorded: dict) -> list[str]:
    """The settings (dotted names) whose values differ, as ``"retrain.lr: 0.001 -> 0.002"``."""
    if not recorded:
        return ["settings: not recorded (an older resque wrote this record, so its settings are unknown)"]
    old, new = _flatten(recorded), _flatten(json.loads(json.dumps(expected)))  # JSON types on both sides
    return [f"{key}: {old.get(key, '(absent)')!r} -> {new.get(key, '(absent)')!r}"
            for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


def _source_digest(results: ResultsDir, seed: int) -> str:
    """The weights digest of seed `seed`'s source model, from its fingerprint file ("" when unreadable)."""
    try:
        return ClassSums.load(results.source_fingerprint(seed)).model_digest
    except Exception:  # missing or broken: the source's own state says so, and it runs again first
        return ""


def _run_state(kind: str, run_id: str, parameters: dict, results: ResultsDir, profile: Profile) -> State:
    """The state of one record an experiment owns: ``"done"``, ``"to run"`` (with why) or ``"changed"``."""
    try:
        record = load_record(results.record(run_id))
    except RecordError as error:
        missing = not results.record(run_id).exists()
        return State(run_id, "to run", "no record yet" if missing else f"its record is unreadable ({error})")
    if not record.complete:
        return State(run_id, "to run", "its record is of a run that did not finish")
    owned = []
    if kind == "source":
        seed = parameters["seed"]
        owned = [(results.source_model(seed), "checkpoint"), (results.source_fingerprint(seed), "fingerprint")]
    for path, what in owned:
        if not path.is_file() or path.stat().st_size == 0:
            return State(run_id, "to run", f"its {what} {path.name} is missing")
    scratch_id = record.experiment.get("scratch_run_id") or (
        scratch_run_id(run_id) if kind != "source" and profile.trains_scratch(kind, parameters["seed"]) else None)
    if scratch_id:
        try:
            if not load_record(results.record(scratch_id)).complete:
                return State(run_id, "to run", f"its yardstick record {scratch_id}.json is of an unfinished run")
        except RecordError as error:
            return State(run_id, "to run", f"its yardstick record {scratch_id}.json is missing or unreadable ({error})")
    if kind != "source":  # made from the source model that is on disk now?
        made_from = record.experiment.get("source_model_digest")
        current = _source_digest(results, parameters["seed"])
        if made_from and current and made_from != current:
            return State(run_id, "to run", "its source model was trained again since this run")
    expected = profile.run_settings(kind, parameters["seed"], shift=parameters.get("shift"),
                                    intensity=parameters.get("intensity"), task=parameters.get("task"))
    changed = settings_diff(expected, record.settings)
    if changed:
        return State(run_id, "changed", "made with other or unknown settings: " + "; ".join(changed), tuple(changed))
    return State(run_id, "done")


def experiment_state(experiment: Experiment, results: ResultsDir, profile: Profile) -> State:
    """The :class:`State` of `experiment` in `results`, under `profile` (see the module docstring).

    An experiment that writes several records (a shift family's grid) is done
    when each of them is; the first that is not says why, prefixed with its run id.
    """
    run_id = experiment.run_id
    if results.failure(run_id).exists():
        return State(run_id, "failed", f"its last attempt failed (see {results.failure(run_id)})")
    runs = experiment.runs()
    changed: list[str] = []
    for each_id, parameters in runs:
        state = _run_state(experiment.kind, each_id, parameters, results, profile)
        prefix = f"{each_id}: " if len(runs) > 1 or each_id != run_id else ""
        if state.status == "to run":
            return State(run_id, "to run", prefix + state.reason)
        changed += [prefix + field for field in state.changed]
    # no record of their own (the summary pages), or all records whole: the executed notebook must be too
    problem = notebook_problem(results.notebook(run_id))
    if problem:
        return State(run_id, "to run", problem)
    if changed:
        return State(run_id, "changed", "made with other or unknown settings: " + "; ".join(changed), tuple(changed))
    return State(run_id, "done")


def check_settings(states: dict[str, State], results: ResultsDir, *, rerun_changed: bool) -> None:
    """Refuse to mix settings in one folder: raise :class:`SettingsChangedError` unless `rerun_changed`."""
    changed = {run_id: list(s.changed) for run_id, s in states.items() if s.status == "changed"}
    if not changed or rerun_changed:
        return
    shown = list(changed.items())[:5]
    lines = [f"  {run_id}: {'; '.join(fields)}" for run_id, fields in shown]
    if len(changed) > len(shown):
        lines.append(f"  ... and {len(changed) - len(shown)} more")
    raise SettingsChangedError(
        f"{len(changed)} run(s) in {results.root} were made with other settings than the profile now asks for, "
        "or do not say which:\n"
        + "\n".join(lines)
        + "\nA results folder never mixes settings. Either write to a new folder (--results DIR, or "
          "results_dir=), or run those experiments again here, replacing their records (--rerun-changed, "
          "or rerun_changed=True).",
        changed,
    )
