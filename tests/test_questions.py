"""The reviewer's questions (resque.study.analysis.questions) on constructed data with known answers."""

import numpy as np
import pytest

pd = pytest.importorskip("pandas")

from resque.study.analysis.questions import (  # noqa: E402
    add_baselines, compare_predictors, harrell_c, holm, two_way_weights, within_between,
)


def shift_frame(n_seeds=3, families=("a", "b", "c", "d"), intensities=(0.0, 0.1, 0.2, 0.3, 0.4), seed=0,
                cost=lambda family, intensity, s, rng: 4 * intensity + 0.3 * rng.normal()):
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_seeds):
        for f, family in enumerate(families):
            for intensity in intensities:
                rows.append({"run_id": f"shift-{family}-{intensity}-seed{s}", "kind": "shift", "family": family,
                             "intensity": intensity, "task": None, "seed": s, "censored": False,
                             "epochs": cost(f, intensity, s, rng)})
    return pd.DataFrame(rows)


def test_baselines_are_a_constant_and_the_dense_intensity_rank_within_each_family():
    frame = add_baselines(shift_frame(n_seeds=1, families=("a",), intensities=(0.0, 0.3, 0.1)))
    assert frame["constant"].tolist() == [0.0, 0.0, 0.0]
    assert frame["intensity_rank"].tolist() == [0.0, 2.0, 1.0]
    # a family whose control was run under another family still ranks its mildest shift 1, not 0
    without_control = add_baselines(shift_frame(n_seeds=1, families=("b",), intensities=(0.2, 0.5)))
    assert without_control["intensity_rank"].tolist() == [1.0, 2.0]


def test_a_predictor_equal_to_the_cost_wins_every_paired_comparison():
    frame = shift_frame()
    rng = np.random.default_rng(1)
    frame["oracle"] = frame["epochs"]
    frame["resque_dist"] = frame["epochs"] + 0.5 * rng.normal(size=len(frame))  # a noisy predictor
    frame["mmd"] = rng.normal(size=len(frame))  # an uninformative one
    table = compare_predictors(frame, ["oracle", "mmd"], "epochs", reference="resque_dist", n_boot=500)
    verdicts = dict(zip(table["predictor"], table["verdict"]))
    assert verdicts == {"oracle": "better", "mmd": "worse"}
    oracle = table.set_index("predictor").loc["oracle"]
    assert oracle["rho"] == pytest.approx(1.0) and oracle["low"] > 0 and oracle["p_holm"] >= oracle["p"]
    against_oracle = compare_predictors(frame, ["resque_dist", "mmd"], "epochs", reference="oracle", n_boot=500)
    assert set(against_oracle["verdict"]) == {"worse"}
    # the same predictor twice cannot be told apart from itself
    frame["copy"] = frame["resque_dist"]
    same = compare_predictors(frame, ["copy"], "epochs", reference="resque_dist", n_boot=200)
    assert same["verdict"].tolist() == ["not distinguishable"] and same["difference"].tolist() == [0.0]


def test_censored_runs_never_enter_a_paired_comparison():
    frame = shift_frame()
    frame["resque_dist"] = frame["epochs"]
    frame["oracle"] = frame["epochs"]
    frame.loc[:5, "censored"] = True
    table = compare_predictors(frame, ["oracle"], "epochs", reference="resque_dist", n_boot=50)
    assert table["n"].tolist() == [len(frame) - 6]


def test_a_constant_predictor_has_concordance_one_half_and_the_cost_itself_one():
    cost = np.array([0.0, 0.5, 1.0, 2.0, 3.5])
    assert harrell_c(np.zeros(5), cost) == (0.5, 10)
    assert harrell_c(cost, cost) == (1.0, 10)
    assert harrell_c(-cost, cost) == (0.0, 10)


def test_censored_runs_move_harrells_c_the_way_they_should():
    # Two runs stopped at the cap after 1 epoch: their true cost is above 1, and the predictor
    # rightly calls them the hardest. Taken as observed costs of 1 they look like mistakes.
    cost = np.array([0.5, 1.0, 1.0, 2.0, 3.0, 4.0])
    predicted = np.array([0.1, 9.0, 9.5, 2.0, 3.0, 4.0])
    censored = np.array([False, True, True, False, False, False])
    as_observed, _ = harrell_c(predicted, cost)
    as_censored, pairs = harrell_c(predicted, cost, censored)
    assert as_censored > as_observed and as_censored == 1.0
    assert pairs == 5 + 2 + 1  # pairs led by an observed cost: 0.5 < all five; 2.0 < 3.0, 4.0; 3.0 < 4.0
    assert np.isnan(harrell_c([1.0, 2.0], [1.0, 1.0])[0])  # a tie in cost is not comparable


