"""One training loop for the three runs of a study: from scratch, after a shift, after a task change.

See the method page (book/method.md), "What retraining costs". The loop trains until the
validation accuracy reaches a target, or a cutoff rule or the epoch cap ends
it, and says which (:data:`STOP_REASONS`): a run that never reached its target
is censored, and the analysis must know.

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
    "EpochStats",
    "TrainResult",
    "TensorData",
    "as_tensors",
    "stop_reason",
    "evaluate",
    "train",
    "retrain_for_task",
]

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step")
AUGMENTATIONS = ("none", "flip", "crop", "crop_flip")
#: reached: target met; cutoff-1/-2: came within delta_i of it and stalled k_i epochs;
#: cap: max_epochs; diverged: the loss became NaN or infinite.
STOP_REASONS = ("reached", "cutoff-1", "cutoff-2", "cap", "diverged")


@dataclass
class TrainConfig:
    """How to (re)train; the defaults are the authors' public code's unless noted.

    Attributes
    ----------
    target_accuracy : float
        Validation accuracy, in (0, 1], that ends a run as "reached".
    max_epochs : int
        Hard cap (the authors: 250).
    optimizer : {"adam", "adamw", "sgd"}
    lr, weight_decay, momentum : float
        Adam, lr 1e-3, weight decay 1e-5 as the authors; momentum is for SGD only.
    schedule : {"constant", "cosine", "step"}
        Learning-rate schedule over ``max_epochs`` ("step": x0.1 at 50 % and 75 %).
    batch_size : int
        Training batch (the authors: 32).
    eval_batch_size : int
        Validation/test batch; only speed depends on it.
    augmentation : {"none", "flip", "crop", "crop_flip"}
        Random horizontal flip and/or 4-pixel-padded random crop (CIFAR-style).
        Off by default: the shift under study should be the only change to the data.
    cutoff1_delta, cutoff1_epochs, cutoff2_delta, cutoff2_epochs
        Cutoff rules: once validation accuracy is within ``delta_i`` of the
        target, at most ``k_i`` more epochs. Our choice (the paper gives none):
        1 point / 5 epochs and 3 points / 10 epochs.
    seed : int
        Seeds data order, augmentation, dropout and new heads.
    """

    target_accuracy: float = 0.85
    max_epochs: int = 250
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-5
    momentum: float = 0.9
    schedule: str = "constant"
    batch_size: int = 32
    eval_batch_size: int = 1024
    augmentation: str = "none"
    cutoff1_delta: float = 0.01
    cutoff1_epochs: int = 5
    cutoff2_delta: float = 0.03
    cutoff2_epochs: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.target_accuracy, (int, float)) or not 0.0 < self.target_accuracy <= 1.0:
            raise InvalidParameterError(
                "target_accuracy", self.target_accuracy, "a fraction in (0, 1]",
                "Accuracy is a fraction here: write 0.9 for 90 %.",
            )
        for name in ("max_epochs", "batch_size", "eval_batch_size", "cutoff1_epochs", "cutoff2_epochs"):
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
class EpochStats:
    """What the loop itself measured in one epoch (costs come from the tracker)."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_accuracy: float
    lr: float


