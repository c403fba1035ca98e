"""The analysis in sentences: numbers stated with their caveats, and the winner per cost."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .labels import label_of

__all__ = ["findings", "winner_sentences"]


def _pooled(corr: pd.DataFrame | None, estimator: str, measure: str) -> pd.Series | None:
    if corr is None or corr.empty:
        return None
    hit = corr[(corr["estimator"] == estimator) & (corr["group"] == "pooled") & (corr["measure"] == measure)]
    return hit.iloc[0] if len(hit) else None


def _sentence(row: pd.Series | None, estimator: str, measure: str) -> str:
    what = f"{label_of(measure).lower()}"
    if row is None:
        return f"with {what} it was not computed"
    if not np.isfinite(row["spearman_rho"]):
        return f"with {what} it cannot be computed ({row['note'] or 'no data'})"
    text = f"with {what} it is {row['spearman_rho']:.2f}"
    if np.isfinite(row["spearman_low"]):
        low, high = row["spearman_low"], row["spearman_high"]
        text += f" (95 % CI {low:.2f} to {high:.2f}"
        text += ", which includes zero)" if low <= 0.0 <= high else ")"
    return text


def findings(frame: pd.DataFrame, corr: pd.DataFrame | None = None, corr_task: pd.DataFrame | None = None,
             *, measures: Sequence[str] = ("epochs", "energy_kwh"), min_runs: int = 10) -> str:
    """A paragraph of prose (Markdown, no headings) that states the numbers and their caveats.

    Parameters
    ----------
    frame : pandas.DataFrame
        From :func:`load_records`.
    corr, corr_task : pandas.DataFrame or None
        From :func:`correlations` for ``resque_dist`` and ``resque_task``.
    measures : sequence of str, default ("epochs", "energy_kwh")
        The measures whose pooled Spearman rho the text states.
    min_runs : int, default 10
        Below this many runs the text warns that the numbers are not evidence.
    """
    shifts = frame[frame["kind"] == "shift"]
    tasks = frame[frame["kind"] == "task"]
    if len(shifts) < 3 and len(tasks) < 3:
        found = f"{len(frame)} complete run{'s' if len(frame) != 1 else ''}"
        skipped = frame.attrs.get("n_incomplete", 0)
        extra = f" ({skipped} more did not finish)" if skipped else ""
        where = frame.attrs.get("results_dir", "the results folder")
        if frame.attrs.get("missing"):
            found = f"no records, since {where} does not exist"
        else:
            found = f"{found} of retraining in {where}{extra}"
        return (f"There is not enough data for an analysis: {found}, and a correlation needs at least 3 runs "
                f"of a kind. Run the study's grid first; until then the tables and figures on this page are "
                f"empty or show single points.")
    parts = []
    for kind, runs, estimator, table in (("shift", shifts, "resque_dist", corr), ("task", tasks, "resque_task", corr_task)):
        if len(runs) == 0:
            continue
        n_seeds = runs["seed"].nunique()
        scope = (f"{runs['family'].nunique()} shift famil{'ies' if runs['family'].nunique() != 1 else 'y'}"
                 if kind == "shift" else f"{runs['task'].nunique()} task{'s' if runs['task'].nunique() != 1 else ''}")
        clauses = "; ".join(_sentence(_pooled(table, estimator, m), estimator, m) for m in measures)
        text = (f"Over {len(runs)} {kind} run{'s' if len(runs) != 1 else ''} ({scope}, {n_seeds} "
                f"seed{'s' if n_seeds != 1 else ''}), the pooled Spearman ρ between {label_of(estimator)} and the "
                f"cost of retraining: {clauses}.")
        if len(runs) < 3:
            text += f" A correlation needs at least 3 {kind} runs."
        elif len(runs) < min_runs:
            text += (f" With only {len(runs)} runs these numbers are not evidence either way: the intervals are "
                     f"wide, and one run more or less can change their sign.")
        censored = int(runs["censored"].sum())
        if censored * 2 > len(runs):
            text += (f" Most runs ({censored} of {len(runs)}) stopped before reaching their target, so their costs "
                     f"are lower bounds of what reaching it would have cost.")
        elif censored:
            text += f" {censored} of {len(runs)} runs did not reach their target (kept, as lower bounds)."
        parts.append(text)
    estimated = int((frame["energy_source"] == "estimate").sum())
    if estimated:
        parts.append(f"Energy and carbon are estimates (a model of power, not a hardware counter) for {estimated} "
                     f"of {len(frame)} runs, so they largely follow training time.")
    paired = frame[frame["scratch_stop_reason"].notna()]
    saved = paired["savings_epochs"].to_numpy(dtype=float)
    saved = saved[np.isfinite(saved)]
    if len(saved):
        text = (f"Against training from scratch on the same data, reuse saved a median "
                f"{100 * np.median(saved):.0f} % of the epochs over {len(saved)} runs")
        energy = paired["savings_energy_kwh"].to_numpy(dtype=float)
        energy = energy[np.isfinite(energy)]
        if len(energy):
            text += f" and {100 * np.median(energy):.0f} % of the energy"
        text += "."
        scratch_censored = paired["scratch_censored"].fillna(False).to_numpy(dtype=bool)
        reuse_censored = paired["censored"].to_numpy(dtype=bool)
        lower = int((scratch_censored & ~reuse_censored).sum())
        unclear = int(reuse_censored.sum())
        if lower:
            # scratch stopped short of the target: its true cost is higher, so the saving is larger
            text += (f" In {lower} of these the scratch run did not reach the target while reuse did, so the "
                     f"saving there is a lower bound.")
        if unclear:
            text += (f" In {unclear} the reused model itself did not reach the target, so the saving there may "
                     f"be overstated.")
        parts.append(text)
    return "\n\n".join(parts)


def winner_sentences(ranking: pd.DataFrame, what: str, frame: pd.DataFrame | None = None, kind: str = "shift",
                     *, n_boot: int = 2000, seed: int = 0) -> str:
    """One plain sentence per measure naming the pooled winner and whether it beats the others.

    Whether the first-ranked predictor is better than another is decided by
    :func:`~resque.study.analysis.questions.compare_predictors`: the bootstrap
    interval of the difference of their Spearman rho on the same two-way
    resamples of `frame`'s runs (those that reached their target), Holm-adjusted
    over the comparisons of one measure; never by whether two intervals overlap.
    Without `frame`, the sentence gives the ranking and no verdict.
    """
    from .questions import compare_predictors

    if ranking.empty:
        return f"For {what}, too few runs carry these predictors to rank them."
    lines = []
    pooled = ranking[ranking["group"] == "pooled"]
    for measure, rows in pooled.groupby("measure", sort=False):
        rows = rows.dropna(subset=["spearman_rho"]).sort_values("rank")
        if rows.empty:
            continue
        top = rows.iloc[0]
        text = (f"- **{label_of(measure)}**: {top['label']} ranks first, Spearman ρ = {top['spearman_rho']:.2f} "
                f"[{top['spearman_low']:.2f}, {top['spearman_high']:.2f}], pairwise accuracy "
                f"{top['pairwise_accuracy']:.2f}")
        others = [name for name in rows["predictor"].iloc[1:]]
        if others and frame is not None:
            table = compare_predictors(frame, others, measure, reference=top["predictor"], kind=kind,
                                       n_boot=n_boot, seed=seed)
            beaten = [label_of(p) for p, v in zip(table["predictor"], table["verdict"]) if v == "worse"]
            tied = [label_of(p) for p, v in zip(table["predictor"], table["verdict"]) if v != "worse"]
            if not tied:
                text += f"; by paired comparison it is better than every other ({len(beaten)})."
            elif not beaten:
                text += (f"; by paired comparison (Holm-adjusted) it is not distinguishable from any of the "
                         f"{len(tied)} others, so the order is not settled.")
            else:
                text += (f"; by paired comparison (Holm-adjusted) it is better than {len(beaten)} of the "
                         f"{len(table)} others, and not distinguishable from {', '.join(tied)}.")
        elif len(rows) > 1:
            second = rows.iloc[1]
            text += f"; next is {second['label']} at {second['spearman_rho']:.2f}."
        lines.append(text)
    return f"For {what} ({int(pooled['n'].max())} runs pooled):\n\n" + "\n".join(lines)
