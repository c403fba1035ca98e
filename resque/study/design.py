"""Is a study's design able to answer its question? The spread criteria of a pilot.

book/method.md ("Design of a study that can answer its question"): a profile is
worth running only if the cost of its shift runs varies. :func:`spread` reads
a results folder's shift records and says, per family and overall, how much
the cost spreads and how many runs are censored; :func:`meets_spread` applies
the criteria (no family where every run costs the same, an interquartile
range of at least one epoch, at most 15 % censored).

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

__all__ = ["MIN_IQR", "MAX_CENSORED", "spread", "meets_spread"]

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
