"""Distribution-shift baselines: hand-checked values, properties, errors, model-level agreement."""

import itertools

import numpy as np
import pytest
import torch
from scipy.linalg import sqrtm
from scipy.stats import ortho_group
from torch.utils.data import TensorDataset
from toy import patterned_images, reference_embeddings, toy_cnn, with_gaussian_noise

import resque
from resque.predictors import shift as bd
from resque.errors import DataError, DegenerateEmbeddingError, InvalidParameterError


def reference_mmd(x, y, sigma):
    """Slow double loops over pairs, straight from Gretton et al. (2012), Lemma 6."""
    k = lambda a, b: np.exp(-np.sum((a - b) ** 2) / (2 * sigma**2))
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


# --- MMD -------------------------------------------------------------------------------------

def test_median_heuristic_on_known_points():
    # points 0, 1, 3 on a line: distances 1, 3, 2 -> median 2
    assert bd.median_heuristic(np.array([[0.0], [1.0], [3.0]])) == pytest.approx(2.0)
    # pooled with a fourth point 6: distances 1,3,6,2,5,3 -> median of (1,2,3,3,5,6) = 3
    assert bd.median_heuristic(np.array([[0.0], [1.0]]), np.array([[3.0], [6.0]])) == pytest.approx(3.0)
    # all points equal -> fallback 1.0
    assert bd.median_heuristic(np.zeros((4, 2))) == 1.0


def test_mmd_matches_slow_reference():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(9, 3)), rng.normal(0.5, 1, size=(7, 3))
    sigma = bd.median_heuristic(x, y)
    assert bd.mmd_rbf(x, y) == pytest.approx(reference_mmd(x, y, sigma), rel=1e-10)
    assert bd.mmd_rbf(torch.tensor(x), torch.tensor(y), bandwidth=0.7) == pytest.approx(reference_mmd(x, y, 0.7))


def test_median_and_mmd_from_one_gram_matrix_match_scipy_pairwise_distances():
    # The fast path (one BLAS product for every pair) against scipy's exact pairwise loops.
    from scipy.spatial.distance import pdist

    rng = np.random.default_rng(3)
    x, y = rng.normal(1.0, 3.0, size=(301, 40)), rng.normal(1.5, 3.5, size=(200, 40))
    pooled = np.concatenate([x, y])
    assert bd.median_heuristic(x, y) == pytest.approx(float(np.median(pdist(pooled))), rel=1e-12)
    assert bd.median_heuristic(x[:300]) == pytest.approx(float(np.median(pdist(x[:300]))), rel=1e-12)  # even count
    sigma = float(np.median(pdist(pooled)))
    assert bd.mmd_rbf(x, y) == pytest.approx(reference_mmd(x, y, sigma), rel=1e-10)


def test_median_heuristic_of_mostly_coinciding_points_far_from_the_origin():
    # Round-off of the Gram form is about 1e-10 here, not 0: the exact distances decide, as documented.
    points = np.full((10, 2), 1000.0)
    points[0] += [1.0, 0.0]
    points[1] += [0.0, 2.0]
    # 28 of the 45 distances are 0; the non-zero ones are eight 1s, eight 2s and 5**0.5: their median is 2
    assert bd.median_heuristic(points) == pytest.approx(2.0)
    assert bd.median_heuristic(np.full((5, 3), 1e4)) == 1.0


def test_mmd_of_sample_with_itself_is_near_zero():
    # unbiased: the within-sample sums skip the diagonal, the cross sum does not, so the
    # value is slightly NEGATIVE: -2 / m * (1 - mean off-diagonal kernel)
    x = np.random.default_rng(1).normal(size=(200, 4))
    value = bd.mmd_rbf(x, x)
    assert -0.02 < value <= 0


def test_mmd_grows_with_mean_shift():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(150, 2))
    noise = rng.normal(size=(150, 2))
    values = [bd.mmd_rbf(x, noise + [d, 0], bandwidth=1.0) for d in (0.0, 0.5, 1.0, 2.0, 4.0)]
    assert all(a < b for a, b in itertools.pairwise(values))
    assert abs(values[0]) < 0.02


# --- Fréchet ---------------------------------------------------------------------------------

def test_frechet_hand_computed_diagonal():
    # S_x = diag(1, 4), S_y = diag(4, 1): (S_x S_y)^{1/2} = diag(2, 2); trace term 5 + 5 - 8 = 2
    # means (0, 0) and (1, 2): mean term 5
    value = bd.frechet_distance_from_moments([0, 0], np.diag([1.0, 4.0]), [1, 2], np.diag([4.0, 1.0]))
    assert value == pytest.approx(7.0)