def test_within_and_between_families_are_told_apart():
    # Inside each family cost follows the predictor exactly; across families the family with the
    # highest predictor is the cheapest.
    frame = shift_frame(cost=lambda f, intensity, s, rng: 10 * (3 - f) + intensity)
    frame["resque_dist"] = frame["intensity"] + 0.2 * frame["family"].map({"a": 0, "b": 1, "c": 2, "d": 3})
    result = within_between(frame, "resque_dist", "epochs")
    assert result["within"] == pytest.approx(1.0) and result["between"] == pytest.approx(-1.0)
    assert result["n_strata"] == 12 and result["n_families"] == 4
    # ... and the predictor is the intensity within every stratum: nothing beyond it
    assert np.isnan(result["beyond_intensity"])


def test_a_predictor_that_knows_more_than_the_intensity_shows_beyond_it():
    extra = {}

    def cost(f, intensity, s, rng):
        extra[(f, intensity, s)] = rng.normal()
        return intensity + extra[(f, intensity, s)]

    frame = shift_frame(cost=cost)
    codes = frame["family"].map({"a": 0, "b": 1, "c": 2, "d": 3})
    frame["resque_dist"] = [i + extra[(f, i, s)] for f, i, s in zip(codes, frame["intensity"], frame["seed"])]
    frame["pixel_distance"] = frame["intensity"]  # knows the intensity only
    informed = within_between(frame, "resque_dist", "epochs")
    assert informed["beyond_intensity"] == pytest.approx(1.0)
    assert np.isnan(within_between(frame, "pixel_distance", "epochs")["beyond_intensity"])
    # the intensity rank always comes from the design: an empty or stale column in the frame is ignored
    frame["intensity_rank"] = np.nan
    assert np.isnan(within_between(frame, "pixel_distance", "epochs")["beyond_intensity"])
    frame["intensity_rank"] = np.random.default_rng(9).normal(size=len(frame))
    assert np.isnan(within_between(frame, "pixel_distance", "epochs")["beyond_intensity"])
    assert compare_predictors(frame, ["intensity_rank"], "epochs", reference="pixel_distance",
                              n_boot=50)["rho"].iloc[0] == pytest.approx(
        compare_predictors(add_baselines(frame), ["intensity_rank"], "epochs", reference="pixel_distance",
                           n_boot=50)["rho"].iloc[0])


def test_the_two_way_interval_widens_when_seeds_disagree():
    def agree(f, intensity, s, rng):
        return 4 * intensity + 0.3 * rng.normal()

    def disagree(f, intensity, s, rng):  # seed 1 reverses the relation the other seeds show
        return (-4 if s == 1 else 4) * intensity + 0.3 * rng.normal()

    widths = []
    for cost in (agree, disagree):
        frame = shift_frame(cost=cost)
        frame["resque_dist"] = frame["intensity"]
        frame["noise"] = np.random.default_rng(3).normal(size=len(frame))
        row = compare_predictors(frame, ["noise"], "epochs", reference="resque_dist", n_boot=800).iloc[0]
        widths.append(row["high"] - row["low"])
    assert widths[1] > 1.5 * widths[0]
    # with one seed the scheme resamples experiments only
    weights = two_way_weights(np.zeros(6), np.arange(6), 100, np.random.default_rng(0))
    assert weights.shape == (100, 6) and np.all(weights.sum(axis=1) == 6)


def test_holm_adjustment():
    assert holm([0.01, 0.04, 0.03]).tolist() == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]).tolist() == [0.5]


def test_report_answers_in_markdown_from_a_saved_runs_table(tmp_path, capsys):
    from resque.cli import main
    from resque.study.analysis.report import report_markdown

    frame = shift_frame()
    rng = np.random.default_rng(2)
    frame["resque_dist"] = frame["epochs"] + 0.3 * rng.normal(size=len(frame))
    frame["mmd"] = rng.normal(size=len(frame))
    frame["repeat_epochs"] = frame["epochs"] + 0.05 * rng.normal(size=len(frame))
    frame["repeat_censored"] = False
    text = report_markdown(frame, n_boot=200, measures=("epochs",))
    assert "### Does RESQUE_dist predict each cost?" in text and "| Epochs | 60 |" in text
    assert "MMD (RBF, median heuristic)" in text and "worse" in text  # noise loses to a real predictor
    assert "Intensity rank within the family" in text and "Constant (no information)" in text
    assert "3 source seeds" in text and "ignore the variation between seeds" not in text
    one_seed = report_markdown(frame[frame["seed"] == 0], n_boot=50, measures=("epochs",))
    assert "With fewer than 3 source seeds, the intervals ignore the variation between seeds." in one_seed
    path = tmp_path / "runs.csv"
    frame.to_csv(path, index=False)
    assert main(["study", "report", "--profile", "smoke", "--table", str(path), "--n-boot", "200"]) == 0
    printed = capsys.readouterr().out
    assert "test-retest" in printed and "Which predictor is best?" in printed


