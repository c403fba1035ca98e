"""The analysis: records -> frame, correlations with (cluster) bootstrap intervals, tables, plots, notebook."""

import itertools
import json
import re
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot is imported anywhere: tests draw off-screen

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from resque.errors import InvalidParameterError
from resque.cost.records import RunRecord
import resque
from resque.study import analysis
from resque.study.analysis.bootstrap import draw_weights
from resque.cost.measures import MEASURES as ALL_MEASURES
from resque.study.analysis import (
    HEADLINE,
    bootstrap_statistics,
    correlations,
    findings,
    load_records,
    plot_scatter,
    plot_vs_intensity,
    savings_summary,
    summary_table,
)

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "analysis.ipynb"


def _totals(epochs, *, scale=1.0, estimated=True):
    source = "estimate" if estimated else "rapl"
    return {
        "epochs": epochs, "steps": 10 * epochs, "samples": 320 * epochs,
        "train_seconds": 2.0 * epochs * scale, "eval_seconds": 0.1 * epochs,
        "flops_per_sample": 1e6, "train_flops": 3.2e8 * epochs,
        "grad_norm_last": 1.0 + 0.1 * epochs, "grad_norm_mean": 1.5 + 0.1 * epochs,
        "param_change_from_start": 1e-3 * epochs,
        "energy_kwh": 1e-5 * epochs * scale, "energy_estimated_kwh": 1e-5 * epochs * scale if estimated else 0.0,
        "carbon_kg": 4e-6 * epochs * scale,
        "energy_parts": {"cpu": {"kwh": 1e-5 * epochs * scale, "source": source}},
    }


def write_study(root, *, families=("gaussian_noise", "frost"), intensities=(0.1, 0.2, 0.3, 0.4), seeds=(0, 1),
                tasks=("coarse4", "first5"), scratch=True, censored_above=None):
    """A synthetic study: epochs rise with the intensity, exactly as RESQUE_dist does."""
    records = Path(root) / "records"
    for seed in seeds:
        RunRecord(f"source-seed{seed}", "source", seed=seed, totals=_totals(5), stop_reason="reached",
                  complete=True).save(records / f"source-seed{seed}.json")
        for family_index, family in enumerate(families):
            for step, intensity in enumerate(intensities):
                run_id = f"shift-{family}-{intensity:g}-seed{seed}"
                epochs = 2 + step + family_index
                reason = "cap" if censored_above is not None and intensity > censored_above else "reached"
                experiment = {"shift": family, "intensity": intensity}
                if scratch:
                    RunRecord(f"scratch-{run_id}", "scratch", seed=seed, totals=_totals(10),
                              experiment={**experiment, "yardstick_for": run_id}, stop_reason="reached",
                              complete=True).save(records / f"scratch-{run_id}.json")
                    experiment["scratch_run_id"] = f"scratch-{run_id}"
                estimators = {"resque_dist": 0.05 * (step + 1) + 0.01 * family_index + 0.001 * seed,
                              "resque_dist_paired": 0.04 * (step + 1), "accuracy_drop": 0.02 * step,
                              "accuracy_clean": 0.9, "accuracy_shifted": 0.9 - 0.02 * step}
                RunRecord(run_id, "shift", experiment=experiment, seed=seed, estimators=estimators,
                          totals=_totals(epochs), stop_reason=reason, test_accuracy=0.8,
                          complete=True).save(records / f"{run_id}.json")
        for task_index, task in enumerate(tasks):
            run_id = f"task-{task}-seed{seed}"
            estimators = {"resque_task": 0.2 + 0.1 * task_index}
            for variant in resque.list_predictors("task", "resque_task_*"):
                estimators[variant] = 0.25 + 0.1 * task_index
            RunRecord(run_id, "task", experiment={"task": task}, seed=seed, estimators=estimators,
                      totals=_totals(3 + task_index), stop_reason="reached", test_accuracy=0.7,
                      complete=True).save(records / f"{run_id}.json")
    return Path(root)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = write_study(tmp_path_factory.mktemp("study"), censored_above=0.35)
    records = root / "records"
    RunRecord("shift-frost-0.9-seed0", "shift", experiment={"shift": "frost", "intensity": 0.9},
              error="killed", complete=False).save(records / "shift-frost-0.9-seed0.json")
    (records / "garbage.json").write_text("{not json")
    return root


@pytest.fixture(scope="module")
def frame(study):
    return load_records(study)