def test_frechet_hand_computed_correlated():
    # S_x = [[2, 1], [1, 2]] (eigenvalues 3, 1), S_y = I: Tr S_x^{1/2} = sqrt(3) + 1
    # distance = 4 + 2 - 2 (sqrt(3) + 1) = 4 - 2 sqrt(3)
    value = bd.frechet_distance_from_moments([0, 0], [[2.0, 1.0], [1.0, 2.0]], [0, 0], np.eye(2))
    assert value == pytest.approx(4 - 2 * np.sqrt(3))


def test_frechet_matches_sqrtm_on_non_commuting_covariances():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    cov_x, cov_y = a @ a.T, b @ b.T
    mu_x, mu_y = rng.normal(size=4), rng.normal(size=4)
    want = ((mu_x - mu_y) ** 2).sum() + np.trace(cov_x + cov_y - 2 * np.real(sqrtm(cov_x @ cov_y)))
    assert bd.frechet_distance_from_moments(mu_x, cov_x, mu_y, cov_y) == pytest.approx(want, rel=1e-8)


def test_frechet_on_samples():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(20000, 3))
    assert bd.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    m = np.array([1.0, -2.0, 0.5])
    y = rng.normal(size=(20000, 3)) + m
    assert bd.frechet_distance(x, y) == pytest.approx((m**2).sum(), abs=0.05)


def test_frechet_handles_singular_covariance():
    # N < D: rank-2 covariance; the square roots of round-off eigenvalues (~1e-16) leave ~1e-7
    x = np.random.default_rng(5).normal(size=(3, 10))
    assert bd.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-6)
    assert bd.frechet_distance(x, x + 1.0) == pytest.approx(10.0, abs=1e-6)


# --- CKA -------------------------------------------------------------------------------------

def test_cka_invariances():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(50, 5))
    q = ortho_group.rvs(5, random_state=7)
    assert bd.linear_cka(x, x) == pytest.approx(1.0)
    assert bd.linear_cka(x, 3.5 * x) == pytest.approx(1.0)
    assert bd.linear_cka(x, x @ q) == pytest.approx(1.0)
    assert bd.linear_cka(x, x + 10.0) == pytest.approx(1.0)  # centring removes shifts
    y = rng.normal(size=(50, 4))
    assert bd.linear_cka(x, y) == pytest.approx(bd.linear_cka(y, x))  # symmetric, widths may differ


def test_cka_below_one_for_noise_and_decreasing():
    rng = np.random.default_rng(8)
    x = rng.normal(size=(100, 6))
    noise = rng.normal(size=(100, 6))
    values = [bd.linear_cka(x, x + s * noise) for s in (0.1, 0.5, 2.0)]
    assert all(0 < v < 1 for v in values)
    assert values[0] > values[1] > values[2]


def test_cka_matches_hsic_form():
    # Kornblith et al. eq. (3): HSIC with linear kernels K = X X^T, L = Y Y^T, centring H
    rng = np.random.default_rng(9)
    x, y = rng.normal(size=(12, 3)), rng.normal(size=(12, 4))
    h = np.eye(12) - 1 / 12
    hsic = lambda k, l: np.trace(k @ h @ l @ h)
    k, l = x @ x.T, y @ y.T
    want = hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))
    assert bd.linear_cka(x, y) == pytest.approx(want)


# --- errors on the functional forms ----------------------------------------------------------

def test_functional_errors():
    with pytest.raises(DataError, match="paired rows"):
        bd.linear_cka(np.ones((4, 2)), np.ones((5, 2)))
    with pytest.raises(DataError, match="at least 2"):
        bd.mmd_rbf(np.ones((1, 2)), np.ones((5, 2)))
    with pytest.raises(DataError, match="at least 2"):
        bd.frechet_distance(np.ones((5, 2)), np.ones((1, 2)))
    with pytest.raises(DataError, match="2-D"):
        bd.mmd_rbf(np.ones(5), np.ones((5, 1)))
    with pytest.raises(DataError, match="widths"):
        bd.mmd_rbf(np.ones((3, 2)), np.ones((3, 3)))
    with pytest.raises(DataError, match="NaN"):
        bd.frechet_distance(np.array([[np.nan], [1.0]]), np.ones((2, 1)))
    with pytest.raises(DegenerateEmbeddingError):
        bd.linear_cka(np.ones((4, 2)), np.random.default_rng(0).normal(size=(4, 2)))
    with pytest.raises(InvalidParameterError, match="bandwidth"):
        bd.mmd_rbf(np.eye(3), np.eye(3), bandwidth=0)
    with pytest.raises(InvalidParameterError, match="eps"):
        bd.frechet_distance(np.eye(3), np.eye(3), eps=-1)