def test_the_forecast_beats_a_constant_when_the_index_carries_the_cost():
    from resque.study.analysis.forecast_eval import forecast_comparison

    frame = shift_frame(cost=lambda f, intensity, s, rng: 3 * intensity + f * 0.5 + 0.1 * rng.normal())
    frame["resque_dist"] = 3 * frame["intensity"] + frame["family"].map({"a": 0, "b": 1, "c": 2, "d": 3}) * 0.5
    table = forecast_comparison(frame, "epochs").set_index(["held_out", "forecaster"])
    for scheme in ("experiment", "family"):
        ours, constant = table.loc[(scheme, "RESQUE_dist (the forecast)")], table.loc[(scheme, "constant")]
        assert ours["mae"] < 0.5 * constant["mae"] and ours["width"] < constant["width"]
        assert ours["n"] == len(frame)
    assert 0.8 <= table.loc[("experiment", "RESQUE_dist (the forecast)"), "coverage"] <= 1.0


def test_the_winner_sentence_comes_from_the_paired_comparison():
    from resque.study.analysis import rank_predictors, winner_sentences

    frame = shift_frame()
    rng = np.random.default_rng(4)
    frame["resque_dist"] = frame["epochs"]  # the cost itself
    frame["mmd"] = rng.normal(size=len(frame))
    frame["frechet"] = frame["epochs"] + 0.02 * rng.normal(size=len(frame))  # all but the cost
    ranking = rank_predictors(frame, "shift", measures=("epochs",), n_boot=100)
    text = winner_sentences(ranking, "shifts", frame, "shift", n_boot=300)
    assert "RESQUE_dist ranks first" in text
    # MMD and the intensity rank (a baseline in every ranking) lose; Fréchet, all but the cost, is not told apart
    assert "better than 2 of the 3 others, and not distinguishable from Fréchet distance" in text
    assert "overlap" not in text
    assert "not settled" not in winner_sentences(ranking, "shifts")  # no frame, no verdict


def test_kaplan_meier_counts_censored_runs_as_leaving_without_reaching():
    from resque.study.analysis.questions import kaplan_meier

    curve = kaplan_meier([1.0, 2.0, 2.0, 3.0, 4.0, 5.0], [False, False, False, True, False, False])
    assert curve["cost"].tolist() == [1.0, 2.0, 4.0, 5.0]
    assert curve["at_risk"].tolist() == [6, 5, 2, 1]
    assert curve["not_yet"].tolist() == pytest.approx([5 / 6, 0.5, 0.25, 0.0])
    # without censoring it is the share of runs whose cost is above each value
    costs = np.array([0.0, 0.5, 0.5, 1.0, 3.0])
    plain = kaplan_meier(costs)
    assert plain["not_yet"].tolist() == pytest.approx([(costs > c).mean() for c in plain["cost"]])


def test_curves_by_tercile_put_the_costly_runs_in_the_high_tercile():
    from resque.study.analysis.questions import curves_by_tercile, plot_curves_by_tercile

    frame = shift_frame()
    frame["resque_dist"] = frame["epochs"]
    curves = curves_by_tercile(frame, "resque_dist", "epochs")
    assert list(curves) == ["low", "middle", "high"]
    assert sum(curve["reached"].sum() for curve in curves.values()) == len(frame)
    assert curves["low"]["cost"].max() < curves["high"]["cost"].min()  # the predictor is the cost itself
    figure = plot_curves_by_tercile(frame)
    assert len(figure.axes[0].lines) == 3


def test_the_forecast_verdict_says_plainly_which_baseline_it_misses():
    from resque.study.analysis.report import _forecast_verdict

    table = pd.DataFrame({"held_out": ["experiment"] * 3 + ["family"] * 3,
                          "forecaster": ["RESQUE_dist (the forecast)", "intensity rank", "constant"] * 2,
                          "mae": [0.57, 0.55, 0.83, 0.501, 0.504, 0.9]})
    text = _forecast_verdict(table)
    assert "experiment held out, the forecast's mean absolute error is 0.57: it beats a constant, does not beat " \
           "the intensity rank (0.55)." in text
    assert "family held out, the forecast's mean absolute error is 0.50: it beats a constant, ties with the " \
           "intensity rank (0.50)." in text


def test_the_answers_in_sentences_come_from_the_committed_quick_runs():
    from pathlib import Path

    from resque.study.analysis.report import answer_sentences

    frame = pd.read_csv(Path(__file__).with_name("data") / "quick-runs.csv")
    text = answer_sentences(frame, n_boot=300)
    assert "**Within a shift family**, RESQUE_dist and the epochs of retraining agree at Spearman ρ = 0.95" in text
    assert "ranks the runs exactly as the shift's intensity does" in text
    assert "**The forecast:** With each experiment held out" in text
    assert answer_sentences(frame[frame["kind"] == "task"]) == ""  # no shift runs, nothing to say
    linked = answer_sentences(frame, n_boot=300, links={"forecast": " (see below)", "within": " [w]"})
    bullets = linked.splitlines()
    assert bullets[0].endswith(". [w]") and any(b.startswith("- **The forecast:**") and b.endswith(" (see below)")
                                              for b in bullets)
    assert linked.replace(" [w]", "").replace(" (see below)", "") == text  # the links add, never change
