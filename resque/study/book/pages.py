"""The generated Markdown pages: overviews of sources, shifts and tasks, and the snippets other pages include."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ...cost.records import RunRecord
from ...errors import ResqueError
from ..results import parse_run_id
from .collect import GENERATED, SINGLE_PAGES, _Run, _Study
from .notebooks import _headline_png, _read_notebook


def _number(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    try:
        return f"{float(value):.{digits}g}"
    except (TypeError, ValueError):
        return str(value)


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell and link text."""
    for char in "|[]":
        text = text.replace(char, "\\" + char)
    return text.replace("\n", " ")


def _energy(record: RunRecord | None) -> str:
    if record is None:
        return "–"
    kwh = record.totals.get("energy_kwh")
    if kwh is None:
        return "–"
    estimated = record.totals.get("energy_estimated_kwh") or 0.0
    return f"{kwh:.2g}" + ("*" if estimated >= 0.5 * kwh else "")


def _epochs(record: RunRecord | None) -> str:
    """The epochs to target; ``≥ 10`` when the run stopped before it (a lower bound); ``–`` without a run."""
    if record is None:
        return "–"
    return ("≥ " if record.censored else "") + _number(record.totals.get("epochs"))


def _notebook_link(run: _Run, text: str) -> str:
    """A link from a page in _generated/ to the run's notebook."""
    return f"[{_cell(text)}]({run.link})"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


NO_RUNS = "No experiment of this kind ran in this study (see the profile on {doc}`../reproduce`)."


def _sources_page(runs: list[_Run]) -> str:
    parts = [
        "# Source models\n",
        "Each seed's source model is trained from scratch on the clean original data "
        "(S0+S2). Every shift and task experiment of that seed starts from it. "
        "Stop reasons: `reached` (the target validation accuracy), `cutoff-1` / "
        "`cutoff-2` (came close, then stalled), `cap` (the epoch limit), `diverged`. A star (\\*) marks "
        "an energy estimated from the processor's TDP.\n",
    ]
    if not runs:
        parts.append(NO_RUNS)
    else:
        rows = [[_notebook_link(r, r.title), _epochs(r.record), _status(r, r.record),
                 _number(r.record.test_accuracy if r.record else None), _energy(r.record)] for r in runs]
        parts.append(_table(["notebook", "epochs", "stop", "test accuracy", "energy (kWh)"], rows))
    return "\n".join(parts) + "\n"


def _family_of(run: _Run, intensity: float | None, record: RunRecord | None) -> tuple[str, float, int]:
    """Family, intensity and seed of one shift run of `run`'s notebook: from its record, else from the run id."""
    name = parse_run_id(run.run_id)
    experiment = record.experiment if record else {}
    family = experiment.get("shift") or name.shift
    intensity = experiment.get("intensity", intensity if intensity is not None else name.intensity)
    seed = record.seed if record else name.seed
    return str(family), (float("nan") if intensity is None else float(intensity)), int(seed or 0)


def _status(run: _Run, record: RunRecord | None) -> str:
    """One run's stop reason, or why there is none.

    The runs of a page (a shift family's intensities, a seed's tasks) are runs
    of their own: those whose record is complete keep their stop reason even
    when a later one failed.
    """
    if record is not None and not record.complete:
        return "**failed**"
    if run.failed is not None and (record is None or not run.page):
        return "**failed**"
    if record is None:
        return "no record"
    return record.stop_reason or "–"


