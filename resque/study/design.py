"""Is a study's design able to answer its question? The spread criteria of a pilot.

book/method.md ("Design of a study that can answer its question"): a profile is
worth running only if the cost of its shift runs varies. :func:`spread` reads
a results folder's shift records and says, per family and overall, how much
the cost spreads and how many runs are censored; :func:`meets_spread` applies
the criteria (no family where every run costs the same, an interquartile
range of at least one epoch, at most 15 % censored). :func:`repeatability` says (test-retest)
how well a cost agrees with itself when a run is retrained again with another
retraining seed (a profile's ``replicate_seeds``): the ceiling of any
predictor's correlation with that cost.

Examples
--------
>>> from resque.cost.records import RunRecord
>>> runs = [RunRecord(f"shift-f-{i}-seed0", "shift", {"shift": "f", "intensity": i}, totals={"epochs": e},
...                   stop_reason="reached", complete=True) for i, e in enumerate([0.0, 0.5, 1.5, 3.0])]
>>> table = spread(runs)
>>> row = table.loc["all"]
>>> int(row["runs"]), int(row["distinct"]), float(row["iqr"]), float(row["censored_share"])
(4, 4, 1.5, 0.0)
>>> meets_spread(table)
(True, [])
"""

from __future__ import annotations

import os
from collections.abc import Iterable

__all__ = ["MIN_IQR", "MAX_CENSORED", "spread", "meets_spread", "repeatability", "retest_statistics",
           "yardstick_stops"]

#: The criteria of a publishable profile (book/method.md).
MIN_IQR, MAX_CENSORED = 1.0, 0.15


def spread(records: Iterable | str | os.PathLike, measure: str = "epochs"):
    """Per shift family (and ``"all"``): runs, distinct costs, min / median / max, IQR, censored share.

    Parameters
    ----------
    records : iterable of RunRecord, or a results folder
        Only complete ``shift`` records count.
    measure : str, default "epochs"
        A key of ``record.totals``.

    Returns
    -------
    pandas.DataFrame
        Index: family names, then ``"all"``; columns ``runs, distinct, min, median, max, iqr, censored,
        censored_share``.
    """
    import numpy as np
    import pandas as pd

    from ..cost.records import read_records

    if isinstance(records, (str, os.PathLike)):
        records = read_records(records).records
    rows = [{"family": r.experiment.get("shift"), "cost": r.totals.get(measure), "censored": r.censored}
            for r in records if r.kind == "shift" and r.complete]
    frame = pd.DataFrame(rows, columns=["family", "cost", "censored"])

    def describe(group) -> dict:
        costs = group["cost"].astype(float).to_numpy()
        q1, q3 = (np.percentile(costs, [25, 75]) if len(costs) else (np.nan, np.nan))
        return {"runs": len(group), "distinct": int(len(np.unique(np.round(costs, 9)))) if len(costs) else 0,
                "min": float(np.min(costs)) if len(costs) else np.nan,
                "median": float(np.median(costs)) if len(costs) else np.nan,
                "max": float(np.max(costs)) if len(costs) else np.nan, "iqr": float(q3 - q1),
                "censored": int(group["censored"].sum()),
                "censored_share": float(group["censored"].mean()) if len(group) else np.nan}

    table = {family: describe(group) for family, group in frame.groupby("family", sort=False)}
    table["all"] = describe(frame)
    return pd.DataFrame.from_dict(table, orient="index")


def meets_spread(table, *, min_iqr: float = MIN_IQR, max_censored: float = MAX_CENSORED) -> tuple[bool, list[str]]:
    """Whether a :func:`spread` table meets the criteria, and what fails, in words."""
    problems = []
    families = table.drop(index="all", errors="ignore")
    flat = [family for family, row in families.iterrows() if row["runs"] > 1 and row["distinct"] == 1]
    if flat:
        problems.append(f"every run costs the same in {', '.join(flat)}")
    overall = table.loc["all"]
    if not overall["iqr"] >= min_iqr:
        problems.append(f"interquartile range of the cost {overall['iqr']:.2f} < {min_iqr:g}")
    if not overall["censored_share"] <= max_censored:
        problems.append(f"{overall['censored_share']:.0%} of runs censored > {max_censored:.0%}")
    return not problems, problems


