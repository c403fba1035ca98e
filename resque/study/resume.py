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
from .results import SUMMARY_IDS, ResultsDir, scratch_run_id

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


def _expected_settings(experiment: Experiment, profile: Profile) -> dict:
    p = experiment.parameters
    return profile.run_settings(experiment.kind, p["seed"], shift=p.get("shift"), intensity=p.get("intensity"),
                                task=p.get("task"))


def _source_digest(results: ResultsDir, seed: int) -> str:
    """The weights digest of seed `seed`'s source model, from its fingerprint file ("" when unreadable)."""
    try:
        return ClassSums.load(results.source_fingerprint(seed)).model_digest
    except Exception:  # missing or broken: the source's own state says so, and it runs again first
        return ""


def experiment_state(experiment: Experiment, results: ResultsDir, profile: Profile) -> State:
    """The :class:`State` of `experiment` in `results`, under `profile` (see the module docstring)."""
    run_id = experiment.run_id
    if results.failure(run_id).exists():
        return State(run_id, "failed", f"its last attempt failed (see {results.failure(run_id)})")
    if experiment.kind in SUMMARY_IDS:  # no record of their own: the executed notebook is their result
        problem = notebook_problem(results.notebook(run_id))
        return State(run_id, "to run", problem) if problem else State(run_id, "done")
    try:
        record = load_record(results.record(run_id))
    except RecordError as error:
        missing = not results.record(run_id).exists()
        return State(run_id, "to run", "no record yet" if missing else f"its record is unreadable ({error})")
    if not record.complete:
        return State(run_id, "to run", "its record is of a run that did not finish")
    owned = []
    if experiment.kind == "source":
        seed = experiment.parameters["seed"]
        owned = [(results.source_model(seed), "checkpoint"), (results.source_fingerprint(seed), "fingerprint")]
    for path, what in owned:
        if not path.is_file() or path.stat().st_size == 0:
            return State(run_id, "to run", f"its {what} {path.name} is missing")
    scratch_id = record.experiment.get("scratch_run_id") or (scratch_run_id(run_id) if profile.scratch
                                                             and experiment.kind != "source" else None)
    if scratch_id:
        try:
            if not load_record(results.record(scratch_id)).complete:
                return State(run_id, "to run", f"its yardstick record {scratch_id}.json is of an unfinished run")
        except RecordError as error:
            return State(run_id, "to run", f"its yardstick record {scratch_id}.json is missing or unreadable ({error})")
    if experiment.kind != "source":  # made from the source model that is on disk now?
        made_from = record.experiment.get("source_model_digest")
        current = _source_digest(results, experiment.parameters["seed"])
        if made_from and current and made_from != current:
            return State(run_id, "to run", "its source model was trained again since this run")
    problem = notebook_problem(results.notebook(run_id))
    if problem:
        return State(run_id, "to run", problem)
    changed = settings_diff(_expected_settings(experiment, profile), record.settings)
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
