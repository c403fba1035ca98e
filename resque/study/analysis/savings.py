"""How much reuse saved against training from scratch."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ...cost.measures import measures as _measures
from .correlations import check_column
from .labels import label_of

__all__ = ["SAVINGS", "savings_summary"]

#: Costs for which "reuse saved x % of training from scratch" means something.
SAVINGS = tuple(m.column for m in _measures(saving=True))


def savings_summary(frame: pd.DataFrame, measures: Sequence[str] = SAVINGS, by: str = "family") -> pd.DataFrame:
    """How much reuse saved against training from scratch, per group and pooled.

    Parameters
    ----------
    frame : pandas.DataFrame
        From :func:`load_records`.
    measures : sequence of str, default :data:`SAVINGS`
    by : str, default "family"

    Returns
    -------
    pandas.DataFrame
        Indexed by group (then ``"pooled"``): ``runs`` (with a yardstick),
        ``reuse censored`` and ``scratch censored`` (runs that did not reach
        the target; a censored scratch run makes the saving a lower bound, a
        censored reuse run an upper bound), and the median saving per measure
        (``1 - reuse / scratch``; 0.6 means reuse cost 40 % of scratch).
    """
    for name in measures:
        check_column(frame, "measures", f"savings_{name}")
    check_column(frame, "by", by)
    paired = frame[frame["scratch_run_id"].notna() & frame["scratch_stop_reason"].notna()]
    groups = [(str(g), paired[paired[by] == g]) for g in sorted(paired[by].dropna().unique(), key=str)]
    groups.append(("pooled", paired))
    table = []
    for group, rows in groups:
        entry = {"group": group, "runs": len(rows), "reuse censored": int(rows["censored"].sum()),
                 "scratch censored": int(rows["scratch_censored"].fillna(False).astype(bool).sum())}
        for name in measures:
            values = rows[f"savings_{name}"].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            entry[f"median saving: {label_of(name).lower()}"] = float(np.median(values)) if len(values) else math.nan
        table.append(entry)
    return pd.DataFrame(table).set_index("group")