@dataclass
class TrainResult:
    """The outcome of :func:`train`.

    Attributes
    ----------
    history : list of EpochStats
    stop_reason : str
        One of :data:`STOP_REASONS`.
    test_accuracy : float or None
        On the test data, when given, after the last epoch.
    """

    history: list[EpochStats] = field(default_factory=list)
    stop_reason: str = ""
    test_accuracy: float | None = None

    @property
    def epochs(self) -> int:
        return len(self.history)

    @property
    def reached(self) -> bool:
        """False for a censored run (it stopped before reaching its target)."""
        return self.stop_reason == "reached"

    def to_dict(self) -> dict:
        return {
            "history": [asdict(e) for e in self.history],
            "stop_reason": self.stop_reason,
            "epochs": self.epochs,
            "test_accuracy": self.test_accuracy,
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


def stop_reason(val_accuracies: Sequence[float], config: TrainConfig) -> str | None:
    """Why training stops after the last epoch of `val_accuracies`, or None to go on.

    Rules, checked in this order: "reached" (the last accuracy meets the
    target), "cutoff-1" / "cutoff-2" (the first epoch within ``delta_i`` of the
    target lies ``k_i`` or more epochs back), "cap" (``max_epochs`` done).
    """
    epoch = len(val_accuracies)
    if epoch == 0:
        return None
    target = config.target_accuracy
    if val_accuracies[-1] >= target:
        return "reached"
    rules = ((config.cutoff1_delta, config.cutoff1_epochs), (config.cutoff2_delta, config.cutoff2_epochs))
    for rule, (delta, patience) in enumerate(rules, start=1):
        first_close = next((e for e, acc in enumerate(val_accuracies, start=1) if acc >= target - delta), None)
        if first_close is not None and epoch - first_close >= patience:
            return f"cutoff-{rule}"
    if epoch >= config.max_epochs:
        return "cap"
    return None


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
    data = as_tensors(data, "data")
    device = torch.device(device) if device is not None else model_device(model)
    was_training = model.training
    model.eval()
    correct = 0
    try:
        with torch.no_grad():
            for start in range(0, len(data), batch_size):
                x = data.images[start : start + batch_size].to(device, non_blocking=True)
                y = data.labels[start : start + batch_size].to(device, non_blocking=True)
                correct += int((model(x).argmax(dim=1) == y).sum())
    finally:
        model.train(was_training)
    return correct / len(data)


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

    def after_backward(self):
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
        Receives the per-step and per-epoch hooks (see :mod:`resque.cost.tracking`).
    device : str or torch.device, optional
        Default: where the model is.
    progress : bool
        A tqdm bar over epochs (works in terminals and notebooks).

    Returns
    -------
    TrainResult
        Per-epoch loss and accuracies, the stop reason, the test accuracy.
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
    result = TrainResult()
    accuracies: list[float] = []
    bar = tqdm(total=config.max_epochs, desc="training", unit="epoch", disable=not progress)
    try:
        with tracker:
            while True:
                tracker.start_epoch()
                model.train()
                loss_sum, correct, seen, diverged = 0.0, 0, 0, False
                lr = optimizer.param_groups[0]["lr"]
                permutation = torch.randperm(len(train_set), generator=order)
                for start in range(0, len(train_set), config.batch_size):
                    index = permutation[start : start + config.batch_size]
                    x = _augment(train_set.images[index], config.augmentation, order).to(device, non_blocking=True)
                    y = train_set.labels[index].to(device, non_blocking=True)
                    logits = model(x)
                    loss = F.cross_entropy(logits, y)
                    if not torch.isfinite(loss):
                        diverged = True
                        break
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    tracker.after_backward()
                    optimizer.step()
                    tracker.after_step(len(index))
                    loss_sum += float(loss.detach()) * len(index)
                    correct += int((logits.argmax(dim=1) == y).sum())
                    seen += len(index)
                if scheduler is not None:
                    scheduler.step()
                with tracker.evaluation():
                    val_accuracy = evaluate(model, val_set, config.eval_batch_size, device)
                accuracies.append(val_accuracy)
                stats = EpochStats(
                    epoch=len(accuracies),
                    train_loss=loss_sum / seen if seen else float("nan"),
                    train_accuracy=correct / seen if seen else float("nan"),
                    val_accuracy=val_accuracy,
                    lr=lr,
                )
                result.history.append(stats)
                tracker.end_epoch(val_accuracy=val_accuracy, train_loss=stats.train_loss)
                bar.update(1)
                bar.set_postfix(loss=f"{stats.train_loss:.4f}", val_acc=f"{val_accuracy:.4f}")
                reason = "diverged" if diverged else stop_reason(accuracies, config)
                if reason is not None:
                    result.stop_reason = reason
                    break
    finally:
        bar.close()
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
