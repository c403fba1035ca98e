"""The training loop: stopping rules, determinism, head checks, divergence, configs."""


import pytest
import torch
from torch.utils.data import TensorDataset

import resque
from resque.config import from_dict
from resque.cost.training import TensorData, TrainConfig, as_tensors, evaluate, retrain_for_task, stop_reason, train

CONFIG = TrainConfig(target_accuracy=0.9, max_epochs=20, cutoff1_delta=0.01, cutoff1_evals=3,
                     cutoff2_delta=0.05, cutoff2_evals=5)


def run_rules(accuracies, config=CONFIG, losses=None):
    """Feed evaluations one at a time, as the loop does (evaluation 0 before any update, then one per
    epoch here); return (evaluation, reason) of the stop."""
    for n in range(1, len(accuracies) + 1):
        reason = stop_reason(accuracies[:n], config, epochs_done=n - 1,
                             val_losses=None if losses is None else losses[:n])
        if reason is not None:
            return n - 1, reason
    return None


def test_a_model_already_at_its_target_stops_at_evaluation_0():
    assert run_rules([0.92, 0.5]) == (0, "reached")


def test_reached_fires_on_the_first_evaluation_at_target():
    assert run_rules([0.3, 0.5, 0.8, 0.9, 0.95]) == (3, "reached")


def test_cutoff_1_fires_k1_evaluations_after_coming_within_delta1():
    # within 1 point from evaluation 2 on (0.895), never reaching 0.9: stops 3 evaluations later
    assert run_rules([0.3, 0.5, 0.895, 0.896, 0.897, 0.898, 0.899]) == (5, "cutoff-1")


def test_cutoff_2_fires_when_only_within_delta2():
    # within 5 points from evaluation 1, never within 1 point: stops 5 evaluations later
    assert run_rules([0.3, 0.86, 0.87, 0.86, 0.87, 0.86, 0.87, 0.86]) == (6, "cutoff-2")


def test_cutoffs_do_not_fire_while_improving_into_target():
    assert run_rules([0.3, 0.86, 0.88, 0.895, 0.9]) == (4, "reached")


def test_cap_fires_at_max_epochs_and_only_then():
    far = [0.1] * 21  # evaluation 0 and 20 epochs
    assert run_rules(far) == (20, "cap")
    assert run_rules(far[:20]) is None


def test_reached_wins_over_a_cutoff_on_the_same_evaluation():
    assert run_rules([0.3, 0.895, 0.895, 0.895, 0.9]) == (4, "reached")


def test_plateau_fires_patience_evaluations_after_the_lowest_loss():
    config = TrainConfig(target_accuracy=None, max_epochs=50, patience=3)
    losses = [2.0, 1.0, 0.5, 0.6, 0.55, 0.7, 0.4]
    assert run_rules([0.1] * 7, config, losses) == (5, "plateau")  # best at 2; 3, 4, 5 without a lower loss
    assert run_rules([0.1] * 5, config, losses[:5]) is None


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("target_accuracy", 90, r"target_accuracy=90.*\(0, 1\].*0\.9 for 90 %"),
        ("target_accuracy", 0.0, r"target_accuracy=0\.0"),
        ("optimizer", "adamm", r"optimizer='adamm'.*'adam', 'adamw', 'sgd'"),
        ("schedule", "linear", r"schedule='linear'.*'constant', 'cosine', 'step'"),
        ("batch_size", 0, r"batch_size=0.*positive integer"),
        ("augmentation", "mixup", r"augmentation='mixup'"),
    ],
)
def test_bad_config_values(key, value, match):
    with pytest.raises(resque.InvalidParameterError, match=match):
        TrainConfig(**{key: value})


def test_config_from_dict_rejects_unknown_keys():
    with pytest.raises(resque.InvalidParameterError, match=r"\['learning_rate'\].*'lr'"):
        from_dict(TrainConfig, {"learning_rate": 0.1})
    with pytest.raises(resque.InvalidParameterError, match=r"Did you mean 'weight_decy' -> 'weight_decay'"):
        from_dict(TrainConfig, {"weight_decy": 0.1})
    assert from_dict(TrainConfig, {"lr": 0.1}).lr == 0.1


def blobs(n=240, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    x = torch.randn(n, 1, 6, 6, generator=g) * 0.3
    x[torch.arange(n), 0, y, y] += 2.0  # class k lights pixel (k, k)
    return TensorDataset(x, y)


def tiny_model(classes=3, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 16), torch.nn.ReLU(), torch.nn.Dropout(0.1))
    model.add_module("head", torch.nn.Linear(16, classes))
    model.resque_head = "head"
    return model