# --- model level -----------------------------------------------------------------------------

def test_cka_reads_as_a_similarity():
    assert resque.get_predictor("cka").sign == -1 and "SMALLER" in resque.get_predictor("cka").reading
    assert all(resque.get_predictor(m).sign == 1 for m in bd.METRICS if m != "cka")


def test_model_level_agrees_with_functional():
    model = toy_cnn(0)
    clean = patterned_images(10)
    noisy = with_gaussian_noise(clean, 0.3)
    emb_o, emb_s = reference_embeddings(model, clean, 2), reference_embeddings(model, noisy, 2)
    model.train()  # reference_embeddings left it in eval mode
    e = bd.shift_embeddings(model, clean, noisy, "2", batch_size=7, progress=False)
    np.testing.assert_allclose(e.original, emb_o, atol=1e-6)
    np.testing.assert_allclose(e.shifted, emb_s, atol=1e-6)
    np.testing.assert_array_equal(e.labels_original, clean.tensors[1].numpy())
    assert e.logits_original.shape == (30, 3) and e.n_original == 30
    assert model.training  # the pass ran in eval mode and restored train mode

    options = {"batch_size": 8, "progress": False}
    assert float(bd.mmd(model, clean, noisy, "2", **options)) == pytest.approx(bd.mmd_rbf(emb_o, emb_s), abs=1e-6)
    assert float(bd.frechet(model, clean, noisy, "2", **options)) == pytest.approx(
        bd.frechet_distance(emb_o, emb_s), abs=1e-5)
    score = bd.cka(model, clean, noisy, "2", **options)
    assert float(score) == pytest.approx(bd.linear_cka(emb_o, emb_s), abs=1e-6)
    assert score.details["shift"] == pytest.approx(1 - score.value)
    assert float(bd.cka(model, clean, clean, "2", **options)) == pytest.approx(1.0)

    together = bd.baseline_scores(model, clean, noisy, "2", metrics=bd.METRICS, **options)
    for name in bd.METRICS:
        assert float(together[name]) == pytest.approx(float(getattr(bd, name)(
            model, clean, noisy, **({} if name == "accuracy_drop" else {"layer": "2"}), **options)), abs=1e-9)


def test_accuracy_drop_on_toy_model():
    # a "model" whose logits are its input: it is right exactly when the label's entry is largest
    model = torch.nn.Sequential(torch.nn.Identity())
    x = torch.eye(3).repeat(4, 1)  # (12, 3): image i predicts class i % 3
    labels = torch.arange(12) % 3
    wrong = labels.clone()
    wrong[:3] = (wrong[:3] + 1) % 3  # 3 of 12 wrong
    score = bd.accuracy_drop(model, TensorDataset(x, labels), TensorDataset(x, wrong), progress=False)
    assert float(score) == pytest.approx(0.25)
    assert score.details == {"accuracy_original": 1.0, "accuracy_shifted": 0.75}


def test_subsampling_is_seeded_and_paired():
    model = toy_cnn(1)
    clean = patterned_images(20)
    noisy = with_gaussian_noise(clean, 0.2)
    a = bd.shift_embeddings(model, clean, noisy, "5", max_images=13, seed=3, progress=False)
    b = bd.shift_embeddings(model, clean, noisy, "5", max_images=13, seed=3, progress=False)
    c = bd.shift_embeddings(model, clean, clean, "5", max_images=13, seed=3, progress=False)
    assert a.original.shape == (13, 6) and a.n_original == 60
    np.testing.assert_array_equal(a.original, b.original)
    np.testing.assert_array_equal(a.labels_original, a.labels_shifted)  # same positions kept
    np.testing.assert_array_equal(a.original, c.shifted)
    assert a.accuracy_original is not None  # accuracy over all 60 images, not the 13 kept


def test_model_level_errors():
    model = toy_cnn(0)
    clean = patterned_images(5)
    with pytest.raises(DataError, match="paired"):
        bd.cka(model, clean, patterned_images(4), "2", progress=False)
    images, labels = clean.tensors
    with pytest.raises(DataError, match="labels differ"):
        bd.cka(model, clean, TensorDataset(images, labels.flip(0)), "2", progress=False)
    with pytest.raises(DataError, match="integers"):
        bd.mmd(model, clean, TensorDataset(images, labels.float()), "2", progress=False)
    with pytest.raises(DataError, match="at least 2"):
        bd.mmd(model, clean, TensorDataset(images[:1], labels[:1]), "2", progress=False)
    with pytest.raises(DataError, match="empty"):
        bd.frechet(model, clean, TensorDataset(images[:0], labels[:0]), "2", progress=False)
    with pytest.raises(InvalidParameterError, match="max_images"):
        bd.mmd(model, clean, clean, "2", max_images=1, progress=False)
    with pytest.raises(InvalidParameterError, match="metrics"):
        bd.baseline_scores(model, clean, clean, "2", metrics=["fid"], progress=False)
    with pytest.raises(DataError, match="scores per image"):
        bd.accuracy_drop(model, clean, TensorDataset(images, labels + 5), progress=False)