def _shifts_page(runs: list[_Run]) -> str:
    parts = [
        "# Distribution shifts\n",
        "One section per shift family; each intensity links to the notebook of its family and seed. For each run: "
        "RESQUE_dist computed *before* retraining (unpaired, the authors' protocol; *paired*: "
        "the same images clean and shifted), the source model's accuracy drop on the shifted "
        "data (the simplest rival predictor), then what retraining cost: epochs, the rule that "
        "stopped it, and *scratch*, the epochs a fresh model needed on the same data to "
        "the same target (the yardstick; `≥` marks one that stopped before reaching it, a lower bound; `–` "
        "where the profile trains no yardstick for that seed, `shift_scratch_seeds`). Each run's energy is on "
        "its page and on {doc}`energy`.\n",
    ]
    if not runs:
        parts.append(NO_RUNS)
    families: dict[str, list[tuple[float, int, _Run, RunRecord | None, RunRecord | None]]] = {}
    for run in runs:
        for intensity, record, scratch in run.parts or [(None, None, None)]:  # no record: still a row
            family, intensity, seed = _family_of(run, intensity, record)
            families.setdefault(family, []).append((intensity, seed, run, record, scratch))
    for family in sorted(families):
        parts.append(f"## {family.replace('_', ' ').capitalize()}\n")
        rows = []
        for intensity, seed, run, record, scratch in sorted(families[family], key=lambda item: (item[0], item[1])):
            estimators = record.estimators if record else {}
            rows.append([
                _notebook_link(run, _number(intensity)), str(seed), _number(estimators.get("resque_dist")),
                _number(estimators.get("resque_dist_paired")), _number(estimators.get("accuracy_drop")),
                _epochs(record), _status(run, record), _epochs(scratch),
            ])
        header = ["intensity", "seed", "RESQUE_dist", "paired", "acc. drop", "epochs", "stop", "scratch"]
        if len({item[1] for item in families[family]}) == 1:  # one seed: say it once, keep the table narrow
            parts.append(f"Seed {families[family][0][1]}.\n")
            header, rows = header[:1] + header[2:], [row[:1] + row[2:] for row in rows]
        parts.append(_table(header, rows) + "\n")
    records = [record for run in runs for _, record, _ in run.parts if record is not None]
    if records:
        parts.append(_spread_section(records))
    return "\n".join(parts) + "\n"


def _spread_section(records: list[RunRecord]) -> str:
    """Does the cost spread? The design criteria (resque.study.design) on this study's shift runs."""
    from ..design import MAX_CENSORED, MIN_IQR, meets_spread, spread

    table = spread(records)
    ok, problems = meets_spread(table)
    rows = [[_cell(str(family)), str(int(row["runs"])), str(int(row["distinct"])), _number(row["min"]),
             _number(row["median"]), _number(row["max"]), _number(row["iqr"]),
             f"{int(row['censored'])} ({row['censored_share']:.0%})"] for family, row in table.iterrows()]
    verdict = ("**The criteria hold.**" if ok else "**The criteria do not hold**: " + "; ".join(problems) + ".")
    return ("## Does the cost spread?\n\n"
            "A study can only say whether an index predicts a cost if that cost varies. The criteria of the "
            f"design (method page): no family where every run costs the same, an interquartile range of at "
            f"least {MIN_IQR:g} epoch, at most {MAX_CENSORED:.0%} of the runs censored. Cost in epochs to the "
            "target, every seed pooled:\n\n"
            + _table(["family", "runs", "distinct costs", "min", "median", "max", "IQR", "censored"], rows)
            + f"\n\n{verdict}\n")


def _task_of(run: _Run, task: str | None, record: RunRecord | None) -> tuple[str, int]:
    """Task and seed of one task run of `run`'s notebook: from its record, else from the page or run id."""
    name = parse_run_id(run.run_id)
    experiment = record.experiment if record else {}
    seed = record.seed if record else name.seed
    return str(experiment.get("task") or task or name.task), int(seed or 0)


def _tasks_page(runs: list[_Run]) -> str:
    parts = [
        "# Task changes\n",
        "One section per new task; each seed links to the notebook of that seed's tasks. RESQUE_task is "
        "`1 - ARI` of k-means on the source model's embeddings of the new task; the default variant (mean "
        "pooling, k-means started at the true class centroids) is shown with the flattened-embedding "
        "variant beside it. Retraining replaces the last layer and fine-tunes everything; *scratch* is the "
        "epochs a fresh model needed to the same target. Energy in kWh; a star (\\*) marks a TDP-based "
        "estimate.\n",
    ]
    if not runs:
        parts.append(NO_RUNS)
    tasks: dict[str, list[tuple[int, _Run, RunRecord | None, RunRecord | None]]] = {}
    for run in runs:
        for key, record, scratch in run.parts or [(None, None, None)]:  # no record: still a row
            task, seed = _task_of(run, key, record)
            tasks.setdefault(task, []).append((seed, run, record, scratch))
    for task in sorted(tasks):
        parts.append(f"## {task}\n")
        rows = []
        for seed, run, record, scratch in sorted(tasks[task], key=lambda item: item[0]):
            estimators = record.estimators if record else {}
            classes = record.experiment.get("num_classes") if record else None
            rows.append([
                _notebook_link(run, f"seed {seed}"), _number(classes), _number(estimators.get("resque_task")),
                _number(estimators.get("resque_task_flatten_centroids")), _epochs(record), _status(run, record),
                _epochs(scratch), _energy(record),
            ])
        parts.append(_table(["run", "classes", "RESQUE_task", "flattened", "epochs", "stop",
                             "scratch", "kWh"], rows) + "\n")
    return "\n".join(parts) + "\n"