def synthetic_frame(x, y, *, seeds=None, censored=None, family="gaussian_noise"):
    n = len(x)
    return pd.DataFrame({
        "run_id": [f"run{i}" for i in range(n)], "kind": "shift", "family": family,
        "intensity": np.arange(n, dtype=float), "seed": np.zeros(n, int) if seeds is None else seeds,
        "resque_dist": np.asarray(x, float), "epochs": np.asarray(y, float),
        "censored": np.zeros(n, bool) if censored is None else censored,
    })


# --------------------------------------------------------------------------- load_records


def test_load_records_rows_columns_and_counts(frame):
    assert len(frame) == 2 * 2 * 4 + 2 * 2  # shift runs + task runs; no source, scratch or unfinished
    expected = {"run_id", "kind", "family", "intensity", "task", "seed", "resque_dist", "resque_dist_paired",
                "accuracy_drop", "resque_task", "resque_task_flatten_kmeanspp", "epochs", "grad_norm_last",
                "grad_norm_mean", "param_change_from_start", "train_seconds", "train_flops", "energy_kwh",
                "carbon_kg", "stop_reason", "censored", "energy_source", "test_accuracy", "scratch_epochs",
                "scratch_energy_kwh", "scratch_train_flops", "scratch_censored", "savings_epochs",
                "savings_energy_kwh"}
    assert expected <= set(frame.columns)
    assert frame.attrs["n_incomplete"] == 1
    assert frame.attrs["n_unreadable"] == 1 and "garbage.json" in frame.attrs["unreadable"]
    assert frame.attrs["n_scratch"] == 16
    assert set(frame["family"]) == {"gaussian_noise", "frost", "task"}
    tasks = frame[frame["kind"] == "task"]
    assert tasks["intensity"].isna().all() and tasks["resque_dist"].isna().all()
    assert set(tasks["task"]) == {"coarse4", "first5"}
    assert (frame["energy_source"] == "estimate").all()


def test_load_records_yardstick_and_savings(frame):
    shifts = frame[frame["kind"] == "shift"]
    assert (shifts["scratch_epochs"] == 10).all()
    np.testing.assert_allclose(shifts["savings_epochs"], 1 - shifts["epochs"] / 10)
    np.testing.assert_allclose(shifts["savings_energy_kwh"], 1 - shifts["energy_kwh"] / shifts["scratch_energy_kwh"])
    assert frame.loc[frame["kind"] == "task", "scratch_epochs"].isna().all()  # no yardstick written for tasks


def test_censored_flag_follows_stop_reason(frame):
    assert (frame["censored"] == (frame["stop_reason"] != "reached")).all()
    assert frame["censored"].sum() == 2 * 2 * 1  # intensity 0.4, both families, both seeds


def test_load_records_empty_and_missing(tmp_path):
    (tmp_path / "records").mkdir()
    empty = load_records(tmp_path)
    missing = load_records(tmp_path / "nowhere")
    for frame in (empty, missing):
        assert len(frame) == 0 and "resque_dist" in frame.columns and "savings_epochs" in frame.columns
    assert missing.attrs["missing"] and not empty.attrs["missing"]


def test_energy_source_names_hardware_counters(tmp_path):
    RunRecord("shift-x-0.1-seed0", "shift", experiment={"shift": "x", "intensity": 0.1},
              estimators={"resque_dist": 0.1}, totals=_totals(2, estimated=False), stop_reason="reached",
              complete=True).save(tmp_path / "records" / "a.json")
    assert load_records(tmp_path)["energy_source"].tolist() == ["rapl"]


# --------------------------------------------------------------------------- bootstrap core


def test_bootstrap_statistics_equal_scipy_on_duplicated_samples():
    """Reference: scipy on the explicitly repeated sample, ties included."""
    rng = np.random.default_rng(0)
    x = np.round(rng.normal(size=25), 1)
    y = np.round(x + rng.normal(size=25), 0)  # many ties
    weights = rng.multinomial(25, np.full(25, 1 / 25), size=30).astype(float)
    fast = bootstrap_statistics(x, y, weights)
    for b, counts in enumerate(weights.astype(int)):
        xs, ys = np.repeat(x, counts), np.repeat(y, counts)
        assert fast["pearson"][b] == pytest.approx(stats.pearsonr(xs, ys).statistic, abs=1e-10)
        assert fast["spearman"][b] == pytest.approx(stats.spearmanr(xs, ys).statistic, abs=1e-10)
        assert fast["kendall"][b] == pytest.approx(stats.kendalltau(xs, ys).statistic, abs=1e-10)


