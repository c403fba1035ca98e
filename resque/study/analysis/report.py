"""The study's answers as Markdown tables, from the runs table alone (``resque study report``).

Every number about results that the README or the book quotes comes from here:
:func:`report_markdown` turns a runs table (:func:`~resque.study.analysis.load_records`,
or the CSV that ``resque study report --save-table`` writes) into the tables, so
that a test can check a quoted table against what the command prints.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ...cost.measures import MEASURES
from ...predictors.registry import list_predictors
from .forecast_eval import forecast_comparison
from .questions import (add_baselines, compare_predictors, harrell_c, orient, predictor_label,
                        within_between)

__all__ = ["DISTINCT", "REDUNDANT", "study_report", "answer_sentences", "report_markdown", "shift_answers",
           "task_answers"]

#: The costs that measure different things; the others follow from one of them.
DISTINCT = ("epochs", "grad_norm_last", "grad_norm_mean", "param_change_from_start", "energy_kwh")
#: Cost -> why it is not reported on its own.
REDUNDANT = {
    "steps": "steps per epoch x epochs (same training set in a run)",
    "samples": "training-set size x epochs",
    "train_flops": "FLOPs of one step x samples: proportional to samples",
    "carbon_kg": "energy x the grid's carbon intensity: proportional to energy",
    "train_seconds": "energy is a TDP-based estimate on this machine, tracking time",
}


def _cost_label(measure: str) -> str:
    m = MEASURES[measure]
    return m.label + (" (estimate)" if m.estimate else "")


def _number(value, digits: int = 2) -> str:
    return "n/a" if value is None or (isinstance(value, float) and not math.isfinite(value)) else f"{value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _present(frame: pd.DataFrame, names, kind: str) -> list[str]:
    runs = frame[frame["kind"] == kind]
    return [n for n in names if n in runs and np.isfinite(runs[n].to_numpy(dtype=float)).sum() >= 3]


def shift_answers(frame: pd.DataFrame, measures=DISTINCT) -> pd.DataFrame:
    """Per cost, for RESQUE_dist: within and between families, beyond the intensity, Harrell's C, test-retest."""
    frame = add_baselines(frame)
    runs = frame[frame["kind"] == "shift"]
    rows = []
    for measure in measures:
        if measure not in runs or not np.isfinite(runs[measure].to_numpy(dtype=float)).any():
            continue
        answer = within_between(frame, "resque_dist", measure)
        c, _ = harrell_c(orient(runs, "resque_dist"), runs[measure], runs["censored"])
        retest = repeatability_of(frame, measure, "shift")
        rows.append({"measure": measure, **answer, "harrell_c": c, "retest": retest})
    return pd.DataFrame(rows)


def repeatability_of(frame: pd.DataFrame, measure: str, kind: str) -> float:
    """Spearman rho of a cost with its repeat (``repeat_<measure>``), both finished; NaN without repeats."""
    from ..design import retest_statistics  # the same core as `resque study spread` (design.repeatability)

    column = f"repeat_{measure}"
    if column not in frame:
        return float("nan")
    runs = frame[frame["kind"] == kind]
    finished = (~runs["censored"].to_numpy(dtype=bool)
                & ~runs["repeat_censored"].astype("boolean").fillna(True).to_numpy(dtype=bool))
    return float(retest_statistics(runs[measure], runs[column], finished)["spearman"])


def task_answers(frame: pd.DataFrame, measures=DISTINCT) -> pd.DataFrame:
    """Per cost, for every task predictor: Spearman rho (censored runs out) and Harrell's C (censored kept)."""
    runs = frame[frame["kind"] == "task"]
    rows = []
    for measure in measures:
        if measure not in runs:
            continue
        for name in _present(frame, list_predictors("task"), "task"):
            finished = runs[~runs["censored"].to_numpy(dtype=bool)]
            x, y = orient(finished, name), finished[measure].to_numpy(dtype=float)
            keep = np.isfinite(x) & np.isfinite(y)
            rho = (float(pd.Series(x[keep]).corr(pd.Series(y[keep]), method="spearman"))
                   if keep.sum() >= 3 and np.ptp(x[keep]) > 0 and np.ptp(y[keep]) > 0 else float("nan"))
            c, _ = harrell_c(orient(runs, name), runs[measure], runs["censored"])
            rows.append({"measure": measure, "predictor": name, "n": int(keep.sum()), "spearman": rho, "harrell_c": c})
    return pd.DataFrame(rows)


