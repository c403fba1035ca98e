"""The method page's illustration, drawn from resque's own functions on two-dimensional toy points."""

from __future__ import annotations

from pathlib import Path


def _method_figure(path: Path) -> None:
    """Draw the method page's illustration (seeded: the same picture every time)."""
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np
    import matplotlib.pyplot as plt
    import torch

    from ...index.functional import adjusted_rand_index, class_angles, kmeans_labels

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), dpi=110, gridspec_kw={"width_ratios": [1.35, 1, 1]})

    # (a) RESQUE_dist: one class's summed embedding before and after a shift.
    ax = axes[0]
    s_o, s_s = np.array([3.0, 1.0]), np.array([2.0, 2.4])
    theta = float(class_angles(torch.from_numpy(s_o[None]), torch.from_numpy(s_s[None]))[0])
    for vector, colour, label in ((s_o, "tab:blue", r"$s_o(k)$: original"), (s_s, "tab:orange", r"$s_s(k)$: shifted")):
        ax.annotate("", xy=vector, xytext=(0, 0), arrowprops=dict(arrowstyle="-|>", color=colour, lw=2))
        ax.text(*(vector * 1.04), label, color=colour, fontsize=9)
    start, stop = np.arctan2(s_o[1], s_o[0]), np.arctan2(s_s[1], s_s[0])
    arc = np.linspace(start, stop, 30)
    ax.plot(0.9 * np.cos(arc), 0.9 * np.sin(arc), color="black", lw=1)
    ax.text(1.0, 0.55, rf"$\pi\,\theta_k$ ($\theta_k$ = {theta:.2f})", fontsize=9)
    ax.set(xlim=(-0.3, 4.6), ylim=(-0.3, 3.2), xticks=[], yticks=[],
           title="RESQUE_dist: angle of each class's sum")

    # (b, c) RESQUE_task: k-means from the true centroids, 1 - ARI.
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [3.0, 0.5], [1.2, 2.8]])
    labels = np.repeat(np.arange(3), 60)
    for ax, spread, name in ((axes[1], 0.45, "features separate the new classes"),
                             (axes[2], 1.6, "features mix the new classes")):
        points = centres[labels] + spread * rng.standard_normal((labels.size, 2))
        init = np.stack([points[labels == k].mean(axis=0) for k in range(3)])
        clusters, _ = kmeans_labels(points, 3, init)
        score = 1.0 - adjusted_rand_index(labels, clusters)
        ax.scatter(points[:, 0], points[:, 1], c=labels, cmap="tab10", vmin=0, vmax=9, s=10, alpha=0.8)
        ax.set(xticks=[], yticks=[], title=f"{name}\nRESQUE_task = 1 - ARI = {score:.2f}")
        ax.title.set_fontsize(10)
    axes[0].title.set_fontsize(10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