def test_bootstrap_statistics_constant_resample_is_nan():
    x, y = np.array([1.0, 2.0, 3.0]), np.array([3.0, 1.0, 2.0])
    weights = np.array([[3.0, 0, 0], [1, 1, 1]])
    result = bootstrap_statistics(x, y, weights)
    for values in result.values():
        assert np.isnan(values[0]) and np.isfinite(values[1])


def test_cluster_weights_keep_each_seed_together():
    seeds = np.repeat([0, 1, 2, 3], 5)
    weights = draw_weights(seeds, 200, np.random.default_rng(0))
    assert weights.shape == (200, 20)
    for seed in range(4):
        block = weights[:, seeds == seed]
        assert (block == block[:, :1]).all()  # a seed is drawn whole, all its runs the same number of times
    assert (weights[:, ::5].sum(axis=1) == 4).all()  # as many seeds drawn as there are


# --------------------------------------------------------------------------- correlations


def pooled(corr, measure="epochs"):
    return corr[(corr["group"] == "pooled") & (corr["measure"] == measure)].iloc[0]


def test_known_monotone_relation_is_recovered():
    x = np.linspace(0.01, 0.5, 30)
    corr = correlations(synthetic_frame(x, 3 * x + 1), measures=["epochs"], n_boot=500)
    row = pooled(corr)
    assert row["spearman_rho"] == pytest.approx(1.0) and row["kendall_tau"] == pytest.approx(1.0)
    assert row["pearson_r"] == pytest.approx(1.0)
    assert row["spearman_low"] == pytest.approx(1.0) and row["kendall_low"] == pytest.approx(1.0)
    assert row["n"] == 30 and row["note"] == ""
    curved = pooled(correlations(synthetic_frame(x, np.exp(10 * x)), measures=["epochs"], n_boot=0))
    assert curved["spearman_rho"] == pytest.approx(1.0) and curved["pearson_r"] < 0.95  # monotone, not linear


def test_known_null_relation_is_small_and_its_interval_covers_zero():
    rng = np.random.default_rng(1)
    row = pooled(correlations(synthetic_frame(rng.normal(size=200), rng.normal(size=200)), measures=["epochs"],
                              n_boot=500))
    for method, (statistic, _) in analysis.METHODS.items():
        assert abs(row[statistic]) < 0.15
        assert row[f"{method}_low"] < 0 < row[f"{method}_high"]
        assert row[f"{method}_p"] > 0.01


def test_interval_contains_estimate_and_shrinks_with_n():
    rng = np.random.default_rng(2)
    widths = []
    for n in (15, 60, 240):
        x = rng.normal(size=n)
        row = pooled(correlations(synthetic_frame(x, x + rng.normal(size=n)), measures=["epochs"], seed=3,
                                  n_boot=1000))
        for method, (statistic, _) in analysis.METHODS.items():
            assert row[f"{method}_low"] <= row[statistic] <= row[f"{method}_high"]
        widths.append(row["spearman_high"] - row["spearman_low"])
    assert widths[0] > widths[1] > widths[2]


def test_bootstrap_is_reproducible_per_seed():
    rng = np.random.default_rng(4)
    frame = synthetic_frame(rng.normal(size=30), rng.normal(size=30))
    a, b = (correlations(frame, measures=["epochs"], seed=7, n_boot=300) for _ in range(2))
    pd.testing.assert_frame_equal(a, b)
    c = correlations(frame, measures=["epochs"], seed=8, n_boot=300)
    assert pooled(a)["spearman_low"] != pooled(c)["spearman_low"]


@pytest.mark.parametrize("n", [0, 1, 2])
def test_fewer_than_three_runs_give_nan_and_a_note(n):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning spew either
        row = pooled(correlations(synthetic_frame(np.arange(n, dtype=float), np.arange(n, dtype=float)),
                                  measures=["epochs"]))
    assert row["n"] == n and np.isnan(row["spearman_rho"]) and np.isnan(row["pearson_low"])
    assert "< 3 runs" in row["note"]