def _unreadable_note(unreadable: dict[str, str]) -> str:
    """A closing note naming the record files that could not be read (empty when there are none)."""
    if not unreadable:
        return ""
    items = "\n".join(f"- `{_cell(name)}`: {_cell(why)}" for name, why in sorted(unreadable.items()))
    return (f"\n```{{warning}}\n{len(unreadable)} record file(s) of this study could not be read, so the tables "
            f"above lack them; `resque study run` rebuilds them:\n\n{items}\n```\n")


def _missing_page(run_id: str) -> str:
    return (
        f"# {SINGLE_PAGES[run_id]}\n\n"
        f"The `{run_id}` notebook has not run in this study yet, so there is nothing to show. "
        "Run the whole study (`resque study run`, see {doc}`../reproduce`) and rebuild the book.\n"
    )


def _headline_snippet(study: _Study, generated: Path) -> str:
    analysis = study.single.get("analysis")
    png, tagged = _headline_png(_read_notebook(analysis.source)) if analysis is not None else (None, False)
    if png is None:
        return (
            "*The headline figure appears here once the study's analysis notebook has run: "
            "see {doc}`reproduce`.*\n"
        )
    path = generated / "figures" / "headline.png"
    path.write_bytes(png)
    caption = (
        "RESQUE before retraining against what retraining then cost, every run of the study pooled."
        if tagged else "The first figure of the results page."
    )
    return (
        f"```{{figure}} /book/{GENERATED}/figures/headline.png\n"
        ":name: fig-headline\n"
        ":width: 90%\n\n"
        f"{caption} The statistics, per shift family and per measure, with their confidence "
        "intervals, are on {doc}`the results page <_generated/analysis>`.\n"
        "```\n"
    )


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    value = float(value)
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def _profile_of(study: _Study) -> str:
    """The profile a study ran (from its notebooks' parameters), else its folder's name."""
    everything = [run for runs in study.runs.values() for run in runs] + list(study.single.values())
    profile = next((str(r.papermill.get("parameters", {}).get("profile")) for r in everything
                    if r.papermill.get("parameters", {}).get("profile")), study.root.name)
    return Path(profile).stem if profile.endswith((".yaml", ".yml")) else profile


def _machine_of(study: _Study) -> dict:
    """The provenance (platform, CPU, cores, torch) of the study's first record that has one."""
    everything = [run for runs in study.runs.values() for run in runs] + list(study.single.values())
    return next((record.provenance for r in everything for _, record, _ in r.parts
                 if record is not None and record.provenance), {})


def _runner_summary(study: _Study) -> dict:
    """The runner's ``summary.json`` of the study (its wall time and throughput), or {} when unreadable."""
    try:
        content = json.loads((study.root / "summary.json").read_text())
    except (OSError, ValueError):
        return {}
    return content if isinstance(content, dict) else {}


def _teaching_snippet(study: _Study) -> str:
    """The teachers' page: what the study behind this book cost to run, and on what machine, measured."""
    profile, machine = _profile_of(study), _machine_of(study)
    wall = _runner_summary(study).get("wall_seconds")
    pages = sum(len(runs) for runs in study.runs.values()) + len(study.single)
    if wall is None:
        text = (f"The study behind this book (profile `{_cell(profile)}`, {pages} notebooks) left no "
                "`summary.json`, so its wall time is not known here.")
    else:
        text = (f"The study behind this book (profile `{_cell(profile)}`, {pages} notebooks) took "
                f"**{_seconds(wall)}** of wall time")
        if machine:
            processor = machine.get("processor") or (f"an {machine['machine']} machine" if machine.get("machine")
                                                     else "an unknown processor")
            text += (f" on {machine.get('cpu_count', '?')} CPU cores ({_cell(str(processor))}, "
                     f"{_cell(str(machine.get('cuda_device') or 'no GPU'))})")
        text += "; the {doc}`reproduce` page breaks it down."
    return text + "\n"