def report_markdown(frame: pd.DataFrame, *, n_boot: int = 2000, seed: int = 0, measures=DISTINCT) -> str:
    """The study's answers as Markdown: RESQUE_dist per cost, the paired comparisons, the task predictors.

    Parameters
    ----------
    frame : pandas.DataFrame
        A runs table (:func:`~resque.study.analysis.load_records`).
    n_boot, seed : int
        Resamples and seed of the two-way bootstrap of the paired comparisons.
    """
    frame = add_baselines(frame)
    shift_runs = frame[frame["kind"] == "shift"]
    parts = []
    n_seeds = int(shift_runs["seed"].nunique()) if len(shift_runs) else 0
    parts.append(f"Shift runs: {len(shift_runs)} ({int(shift_runs['censored'].sum()) if len(shift_runs) else 0} "
                 f"censored), {shift_runs['family'].nunique() if len(shift_runs) else 0} families, {n_seeds} source "
                 f"seed{'' if n_seeds == 1 else 's'}. Task runs: {int((frame['kind'] == 'task').sum())}. Correlations leave censored runs "
                 "out; Harrell's C keeps them as censored.")
    if n_seeds and n_seeds < 3:
        parts.append("With fewer than 3 source seeds, the intervals ignore the variation between seeds.")
    answers = shift_answers(frame, measures)
    if len(answers):
        parts.append("### Does RESQUE_dist predict each cost?\n\n" + _table(
            ["cost", "runs", "within families (ρ)", "between families (ρ, n)", "beyond the intensity (partial ρ)",
             "Harrell's C", "test-retest ρ (ceiling)"],
            [[_cost_label(r["measure"]), str(r["n"]), _number(r["within"]),
              f"{_number(r['between'])} ({r['n_families']})", _number(r["beyond_intensity"]),
              _number(r["harrell_c"]), _number(r["retest"])] for _, r in answers.iterrows()]))
    candidates = _present(frame, list_predictors("shift"), "shift")
    if "resque_dist" in candidates:
        others = [name for name in candidates if name != "resque_dist"]
        rows = []
        for measure in measures:
            if measure not in shift_runs or not np.isfinite(shift_runs[measure].to_numpy(dtype=float)).any():
                continue
            table = compare_predictors(frame, others, measure, reference="resque_dist", n_boot=n_boot, seed=seed)
            for _, r in table.iterrows():
                rows.append([_cost_label(measure), predictor_label(r["predictor"]), _number(r["rho"]), _number(r["rho_reference"]),
                             f"{_number(r['difference'])} [{_number(r['low'])}, {_number(r['high'])}]",
                             _number(r["p_holm"], 3), r["verdict"]])
        header = ["predictor", "ρ", "ρ RESQUE_dist", "difference [95 % CI]", "p (Holm)", "verdict"]
        costs = list(dict.fromkeys(row[0] for row in rows))
        title = "### Which predictor is best? Each against RESQUE_dist, paired"
        if len(costs) == 1:  # one cost: in the title
            title += f" ({costs[0].lower()})"
        # one table per cost, the cost named above it rather than in every row (narrow enough for a page)
        tables = [(f"**{cost}**\n\n" if len(costs) > 1 else "")
                  + _table(header, [row[1:] for row in rows if row[0] == cost]) for cost in costs]
        if rows:
            parts.append(title + "\n\n"
                         "Spearman ρ of each predictor (turned so that higher predicts more retraining) and of "
                         "RESQUE_dist on the same runs, pooled over every shift run (the within-family figure above "
                         "averages the families instead); the difference with its 95 % interval over two-way "
                         f"bootstrap resamples of seeds and experiments ({n_boot}); p adjusted by Holm over the "
                         "comparisons of one cost.\n\n" + "\n\n".join(tables))
    if measures and "resque_dist" in shift_runs and len(shift_runs) >= 5:
        forecast = forecast_comparison(frame, measures[0])
        if len(forecast):
            parts.append(f"### How good is the forecast? {_cost_label(measures[0])}, 90 % intervals\n\n"
                         "The forecast is what `resque forecast` fits: a line of the cost on RESQUE_dist, with "
                         "censored runs as the lower bounds they are (a right-censored normal regression). Beside "
                         "it, the least-squares line without the censored runs, and the baselines: a line on the "
                         "intensity rank, and nothing (a constant). Each experiment (all its seeds), then each family, "
                         "held out in turn; the held-out runs that reached their target are scored, which favours "
                         "the fits that leave censored runs out.\n\n"
                         + _table(["held out", "forecaster", "runs", "MAE", "MdAPE", "coverage", "mean width"],
                                  [[r["held_out"], r["forecaster"], str(r["n"]), _number(r["mae"]),
                                    "n/a" if not math.isfinite(r["mdape"]) else f"{100 * r['mdape']:.0f} %",
                                    "n/a" if not math.isfinite(r["coverage"]) else f"{100 * r['coverage']:.0f} %",
                                    _number(r["width"])] for _, r in forecast.iterrows()])
                         + "\n\n" + _forecast_verdict(forecast))
    tasks = task_answers(frame, measures[:1])
    if len(tasks):
        parts.append("### Task changes: each predictor and the epochs\n\n" + _table(
            ["predictor", "runs", "Spearman ρ", "Harrell's C"],
            [[predictor_label(r["predictor"]), str(r["n"]), _number(r["spearman"]), _number(r["harrell_c"])]
             for _, r in tasks.sort_values("spearman", ascending=False, na_position="last").iterrows()]))
    parts.append("Costs not reported on their own: " + "; ".join(
        f"{MEASURES[name].label.lower()} ({why})" for name, why in REDUNDANT.items()) + ".")
    return "\n\n".join(parts) + "\n"