@pytest.mark.parametrize("coinciding", [0, 600])
def test_the_median_of_many_pairs_is_selected_exactly_within_a_band(coinciding):
    # 1,500 points: 1,124,250 pairs, above the size where the median is selected within a sampled band
    from scipy.spatial.distance import pdist

    rng = np.random.default_rng(3)
    pooled = rng.normal(size=(1500, 8))
    pooled[:coinciding] = pooled[0]  # ties, many of them at 0
    sq = bd._upper_sq_distances(pooled)
    assert sq.pairs > bd._BAND_FROM_PAIRS
    pairs = np.sort(pdist(pooled) ** 2)
    n = len(pairs)
    low, high = bd._middle_of_upper(sq)
    np.testing.assert_allclose([low, high], [pairs[(n - 1) // 2], pairs[n // 2]], rtol=1e-12, atol=1e-12)
    assert bd.median_heuristic(pooled) == pytest.approx(float(np.median(pdist(pooled))), rel=1e-12)


def test_a_band_that_misses_the_median_falls_back_to_every_pair(monkeypatch):
    from scipy.spatial.distance import pdist

    pooled = np.random.default_rng(4).normal(size=(1500, 4))
    sq = bd._upper_sq_distances(pooled)
    pairs = np.sort(pdist(pooled) ** 2)
    monkeypatch.setattr(bd.np, "quantile", lambda values, q: (1e9, 2e9))  # a band above every pair
    low, high = bd._middle_of_upper(sq)
    np.testing.assert_allclose([low, high], [pairs[(len(pairs) - 1) // 2], pairs[len(pairs) // 2]], rtol=1e-12)


def test_mmd_over_many_blocks_and_a_sampled_band_matches_whole_matrices():
    # 800 + 700 points: blocks of rows that end at the samples' boundary, and over a million pairs, so the
    # median is selected within a band; against scipy's whole distance matrices and numpy's median
    from scipy.spatial.distance import cdist, pdist

    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(800, 16)), rng.normal(0.3, 1.2, size=(700, 16))
    pooled = np.concatenate([x, y])
    assert bd._upper_sq_distances(pooled, split=800).pairs > bd._BAND_FROM_PAIRS
    assert 800 % bd._BLOCK_ROWS != 0
    sigma = float(np.median(pdist(pooled)))
    gamma = 1.0 / (2.0 * sigma ** 2)
    kxx, kyy, kxy = (np.exp(-gamma * cdist(a, b, "sqeuclidean")) for a, b in ((x, x), (y, y), (x, y)))
    expected = ((kxx.sum() - 800) / (800 * 799) + (kyy.sum() - 700) / (700 * 699) - 2 * kxy.mean())
    value, bandwidth = bd._mmd_and_bandwidth(x, y, None)
    assert bandwidth == pytest.approx(sigma, rel=1e-12)
    assert value == pytest.approx(expected, rel=1e-10)
    assert bd.mmd_rbf(x, y, bandwidth=0.9) == pytest.approx(
        (np.exp(-cdist(x, x, "sqeuclidean") / 1.62).sum() - 800) / (800 * 799)
        + (np.exp(-cdist(y, y, "sqeuclidean") / 1.62).sum() - 700) / (700 * 699)
        - 2 * np.exp(-cdist(x, y, "sqeuclidean") / 1.62).mean(), rel=1e-10)


def test_upper_distances_hold_each_pair_once():
    from scipy.spatial.distance import pdist

    pooled = np.random.default_rng(6).normal(size=(600, 5))
    distances = bd._upper_sq_distances(pooled, split=250)
    pairs = distances.every_pair()
    assert pairs.size == 600 * 599 // 2
    np.testing.assert_allclose(np.sort(pairs), np.sort(pdist(pooled, "sqeuclidean")), rtol=1e-10, atol=1e-12)
    assert [(start, stop) for start, stop, _ in distances.blocks][:3] == [(0, 250), (250, 506), (506, 600)]
    rows, cols = np.array([0, 3, 249, 250, 599 - 1]), np.array([1, 400, 250, 599, 599])
    np.testing.assert_allclose(distances.values(rows, cols), ((pooled[rows] - pooled[cols]) ** 2).sum(1), rtol=1e-10)
    assert distances.largest == pytest.approx(pairs.max())