def _timings_snippet(study: _Study) -> str:
    everything = [run for runs in study.runs.values() for run in runs] + list(study.single.values())
    profile = _profile_of(study)
    rows = []
    total = 0.0
    labels = {"source": "source models", "shift": "shift experiments", "task": "task experiments"}
    for kind, runs in [(k, v) for k, v in study.runs.items()] + [(k, [v]) for k, v in study.single.items()]:
        durations = [float(r.papermill["duration"]) for r in runs if r.papermill.get("duration") is not None]
        if not runs:
            continue
        total += sum(durations)
        rows.append([labels.get(kind, f"`{kind}` notebook"), str(len(runs)),
                     _seconds(sum(durations)) if durations else "–"])
    rows.append(["**all notebooks**", str(len(everything)), f"**{_seconds(total)}**" if total else "–"])
    starts = sorted(str(r.papermill["start_time"]) for r in everything if r.papermill.get("start_time"))
    ends = sorted(str(r.papermill["end_time"]) for r in everything if r.papermill.get("end_time"))
    machine = _machine_of(study)
    lines = [
        f"Measured on the study this book was built from (profile `{_cell(profile)}`), "
        "from the execution times papermill stores in each notebook:\n",
        _table(["what", "notebooks", "execution time"], rows),
        "",
    ]
    content = _runner_summary(study)
    if content:
        wall, throughput = content.get("wall_seconds"), content.get("throughput") or {}
        if wall is not None:
            lines.append(f"The runner's own summary (`summary.json`) gives **{_seconds(wall)}** of wall time "
                         "for the whole study, kernel start-ups and waiting included.\n")
        if throughput.get("ratio") is not None:
            lines.append(f"Of that, the runs spent {_seconds(throughput.get('train_eval_seconds'))} training and "
                         "evaluating (their records' `train_seconds + eval_seconds`, yardsticks included): wall / "
                         f"(train + eval) = **{throughput['ratio']:.2f}**; the rest is overhead (kernel starts, "
                         "imports, loading data, RESQUE and the other predictors, figures).\n")
    if starts and ends:
        lines.append(f"First notebook started {starts[0]}, last one ended {ends[-1]} (UTC).\n")
    if machine:
        cpu = machine.get("processor") or machine.get("machine") or "unknown CPU"
        gpu = machine.get("cuda_device") or "no GPU"
        lines.append(f"Machine: {_cell(str(machine.get('platform', '')))}, {_cell(str(cpu))}, "
                     f"{machine.get('cpu_count', '?')} CPU cores, torch {machine.get('torch', '?')} "
                     f"with {machine.get('torch_threads', '?')} threads, {_cell(str(gpu))}.\n")
    return "\n".join(lines) + "\n"


def _profiles_snippet() -> str:
    """A table of the shipped profiles, read from their YAML files (so it never goes stale)."""
    from ..profiles import expand, list_profiles, load_profile

    rows = []
    for name in list_profiles():
        try:
            profile = load_profile(name)
        except ResqueError as error:  # a profile this machine cannot load is shown, not hidden
            rows.append([f"`{name}`", _cell(str(error)), "", "", "", "", ""])
            continue
        grid = sum(len(v) for v in profile.shifts.values())
        per_class = "all" if profile.n_per_class is None else str(profile.n_per_class)
        rows.append([
            f"`{name}`", _cell(profile.description), f"{profile.dataset}, {profile.model}", per_class,
            f"{len(profile.shifts)} families, {grid} shifts", str(len(profile.tasks)),
            f"{len(profile.seeds)} ({len(expand(profile, name, 'results'))} notebooks)",
        ])
    return _table(["profile", "what", "data, model", "images per class", "shifts", "tasks", "seeds"], rows) + "\n"