def _forecast_verdict(forecast: pd.DataFrame) -> str:
    """One sentence per held-out scheme: does the forecast beat a constant and the intensity rank on MAE?"""
    sentences = []
    for scheme, rows in forecast.groupby("held_out", sort=False):
        mae = dict(zip(rows["forecaster"], rows["mae"]))
        ours, constant, rank = (mae.get(name, float("nan")) for name in
                                ("RESQUE_dist (the forecast)", "constant", "intensity rank"))
        if not all(math.isfinite(v) for v in (ours, constant, rank)):
            continue
        baselines = (("a constant", constant), ("the intensity rank", rank))
        # compared as printed (2 decimals): a difference below that is a tie, not a win
        beaten = [name for name, value in baselines if round(ours, 2) < round(value, 2)]
        tied = [f"{name} ({value:.2f})" for name, value in baselines if round(ours, 2) == round(value, 2)]
        missed = [f"{name} ({value:.2f})" for name, value in baselines if round(ours, 2) > round(value, 2)]
        parts = ([f"beats {' and '.join(beaten)}"] if beaten else []) + \
                ([f"ties with {' and '.join(tied)}"] if tied else []) + \
                ([f"does not beat {' and '.join(missed)}"] if missed else [])
        verdict = "beats both baselines" if len(beaten) == 2 else ", ".join(parts)
        sentences.append(f"With each {scheme} held out, the forecast's mean absolute error is {ours:.2f}: it {verdict}.")
    return " ".join(sentences)


