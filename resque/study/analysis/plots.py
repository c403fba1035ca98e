"""Figures of the analysis: each cost against a predictor, and cost and predictor against intensity."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from .bootstrap import point_estimates
from .correlations import HEADLINE, check_column
from .labels import axis_label, label_of

__all__ = ["plot_scatter", "plot_vs_intensity"]


_CENSORED_LABEL = "censored (target not reached)"


def _palette(families: Sequence[str]) -> dict[str, tuple]:
    import seaborn as sns

    return dict(zip(families, sns.color_palette("colorblind", max(len(families), 1))))


def _draw_runs(ax, x, y, censored, color, label=None, size=28):
    """Reached runs as filled dots, censored ones hollow: their cost is a lower bound."""
    reached = ~censored
    if reached.any():
        ax.scatter(x[reached], y[reached], s=size, color=color, label=label, zorder=3)
    if censored.any():
        ax.scatter(x[censored], y[censored], s=size, facecolors="none", edgecolors=color, linewidths=1.2, zorder=3,
                   label=None if reached.any() else label)


def _legend(fig, families, palette, extra=()):
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", linestyle="", color=palette[f], label=str(f)) for f in families]
    handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor="0.3",
                          color="0.3", label=_CENSORED_LABEL))
    handles.extend(extra)
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), frameon=False, fontsize="small")


def _grid(n_panels: int, ncols: int, width: float = 3.3, height: float = 2.8):
    import matplotlib.pyplot as plt

    ncols = max(1, min(ncols, n_panels))
    nrows = max(1, math.ceil(n_panels / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows + 0.6), layout="constrained",
                             squeeze=False)
    axes = axes.ravel()
    for ax in axes[n_panels:]:
        fig.delaxes(ax)
    return fig, list(axes[:n_panels])


def plot_scatter(frame: pd.DataFrame, estimator: str = "resque_dist", measures: Iterable[str] = HEADLINE,
                 *, hue: str = "family", ncols: int = 4):
    """The estimator against each cost, one panel per measure, with a pooled least-squares line.

    Points are coloured by `hue`; runs that did not reach their target are
    hollow (their cost is a lower bound). Each panel is titled with the measure
    and its pooled Spearman rho and n.

    Parameters
    ----------
    frame : pandas.DataFrame
        From :func:`load_records`; rows without the estimator are left out.
    estimator : str, default "resque_dist"
    measures : iterable of str, default :data:`HEADLINE`
    hue : str, default "family"
    ncols : int, default 4

    Returns
    -------
    matplotlib.figure.Figure
        With one axes per measure.
    """
    from matplotlib.lines import Line2D

    measures = list(measures)
    check_column(frame, "estimator", estimator)
    for name in measures:
        check_column(frame, "measures", name)
    check_column(frame, "hue", hue)
    runs = frame[np.isfinite(frame[estimator].to_numpy(dtype=float))]
    families = sorted(runs[hue].dropna().unique(), key=str)
    palette = _palette(families)
    fig, axes = _grid(len(measures), ncols)
    for ax, measure in zip(axes, measures):
        x_all = runs[estimator].to_numpy(dtype=float)
        y_all = runs[measure].to_numpy(dtype=float)
        keep = np.isfinite(y_all)
        for family in families:
            mine = keep & (runs[hue] == family).to_numpy()
            _draw_runs(ax, x_all[mine], y_all[mine], runs["censored"].to_numpy(dtype=bool)[mine], palette[family])
        x, y = x_all[keep], y_all[keep]
        title = label_of(measure)
        if len(x) >= 2 and np.unique(x).size >= 2:
            slope, intercept = np.polyfit(x, y, 1)
            grid = np.linspace(x.min(), x.max(), 50)
            ax.plot(grid, intercept + slope * grid, color="0.2", linestyle="--", linewidth=1, zorder=2)
        if len(x) >= 3 and np.unique(x).size >= 2 and np.unique(y).size >= 2:
            rho = point_estimates(x, y)["spearman"][0]
            title += f"\nρ = {rho:.2f}, n = {len(x)}"
        elif len(x) == 0:
            ax.text(0.5, 0.5, f"no runs with\n{label_of(estimator)}", ha="center", va="center",
                    transform=ax.transAxes, color="0.4")
        else:
            title += f"\nn = {len(x)}"
        ax.set_title(title, fontsize="medium")
        ax.set_xlabel(label_of(estimator))
        ax.set_ylabel(axis_label(measure))
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    fit = Line2D([], [], color="0.2", linestyle="--", label="least-squares fit (pooled)")
    _legend(fig, families, palette, extra=(fit,))
    return fig


def plot_vs_intensity(frame: pd.DataFrame, estimator: str = "resque_dist",
                      costs: Sequence[str] = ("epochs", "energy_kwh"), *, ncols: int = 3):
    """The estimator and some costs against shift intensity, one line per shift family.

    Lines join the mean over seeds at each intensity; the runs themselves are
    drawn as points (hollow when censored). Intensity scales differ between
    families (see :mod:`resque.data.shifts`), so compare shapes, not positions.

    Parameters
    ----------
    frame : pandas.DataFrame
        From :func:`load_records`; only shift runs (finite intensity) are drawn.
    estimator : str, default "resque_dist"
    costs : sequence of str, default ("epochs", "energy_kwh")
    ncols : int, default 3

    Returns
    -------
    matplotlib.figure.Figure
        With ``1 + len(costs)`` axes.
    """
    columns = [estimator, *costs]
    for name in columns:
        check_column(frame, "costs" if name != estimator else "estimator", name)
    runs = frame[np.isfinite(frame["intensity"].to_numpy(dtype=float))]
    families = sorted(runs["family"].dropna().unique(), key=str)
    palette = _palette(families)
    fig, axes = _grid(len(columns), ncols)
    for ax, column in zip(axes, columns):
        for family in families:
            mine = runs[runs["family"] == family]
            values = mine[column].to_numpy(dtype=float)
            keep = np.isfinite(values)
            if not keep.any():
                continue
            _draw_runs(ax, mine["intensity"].to_numpy(dtype=float)[keep], values[keep],
                       mine["censored"].to_numpy(dtype=bool)[keep], palette[family], size=16)
            means = mine[keep].groupby("intensity")[column].mean()
            ax.plot(means.index.to_numpy(), means.to_numpy(), color=palette[family], linewidth=1.5)
        if not families:
            ax.text(0.5, 0.5, "no shift runs", ha="center", va="center", transform=ax.transAxes, color="0.4")
        ax.set_title(label_of(column), fontsize="medium")
        ax.set_xlabel("intensity")
        ax.set_ylabel(axis_label(column))
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4))
    _legend(fig, families, palette)
    return fig
