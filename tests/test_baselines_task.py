"""Transferability baselines: hand-computed values, slow references, properties, errors."""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from torch.utils.data import TensorDataset
from toy import patterned_images, toy_cnn

from resque.predictors import transfer as bt
from resque.errors import DataError, InvalidParameterError


def blobs(n_per_class=40, classes=3, dim=6, gap=6.0, seed=0):
    """Gaussian blobs whose class centres are `gap` apart along separate axes."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), n_per_class)
    centres = gap * np.eye(classes, dim)
    return centres[labels] + rng.normal(size=(labels.size, dim)), labels


def shuffled(labels, seed=1):
    return np.random.default_rng(seed).permutation(labels)


# --------------------------------------------------------------------------- LogME


def slow_log_evidence(f, y, alpha, beta):
    """Closed-form log p(y | F, alpha, beta) with explicit matrices."""
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    _, log_det = np.linalg.slogdet(a)
    return (
        0.5 * n * math.log(beta)
        + 0.5 * d * math.log(alpha)
        - 0.5 * n * math.log(2 * math.pi)
        - 0.5 * beta * np.sum((f @ m - y) ** 2)
        - 0.5 * alpha * m @ m
        - 0.5 * log_det
    )


def slow_logme(f, labels):
    """Maximise the evidence directly: a log-grid over (alpha, beta), then Nelder-Mead from the best cell."""
    grid = np.logspace(-4, 4, 41)
    per_class = []
    for k in np.unique(labels):
        y = (labels == k).astype(float)
        best = max((slow_log_evidence(f, y, a, b), a, b) for a in grid for b in grid)
        result = minimize(
            lambda t, y=y: -slow_log_evidence(f, y, math.exp(t[0]), math.exp(t[1])),
            [math.log(best[1]), math.log(best[2])],
            method="Nelder-Mead",
            options={"xatol": 1e-10, "fatol": 1e-12, "maxiter": 4000},
        )
        per_class.append(max(-result.fun, best[0]) / f.shape[0])
    return float(np.mean(per_class))


def test_logme_matches_direct_evidence_maximisation():
    rng = np.random.default_rng(3)
    f = rng.normal(size=(12, 3))
    labels = np.array([0, 1, 2] * 4)
    f[:, 0] += labels  # some signal so the optimum is interior
    assert bt.logme(f, labels) == pytest.approx(slow_logme(f, labels), abs=1e-6)


def test_logme_handles_more_dimensions_than_samples():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(8, 20))
    labels = np.array([0, 1] * 4)
    value = bt.logme(f, labels)
    assert math.isfinite(value)
    assert value == pytest.approx(slow_logme(f, labels), abs=1e-5)


def test_logme_rises_with_separation():
    x, y = blobs()
    assert bt.logme(x, y) > bt.logme(x, shuffled(y)) + 0.1


# --------------------------------------------------------------------------- LEEP and NCE


def test_leep_by_hand_on_four_samples():
    theta = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.8]])
    y = np.array([0, 0, 1, 1])
    # P(y,z): (0,0) = 1.7/4, (0,1) = 0.3/4, (1,0) = 0.5/4, (1,1) = 1.5/4; P(z) = 2.2/4, 1.8/4.
    p_y_given_z = {(0, 0): 17 / 22, (0, 1): 3 / 18, (1, 0): 5 / 22, (1, 1): 15 / 18}
    expected = np.mean(
        [math.log(theta[i, 0] * p_y_given_z[(y[i], 0)] + theta[i, 1] * p_y_given_z[(y[i], 1)]) for i in range(4)]
    )
    assert bt.leep(theta, y) == pytest.approx(expected, abs=1e-12)


def informative_and_independent(n=600, source_classes=6, classes=3, seed=0):
    """Source softmax that predicts z = 2y (+ noise), and one independent of y."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    logits = rng.normal(size=(n, source_classes))
    informative = logits.copy()
    informative[np.arange(n), 2 * y] += 4.0
    return softmax(informative), softmax(logits), y


def softmax(logits):
    return np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


def test_leep_and_nce_higher_when_source_predictions_are_informative():
    informative, independent, y = informative_and_independent()
    assert bt.leep(informative, y) > bt.leep(independent, y) + 0.3
    assert bt.nce(informative.argmax(1), y) > bt.nce(independent.argmax(1), y) + 0.3
    assert bt.nce(informative, y) == bt.nce(informative.argmax(1), y)  # (N, Z) scores are argmaxed