def test_two_identical_runs_give_identical_numbers():
    config = TrainConfig(target_accuracy=1.0, max_epochs=3, batch_size=16, augmentation="flip", seed=5)
    runs = []
    for _ in range(2):
        model = tiny_model()
        result = train(model, blobs(), blobs(seed=1), config, progress=False)
        runs.append((result.to_dict(), [p.detach().clone() for p in model.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_learns_and_stops_when_target_reached():
    model = tiny_model()
    result = train(model, blobs(), blobs(seed=1), TrainConfig(target_accuracy=0.95, max_epochs=30, batch_size=16),
                   test_data=blobs(seed=2), progress=False)
    assert result.stop_reason == "reached" and result.reached
    assert result.history[-1].val_accuracy >= 0.95
    assert all(h.val_accuracy < 0.95 for h in result.history[:-1])
    assert result.test_accuracy > 0.9
    # cost at the resolution of the checks: steps and samples to the target, epochs as a fraction
    assert result.samples == result.history[-1].samples and result.epochs == result.samples / 240


def test_a_run_already_at_its_target_costs_zero_steps():
    model = tiny_model()
    train(model, blobs(), blobs(seed=1), TrainConfig(target_accuracy=0.95, max_epochs=30, batch_size=16),
          progress=False)
    before = [p.detach().clone() for p in model.parameters()]
    again = train(model, blobs(), blobs(seed=1), TrainConfig(target_accuracy=0.9, max_epochs=30, batch_size=16),
                  progress=False)
    assert again.stop_reason == "reached" and (again.steps, again.samples, again.epochs) == (0, 0, 0.0)
    assert len(again.history) == 1 and again.history[0].evaluation == 0
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # no update was made


def test_checks_are_evenly_spaced_fractions_of_an_epoch():
    # 240 images in batches of 16: 15 batches; 4 checks per epoch after batches 4, 8, 11, 15
    config = TrainConfig(target_accuracy=1.0, max_epochs=2, batch_size=16, evals_per_epoch=4)
    result = train(tiny_model(), blobs(), blobs(seed=1), config, progress=False)
    assert [h.steps for h in result.history] == [0, 4, 8, 11, 15, 19, 23, 26, 30]
    assert [h.epoch for h in result.history][::4] == [0.0, 1.0, 2.0]
    assert result.history[1].epoch == pytest.approx(64 / 240) and result.stop_reason == "cap"
    assert resque.cost.training.evaluation_points(15, 4) == [4, 8, 11, 15]


def test_training_to_the_plateau_restores_the_best_weights():
    config = TrainConfig(target_accuracy=None, max_epochs=40, batch_size=16, patience=2, evals_per_epoch=1, lr=0.05)
    model = tiny_model()
    val = blobs(seed=1)
    result = train(model, blobs(), val, config, progress=False)
    assert result.stop_reason in ("plateau", "cap")
    losses = [h.val_loss for h in result.history]
    assert result.best_evaluation == losses.index(min(losses))
    assert result.final_val_accuracy == result.history[result.best_evaluation].val_accuracy
    assert evaluate(model, val) == pytest.approx(result.final_val_accuracy)  # the model holds the best weights


def test_class_count_above_head_is_refused_with_the_fix():
    data = blobs(classes=3)
    with pytest.raises(resque.DataError, match=r"3 classes.*head has 2 outputs.*retrain_for_task"):
        train(tiny_model(classes=2), data, data, progress=False)


def test_retrain_for_task_gives_a_fresh_seeded_head():
    a, b = tiny_model(), tiny_model()
    retrain_for_task(a, 5, seed=1)
    retrain_for_task(b, 5, seed=1)
    assert a.head.out_features == 5 and torch.equal(a.head.weight, b.head.weight)
    result = train(a, TensorDataset(blobs(classes=5).tensors[0][:, :, :6, :6], blobs(classes=5).tensors[1]),
                   blobs(classes=5), TrainConfig(target_accuracy=0.5, max_epochs=3, batch_size=32), progress=False)
    assert result.epochs >= 1


def test_empty_training_split():
    empty = TensorDataset(torch.zeros(0, 1, 6, 6), torch.zeros(0, dtype=torch.long))
    with pytest.raises(resque.DataError, match="`train_data` is empty"):
        train(tiny_model(), empty, blobs(), progress=False)


def test_empty_validation_split_is_named():
    empty = TensorData(torch.zeros(0, 1, 6, 6), torch.zeros(0, dtype=torch.long))
    with pytest.raises(resque.DataError, match="`val_data` is empty"):
        train(tiny_model(), blobs(), empty, progress=False)


def test_non_finite_loss_stops_the_run_as_diverged():
    model = tiny_model()
    with torch.no_grad():
        model.head.bias.fill_(float("nan"))
    result = train(model, blobs(), blobs(seed=1), TrainConfig(max_epochs=5), progress=False)
    assert result.stop_reason == "diverged" and result.steps == 0 and not result.reached
    assert len(result.history) == 2  # the check before any update, then the one that found the NaN


def test_evaluate_restores_mode():
    model = tiny_model().train()
    acc = evaluate(model, blobs())
    assert 0.0 <= acc <= 1.0 and model.training


def test_as_tensors_refuses_float_labels():
    with pytest.raises(resque.DataError, match="must be integers"):
        as_tensors(TensorDataset(torch.zeros(4, 1, 2, 2), torch.zeros(4)), "train_data")