@pytest.mark.parametrize("constant", ["resque_dist", "epochs"])
def test_constant_column_gives_nan_and_a_note(constant):
    x, y = np.linspace(0, 1, 8), np.linspace(1, 5, 8)
    frame = synthetic_frame(x, y)
    frame[constant] = 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        row = pooled(correlations(frame, measures=["epochs"]))
    assert np.isnan(row["pearson_r"]) and np.isnan(row["kendall_tau"]) and "constant" in row["note"]


def test_missing_measure_values_are_left_out_of_that_measure_only(frame):
    gappy = frame.copy()
    gappy.loc[gappy.index[:3], "energy_kwh"] = np.nan
    corr = correlations(gappy, measures=["epochs", "energy_kwh"], by=None, n_boot=0)
    assert pooled(corr, "epochs")["n"] == pooled(corr, "energy_kwh")["n"] + 3 == 16


def test_groups_per_family_then_pooled(frame):
    corr = correlations(frame, "resque_dist", n_boot=100)
    assert corr["group"].unique().tolist() == ["frost", "gaussian_noise", "pooled"]
    assert len(corr) == 3 * len(HEADLINE)
    assert (corr.loc[corr["group"] == "pooled", "n"] == 16).all()
    assert corr.loc[corr["group"] == "frost", "spearman_rho"].iloc[0] > 0.9  # epochs rise with RESQUE


def test_cluster_bootstrap_resamples_seeds(frame):
    by_seed = correlations(frame, "resque_dist", ["epochs"], n_boot=200)
    by_run = correlations(frame, "resque_dist", ["epochs"], n_boot=200, cluster=None)
    assert pooled(by_seed)["resampled"].startswith("seeds x experiments (2 x ") and pooled(by_seed)["n_seeds"] == 2
    seeds_only = correlations(frame, "resque_dist", ["epochs"], n_boot=200, two_way=False)
    assert pooled(seeds_only)["resampled"] == "seeds (2 clusters)"
    assert "interval coarse" in pooled(by_seed)["note"]
    assert pooled(by_run)["resampled"] == "runs"
    one_seed = correlations(frame[frame["seed"] == 0], "resque_dist", ["epochs"], n_boot=200)
    assert pooled(one_seed)["resampled"] == "runs (one seed)"


def test_censored_runs_are_counted_or_excluded(frame):
    kept = pooled(correlations(frame, "resque_dist", ["epochs"], n_boot=100))
    dropped = pooled(correlations(frame, "resque_dist", ["epochs"], n_boot=100, exclude_censored=True))
    assert kept["n"] == 16 and kept["n_censored"] == 4
    assert dropped["n"] == 12 and dropped["n_censored"] == 0 and "censored runs excluded" in dropped["note"]


def test_several_estimators_and_task_rows(frame):
    corr = correlations(frame, ["resque_task", "resque_task_mean_kmeanspp"], ["epochs"], by=None, n_boot=100)
    assert corr["estimator"].tolist() == ["resque_task", "resque_task_mean_kmeanspp"]
    assert (corr["n"] == 4).all() and (corr["spearman_rho"] > 0.5).all()


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [({"estimator": "resque_dsit"}, "estimator"), ({"measures": ["epoch"]}, "measures"),
     ({"by": "familly"}, "by"), ({"n_boot": -1}, "n_boot"), ({"confidence": 1.5}, "confidence"),
     ({"cluster": "sed"}, "cluster")],
)
def test_bad_arguments_name_the_parameter(frame, kwargs, parameter):
    with pytest.raises(InvalidParameterError) as error:
        correlations(frame, **kwargs)
    assert error.value.parameter == parameter
    if parameter == "estimator":
        assert "Did you mean 'resque_dist'" in str(error.value)


def test_bootstrap_is_fast_enough():
    """2000 resamples of n=40, all three methods, well under a second (vectorised)."""
    import time

    rng = np.random.default_rng(0)
    x = rng.normal(size=40)
    weights = rng.multinomial(40, np.full(40, 1 / 40), size=2000).astype(float)
    start = time.perf_counter()
    bootstrap_statistics(x, x + rng.normal(size=40), weights)
    assert time.perf_counter() - start < 1.0


# --------------------------------------------------------------------------- tables, prose, plots


def test_summary_table_shape_and_cells(frame):
    table = summary_table(correlations(frame, "resque_dist", n_boot=200))
    assert list(table.index) == [ALL_MEASURES[m].label for m in HEADLINE]
    assert {"n", "censored", "Pearson r", "Spearman ρ", "Kendall τ", "note"} == set(table.columns)
    assert table.loc["Epochs", "Spearman ρ"].count("[") == 1
    small = summary_table(correlations(synthetic_frame([0.1, 0.2], [1, 2]), measures=["epochs"]))
    assert small.loc["Epochs", "Pearson r"] == "n/a"