def test_leep_is_at_most_zero_and_zero_for_one_hot_deterministic_sources():
    assert bt.leep(np.eye(4)[[0, 1, 2, 3]], [5, 5, 7, 7]) == pytest.approx(0.0, abs=1e-12)
    _, independent, y = informative_and_independent()
    assert bt.leep(independent, y) <= 0.0


def test_nce_is_zero_when_source_determines_target():
    z = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    assert bt.nce(z, z // 2) == pytest.approx(0.0, abs=1e-15)


def test_nce_equals_minus_log_k_for_independent_uniform_labels():
    z = np.repeat([0, 1], 4)
    y = np.tile([0, 1, 2, 3], 2)
    assert bt.nce(z, y) == pytest.approx(-math.log(4), abs=1e-12)


# --------------------------------------------------------------------------- H-score and GBC


def test_h_score_larger_for_separable_and_within_bounds():
    x, y = blobs(classes=4)
    separable, mixed = bt.h_score(x, y), bt.h_score(x, shuffled(y))
    assert separable > mixed + 1.0
    assert 0.0 <= mixed and separable <= 4 - 1 + 1e-9


def test_h_score_matches_explicit_definition():
    x, y = blobs(n_per_class=15, classes=3, dim=4, gap=1.0, seed=5)
    cov_f = np.cov(x, rowvar=False, bias=True)
    g = np.stack([x[y == label].mean(0) for label in y])  # E[f | y_i] per sample
    expected = np.trace(np.linalg.inv(cov_f) @ np.cov(g, rowvar=False, bias=True))
    assert bt.h_score(x, y) == pytest.approx(expected, rel=1e-9)


def test_gbc_closer_to_zero_for_separated_classes():
    x, y = blobs(classes=4)
    separated, mixed = bt.gbc(x, y), bt.gbc(x, shuffled(y))
    assert -4 * 3 <= mixed < separated <= 0.0
    assert separated > -0.01 and mixed < -6.0


def test_gbc_on_two_one_dimensional_classes_by_hand():
    # Class 0: values 0, 2 (mean 1, var 1); class 1: values 3, 7 (mean 5, var 4). PCA on 1-D is the identity.
    x = np.array([[0.0], [2.0], [3.0], [7.0]])
    sigma = 2.5
    distance = 0.125 * 16 / sigma + 0.5 * math.log(sigma / math.sqrt(1 * 4))
    assert bt.gbc(x, [0, 0, 1, 1]) == pytest.approx(-2 * math.exp(-distance), rel=1e-12)


# --------------------------------------------------------------------------- probes


@pytest.mark.parametrize("probe", [bt.knn_accuracy, bt.linear_probe_accuracy])
def test_probe_accuracy_is_one_on_separable_and_chance_on_random_labels(probe):
    x, y = blobs(n_per_class=60, classes=4, dim=8)
    assert probe(x, y) >= 0.98
    chance = probe(np.random.default_rng(2).normal(size=x.shape), y)
    assert abs(chance - 0.25) < 0.12


@pytest.mark.parametrize("probe", [bt.knn_accuracy, bt.linear_probe_accuracy])
def test_probe_is_seeded(probe):
    x, y = blobs(gap=0.5)
    by_seed = {seed: probe(x, y, seed=seed) for seed in range(6)}
    assert probe(x, y, seed=4) == by_seed[4]  # the same seed gives the same folds
    assert len(set(by_seed.values())) > 1  # and the seed does choose the folds


# --------------------------------------------------------------------------- errors


NEEDS_FEATURES = [bt.logme, bt.h_score, bt.gbc, bt.knn_accuracy, bt.linear_probe_accuracy]


@pytest.mark.parametrize("score", NEEDS_FEATURES)
def test_one_class_only_is_refused(score):
    with pytest.raises(DataError, match="at least 2 classes, found 1"):
        score(np.ones((10, 3)) + np.arange(10)[:, None], np.zeros(10, dtype=int))


@pytest.mark.parametrize("score", NEEDS_FEATURES)
def test_length_mismatch_names_both_sizes(score):
    with pytest.raises(DataError, match=r"`labels` has 9 entries but `features` has 10 rows"):
        score(np.random.default_rng(0).normal(size=(10, 3)), np.arange(9) % 2)


def test_leep_and_nce_length_mismatch_and_one_class():
    probs = np.full((6, 2), 0.5)
    with pytest.raises(DataError, match=r"`labels` has 5 entries but `probs` has 6 rows"):
        bt.leep(probs, [0, 1, 0, 1, 0])
    with pytest.raises(DataError, match=r"`labels` has 5 entries but `source_pred` has 6 rows"):
        bt.nce(np.zeros(6, dtype=int), [0, 1, 0, 1, 0])
    with pytest.raises(DataError, match="at least 2 classes"):
        bt.nce(np.arange(6), np.zeros(6, dtype=int))


def test_leep_refuses_logits():
    with pytest.raises(DataError, match="apply a softmax"):
        bt.leep(np.array([[2.0, -1.0], [0.5, 0.1]]), [0, 1])


def test_bad_features_and_labels_are_explained():
    with pytest.raises(DataError, match=r"2-D \(N, D\)"):
        bt.logme(np.zeros(5), [0, 1, 0, 1, 0])
    with pytest.raises(DataError, match="NaN or Inf"):
        bt.h_score(np.array([[np.nan], [1.0]]), [0, 1])
    with pytest.raises(DataError, match="integer classes"):
        bt.gbc(np.zeros((2, 1)), [0.0, 1.0])


def test_probe_refuses_singleton_class():
    x, y = blobs(n_per_class=5)
    y[0] = 7  # a class with one image
    with pytest.raises(DataError, match="smallest class has 1"):
        bt.knn_accuracy(x, y)


# --------------------------------------------------------------------------- one pass


def direct_features_and_probs(model, images, layer_index):
    """Run the model by hand: mean-pooled output of model[layer_index] and the softmax of the logits."""
    model.eval()
    with torch.no_grad():
        hidden = model[: layer_index + 1](images)
        logits = model(images)
    return hidden.mean(dim=(2, 3)).double().numpy(), torch.softmax(logits.double(), 1).numpy()


def test_task_scores_agree_with_functional_versions():
    model = toy_cnn(1, classes=5)
    data = patterned_images(12, seed=2)
    images, labels = data.tensors
    got = bt.task_scores(model, data, "3", batch_size=7, progress=False)
    assert list(got) == list(bt.SCORES)
    assert model.training  # task_scores restored the mode
    features, probs = direct_features_and_probs(model, images, 3)
    y = labels.numpy()
    expected = {
        "logme": bt.logme(features, y),
        "leep": bt.leep(probs, y),
        "nce": bt.nce(probs.argmax(1), y),
        "h_score": bt.h_score(features, y),
        "gbc": bt.gbc(features, y),
        "knn_accuracy": bt.knn_accuracy(features, y),
        "linear_probe_accuracy": bt.linear_probe_accuracy(features, y),
    }
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name


def test_task_scores_max_images_takes_a_seeded_subset():
    model = toy_cnn(1, classes=5)
    data = patterned_images(20, seed=2)
    first = bt.task_scores(model, data, "3", max_images=30, seed=1, progress=False)
    again = bt.task_scores(model, data, "3", max_images=30, seed=1, progress=False)
    assert first == again
    images, labels = data.tensors
    loader = torch.utils.data.DataLoader(TensorDataset(images, labels), batch_size=8, shuffle=False)
    from_loader = bt.task_scores(model, loader, "3", max_images=50, progress=False)
    _, probs = direct_features_and_probs(model, images[:50], 3)
    assert from_loader["leep"] == pytest.approx(bt.leep(probs, labels[:50].numpy()), rel=1e-5)


def test_task_scores_rejects_unknown_options_and_non_logit_models():
    model = toy_cnn(1)
    data = patterned_images(5)
    with pytest.raises(InvalidParameterError, match="options='pool'"):
        bt.task_scores(model, data, "3", pool="flatten")
    with pytest.raises(InvalidParameterError, match="max_images"):
        bt.task_scores(model, data, "3", max_images=0)
    with pytest.raises(DataError, match=r"\(B, Z\) source-class logits"):
        bt.task_scores(model[:2], data, "1", progress=False)
