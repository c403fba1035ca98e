"""Figures shared by the experiment notebooks: image grids, training curves, RESQUE angles, energy.

Every function returns a matplotlib ``Figure`` with labelled axes and a title,
and draws nothing else (no ``plt.show()``), so the notebooks decide what to
display and the tests can run under the Agg backend.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..cost.measures import MEASURES
from ..cost.records import RunRecord

__all__ = ["CURVES", "angle_bars", "energy_vs_time", "grid_angles", "grid_costs", "grid_curves", "image_grid",
           "task_costs", "training_curves"]

#: Training-curve panels: name -> (per-evaluation keys of ``record.evaluations`` to draw, y label, title).
CURVES = {
    "val_accuracy": (("val_accuracy",), "validation accuracy", "Validation accuracy"),
    "train_loss": (("train_loss",), "training loss (cross-entropy)", "Training loss"),
    "grad_norm": (("grad_norm_mean", "grad_norm_last"), "global L2 gradient norm", MEASURES["grad_norm_last"].label),
    "param_change": (("param_change_from_start",), MEASURES["param_change_from_start"].unit,
                     MEASURES["param_change_from_start"].label),
    "energy": (("energy_kwh",), f"{MEASURES['energy_kwh'].label.lower()} per epoch ({MEASURES['energy_kwh'].unit})",
               f"{MEASURES['energy_kwh'].label} per epoch"),
}

#: Legend of a panel with several series: each series' measure, by its unit ("L2, last step" -> "last step").
_KEY_LABELS = {key: MEASURES[key].unit.removeprefix("L2, ") for key in ("grad_norm_mean", "grad_norm_last")}


def _as_images(images) -> np.ndarray:
    """``(N, C, H, W)`` or ``(N, H, W)`` tensor/array -> ``(N, H, W)`` or ``(N, H, W, 3)`` numpy in [0, 1]."""
    array = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images, dtype=np.float32)
    if array.ndim == 4:
        array = array[:, 0] if array.shape[1] == 1 else np.transpose(array, (0, 2, 3, 1))
    return np.clip(array, 0.0, 1.0)


def _margins(figure, *, left=0.75, right=0.2, bottom=0.55, top=0.4, wgap=0.0, hgap=0.0) -> None:
    """Lay a figure's subplots out by hand, with margins and gaps in inches.

    A layout engine (``tight_layout``) measures every label again, and the
    notebooks' inline display then crops to the drawn extent (one more draw);
    fixed margins, roomy enough for the labels these figures carry, make both
    unnecessary (0.36 s less a shift page, out of 0.86 s for its figures).
    """
    width, height = figure.get_size_inches()
    spec = figure.axes[0].get_subplotspec() if figure.axes else None
    nrows, ncols = spec.get_gridspec().get_geometry() if spec is not None else (1, 1)
    inner_w = max(width - left - right, 0.1)
    inner_h = max(height - bottom - top, 0.1)
    axes_w = max((inner_w - wgap * (ncols - 1)) / ncols, 0.1)
    axes_h = max((inner_h - hgap * (nrows - 1)) / nrows, 0.1)
    figure.subplots_adjust(left=left / width, right=1.0 - right / width, bottom=bottom / height,
                           top=1.0 - top / height, wspace=wgap / axes_w, hspace=hgap / axes_h)


def image_grid(
    images,
    titles: Sequence[str] | None = None,
    *,
    nrows: int = 1,
    row_labels: Sequence[str] | None = None,
    title: str | None = None,
    size: float = 1.4,
):
    """A grid of images in [0, 1], with optional per-image titles and row labels.

    The images are tiled into one picture on one axes (a grid of 72 small
    axes took 0.7 s to draw; one takes a tenth of that), titles written above
    their tiles and row labels at the left.

    Parameters
    ----------
    images : tensor or array
        ``(N, C, H, W)`` with C = 1 (grey) or 3 (RGB), or ``(N, H, W)``.
    titles : sequence of str, optional
        One per image, in order; fewer leave the rest untitled (one row's
        worth titles the columns of a grid whose rows show the same images).
    nrows : int, default 1
        Images fill the grid row by row, ``ceil(N / nrows)`` per row.
    row_labels : sequence of str, optional
        One per row, written left of the row (e.g. ``["clean", "shifted"]``).
    title : str, optional
        Figure title.
    size : float, default 1.4
        Inches per image.
    """
    pictures = _as_images(images)
    count = len(pictures)
    ncols = max(1, -(-count // nrows))
    colour = pictures.ndim == 4
    height, width = pictures.shape[1:3]
    gap = max(1, round(0.08 * width))  # between tiles, in pixels
    titled_rows = 0 if titles is None else min(nrows, -(-len(titles) // ncols))
    band = round(0.3 * height)  # room for the titles above a row that has them
    cell_w = width + gap
    tops = np.cumsum([0] + [(band if row < titled_rows else 0) + height + gap for row in range(nrows)])
    canvas = np.ones((int(tops[-1]), ncols * cell_w) + ((3,) if colour else ()))  # white between tiles

    def image_top(row):
        return int(tops[row]) + (band if row < titled_rows else 0)

    for index, picture in enumerate(pictures):
        row, col = divmod(index, ncols)
        top, left = image_top(row), col * cell_w
        canvas[top:top + height, left:left + width] = picture
    figure, ax = plt.subplots(figsize=(size * ncols, size * tops[-1] / cell_w + (0.5 if title else 0.2)))
    ax.imshow(canvas, cmap=None if colour else "gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    for index, text in enumerate(titles or []):
        if index >= count:
            break
        row, col = divmod(index, ncols)
        ax.text(col * cell_w + width / 2, image_top(row) - 1, str(text), ha="center", va="bottom", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([image_top(row) + height / 2 for row in range(len(row_labels or []))])
    ax.set_yticklabels([str(label) for label in row_labels or []], fontsize=9)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title)
    _margins(figure, left=0.55 if row_labels else 0.05, right=0.05, bottom=0.05, top=0.35 if title else 0.05)
    return figure


def _series(record: RunRecord, key: str) -> tuple[np.ndarray, np.ndarray]:
    # x: epochs done at each check (fractional; 0 is the check before any update)
    points = [(e.get("epoch", i), e.get(key)) for i, e in enumerate(record.evaluations)]
    points = [(x, y) for x, y in points if y is not None]
    if not points:
        return np.array([]), np.array([])
    xs, ys = zip(*points)
    return np.asarray(xs), np.asarray(ys, dtype=float)


def training_curves(
    record: RunRecord,
    scratch: RunRecord | None = None,
    measures: Sequence[str] = ("val_accuracy", "grad_norm", "param_change", "energy"),
    *,
    title: str | None = None,
):
    """Curves of a run over (fractional) epochs, one point per evaluation, one panel per measure, with the from-scratch yardstick dashed.

    Parameters
    ----------
    record : RunRecord
        The run (its ``evaluations`` series).
    scratch : RunRecord, optional
        The from-scratch run on the same data, drawn dashed in every panel.
    measures : sequence of str
        Names in :data:`CURVES`. The validation-accuracy panel also shows the
        target accuracy of ``record.config``.
    title : str, optional
        Figure title (default: the run id).
    """
    unknown = [m for m in measures if m not in CURVES]
    if unknown:
        from ..errors import InvalidParameterError

        raise InvalidParameterError("measures", unknown, sorted(CURVES))
    figure, axes = plt.subplots(1, len(measures), figsize=(3.6 * len(measures), 3.2), squeeze=False)
    # Colour and line style tell the runs apart; the marker tells the series of one panel apart.
    runs = [(record, "reuse" if scratch is not None else record.kind, "-", "C0")]
    if scratch is not None:
        runs.append((scratch, "from scratch", "--", "C1"))
    for ax, measure in zip(axes.flat, measures):
        keys, ylabel, panel_title = CURVES[measure]
        for run, name, style, colour in runs:
            for key, marker in zip(keys, "ox"):
                xs, ys = _series(run, key)
                label = name if len(keys) == 1 else f"{name}, {_KEY_LABELS.get(key, key)}"
                ax.plot(xs, ys, style, color=colour, marker=marker, markersize=4, label=label)
        if measure == "val_accuracy" and record.config.get("target_accuracy") is not None:
            ax.axhline(record.config["target_accuracy"], color="grey", linestyle=":", label="target")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(panel_title)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if len(ax.get_lines()) > 1:
            ax.legend(fontsize=7)
    figure.suptitle(title or record.run_id)
    figure.tight_layout()
    return figure


def angle_bars(dist, classes: Sequence[str] | None = None, paired=None, *, title: str | None = None):
    """Per-class angles ``theta_k`` of RESQUE_dist as bars, unpaired and (optionally) paired side by side.

    Parameters
    ----------
    dist : DistResult
        Unpaired RESQUE_dist (its ``angles``: class label -> theta in [0, 1]).
    classes : sequence of str, optional
        Class names, indexed by label.
    paired : DistResult, optional
        Paired RESQUE_dist on the same classes.
    """
    labels = sorted(dist.angles)
    names = [classes[k] if classes is not None and k < len(classes) else str(k) for k in labels]
    results = [("unpaired", dist)] + ([("paired", paired)] if paired is not None else [])
    width = 0.8 / len(results)
    positions = np.arange(len(labels))
    figure, ax = plt.subplots(figsize=(max(5.0, 0.7 * len(labels) + 1.5), 3.6))
    for offset, (name, result) in enumerate(results):
        heights = [result.angles.get(k, np.nan) for k in labels]
        bars = ax.bar(positions + (offset - (len(results) - 1) / 2) * width, heights, width, label=name)
        ax.axhline(float(result), color=bars.patches[0].get_facecolor(), linestyle="--", linewidth=1,
                   label=f"{name} mean = {float(result):.4f}")
    ax.set_xticks(positions)
    ax.set_xticklabels(names, rotation=45, ha="right")
    ax.set_xlabel("class")
    ax.set_ylabel(r"angle $\theta_k$ (fraction of $\pi$)")
    ax.set_title(title or f"Per-class angles at layer {dist.layer!r}")
    ax.legend(fontsize=7)
    figure.tight_layout()
    return figure


def energy_vs_time(table: pd.DataFrame, *, title: str = "Energy against time, per run"):
    """Each run's energy against its tracked time, one marker per run kind.

    Parameters
    ----------
    table : DataFrame
        From :func:`resque.study.reporting.energy_table` (``seconds``,
        ``energy_kwh``, ``kind``, ``status``, ``mean_watts``); hollow markers
        are estimates, and a dotted line through the origin at the estimates'
        median power shows what an energy proportional to time would be.
    """
    figure, ax = plt.subplots(figsize=(5.5, 4.0))
    kinds = sorted(table["kind"].unique()) if len(table) else []
    for index, kind in enumerate(kinds):
        group, colour, marker = table[table["kind"] == kind], f"C{index}", "osD^vP*X"[index % 8]
        for measured, part in group.groupby(group["status"] == "measured"):
            style = {"color": colour} if measured else {"facecolors": "none", "edgecolors": colour}
            ax.scatter(part["seconds"], part["energy_kwh"], marker=marker, s=36, **style,
                       label=f"{kind} ({'measured' if measured else 'estimated'})")
    estimated = table[table["status"] != "measured"] if len(table) else table
    if "mean_watts" in table and len(estimated) and estimated["mean_watts"].notna().any():
        # What a constant-power estimate predicts: a line through the origin.
        watts = float(estimated["mean_watts"].median())
        end = float(table["seconds"].max()) * 1.08
        ax.plot([0, end], [0, watts * end / 3.6e6], ":", color="grey", label=f"constant {watts:.1f} W")
    ax.set_xlabel("training + validation time (s)")
    ax.set_ylabel("energy (kWh)")
    ax.set_title(title)
    if len(table):
        ax.set_xlim(0, float(table["seconds"].max()) * 1.1 or 1.0)
        ax.set_ylim(0, float(table["energy_kwh"].max()) * 1.1 if table["energy_kwh"].notna().any() else 1.0)
    if len(table):
        ax.legend(fontsize=7)
    figure.tight_layout()
    return figure


def grid_costs(outcomes, *, title: str | None = None):
    """A shift grid at a glance: RESQUE_dist and the retraining's cost in epochs against the intensity.

    Left: RESQUE_dist (unpaired, and paired when computed). Right: epochs to
    the target for reuse and, when trained, the from-scratch yardstick; a
    hollow marker is a censored run (its cost is a lower bound).
    """
    intensities = [float(o.intensity) for o in outcomes]
    figure, (left, right) = plt.subplots(1, 2, figsize=(9.0, 3.4))
    left.plot(intensities, [float(o.dist) for o in outcomes], "-o", label="unpaired")
    if all(o.dist_paired is not None for o in outcomes):
        left.plot(intensities, [float(o.dist_paired) for o in outcomes], "-s", label="paired")
    left.set_xlabel("intensity")
    left.set_ylabel("RESQUE_dist")
    left.set_title("RESQUE_dist")
    left.legend(fontsize=7)
    runs = [("reuse", "C0", "o", [o.record for o in outcomes])]
    if all(o.scratch is not None for o in outcomes):
        runs.append(("from scratch", "C1", "s", [o.scratch for o in outcomes]))
    for name, colour, marker, records in runs:
        epochs = [float(r.totals.get("epochs") or 0.0) for r in records]
        right.plot(intensities, epochs, "-", color=colour, label=name)
        for x, y, r in zip(intensities, epochs, records):
            style = {"facecolors": "none", "edgecolors": colour} if r.censored else {"color": colour}
            right.scatter([x], [y], marker=marker, s=36, zorder=3, **style)
    if any(r.censored for _, _, _, records in runs for r in records):
        right.scatter([], [], marker="o", facecolors="none", edgecolors="grey", label="censored (lower bound)")
    right.set_xlabel("intensity")
    right.set_ylabel("epochs to the target")
    right.set_title("Cost of retraining")
    right.set_ylim(bottom=0)
    right.legend(fontsize=7)
    if title:
        figure.suptitle(title)
    _margins(figure, left=0.9, right=0.15, bottom=0.55, top=0.65 if title else 0.35, wgap=0.95)
    return figure


def _run_label(outcome) -> str:
    """What tells the runs of a page apart: a shift's intensity, or a task's name."""
    task = getattr(outcome, "task", "")
    return str(task) if task else f"{float(outcome.intensity):g}"


def grid_curves(
    outcomes,
    measures: Sequence[str] = ("val_accuracy",),
    *,
    title: str | None = None,
    legend_title: str | None = None,
):
    """The retrainings of a page over (fractional) epochs: one panel per measure, one line per run.

    The runs of a shift page (one per intensity) or of a task page (one per
    task) are drawn in one figure instead of one figure each; a run's
    from-scratch yardstick, when trained, is dashed in the run's colour. The
    validation-accuracy panel shows the target(s). A measure with several
    series in :data:`CURVES` (the gradient norm) draws its first, the mean
    over the steps of each interval; every series is in the records.

    Parameters
    ----------
    outcomes : sequence
        :class:`~resque.study.experiments.ShiftOutcome` or ``TaskOutcome``
        (anything with ``record``, ``scratch`` and ``intensity`` or ``task``).
    measures : sequence of str, default ("val_accuracy",)
        Names in :data:`CURVES`; two to four panels are laid out two per row.
    title : str, optional
        Figure title.
    legend_title : str, optional
        Default ``"intensity"`` for shifts, ``"task"`` for tasks.
    """
    unknown = [m for m in measures if m not in CURVES]
    if unknown:
        from ..errors import InvalidParameterError

        raise InvalidParameterError("measures", unknown, sorted(CURVES))
    ncols = 1 if len(measures) == 1 else 2
    nrows = -(-len(measures) // ncols)
    figure, axes = plt.subplots(nrows, ncols, figsize=(6.0 if ncols == 1 else 9.0, 3.6 * nrows), squeeze=False)
    colours = plt.cm.viridis(np.linspace(0.0, 0.9, max(len(outcomes), 1)))
    scratch_drawn = False
    for ax, measure in zip(axes.flat, measures):
        keys, ylabel, panel_title = CURVES[measure]
        key = keys[0]
        if len(keys) > 1:
            panel_title, ylabel = MEASURES[key].label, f"{ylabel} ({MEASURES[key].unit.removeprefix('L2, ')})"
        for outcome, colour in zip(outcomes, colours):
            xs, ys = _series(outcome.record, key)
            ax.plot(xs, ys, "-o", color=colour, markersize=3, label=_run_label(outcome))
            if getattr(outcome, "scratch", None) is not None:
                xs, ys = _series(outcome.scratch, key)
                ax.plot(xs, ys, "--", color=colour, linewidth=1)
                scratch_drawn = True
        if measure == "val_accuracy":
            targets = {round(float(t), 6) for t in (o.record.experiment.get("target_accuracy") for o in outcomes)
                       if t is not None}
            for index, target in enumerate(sorted(targets)):
                ax.axhline(target, color="grey", linestyle=":", label="target" if index == 0 else None)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_title(panel_title)
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in list(axes.flat)[len(measures):]:
        ax.set_axis_off()
    first = axes.flat[0]
    if scratch_drawn:
        first.plot([], [], "--", color="grey", linewidth=1, label="from scratch")
    default = "task" if outcomes and getattr(outcomes[0], "task", "") else "intensity"
    first.legend(title=legend_title or default, fontsize=7)
    if title and len(measures) > 1:
        figure.suptitle(title)
    elif title:
        first.set_title(title)
    _margins(figure, left=0.8, right=0.15, bottom=0.55, top=0.7 if title and len(measures) > 1 else 0.35,
             wgap=0.85, hgap=0.85)
    return figure


def grid_angles(outcomes, classes: Sequence[str] | None = None, *, title: str | None = None):
    """The per-class angles of RESQUE_dist at every intensity of a grid, as heat maps: intensity by class.

    One panel for the unpaired index and, when every run has it, one for the
    paired index, on one colour scale; each cell is written out, and the last
    column is their mean, RESQUE_dist itself. This is :func:`angle_bars` for
    a whole page.
    """
    results = [("unpaired", [o.dist for o in outcomes])]
    if outcomes and all(o.dist_paired is not None for o in outcomes):
        results.append(("paired", [o.dist_paired for o in outcomes]))
    labels = sorted({k for o in outcomes for k in o.dist.angles})
    names = [classes[k] if classes is not None and k < len(classes) else str(k) for k in labels] + ["mean"]
    values = [np.array([[d.angles.get(k, np.nan) for k in labels] + [float(d)] for d in dists], dtype=float)
              for _, dists in results]
    top = max([float(np.nanmax(v)) for v in values if np.isfinite(v).any()] or [1.0]) or 1.0
    width = max(3.5, 0.4 * len(names) + 0.6)
    # laid out by hand: a layout engine measures every written cell again and again (twice the drawing time)
    # margins in inches: run labels and "intensity" on the left, the colour bar and its label on the right
    margin = {"left": 0.85, "right": 1.0, "bottom": 1.1, "top": 0.6}
    figure, axes = plt.subplots(1, len(results), sharey=True, squeeze=False,
                                figsize=(width * len(results) + margin["left"] + margin["right"],
                                         0.4 * len(outcomes) + margin["bottom"] + margin["top"] + 0.2))
    _margins(figure, wgap=0.1, **margin)
    for ax, (name, _), grid in zip(axes.flat, results, values):
        image = ax.imshow(grid, aspect="auto", cmap="magma_r", vmin=0.0, vmax=top)
        ax.axvline(len(labels) - 0.5, color="white", linewidth=3)  # the mean apart from the classes
        for (row, col), value in np.ndenumerate(grid):
            if np.isfinite(value):
                ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if value > 0.6 * top else "black")
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
        ax.set_xlabel("class")
        ax.set_title(name)
    first = axes.flat[0]
    first.set_yticks(range(len(outcomes)))
    first.set_yticklabels([_run_label(o) for o in outcomes], fontsize=8)
    first.set_ylabel("intensity")
    fig_w, fig_h = figure.get_size_inches()
    bar = figure.add_axes((1.0 - (margin["right"] - 0.1) / fig_w, margin["bottom"] / fig_h, 0.08 / fig_w,
                           1.0 - (margin["bottom"] + margin["top"]) / fig_h))
    figure.colorbar(image, cax=bar, label=r"angle $\theta_k$ (fraction of $\pi$)")
    figure.suptitle(title or "Per-class angles of RESQUE_dist")
    return figure


def task_costs(outcomes, *, title: str | None = None):
    """The tasks of a seed at a glance: the cost of retraining for each task against its RESQUE_task.

    One point per task, labelled; reuse filled, the from-scratch yardstick
    (to the same target) as a square; a hollow marker is a censored run (its
    cost is a lower bound).
    """
    figure, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, colour, marker, pick in (("reuse", "C0", "o", lambda o: o.record),
                                       ("from scratch", "C1", "s", lambda o: o.scratch)):
        points = [(float(o.record.estimators.get("resque_task", np.nan)), pick(o)) for o in outcomes
                  if pick(o) is not None]
        for index, (x, record) in enumerate(points):
            y = float(record.totals.get("epochs") or 0.0)
            style = {"facecolors": "none", "edgecolors": colour} if record.censored else {"color": colour}
            ax.scatter([x], [y], marker=marker, s=40, zorder=3, label=name if index == 0 else None, **style)
    for outcome in outcomes:
        ax.annotate(outcome.task, (float(outcome.record.estimators.get("resque_task", np.nan)),
                                   float(outcome.record.totals.get("epochs") or 0.0)),
                    textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("RESQUE_task (1 - ARI)")
    ax.set_ylabel("epochs to the target")
    ax.set_ylim(bottom=0)
    ax.set_title(title or "Cost of retraining for each task")
    ax.legend(fontsize=7)
    _margins(figure, left=0.7, right=0.15, bottom=0.55, top=0.4)
    return figure