def test_savings_summary(frame):
    table = savings_summary(frame)
    assert list(table.index) == ["frost", "gaussian_noise", "pooled"]  # task runs have no yardstick here
    assert table.loc["pooled", "runs"] == 16
    assert 0 < table.loc["pooled", "median saving: epochs"] < 1


def test_findings_state_numbers_and_caveats(frame):
    corr = correlations(frame, "resque_dist", n_boot=200)
    text = findings(frame, corr, correlations(frame, "resque_task", by=None, n_boot=200))
    rho = pooled(corr)["spearman_rho"]
    assert f"{rho:.2f}" in text and "95 % CI" in text and "estimates" in text and "#" not in text
    assert "not enough data" in findings(frame.iloc[:2])
    assert "not enough data" in findings(load_records(Path("/nonexistent-results")))


def test_plot_scatter_has_one_axes_per_measure_and_a_censored_legend(frame):
    fig = plot_scatter(frame, "resque_dist", HEADLINE)
    try:
        assert len(fig.axes) == len(HEADLINE)
        labels = [text.get_text() for legend in fig.legends for text in legend.get_texts()]
        assert "censored (target not reached)" in labels and "frost" in labels
    finally:
        plt.close(fig)
    empty = plot_scatter(frame.iloc[:0], "resque_dist", ["epochs", "energy_kwh"])
    assert len(empty.axes) == 2
    plt.close(empty)


def test_plot_vs_intensity_axes(frame):
    fig = plot_vs_intensity(frame, "resque_dist", ("epochs", "energy_kwh"))
    assert len(fig.axes) == 3
    plt.close(fig)


# --------------------------------------------------------------------------- notebook


def test_analysis_notebook_is_committed_clean():
    notebook = json.loads(NOTEBOOK.read_text())
    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    first = notebook["cells"][0]
    assert first["cell_type"] == "markdown" and "".join(first["source"]).startswith("# Results")
    assert "parameters" in notebook["cells"][1]["metadata"].get("tags", [])
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
        else:
            for line in "".join(cell["source"]).splitlines():
                assert not line.lstrip().startswith("<"), "no raw HTML in a Jupyter Book page"
    levels = [len(line) - len(line.lstrip("#")) for cell in notebook["cells"] if cell["cell_type"] == "markdown"
              for line in "".join(cell["source"]).splitlines() if line.startswith("#")]
    assert levels[0] == 1 and all(b <= a + 1 for a, b in itertools.pairwise(levels))


def test_analysis_notebook_executes_on_a_synthetic_study(tmp_path):
    papermill = pytest.importorskip("papermill")
    results = write_study(tmp_path / "results", seeds=(0,), intensities=(0.1, 0.2), censored_above=0.15)
    out = tmp_path / "analysis.ipynb"
    papermill.execute_notebook(str(NOTEBOOK), str(out), parameters={"results_dir": str(results)},
                               cwd=str(NOTEBOOK.parent), progress_bar=False, kernel_name="python3")
    executed = json.loads(out.read_text())
    text = json.dumps(executed)
    assert "Over 4 shift runs" in text and "image/png" in text
    assert '"output_type": "error"' not in text


# --------------------------------------------------------------------------- which predictor is best?


def test_pairwise_accuracy_counts_agreeing_pairs():
    assert analysis.pairwise_accuracy([1, 2, 3], [10, 20, 30]) == 1.0
    assert analysis.pairwise_accuracy([3, 2, 1], [10, 20, 30]) == 0.0
    # pairs: (a,b) right, (a,c) right, (b,c) wrong -> 2/3
    assert analysis.pairwise_accuracy([1, 3, 2], [1, 2, 3]) == pytest.approx(2 / 3)
    assert analysis.pairwise_accuracy([1, 1], [1, 2]) == 0.5  # a tied prediction is half right
    assert np.isnan(analysis.pairwise_accuracy([1, 2], [5, 5]))  # nothing to decide