def yardstick_stops(records: Iterable | str | os.PathLike) -> dict[str, dict[str, int]]:
    """How the from-scratch yardsticks stopped: ``{"shift": {"cap": 14, "reached": 5, ...}, "task": {...}}``.

    A yardstick that did not reach its target (``cap``, a cutoff rule) makes
    the saving computed from it a lower bound; this counts them, per kind of run
    they are the yardstick of, most frequent first.
    """
    from collections import Counter

    from ..cost.records import read_records
    from .results import parse_run_id

    if isinstance(records, (str, os.PathLike)):
        records = read_records(records).records
    counts: dict[str, Counter] = {}
    for r in records:
        if r.kind == "scratch" and r.complete:
            of = parse_run_id(r.run_id).of.kind  # the kind of run it is the yardstick of
            counts.setdefault(of, Counter())[r.stop_reason or "unknown"] += 1
    return {kind: dict(counter.most_common()) for kind, counter in sorted(counts.items())}


def retest_statistics(first, again, finished) -> dict:
    """Test-retest of one cost over paired runs: the core that every report of it uses.

    `first` and `again` are the cost of each run and of its repeat; `finished`
    is True where neither was censored (a censored cost is a lower bound, so it
    is not ranked as if observed). Returns ``pairs`` (all given), ``both_finished``
    (finished, with both costs finite), ``spearman`` over those (NaN under 3 or
    when a side is constant) and ``median_abs_diff`` (same pairs).
    """
    import numpy as np
    from scipy.stats import spearmanr

    first, again = np.asarray(first, dtype=float), np.asarray(again, dtype=float)
    kept = np.asarray(finished, dtype=bool) & np.isfinite(first) & np.isfinite(again)
    x, y = first[kept], again[kept]
    constant = len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0
    return {"pairs": int(len(first)), "both_finished": int(kept.sum()),
            "spearman": np.nan if constant else float(spearmanr(x, y)[0]),
            "median_abs_diff": float(np.median(np.abs(x - y))) if len(x) else np.nan}


def repeatability(records: Iterable | str | os.PathLike, measure: str = "epochs"):
    """How well a cost agrees with itself: each run against its first repeat (another retraining seed).

    Parameters
    ----------
    records : iterable of RunRecord, or a results folder
        Complete ``shift`` and ``task`` records; those with ``replicates`` count.
    measure : str, default "epochs"
        A key of ``record.totals`` (and of each repeat's totals).

    Returns
    -------
    pandas.DataFrame
        Index ``shift``, ``task``, ``all`` (kinds without repeats are left out);
        columns ``pairs``, ``both_finished`` (neither run censored), ``spearman``
        (over those: a censored cost is only a lower bound, so it is not
        ranked as if observed; NaN under 3 pairs or when a side is constant),
        ``median_abs_diff`` (same pairs, in the measure's unit).
    """
    import pandas as pd

    from ..cost.records import read_records

    if isinstance(records, (str, os.PathLike)):
        records = read_records(records).records
    rows = []
    for r in records:
        if r.kind in ("shift", "task") and r.complete and r.replicates:
            repeat = r.replicates[0]
            rows.append({"kind": r.kind, "first": r.totals.get(measure), "again": (repeat.get("totals") or {}).get(measure),
                         "finished": not r.censored and not repeat.get("censored", True)})
    frame = pd.DataFrame(rows, columns=["kind", "first", "again", "finished"])

    def describe(group) -> dict:
        return retest_statistics(pd.to_numeric(group["first"], errors="coerce"),
                                 pd.to_numeric(group["again"], errors="coerce"), group["finished"].astype(bool))

    table = {kind: describe(group) for kind, group in frame.groupby("kind", sort=True)}
    if table:
        table["all"] = describe(frame)
    return pd.DataFrame.from_dict(table, orient="index", columns=["pairs", "both_finished", "spearman", "median_abs_diff"])