def answer_sentences(frame: pd.DataFrame, *, measure: str = "epochs", n_boot: int = 2000, seed: int = 0,
                     links: dict[str, str] | None = None) -> str:
    """The study's answers in plain sentences (Markdown bullets), every number computed from `frame`.

    Does RESQUE_dist predict `measure` within families, between families and
    beyond the intensity; which predictors a paired comparison tells apart from
    it; how well the cost repeats; how the forecast does against a constant
    and the intensity rank. Empty when there are too few shift runs.

    `links` maps a sentence (``"within"``, ``"beyond"``, ``"best"``,
    ``"repeat"``, ``"forecast"``) to Markdown appended to it, e.g. a link to
    the section that backs it (the book's findings page does this).
    """
    frame = add_baselines(frame)
    shift_runs = frame[frame["kind"] == "shift"]
    if len(shift_runs) < 5 or "resque_dist" not in shift_runs or measure not in shift_runs:
        return ""
    what = MEASURES[measure].label.lower()
    lines: list[tuple[str, str]] = []
    answer = within_between(frame, "resque_dist", measure)
    if math.isfinite(answer["within"]):
        text = (f"**Within a shift family**, RESQUE_dist and the {what} of retraining agree at Spearman "
                f"ρ = {answer['within']:.2f} on average (over {answer['n_strata']} family × seed groups)")
        if math.isfinite(answer["between"]):
            text += (f"; **between families**, the family means agree at ρ = {answer['between']:.2f} "
                     f"({answer['n_families']} families)")
        lines.append(("within", text + "."))
    if answer["n"]:
        lines.append(("beyond", "**Beyond the intensity:** " + (
            "within every family RESQUE_dist ranks the runs exactly as the shift's intensity does, so it says "
            "nothing that knowing the intensity does not." if not math.isfinite(answer["beyond_intensity"]) else
            f"given the intensity's rank within its family, RESQUE_dist still agrees with the {what} at partial "
            f"ρ = {answer['beyond_intensity']:.2f}.")))
    candidates = [n for n in _present(frame, list_predictors("shift"), "shift") if n != "resque_dist"]
    table = compare_predictors(frame, candidates, measure, reference="resque_dist", n_boot=n_boot, seed=seed)
    if len(table):
        better = [predictor_label(p) for p, v in zip(table["predictor"], table["verdict"]) if v == "better"]
        worse = [predictor_label(p) for p, v in zip(table["predictor"], table["verdict"]) if v == "worse"]
        undefined = [predictor_label(p) for p, v in zip(table["predictor"], table["verdict"]) if v.startswith("undefined")]
        rest = len(table) - len(better) - len(worse) - len(undefined)
        parts = []
        if better:
            parts.append(f"better than RESQUE_dist: {', '.join(better)}")
        if worse:
            parts.append(f"worse: {', '.join(worse)}")
        parts.append(f"none of the {rest} others is distinguishable from RESQUE_dist" if not better and not worse
                     else f"the other {rest} are not distinguishable from it")
        if undefined:
            parts.append(f"{', '.join(undefined)} has no rank correlation (it is the same for every run)"
                         if len(undefined) == 1 else
                         f"{', '.join(undefined)} have no rank correlation (each is the same for every run)")
        lines.append(("best", f"**Which predictor is best?** By paired comparison of their rank correlations with "
                              f"the {what} (same resamples, Holm-adjusted): " + "; ".join(parts) + "."))
    retest = repeatability_of(frame, measure, "shift")
    if math.isfinite(retest):
        lines.append(("repeat", f"**How well the cost repeats:** retrained again with another seed, the runs' "
                                f"{what} agree with themselves at ρ = {retest:.2f}, the ceiling for any predictor."))
    forecast = forecast_comparison(frame, measure)
    verdict = _forecast_verdict(forecast) if len(forecast) else ""
    if verdict:
        lines.append(("forecast", "**The forecast:** " + verdict))
    links = links or {}
    return "\n".join(f"- {line}{links.get(key, '')}" for key, line in lines) + "\n"


def study_report(frame: pd.DataFrame, *, measures=DISTINCT, n_boot: int = 2000, seed: int = 0) -> str:
    """What ``resque study report`` prints: :func:`answer_sentences` (the first measure), then :func:`report_markdown`."""
    sentences = answer_sentences(frame, measure=measures[0], n_boot=n_boot, seed=seed) if measures else ""
    tables = report_markdown(frame, n_boot=n_boot, seed=seed, measures=measures)
    return (f"### In words\n\n{sentences}\n" if sentences else "") + tables