def test_rank_predictors_orients_similarity_scores_and_ranks():
    rng = np.random.default_rng(0)
    cost = np.arange(20, dtype=float)
    frame = synthetic_frame(cost + rng.normal(0, 5, 20), cost)
    frame["cka"] = 1.0 - cost / 100.0  # a similarity that falls exactly as cost rises: perfect once turned
    frame["mmd"] = rng.normal(size=20)  # unrelated
    ranking = analysis.rank_predictors(frame, "shift", measures=["epochs"], n_boot=200)
    # the design's baselines are ranked with the rest
    assert set(ranking["predictor"]) == {"resque_dist", "cka", "mmd", "constant", "intensity_rank"}
    assert np.isnan(ranking.set_index("predictor").loc["constant", "rank"])  # a constant ranks nothing
    best = analysis.best_predictors(ranking)
    assert best.iloc[0]["label"] == "Linear CKA (paired)"
    assert best.iloc[0]["spearman_rho"] == pytest.approx(1.0)
    assert best.iloc[0]["pairwise_accuracy"] == pytest.approx(1.0)
    ranks = ranking.set_index("predictor")["rank"]
    assert ranks["mmd"] > max(ranks["cka"], ranks["resque_dist"])  # unrelated: below both


def test_rank_predictors_without_runs_is_empty():
    frame = synthetic_frame([1.0, 2.0], [1.0, 2.0])
    assert analysis.rank_predictors(frame, "task", measures=["epochs"], n_boot=0).empty


def test_family_table_fits_a_page_with_intervals_and_reasons(frame):
    from resque.study.analysis import family_table

    corr = correlations(frame, "resque_dist", ["epochs", "energy_kwh"], n_boot=100)
    table = family_table(corr)
    assert list(table.columns) == ["runs", "Epochs", "Energy"]
    assert table.index[-1] == "pooled" and table.loc["pooled", "runs"] == "16"
    # the fixture's cost rises with RESQUE_dist: a correlation with its interval, never "n/a" here
    assert re.fullmatch(r"0\.\d\d \[0\.\d\d, 1\.00\]", table.loc["pooled", "Epochs"])
    assert all(re.fullmatch(r"-?\d\.\d\d \[-?\d\.\d\d, -?\d\.\d\d\]", c) for c in table[["Epochs", "Energy"]].to_numpy().ravel())
    assert not table.isna().any().any()
    with pytest.raises(InvalidParameterError, match="method"):
        family_table(corr, "spearmann")


def test_ranking_table_is_a_predictor_by_cost_grid_for_people(frame):
    from resque.study.analysis import rank_predictors, ranking_table

    ranking = rank_predictors(frame, "shift", measures=("epochs", "energy_kwh"), n_boot=100)
    table = ranking_table(ranking)
    assert table.index.name.startswith("Spearman ρ [95 % CI]")
    assert sorted(table.columns) == ["Energy", "Epochs"]
    assert "RESQUE_dist" in table.index
    assert re.fullmatch(r"0\.\d\d \[0\.\d\d, 1\.00\] · \d\.\d\d", table.loc["RESQUE_dist", "Epochs"])
    assert table.index[0] == "RESQUE_dist"  # rows sorted by rank: the fixture's best predictor first
    assert table.loc["Constant (no information)", "Epochs"] == "n/a"  # a constant ranks nothing
    assert ranking_table(ranking, "no-such-group").empty


def test_family_winners_names_the_first_ranked_predictor_and_its_ties():
    import pandas as pd

    from resque.study.analysis import family_winners

    ranking = pd.DataFrame([
        # group, measure, label, rho, rank
        ("frost", "epochs", "RESQUE_dist", 0.9, 1.0), ("frost", "epochs", "MMD", 0.5, 2.0),
        ("noise", "epochs", "MMD", 1.0, 1.0), ("noise", "epochs", "CKA", 1.0, 1.0),
        ("noise", "epochs", "RESQUE_dist", 1.0, 1.0), ("frost", "energy_kwh", "MMD", 0.4, 1.0),
        ("noise", "energy_kwh", "MMD", float("nan"), float("nan")),
        ("pooled", "epochs", "CKA", 0.3, 1.0),
    ], columns=["group", "measure", "label", "spearman_rho", "rank"])
    table = family_winners(ranking)
    assert table.index.name == "shift family" and list(table.index) == ["frost", "noise"]  # pooled left out
    assert list(table.columns) == ["Epochs", "Energy"]
    assert table.loc["frost", "Epochs"] == "RESQUE_dist (ρ 0.90)"
    assert table.loc["noise", "Epochs"] == "MMD (ρ 1.00) + 2 tied"
    assert table.loc["noise", "Energy"].startswith("n/a")
