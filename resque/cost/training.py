"""One training loop for the three runs of a study: from scratch, after a shift, after a task change.

See the method page (book/method.md), "What retraining costs". The loop checks
validation accuracy before any update (a model already at its target costs
nothing) and then ``evals_per_epoch`` times per epoch, and trains until the
accuracy reaches a target, or a cutoff rule or the epoch cap ends it, and says
which (:data:`STOP_REASONS`): a run that never reached its target is censored,
and the analysis must know. With ``target_accuracy=None`` it trains to the
plateau of the validation loss instead (early stopping with a patience, the
best weights restored), which is how a source model or a from-scratch
yardstick is brought to convergence.

Cost is counted at that resolution: steps, samples, and epochs as a fraction
(samples / training-set size) up to the evaluation that stopped the run.

Data are materialised once as tensors (:func:`as_tensors`) and batched by
slicing, which on a small CPU is several times faster than a per-image
``DataLoader``; everything random (order, augmentation, dropout, a new head)
derives from ``config.seed``, so the same config gives the same numbers.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..index.embedding import model_device
from ..errors import DataError, InvalidParameterError
from ..models.zoo import replace_head

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "AUGMENTATIONS",
    "STOP_REASONS",
    "TrainConfig",
    "Evaluation",
    "EpochStats",
    "TrainResult",
    "TensorData",
    "as_tensors",
    "stop_reason",
    "evaluation_points",
    "evaluate",
    "train",
    "retrain_for_task",
]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step")
AUGMENTATIONS = ("none", "flip", "crop", "crop_flip")
#: reached: target met; cutoff-1/-2: came within delta_i of it and stalled k_i evaluations;
#: plateau: (no target) the validation loss stopped improving for `patience` evaluations;
#: cap: max_epochs; diverged: the loss became NaN or infinite.
STOP_REASONS = ("reached", "cutoff-1", "cutoff-2", "plateau", "cap", "diverged")
#: The stop reasons of a run that did what it was asked (every other one is censored).
FINISHED = ("reached", "plateau")


@dataclass
class TrainConfig:
    """How to (re)train; the defaults are the authors' public code's unless noted.

    Attributes
    ----------
    target_accuracy : float or None
        Validation accuracy, in (0, 1], that ends a run as "reached". None:
        train to the plateau of the validation loss (see `patience`), as a
        source model or a from-scratch yardstick is trained.
    max_epochs : int
        Hard cap (the authors: 250).
    evals_per_epoch : int
        Validation checks per epoch, evenly spaced in optimizer steps, after one
        check before any update (our choice; the authors check once per
        epoch). The cost to the target is resolved to ``1 / evals_per_epoch``
        of an epoch. When an epoch has fewer batches, it is checked after each.
    patience : int
        With ``target_accuracy=None``: evaluations without a new lowest
        validation loss that end the run as "plateau"; the weights of the best
        evaluation are restored.
    optimizer : {"adam", "adamw", "sgd"}
    lr, weight_decay, momentum : float
        Adam, lr 1e-3, weight decay 1e-5 as the authors; momentum is for SGD only.
    schedule : {"constant", "cosine", "step"}
        Learning-rate schedule over ``max_epochs`` ("step": x0.1 at 50 % and 75 %).
    batch_size : int
        Training batch (the authors: 32).
    eval_batch_size : int
        Validation/test batch; only speed depends on it (eval mode: batch norm uses its
        running statistics). On CPU, batches of a few hundred are faster than
        larger ones (cache effects), hence 256.
    augmentation : {"none", "flip", "crop", "crop_flip"}
        Random horizontal flip and/or 4-pixel-padded random crop (CIFAR-style).
        Off by default: the shift under study should be the only change to the data.
    cutoff1_delta, cutoff1_evals, cutoff2_delta, cutoff2_evals
        Cutoff rules: once validation accuracy is within ``delta_i`` of the
        target, at most ``k_i`` more evaluations. Our choice (the paper gives
        none): 1 point / 8 evaluations and 3 points / 16 (2 and 4 epochs at 4
        checks per epoch).
    seed : int
        Seeds data order, augmentation, dropout and new heads.
    """

    target_accuracy: float | None = 0.85
    max_epochs: int = 250
    evals_per_epoch: int = 4
    patience: int = 8
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-5
    momentum: float = 0.9
    schedule: str = "constant"
    batch_size: int = 32
    eval_batch_size: int = 256
    augmentation: str = "none"
    cutoff1_delta: float = 0.01
    cutoff1_evals: int = 8
    cutoff2_delta: float = 0.03
    cutoff2_evals: int = 16
    seed: int = 0

    def __post_init__(self) -> None:
        target = self.target_accuracy
        if target is not None and (isinstance(target, bool) or not isinstance(target, (int, float))
                                   or not 0.0 < target <= 1.0):
            raise InvalidParameterError(
                "target_accuracy", self.target_accuracy, "a fraction in (0, 1], or None to train to the plateau",
                "Accuracy is a fraction here: write 0.9 for 90 %.",
            )
        for name in ("max_epochs", "evals_per_epoch", "patience", "batch_size", "eval_batch_size",
                     "cutoff1_evals", "cutoff2_evals"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidParameterError(name, value, "a positive integer")
        for name in ("lr", "weight_decay", "momentum", "cutoff1_delta", "cutoff2_delta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise InvalidParameterError(name, value, "a finite number >= 0")
        if self.lr <= 0:
            raise InvalidParameterError("lr", self.lr, "a number > 0")
        for name, allowed in (("optimizer", OPTIMIZERS), ("schedule", SCHEDULES), ("augmentation", AUGMENTATIONS)):
            if getattr(self, name) not in allowed:
                raise InvalidParameterError(name, getattr(self, name), allowed)


@dataclass
class Evaluation:
    """One validation check and what the loop measured since the previous one (costs come from the tracker).

    Attributes
    ----------
    evaluation : int
        0 for the check before any update, then 1, 2, ...
    epoch : float
        Epochs done so far: samples / training-set size (0.25 after a quarter).
    steps, samples : int
        Optimizer steps and training samples so far (cumulative).
    train_loss, train_accuracy : float or None
        Over the interval's batches (None for evaluation 0, or an interval cut short by divergence).
    val_loss, val_accuracy : float
        On the validation data at this point.
    lr : float
    """

    evaluation: int
    epoch: float
    steps: int
    samples: int
    train_loss: float | None
    train_accuracy: float | None
    val_loss: float
    val_accuracy: float
    lr: float


#: The name of :class:`Evaluation` before evaluations were finer than an epoch.
EpochStats = Evaluation


@dataclass
class TrainResult:
    """The outcome of :func:`train`.

    Attributes
    ----------
    history : list of Evaluation
        Every validation check, the one before any update first.
    stop_reason : str
        One of :data:`STOP_REASONS`.
    test_accuracy : float or None
        On the test data, when given, with the weights the run ended with
        (after a plateau run: the best evaluation's, restored).
    train_size : int
        Images in the training data (epochs = samples / train_size).
    best_evaluation : int
        The evaluation whose weights the model holds at the end: the last one,
        or after a plateau run the one with the lowest validation loss.
    """

    history: list[Evaluation] = field(default_factory=list)
    stop_reason: str = ""
    test_accuracy: float | None = None
    train_size: int = 0
    best_evaluation: int = 0

    @property
    def epochs(self) -> float:
        """Epochs trained, as a fraction (0.0 when the model was already at its target)."""
        return self.history[-1].epoch if self.history else 0.0

    @property
    def steps(self) -> int:
        return self.history[-1].steps if self.history else 0

    @property
    def samples(self) -> int:
        return self.history[-1].samples if self.history else 0

    @property
    def reached(self) -> bool:
        """False for a censored run (it stopped before reaching its target)."""
        return self.stop_reason == "reached"

    @property
    def final_val_accuracy(self) -> float | None:
        """Validation accuracy of the weights the run ended with (``a_src`` of a source model)."""
        return self.history[self.best_evaluation].val_accuracy if self.history else None

    def to_dict(self) -> dict:
        return {
            "history": [asdict(e) for e in self.history],
            "stop_reason": self.stop_reason,
            "epochs": self.epochs,
            "steps": self.steps,
            "samples": self.samples,
            "test_accuracy": self.test_accuracy,
            "best_evaluation": self.best_evaluation,
            "final_val_accuracy": self.final_val_accuracy,
        }


# --------------------------------------------------------------------------- data


@dataclass
class TensorData:
    """A whole labelled dataset held as two tensors.

    Attributes
    ----------
    images : torch.Tensor
        ``(N, C, H, W)`` float32.
    labels : torch.Tensor
        ``(N,)`` int64.
    """

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.labels.shape[0]

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1 if len(self) else 0


def as_tensors(data, name: str = "data", batch_size: int = 1024) -> TensorData:
    """Read a ``Dataset``/``DataLoader`` of ``(image, label)`` once into a :class:`TensorData`."""
    if isinstance(data, TensorData):
        if len(data) == 0:
            raise DataError(f"`{name}` is empty (0 images); nothing to train or evaluate on.")
        return data
    if isinstance(data, Dataset):
        data = DataLoader(data, batch_size=batch_size, shuffle=False)
    elif not isinstance(data, DataLoader):
        raise DataError(
            f"`{name}` must be a torch Dataset or DataLoader yielding (image, label), got {type(data).__name__}."
        )
    images, labels = [], []
    for batch in data:
        images.append(torch.as_tensor(batch[0]).float())
        labels.append(torch.as_tensor(batch[1]))
    if not labels or sum(len(y) for y in labels) == 0:
        raise DataError(f"`{name}` is empty (0 images); nothing to train or evaluate on.")
    y = torch.cat(labels)
    if y.is_floating_point() or y.dtype == torch.bool:
        raise DataError(f"`{name}` has labels of dtype {y.dtype}; class labels must be integers.")
    return TensorData(torch.cat(images), y.long())


def _augment(x: torch.Tensor, mode: str, generator: torch.Generator) -> torch.Tensor:
    if mode in ("crop", "crop_flip"):
        pad = 4
        padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
        h, w = x.shape[2:]
        shifts = torch.randint(0, 2 * pad + 1, (2,), generator=generator).tolist()  # one crop per batch: cheap
        x = padded[:, :, shifts[0] : shifts[0] + h, shifts[1] : shifts[1] + w]
    if mode in ("flip", "crop_flip"):
        flip = torch.rand(x.shape[0], generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None].to(x.device), x.flip(3), x)
    return x


# --------------------------------------------------------------------------- stopping


def stop_reason(val_accuracies: Sequence[float], config: TrainConfig, *, epochs_done: int = 0,
                val_losses: Sequence[float] | None = None) -> str | None:
    """Why training stops after the last evaluation of `val_accuracies`, or None to go on.

    `val_accuracies` holds every evaluation so far, the one before any update
    first. Rules, checked in this order: "reached" (the last accuracy meets the
    target), "cutoff-1" / "cutoff-2" (the first evaluation within ``delta_i``
    of the target lies ``k_i`` or more evaluations back), "plateau" (no target:
    the lowest of `val_losses` lies ``patience`` or more evaluations back),
    "cap" (`epochs_done` reached ``max_epochs``).
    """
    if not val_accuracies:
        return None
    target = config.target_accuracy
    last = len(val_accuracies) - 1
    if target is None:
        if val_losses:
            finite = [(loss, i) for i, loss in enumerate(val_losses) if math.isfinite(loss)]
            best = min(finite)[1] if finite else 0
            if last - best >= config.patience:
                return "plateau"
    else:
        if val_accuracies[-1] >= target:
            return "reached"
        rules = ((config.cutoff1_delta, config.cutoff1_evals), (config.cutoff2_delta, config.cutoff2_evals))
        for rule, (delta, patience) in enumerate(rules, start=1):
            first_close = next((i for i, acc in enumerate(val_accuracies) if acc >= target - delta), None)
            if first_close is not None and last - first_close >= patience:
                return f"cutoff-{rule}"
    if epochs_done >= config.max_epochs:
        return "cap"
    return None


def evaluation_points(n_batches: int, evals_per_epoch: int) -> list[int]:
    """After which batches of an epoch (1-based counts) validation runs: evenly spaced, the last batch included.

    >>> evaluation_points(10, 4)
    [2, 5, 8, 10]
    >>> evaluation_points(3, 4)
    [1, 2, 3]
    """
    points = sorted({max(1, round(k * n_batches / evals_per_epoch)) for k in range(1, evals_per_epoch + 1)})
    return [p for p in points if p <= n_batches]


# --------------------------------------------------------------------------- loop


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)


def _schedule(optimizer: torch.optim.Optimizer, config: TrainConfig):
    if config.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.max_epochs)
    if config.schedule == "step":
        milestones = [max(1, config.max_epochs // 2), max(1, (3 * config.max_epochs) // 4)]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)
    return None


def evaluate(model: nn.Module, data, batch_size: int = 1024, device=None) -> float:
    """Top-1 accuracy of `model` on `data` (eval mode, no gradients; the mode is restored)."""
    return _loss_and_accuracy(model, as_tensors(data, "data"), batch_size, device)[1]


def _loss_and_accuracy(model: nn.Module, data: TensorData, batch_size: int, device=None) -> tuple[float, float]:
    device = torch.device(device) if device is not None else model_device(model)
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    try:
        with torch.no_grad():
            for start in range(0, len(data), batch_size):
                x = data.images[start : start + batch_size].to(device, non_blocking=True)
                y = data.labels[start : start + batch_size].to(device, non_blocking=True)
                logits = model(x)
                loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
                correct += int((logits.argmax(dim=1) == y).sum())
    finally:
        model.train(was_training)
    return loss_sum / len(data), correct / len(data)


def _check_head(model: nn.Module, data: TensorData, device: torch.device) -> None:
    was_training = model.training
    model.eval()
    with torch.no_grad():
        outputs = model(data.images[:2].to(device)).shape[1]
    model.train(was_training)
    if data.num_classes > outputs:
        raise DataError(
            f"The training data has labels up to {data.num_classes - 1} ({data.num_classes} classes) but the "
            f"model's head has {outputs} outputs. For a task change, replace the head first: "
            "resque.retrain_for_task(model, num_classes) or resque.replace_head(model, num_classes)."
        )


class _NoTracker:
    """Stands in when no cost tracker is given, so the loop has a single shape."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def start_epoch(self):
        pass

    def after_backward(self, full_batch=True):
        pass

    def after_step(self, batch_size):
        pass

    def evaluation(self):
        return contextlib.nullcontext()

    def end_epoch(self, **metrics):
        pass


def train(
    model: nn.Module,
    train_data,
    val_data,
    config: TrainConfig | None = None,
    *,
    test_data=None,
    tracker=None,
    device=None,
    progress: bool = True,
) -> TrainResult:
    """Train `model` in place until a stopping rule fires.

    Parameters
    ----------
    model : torch.nn.Module
        Trained as it is (all layers); for a task change replace its head first
        (:func:`retrain_for_task`).
    train_data, val_data : Dataset, DataLoader or TensorData
        Labelled images; stopping decisions use `val_data` only.
    config : TrainConfig, optional
        Defaults to ``TrainConfig()``.
    test_data : optional
        Evaluated once at the end, reported as ``test_accuracy``.
    tracker : CostTracker, optional
        Receives the per-step hooks and one ``start_epoch``/``end_epoch`` pair
        per evaluation interval (see :mod:`resque.cost.tracking`); the first
        interval holds only the check before any update.
    device : str or torch.device, optional
        Default: where the model is.
    progress : bool
        A tqdm bar over epochs (works in terminals and notebooks).

    Returns
    -------
    TrainResult
        Every evaluation (loss, accuracies, steps and samples so far), the
        stop reason, the test accuracy.
    """
    from tqdm.auto import tqdm

    config = config or TrainConfig()
    device = torch.device(device) if device is not None else model_device(model)
    train_set = as_tensors(train_data, "train_data")
    val_set = as_tensors(val_data, "val_data")
    test_set = as_tensors(test_data, "test_data") if test_data is not None else None
    model.to(device)
    _check_head(model, train_set, device)

    torch.manual_seed(config.seed)  # dropout and any lazily initialised layers
    order = torch.Generator().manual_seed(config.seed)
    optimizer = _optimizer(model, config)
    scheduler = _schedule(optimizer, config)
    tracker = tracker if tracker is not None else _NoTracker()
    result = TrainResult(train_size=len(train_set))
    n_batches = math.ceil(len(train_set) / config.batch_size)
    points = evaluation_points(n_batches, config.evals_per_epoch)
    best_loss, best_state = math.inf, None
    steps = samples = 0
    bar = tqdm(total=config.max_epochs, desc="training", unit="epoch", disable=not progress)

    def check(loss_sum: float, correct: int, seen: int, lr: float) -> str | None:
        nonlocal best_loss, best_state
        with tracker.evaluation():
            val_loss, val_accuracy = _loss_and_accuracy(model, val_set, config.eval_batch_size, device)
        stats = Evaluation(
            evaluation=len(result.history), epoch=samples / len(train_set), steps=steps, samples=samples,
            train_loss=loss_sum / seen if seen else None,
            train_accuracy=correct / seen if seen else None,
            val_loss=val_loss, val_accuracy=val_accuracy, lr=lr,
        )
        result.history.append(stats)
        tracker.end_epoch(val_accuracy=val_accuracy, val_loss=val_loss, evaluation=stats.evaluation,
                          epoch=stats.epoch, train_loss=stats.train_loss)
        if config.target_accuracy is None and math.isfinite(val_loss) and val_loss < best_loss:
            best_loss, result.best_evaluation = val_loss, stats.evaluation
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        elif config.target_accuracy is not None:
            result.best_evaluation = stats.evaluation
        bar.set_postfix(loss="-" if stats.train_loss is None else f"{stats.train_loss:.4f}",
                        val_acc=f"{val_accuracy:.4f}")
        return stop_reason([e.val_accuracy for e in result.history], config,
                           val_losses=[e.val_loss for e in result.history])

    try:
        with tracker:
            tracker.start_epoch()  # evaluation 0: before any update
            reason = check(0.0, 0, 0, optimizer.param_groups[0]["lr"])
            epoch = 0
            while reason is None:
                permutation = torch.randperm(len(train_set), generator=order)
                batch = 0
                for point in points:
                    tracker.start_epoch()
                    model.train()
                    loss_sum, correct, seen, diverged = 0.0, 0, 0, False
                    lr = optimizer.param_groups[0]["lr"]
                    for batch in range(batch, point):
                        index = permutation[batch * config.batch_size : (batch + 1) * config.batch_size]
                        x = _augment(train_set.images[index], config.augmentation, order).to(device, non_blocking=True)
                        y = train_set.labels[index].to(device, non_blocking=True)
                        logits = model(x)
                        loss = F.cross_entropy(logits, y)
                        if not torch.isfinite(loss):
                            diverged = True
                            break
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        tracker.after_backward(full_batch=len(index) == config.batch_size)
                        optimizer.step()
                        tracker.after_step(len(index))
                        steps, samples = steps + 1, samples + len(index)
                        loss_sum += float(loss.detach()) * len(index)
                        correct += int((logits.argmax(dim=1) == y).sum())
                        seen += len(index)
                    batch = point
                    if point == n_batches:
                        epoch += 1
                        if scheduler is not None:
                            scheduler.step()
                        bar.update(1)
                    reason = check(loss_sum, correct, seen, lr)
                    if diverged:
                        reason = "diverged"
                    if reason is None and point == n_batches and epoch >= config.max_epochs:
                        reason = "cap"
                    if reason is not None:
                        break
            result.stop_reason = reason
    finally:
        bar.close()
    if best_state is not None and result.best_evaluation != result.history[-1].evaluation:
        model.load_state_dict(best_state)  # a run to the plateau ends with its best weights
    if test_set is not None:
        result.test_accuracy = evaluate(model, test_set, config.eval_batch_size, device)
    return result


def retrain_for_task(model: nn.Module, num_classes: int, seed: int = 0) -> nn.Module:
    """Prepare a source model for a new task: a fresh, seeded linear head with `num_classes` outputs.

    All other layers keep their trained weights (and are fine-tuned by :func:`train`).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        replace_head(model, num_classes)
    return model
