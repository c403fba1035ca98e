"""Task-change transferability baselines to compare RESQUE_task against.

Each score says how well a trained source model's features (or its source-class
predictions) suit a new labelled task, without retraining. They are written
from their papers' definitions as plain functions on arrays, and
:func:`task_scores` computes all of them from one forward pass of the source
model over the new task's data.

Every score here is "higher = easier transfer", the opposite sign of
RESQUE_task ("higher = harder"); the predictor registry
(:func:`resque.get_predictor`) records it.

References
----------
.. [LogME] K. You, Y. Liu, J. Wang, M. Long. "LogME: Practical Assessment of
   Pre-trained Models for Transfer Learning". ICML 2021.
.. [LEEP] C. V. Nguyen, T. Hassner, M. Seeger, C. Archambeau. "LEEP: A New
   Measure to Evaluate Transferability of Learned Representations". ICML 2020.
.. [NCE] A. T. Tran, C. V. Nguyen, T. Hassner. "Transferability and Hardness of
   Supervised Classification Tasks". ICCV 2019.
.. [H] Y. Bao, Y. Li, S.-L. Huang, L. Zhang, L. Zheng, A. Zamir, L. Guibas. "An
   Information-Theoretic Approach to Transferability in Task Transfer
   Learning". ICIP 2019.
.. [GBC] M. Pandy, A. Agostinelli, J. Uijlings, V. Ferrari, T. Mensink.
   "Transferability Estimation using Bhattacharyya Class Separability".
   CVPR 2022.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ..index.embedding import ForwardOptions, model_outputs
from ..errors import DataError
from ..checks import check_choice, check_int
from ..index.functional import pool_embedding

__all__ = [
    "SCORES",
    "gbc",
    "h_score",
    "knn_accuracy",
    "leep",
    "linear_probe_accuracy",
    "logme",
    "nce",
    "scores_from_outputs",
    "task_scores",
]


#: GBC's PCA width, as in [GBC] (Sec. 4: features reduced to 64 dimensions).
GBC_PCA_DIMS = 64

#: Eigenvalues of cov(f) below this fraction of the largest are treated as 0 by H-score.
H_SCORE_RCOND = 1e-10


# --------------------------------------------------------------------------- checks


def _check_features(features, name: str = "features") -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise DataError(
            f"`{name}` must be a 2-D (N, D) array of one embedding per image, got shape {x.shape}; "
            "reshape it (e.g. features.reshape(len(features), -1))."
        )
    if not np.isfinite(x).all():
        raise DataError(f"`{name}` contains NaN or Inf values; clean or drop those rows first.")
    return x


def _check_labels(labels, n_rows: int, rows_name: str = "features") -> tuple[np.ndarray, int]:
    """Validate `labels` against `n_rows` samples; return dense labels 0..K-1 and K."""
    y = np.asarray(labels)
    if y.ndim != 1:
        raise DataError(
            f"`labels` must be a 1-D (N,) array of integer classes, got shape {y.shape} "
            "(for one-hot labels use labels.argmax(1))."
        )
    if y.dtype == bool or not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"`labels` must hold integer classes, got dtype {y.dtype}; convert with labels.astype(int).")
    if y.shape[0] != n_rows:
        raise DataError(
            f"`labels` has {y.shape[0]} entries but `{rows_name}` has {n_rows} rows; "
            "they must describe the same images, one label per row."
        )
    classes, dense = np.unique(y, return_inverse=True)
    if classes.size < 2:
        raise DataError(
            f"The new task needs at least 2 classes, found {classes.size} "
            f"({classes.tolist()}); a one-class task has nothing to separate."
        )
    return dense.reshape(-1), int(classes.size)


# --------------------------------------------------------------------------- LogME


def logme(features, labels, *, tol: float = 1e-10, max_iter: int = 1000) -> float:
    """LogME: mean log marginal evidence of Bayesian linear regression per sample [LogME]_.

    For each class ``k`` the one-hot target ``y_k = [labels == k]`` is modelled as
    ``y_k = F w + noise`` with prior ``w ~ N(0, alpha^-1 I)`` and noise precision
    ``beta``. ``alpha`` and ``beta`` maximise the evidence ``log p(y_k | F)`` via
    the paper's fixed-point (MacKay) iteration ``gamma = sum beta s_i^2 / (alpha
    + beta s_i^2)``, ``alpha = gamma / |m|^2``, ``beta = (N - gamma) / |F m - y|^2``,
    evaluated through one SVD of ``F`` shared by all classes.

    Parameters
    ----------
    features : array_like
        ``(N, D)`` embeddings ``F`` (used as given; no centring or scaling).
    labels : array_like
        ``(N,)`` integer classes (any values; re-indexed to ``0..K-1``).
    tol : float, default 1e-10
        Stop when ``alpha`` and ``beta`` change by less than this fraction.
    max_iter : int, default 1000
        Upper bound on fixed-point iterations.

    Returns
    -------
    float
        ``(1/K) sum_k log p(y_k | F, alpha_k, beta_k) / N``. Higher = more transferable.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1], 50)
    >>> logme(rng.normal(size=(100, 4)) + 3 * y[:, None], y) > logme(rng.normal(size=(100, 4)), y)
    True
    """
    f = _check_features(features)
    dense, n_classes = _check_labels(labels, f.shape[0])
    n, d = f.shape
    targets = np.eye(n_classes)[dense]  # (N, K) one-hot
    u, s, _ = np.linalg.svd(f, full_matrices=False)  # u (N, r), s (r,), r = min(N, D)
    s2 = (s**2)[:, None]  # (r, 1) eigenvalues of F^T F (the other D - r are 0)
    z2 = (u.T @ targets) ** 2  # (r, K) squared coordinates of y in the column basis
    outside = np.maximum((targets**2).sum(0) - z2.sum(0), 0.0)  # (K,) |y|^2 outside span(F)
    tiny = np.finfo(np.float64).tiny

    def statistics(alpha, beta):
        denom = alpha + beta * s2  # (r, K)
        gamma = (beta * s2 / denom).sum(0)  # (K,) effective number of parameters
        m2 = (beta**2 * s2 * z2 / denom**2).sum(0)  # (K,) |m|^2
        res2 = ((alpha / denom) ** 2 * z2).sum(0) + outside  # (K,) |F m - y|^2
        return denom, gamma, np.maximum(m2, tiny), np.maximum(res2, tiny)

    alpha = np.ones(n_classes)
    beta = np.ones(n_classes)
    for _ in range(max_iter):
        _, gamma, m2, res2 = statistics(alpha, beta)
        new_alpha, new_beta = gamma / m2, np.maximum(n - gamma, tiny) / res2
        change = max(np.max(np.abs(new_alpha - alpha) / alpha), np.max(np.abs(new_beta - beta) / beta))
        alpha, beta = new_alpha, new_beta
        if change < tol:
            break
    denom, _, m2, res2 = statistics(alpha, beta)
    log_det_a = np.log(denom).sum(0) + (d - s2.shape[0]) * np.log(alpha)  # (K,) log|alpha I + beta F^T F|
    evidence = (
        0.5 * n * np.log(beta)
        + 0.5 * d * np.log(alpha)
        - 0.5 * n * math.log(2 * math.pi)
        - 0.5 * beta * res2
        - 0.5 * alpha * m2
        - 0.5 * log_det_a
    )  # (K,)
    return float(np.mean(evidence / n))


# --------------------------------------------------------------------------- LEEP and NCE


def leep(probs, labels) -> float:
    """LEEP: log expected empirical prediction of the source model's softmax [LEEP]_.

    With ``theta(x_i)`` the source model's softmax over its ``Z`` classes, the
    empirical joint is ``P(y, z) = (1/N) sum_{i: y_i = y} theta(x_i)_z``, the
    conditional ``P(y | z) = P(y, z) / P(z)``, and

    ``LEEP = (1/N) sum_i log sum_z P(y_i | z) theta(x_i)_z``.

    Parameters
    ----------
    probs : array_like
        ``(N, Z)`` source-class probabilities, rows non-negative and summing to 1.
    labels : array_like
        ``(N,)`` integer target classes (any values; re-indexed).

    Returns
    -------
    float
        Average log-likelihood, ``<= 0``. Higher = easier transfer.

    Examples
    --------
    >>> leep([[1.0, 0.0], [0.0, 1.0]], [0, 1])
    0.0
    """
    theta = _check_features(probs, "probs")
    dense, n_classes = _check_labels(labels, theta.shape[0], "probs")
    if (theta < 0).any() or not np.allclose(theta.sum(1), 1.0, atol=1e-4):
        raise DataError(
            "`probs` must be source-class probabilities (non-negative rows summing to 1); "
            "apply a softmax to the logits first (e.g. torch.softmax(logits, dim=1))."
        )
    n = theta.shape[0]
    joint = np.eye(n_classes)[dense].T @ theta / n  # (K, Z) P(y, z)
    marginal = joint.sum(0)  # (Z,) P(z)
    # A source class no image predicts (P(z) = 0) has theta_z = 0 everywhere, so its P(y|z) never counts.
    conditional = np.divide(joint, marginal, out=np.zeros_like(joint), where=marginal > 0)  # (K, Z)
    likelihood = (theta * conditional[dense]).sum(1)  # (N,) sum_z P(y_i|z) theta(x_i)_z
    return float(np.mean(np.log(likelihood)))


def nce(source_pred, labels) -> float:
    """NCE: negative conditional entropy ``-H(Y | Z)`` of target given source labels [NCE]_.

    ``Z`` is the source model's hard prediction. From the empirical joint
    ``P(y, z)`` of the ``N`` pairs, ``NCE = sum_{y,z} P(y, z) log P(y | z)``
    (natural log, nats).

    Parameters
    ----------
    source_pred : array_like
        ``(N,)`` integer source-class predictions, or ``(N, Z)`` source scores
        (logits or probabilities) whose ``argmax`` is taken.
    labels : array_like
        ``(N,)`` integer target classes.

    Returns
    -------
    float
        ``<= 0``; 0 when ``Z`` determines ``Y``. Higher = easier transfer.

    Examples
    --------
    >>> nce([0, 0, 1, 1], [3, 3, 5, 5])
    0.0
    """
    z = np.asarray(source_pred)
    if z.ndim == 2:
        z = _check_features(z, "source_pred").argmax(1)
    elif z.ndim != 1 or z.dtype == bool or not np.issubdtype(z.dtype, np.integer):
        raise DataError(
            f"`source_pred` must be (N,) integer predictions or (N, Z) scores, got shape {z.shape} "
            f"and dtype {z.dtype}."
        )
    dense, n_classes = _check_labels(labels, z.shape[0], "source_pred")
    _, z_dense = np.unique(z, return_inverse=True)
    joint = np.zeros((n_classes, int(z_dense.max()) + 1))  # (K, Z') counts
    np.add.at(joint, (dense, z_dense.reshape(-1)), 1.0)
    joint /= z.shape[0]
    conditional = joint / joint.sum(0)  # every z' column is observed, so no zero division
    terms = np.where(joint > 0, joint * np.log(np.where(joint > 0, conditional, 1.0)), 0.0)
    return float(terms.sum())


# --------------------------------------------------------------------------- H-score and GBC


def _class_means(x: np.ndarray, dense: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    onehot = np.eye(n_classes)[dense]  # (N, K)
    counts = onehot.sum(0)  # (K,)
    return onehot.T @ x / counts[:, None], counts  # (K, D), (K,)


def h_score(features, labels) -> float:
    """H-score ``tr(cov(f)^+ cov(E[f | y]))`` [H]_.

    ``cov(f)`` is the ``(D, D)`` covariance of the features; ``cov(E[f|y])`` is
    the covariance of each sample's class-mean feature, i.e. the between-class
    covariance ``sum_k (n_k / N)(mu_k - mu)(mu_k - mu)^T``.

    Notes
    -----
    ``cov(f)`` is often singular (dead ReLU channels, ``N < D``), so its
    Moore-Penrose pseudo-inverse is used, treating eigenvalues below
    ``H_SCORE_RCOND = 1e-10`` times the largest as zero. Because
    ``cov(f) = within + between``, the score lies in ``[0, K - 1]``.

    Parameters
    ----------
    features : array_like
        ``(N, D)`` embeddings.
    labels : array_like
        ``(N,)`` integer classes.

    Returns
    -------
    float
        Higher = easier transfer.

    Examples
    --------
    >>> round(h_score([[0.0], [0.0], [1.0], [1.0]], [0, 0, 1, 1]), 6)
    1.0
    """
    x = _check_features(features)
    dense, n_classes = _check_labels(labels, x.shape[0])
    centred = x - x.mean(0)  # (N, D)
    cov_f = centred.T @ centred / x.shape[0]  # (D, D)
    means, counts = _class_means(centred, dense, n_classes)  # (K, D) class means of centred f
    cov_g = (means * (counts / x.shape[0])[:, None]).T @ means  # (D, D) between-class covariance
    return float(np.trace(np.linalg.pinv(cov_f, rcond=H_SCORE_RCOND, hermitian=True) @ cov_g))


def gbc(features, labels, *, pca_dims: int = GBC_PCA_DIMS) -> float:
    """GBC: minus the summed Bhattacharyya coefficients between class Gaussians [GBC]_.

    The features are centred and projected on their first ``min(pca_dims, D, N)``
    principal components (the paper reduces to 64 dimensions). Each class ``c``
    is a Gaussian with mean ``mu_c`` and diagonal covariance ``Sigma_c``; with
    ``Sigma = (Sigma_i + Sigma_j) / 2`` the Bhattacharyya distance is

    ``D_B = 1/8 (mu_i - mu_j)^T Sigma^-1 (mu_i - mu_j) + 1/2 ln(det Sigma / sqrt(det Sigma_i det Sigma_j))``,

    ``BC = exp(-D_B)`` and ``GBC = -sum_{i != j} BC(c_i, c_j)`` (both orders).

    Notes
    -----
    A class with zero variance along a component (one image, or a dead
    feature) would make ``D_B`` undefined, so every per-class variance is
    floored at ``1e-12`` times the mean variance of the projected features.

    Parameters
    ----------
    features : array_like
        ``(N, D)`` embeddings.
    labels : array_like
        ``(N,)`` integer classes.
    pca_dims : int, default 64
        Width after PCA.

    Returns
    -------
    float
        In ``[-K(K-1), 0]``; closer to 0 = better separated = easier transfer.
    """
    x = _check_features(features)
    dense, n_classes = _check_labels(labels, x.shape[0])
    pca_dims = check_int("pca_dims", pca_dims, minimum=1, allowed="a positive integer")
    centred = x - x.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)  # rows of vt: principal directions
    projected = centred @ vt[:pca_dims].T  # (N, d)
    means, _ = _class_means(projected, dense, n_classes)  # (K, d)
    second, _ = _class_means(projected**2, dense, n_classes)  # (K, d) E[x^2 | c]
    floor = 1e-12 * max(float(projected.var(0).mean()), np.finfo(np.float64).tiny)
    variances = np.maximum(second - means**2, floor)  # (K, d) diagonal of Sigma_c
    average = 0.5 * (variances[:, None, :] + variances[None, :, :])  # (K, K, d)
    gap = means[:, None, :] - means[None, :, :]  # (K, K, d)
    log_var = np.log(variances)
    distance = 0.125 * (gap**2 / average).sum(-1) + 0.5 * (
        np.log(average).sum(-1) - 0.5 * (log_var.sum(-1)[:, None] + log_var.sum(-1)[None, :])
    )  # (K, K) Bhattacharyya distances
    coefficient = np.exp(-distance)
    np.fill_diagonal(coefficient, 0.0)
    return float(-coefficient.sum())


# --------------------------------------------------------------------------- probes


def _cv_accuracy(estimator, features, labels, seed) -> float:
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = _check_features(features)
    dense, _ = _check_labels(labels, x.shape[0])
    smallest = int(np.bincount(dense).min())
    if smallest < 2:
        raise DataError(
            "Cross-validated accuracy needs at least 2 images of every class (one to train on, one to "
            f"test on); the smallest class has {smallest}. Drop that class or add images."
        )
    folds = StratifiedKFold(n_splits=min(5, smallest), shuffle=True, random_state=seed)
    scores = cross_val_score(make_pipeline(StandardScaler(), estimator), x, dense, cv=folds)
    return float(np.mean(scores))


def knn_accuracy(features, labels, k: int = 5, seed: int = 0) -> float:
    """Cross-validated k-nearest-neighbour accuracy on standardised features.

    Stratified 5-fold cross-validation (fewer folds when the smallest class has
    fewer than 5 images), shuffled with `seed`; features are standardised on each
    training fold; Euclidean ``k``-NN with uniform votes.

    Parameters
    ----------
    features : array_like
        ``(N, D)`` embeddings.
    labels : array_like
        ``(N,)`` integer classes.
    k : int, default 5
        Neighbours (capped at the training fold's size).
    seed : int, default 0
        Shuffles the folds.

    Returns
    -------
    float
        Mean test-fold accuracy in ``[0, 1]``; about ``1/K`` for labels unrelated
        to the features. Higher = easier transfer.
    """
    from sklearn.neighbors import KNeighborsClassifier

    k = check_int("k", k, minimum=1, allowed="a positive integer")
    x = _check_features(features)
    # Every training fold holds at least half the images, so k never exceeds it.
    return _cv_accuracy(KNeighborsClassifier(n_neighbors=max(1, min(k, x.shape[0] // 2))), x, labels, seed)


def linear_probe_accuracy(features, labels, seed: int = 0) -> float:
    """Cross-validated accuracy of a logistic-regression probe on standardised features.

    Same folds as :func:`knn_accuracy`; multinomial L2-regularised logistic
    regression (``C=1``, L-BFGS, up to 1000 iterations).

    Parameters
    ----------
    features : array_like
        ``(N, D)`` embeddings.
    labels : array_like
        ``(N,)`` integer classes.
    seed : int, default 0
        Shuffles the folds.

    Returns
    -------
    float
        Mean test-fold accuracy in ``[0, 1]``. Higher = easier transfer.
    """
    from sklearn.linear_model import LogisticRegression

    return _cv_accuracy(LogisticRegression(C=1.0, max_iter=1000), features, labels, seed)


# --------------------------------------------------------------------------- one pass


def _limit(data, max_images, seed):
    """A seeded random subset of a Dataset, or a DataLoader that is read until `max_images`."""
    if max_images is None:
        return data
    if isinstance(data, Dataset) and not isinstance(data, DataLoader):
        try:
            size = len(data)
        except TypeError:  # no __len__: read in order and stop after max_images
            return data
        if size > max_images:
            order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:max_images]
            return Subset(data, order.sort().values.tolist())
    return data


def _collect_with_logits(model, data, layer, max_images, forward: ForwardOptions):
    """One pass: mean-pooled embedding of `layer` and the model's output logits, on the CPU."""
    embeddings, logits, labels = [], [], []
    kept = 0
    outputs = model_outputs(model, data, layer, name="data", forward=forward)
    try:
        for output, final, batch_labels in outputs:
            if not isinstance(final, torch.Tensor) or final.ndim != 2:
                raise DataError(
                    "LEEP and NCE need the model to return (B, Z) source-class logits; it returned "
                    + (f"shape {tuple(final.shape)}" if isinstance(final, torch.Tensor) else type(final).__name__)
                    + ". Wrap the model so that forward() returns the classifier's logits."
                )
            take = batch_labels.shape[0] if max_images is None else min(batch_labels.shape[0], max_images - kept)
            embeddings.append(pool_embedding(output, "mean")[:take].double().cpu())  # (B, C)
            logits.append(final[:take].double().cpu())  # (B, Z)
            labels.append(batch_labels[:take].cpu())
            kept += take
            if max_images is not None and kept >= max_images:
                break
    finally:
        outputs.close()
    return torch.cat(embeddings).numpy(), torch.cat(logits), torch.cat(labels).numpy()


def task_scores(model: nn.Module, data, layer: str, *, names=None, seed: int = 0, max_images: int | None = None,
                **options) -> dict[str, float]:
    """Every transferability baseline for one model layer, from one forward pass.

    The pass captures the mean-pooled embedding of `layer` (features for LogME,
    H-score, GBC, kNN and the linear probe) and the model's output logits over
    its source classes (softmax for LEEP, argmax for NCE).

    Parameters
    ----------
    model : torch.nn.Module
        The trained source model; its ``forward`` must return ``(B, Z)`` logits.
        Run in ``eval()`` mode without gradients; its mode is restored.
    data : Dataset or DataLoader
        Labelled images of the new task, yielding ``(image, label)``.
    layer : str
        Name from ``model.named_modules()``.
    names : sequence of str, optional
        Which scores to compute, from :data:`SCORES` (default: all).
    seed : int, default 0
        Picks the `max_images` subset and shuffles the probes' folds.
    max_images : int, optional
        Use at most this many images: a seeded random subset of a ``Dataset``,
        or the first ones a ``DataLoader`` yields. Default: all.
    **options
        ``device``, ``batch_size``, ``num_workers``, ``progress``, as in
        :func:`resque.resque_task`.

    Returns
    -------
    dict[str, float]
        ``{name: score}`` for every name in `names`, in that order; all are
        "higher = easier transfer".

    Examples
    --------
    >>> scores = task_scores(model, new_task_set, layer="features", progress=False)  # doctest: +SKIP
    >>> sorted(scores) == sorted(SCORES)  # doctest: +SKIP
    True
    """
    forward = ForwardOptions.from_kwargs(options, others="Other keyword arguments of task_scores: names, seed, max_images.")
    names = SCORES if names is None else ((names,) if isinstance(names, str) else tuple(names))
    for name in names or ("",):
        check_choice("names", name, SCORES)
    if max_images is not None:
        max_images = check_int("max_images", max_images, minimum=1, allowed="a positive integer")
    features, logits, labels = _collect_with_logits(model, _limit(data, max_images, seed), layer, max_images, forward)
    return scores_from_outputs(features, logits, labels, names=names, seed=seed)


def scores_from_outputs(features, logits, labels, *, names=None, seed: int = 0) -> dict[str, float]:
    """The scores of :func:`task_scores` from a pass already made.

    Parameters
    ----------
    features : ndarray
        ``(N, C)`` float64 mean-pooled embeddings of the layer.
    logits : torch.Tensor
        ``(N, Z)`` float64 source-class logits of the same images.
    labels : ndarray
        ``(N,)`` integer labels of the new task.
    names, seed
        As in :func:`task_scores`.
    """
    names = SCORES if names is None else ((names,) if isinstance(names, str) else tuple(names))
    for name in names or ("",):
        check_choice("names", name, SCORES)
    probs = torch.softmax(logits, dim=1).numpy()  # (N, Z), float64
    inputs = {"features": features, "probs": probs, "labels": labels, "seed": seed}
    return {name: float(_SCORERS[name](**inputs)) for name in names}


#: Each score from the outputs of one pass (its sign and label: resque.predictors.registry).
_SCORERS = {
    "logme": lambda features, labels, **_: logme(features, labels),
    "leep": lambda probs, labels, **_: leep(probs, labels),
    "nce": lambda probs, labels, **_: nce(probs.argmax(1), labels),
    "h_score": lambda features, labels, **_: h_score(features, labels),
    "gbc": lambda features, labels, **_: gbc(features, labels),
    "knn_accuracy": lambda features, labels, seed, **_: knn_accuracy(features, labels, seed=seed),
    "linear_probe_accuracy": lambda features, labels, seed, **_: linear_probe_accuracy(features, labels, seed=seed),
}
#: The scores :func:`task_scores` computes, in order.
SCORES = tuple(_SCORERS)
