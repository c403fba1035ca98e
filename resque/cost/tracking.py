"""What retraining costs, epoch by epoch: steps, gradient norms, parameter change, time, FLOPs, energy.

See the method page (book/method.md), "What retraining costs". :class:`CostTracker` wraps
any training loop; the loop calls four hooks and gets one :class:`EpochCosts`
per epoch and a :class:`TrainingCosts` in total (``resque.cost.training.train``
calls them for you when given a tracker)::

    tracker = CostTracker(model, flops_sample=(images, labels), country_iso_code="FRA")
    with tracker:
        for epoch in range(epochs):
            tracker.start_epoch()
            for x, y in loader:
                loss = loss_fn(model(x), y)
                loss.backward()
                tracker.after_backward()  # reads the gradients: before zero_grad()
                optimizer.step()
                tracker.after_step(batch_size=len(x))
                optimizer.zero_grad()
            with tracker.evaluation():
                accuracy = evaluate(model, val_loader)
            tracker.end_epoch(val_accuracy=accuracy)
    costs = tracker.totals()

The measures themselves are plain functions on tensors (:func:`global_grad_norm`,
:func:`parameter_change`, :func:`training_step_flops`); the class only keeps
running totals. Nothing is written to disk: the reference weights are detached
copies on the model's own device.

Cost of tracking: per step, one fused norm kernel per device and a running sum
kept on the device (no host synchronisation); per epoch, one pass over the
parameters and one synchronisation. Energy uses codecarbon, whose sampling
thread wakes once a second (see ``benchmarks/bench_tracking.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import numbers
import platform
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch
from torch import nn
from torch.nn import functional as F

from .energy import DEFAULT_COUNTRY, EnergyMeter, EnergyReport, NvmlEnergyReader
from ..errors import InvalidParameterError, TrackingStateError

__all__ = [
    "CostTracker",
    "EpochCosts",
    "TrainingCosts",
    "TrackingStateError",
    "global_grad_norm",
    "parameter_change",
    "training_step_flops",
    "layer_of",
]


# ---------------------------------------------------------------------------
# Functional core
# ---------------------------------------------------------------------------


def layer_of(parameter_name: str) -> str:
    """The module a parameter belongs to: ``"features.0.weight"`` -> ``"features.0"``.

    A parameter registered on the root module is its own layer.
    """
    module, _, _ = parameter_name.rpartition(".")
    return module or parameter_name


def _norms(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """L2 norm of each tensor as float32 0-dim tensors, one fused kernel per device where torch has one."""
    if hasattr(torch, "_foreach_norm"):
        by_device: dict[torch.device, list[int]] = {}
        for index, tensor in enumerate(tensors):
            by_device.setdefault(tensor.device, []).append(index)
        norms: list[torch.Tensor | None] = [None] * len(tensors)
        for indices in by_device.values():
            group = [tensors[i] for i in indices]
            try:
                # float32 accumulation keeps half-precision gradients from overflowing
                group_norms = torch._foreach_norm(group, 2, dtype=torch.float32)
            except (TypeError, RuntimeError):  # older torch without `dtype`, or mixed dtypes
                group_norms = [torch.linalg.vector_norm(t, dtype=torch.float32) for t in group]
            for i, norm in zip(indices, group_norms):
                norms[i] = norm
        return norms  # type: ignore[return-value]
    return [torch.linalg.vector_norm(t, dtype=torch.float32) for t in tensors]


def global_grad_norm(parameters: Iterable[torch.Tensor]) -> torch.Tensor | None:
    """Global L2 norm of the gradients, as if all were one flat vector.

    Computed as the norm of the per-parameter norms, on the device, without a
    host synchronisation: the result is a 0-dim float32 tensor on the device of
    the first gradient (read it with ``.item()`` when needed).

    Parameters
    ----------
    parameters : iterable of torch.Tensor
        Parameters whose ``.grad`` to read; those without a gradient are skipped.

    Returns
    -------
    torch.Tensor or None
        ``sqrt(sum_p |grad_p|^2)``; None when no parameter has a gradient.
    """
    grads = [p.grad.detach() for p in parameters if p.grad is not None]
    if not grads:
        return None
    norms = _norms(grads)
    device = norms[0].device
    return torch.linalg.vector_norm(torch.stack([n.to(device) for n in norms]))


def parameter_change(
    current: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]
) -> tuple[float, dict[str, float]]:
    """Root-mean-square change of parameters, globally and per layer.

    For a set of ``n`` parameter values, ``|theta - theta_ref|_2 / sqrt(n)``.
    Per layer, the set is the parameters of one module (all of ``conv1.weight``
    and ``conv1.bias`` form layer ``conv1``, see :func:`layer_of`); globally, all
    parameters given.

    Parameters
    ----------
    current, reference : dict of str to torch.Tensor
        Parameter name to values, the same names and shapes in both.

    Returns
    -------
    global_change : float
        Over all parameters (0.0 when there are none).
    per_layer : dict of str to float
        Layer name to its change, in the order the parameters come.
    """
    names = list(current)
    if not names:
        return 0.0, {}
    norms = _norms([(current[name].detach() - reference[name]) for name in names])
    # One host transfer for all of them.
    device = norms[0].device
    values = torch.stack([n.to(device) for n in norms]).double().cpu().tolist()
    squares: dict[str, float] = {}
    counts: dict[str, int] = {}
    for name, norm in zip(names, values):
        layer = layer_of(name)
        squares[layer] = squares.get(layer, 0.0) + norm * norm
        counts[layer] = counts.get(layer, 0) + current[name].numel()
    total_count = sum(counts.values())
    global_change = math.sqrt(sum(squares.values()) / total_count) if total_count else 0.0
    per_layer = {layer: math.sqrt(squares[layer] / counts[layer]) if counts[layer] else 0.0 for layer in squares}
    return global_change, per_layer


def training_step_flops(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> int:
    """FLOPs of one training step (forward, loss, backward) on one batch, as PyTorch counts them.

    Counted with ``torch.utils.flop_counter.FlopCounterMode``, which counts
    matrix multiplications, convolutions and attention (2 FLOPs per
    multiply-add) and ignores element-wise work (activations, normalisation,
    the loss, the optimizer update): an estimate of the dominant cost, not a
    hardware measurement. For ``nn.Linear(i, o)`` on ``B`` rows it counts
    ``2*B*i*o`` forward and ``2*B*i*o`` per gradient in backward (weight
    always; input only when something upstream needs it).

    The model is left as it was: gradients, buffers (e.g. BatchNorm running
    statistics), train/eval modes and the random-number state are restored.

    Parameters
    ----------
    model : nn.Module
    inputs : torch.Tensor
        One batch, ``(B, ...)``, moved to the model's device.
    targets : torch.Tensor
        Its targets, ``(B,)`` class indices by default.
    loss_fn : callable, optional
        ``loss_fn(outputs, targets)`` -> scalar; default cross-entropy.

    Returns
    -------
    int
        FLOPs of the whole batch (divide by ``B`` for FLOPs per sample).
    """
    from torch.utils.flop_counter import FlopCounterMode

    loss_fn = loss_fn or F.cross_entropy
    parameters = list(model.parameters())
    device = parameters[0].device if parameters else torch.device("cpu")
    inputs = inputs.to(device)
    targets = targets.to(device) if isinstance(targets, torch.Tensor) else targets
    saved_grads = [None if p.grad is None else p.grad.detach().clone() for p in parameters]
    saved_buffers = [b.detach().clone() for b in model.buffers()]
    saved_modes = [(module, module.training) for module in model.modules()]
    rng_devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=rng_devices), torch.enable_grad():
            model.train()
            with FlopCounterMode(display=False) as counter:
                loss = loss_fn(model(inputs), targets)
                loss.backward()
            flops = int(counter.get_total_flops())
    finally:
        with torch.no_grad():
            for parameter, grad in zip(parameters, saved_grads):
                parameter.grad = grad
            for buffer, saved in zip(model.buffers(), saved_buffers):
                buffer.copy_(saved)
        for module, training in saved_modes:
            module.training = training
    return flops


#: FLOPs per sample of one training step, by architecture, parameters and input: a study trains the
#: same network on the same image size hundreds of times, and counting costs a traced step each time
#: (about 30 ms of a one-second retraining on the small CNN).
_STEP_FLOPS: dict = {}
_STEP_FLOPS_KEPT = 64


def _flops_key(model: nn.Module, inputs: torch.Tensor, targets, loss_fn) -> tuple | None:
    """What FLOPs per sample depend on, for a model built by :mod:`resque.models`; None for any other.

    A zoo model's forward pass is fixed by its registered name and keyword
    arguments; the module tree (its ``repr``: kernel sizes, strides, widths)
    and each parameter's shape, type, device and ``requires_grad`` (what the
    backward pass computes) are in the key too. A model of the user's own may
    branch on anything, so it is counted every time.
    """
    config = getattr(model, "resque_config", None)
    if not isinstance(config, dict) or not isinstance(targets, torch.Tensor):
        return None
    try:
        key = (
            type(model), repr(sorted(config.items(), key=str)), repr(model),
            tuple((name, tuple(p.shape), p.dtype, p.device, p.requires_grad) for name, p in model.named_parameters()),
            tuple(inputs.shape), inputs.dtype, inputs.device, tuple(targets.shape), targets.dtype, loss_fn,
        )
        hash(key)
    except TypeError:  # an unhashable loss function
        return None
    return key


def _flops_per_sample(model: nn.Module, inputs: torch.Tensor, targets, loss_fn=None) -> float:
    """:func:`training_step_flops` divided by the batch size, counted once per :func:`_flops_key`."""
    key = _flops_key(model, inputs, targets, loss_fn)
    if key is not None and key in _STEP_FLOPS:
        return _STEP_FLOPS[key]
    value = training_step_flops(model, inputs, targets, loss_fn) / len(inputs)
    if key is not None:
        if len(_STEP_FLOPS) >= _STEP_FLOPS_KEPT:
            _STEP_FLOPS.pop(next(iter(_STEP_FLOPS)))  # the oldest
        _STEP_FLOPS[key] = value
    return value


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


def _energy_fields(report: EnergyReport) -> dict:
    return {
        "energy_kwh": report.kwh,
        "energy_estimated_kwh": report.estimated_kwh,
        "carbon_kg": report.carbon_kg,
        "energy_parts": {name: figure.to_dict() for name, figure in report.parts.items()},
        "energy_unavailable": dict(report.unavailable),
    }


class _Record:
    """``to_dict``/``from_dict`` shared by the result dataclasses."""

    def to_dict(self) -> dict:
        """Plain, JSON-serialisable values (floats, ints, strings, None, dicts)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        """Rebuild from :meth:`to_dict`; unknown keys are rejected."""
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise InvalidParameterError("data", unknown, f"keys among {known}")
        return cls(**data)


@dataclass
class EpochCosts(_Record):
    """What one epoch cost.

    Attributes
    ----------
    epoch : int
        0-based index.
    steps, samples : int
        Optimizer steps and training samples (from ``after_step``).
    train_seconds, eval_seconds : float
        Wall time, seconds: inside ``tracker.evaluation()`` blocks, and the rest
        of the epoch (``start_epoch`` to ``end_epoch``) minus those.
    cpu_seconds : float
        Process CPU time (user + system, all threads) from ``start_epoch`` to
        ``end_epoch``, seconds: next to wall time, it shows how much of the
        machine the run used.
    train_flops : float or None
        FLOPs per sample (see :func:`training_step_flops`) times `samples`; an
        estimate from PyTorch's FLOP counter. None when not counted.
    grad_norm_last, grad_norm_mean : float or None
        Global L2 gradient norm at the epoch's last *full* batch (the last
        ``after_backward(full_batch=True)`` call: what the RESQUE authors log,
        without the noise of a ragged final batch) and its mean over all the
        epoch's calls.
    param_change_from_start, param_change_from_previous : float or None
        ``|theta - theta_ref|_2 / sqrt(n)`` over all trainable parameters, with
        ``theta_ref`` the weights when tracking started and at the end of the
        previous epoch.
    layer_change_from_start, layer_change_from_previous : dict of str to float
        The same per layer (module), see :func:`parameter_change`.
    energy_kwh : float or None
        Energy from ``start_epoch`` to ``end_epoch`` (training and evaluation),
        kWh, summed over the parts that could be read; None when none could.
    energy_estimated_kwh : float or None
        The part of `energy_kwh` that is estimated, not measured, kWh.
    carbon_kg : float or None
        `energy_kwh` times the country's grid intensity, kg CO2-eq.
    energy_parts : dict
        ``{"gpu"|"cpu"|"ram": {"kwh": float, "source": str}}``; sources are
        ``"nvml"``, ``"rapl"``, ``"powermetrics"`` or ``"estimate"``.
    energy_unavailable : dict of str to str
        Parts that could not be read, and why.
    metrics : dict
        Whatever was passed to ``end_epoch`` (e.g. ``val_accuracy``).
    """

    epoch: int
    steps: int
    samples: int
    train_seconds: float
    eval_seconds: float
    cpu_seconds: float = 0.0
    train_flops: float | None = None
    grad_norm_last: float | None = None
    grad_norm_mean: float | None = None
    param_change_from_start: float | None = None
    param_change_from_previous: float | None = None
    layer_change_from_start: dict[str, float] = field(default_factory=dict)
    layer_change_from_previous: dict[str, float] = field(default_factory=dict)
    energy_kwh: float | None = None
    energy_estimated_kwh: float | None = None
    carbon_kg: float | None = None
    energy_parts: dict[str, dict] = field(default_factory=dict)
    energy_unavailable: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float | int | str | bool | None] = field(default_factory=dict)


@dataclass
class TrainingCosts(_Record):
    """What the whole tracked training cost: sums over epochs, and final states.

    Attributes
    ----------
    intervals : int
        Tracked intervals (``start_epoch``/``end_epoch`` pairs: epochs, or
        evaluation intervals when the loop checks more often).
    steps, samples : int
    train_seconds, eval_seconds, cpu_seconds : float
        Sums over intervals, seconds.
    flops_per_sample : float or None
        From PyTorch's FLOP counter on the sample batch (forward + backward).
    train_flops : float or None
        `flops_per_sample` times `samples` (an estimate).
    grad_norm_last : float or None
        Of the last full batch of the run.
    grad_norm_mean : float or None
        Over all steps of all epochs.
    param_change_from_start : float or None
        After the last epoch, against the starting weights.
    layer_change_from_start : dict of str to float
        The same per layer.
    energy_kwh, energy_estimated_kwh, carbon_kg, energy_parts, energy_unavailable
        As in :class:`EpochCosts`, summed over epochs (kWh, kg CO2-eq).
    carbon_intensity : float or None
        kg CO2-eq per kWh used for carbon (codecarbon's offline grid data).
    country_iso_code : str
    provenance : dict of str to str
        Device, torch and codecarbon versions, the FLOP counter used.
    """

    intervals: int
    steps: int
    samples: int
    train_seconds: float
    eval_seconds: float
    cpu_seconds: float = 0.0
    flops_per_sample: float | None = None
    train_flops: float | None = None
    grad_norm_last: float | None = None
    grad_norm_mean: float | None = None
    param_change_from_start: float | None = None
    layer_change_from_start: dict[str, float] = field(default_factory=dict)
    energy_kwh: float | None = None
    energy_estimated_kwh: float | None = None
    carbon_kg: float | None = None
    energy_parts: dict[str, dict] = field(default_factory=dict)
    energy_unavailable: dict[str, str] = field(default_factory=dict)
    carbon_intensity: float | None = None
    country_iso_code: str = ""
    provenance: dict[str, str] = field(default_factory=dict)


# ---------------------------------------------------------------------------
# The tracker
# ---------------------------------------------------------------------------

_NOT_STARTED, _BETWEEN, _EPOCH, _EVAL, _STOPPED = (
    "not started",
    "between epochs",
    "in an epoch",
    "in evaluation",
    "stopped",
)


class CostTracker:
    """Record the costs of a training run, per epoch and in total, around any training loop.

    Use it as a context manager (``with tracker:``) and call the hooks in this
    order: ``start_epoch()``, then per optimizer step ``after_backward()``
    (reads the gradients) and ``after_step(batch_size)`` (counts the step),
    optionally ``with tracker.evaluation():`` around validation, then
    ``end_epoch(**metrics)``.

    Parameters
    ----------
    model : nn.Module
        The model being trained. Its trainable parameters (``requires_grad``
        when tracking starts) are the ones whose gradients and change are
        measured.
    energy : bool, default True
        Measure energy and carbon (see :mod:`resque.cost.energy`). With False,
        codecarbon and NVML are never imported. When they cannot start, the
        run goes on and ``energy_unavailable`` says why.
    country_iso_code : str, default "USA"
        ISO 3166-1 alpha-3 code of where the machine runs, for carbon.
    flops_sample : tuple of (torch.Tensor, torch.Tensor), optional
        One ``(inputs, targets)`` batch to count training FLOPs on, once, when
        tracking starts (see :func:`training_step_flops`). None: FLOPs not counted.
        A model built by :mod:`resque.models` is counted once per process for
        each architecture, parameter layout and batch shape; a later tracker
        of the same reuses the count.
    loss_fn : callable, optional
        ``loss_fn(outputs, targets)`` for the FLOP count; default cross-entropy.
    grad_norm : bool, default True
        Record gradient norms.
    param_change : bool, default True
        Record parameter change; keeps two copies of the trainable
        parameters on their device (the start and the previous epoch).
    gpu_energy_reader : EnergyCounter or False, optional
        Cumulative GPU energy counter. None (default): NVML on the model's
        CUDA device, if it has one. False: do not read the GPU.

    Attributes
    ----------
    epochs : list of EpochCosts
        One record per finished epoch.
    flops_per_sample : float or None
        Set when tracking starts, if `flops_sample` was given.

    Notes
    -----
    Call ``after_backward`` after ``loss.backward()`` (after
    ``scaler.unscale_(optimizer)`` with mixed precision, so the norm is of the
    true gradients) and before ``optimizer.zero_grad()``.

    On CUDA, the clock is read after ``torch.cuda.synchronize``, at epoch and
    evaluation boundaries only.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> model = nn.Linear(4, 3)
    >>> optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    >>> x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    >>> tracker = CostTracker(model, energy=False, flops_sample=(x, y))
    >>> with tracker:
    ...     tracker.start_epoch()
    ...     nn.functional.cross_entropy(model(x), y).backward()
    ...     tracker.after_backward()
    ...     optimizer.step(); optimizer.zero_grad()
    ...     tracker.after_step(batch_size=8)
    ...     record = tracker.end_epoch(val_accuracy=0.5)
    >>> record.steps, record.samples, record.train_flops
    (1, 8, 384.0)
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        energy: bool = True,
        country_iso_code: str = DEFAULT_COUNTRY,
        flops_sample: tuple[torch.Tensor, torch.Tensor] | None = None,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        grad_norm: bool = True,
        param_change: bool = True,
        gpu_energy_reader=None,
    ):
        self.model = model
        self.energy = energy
        self.country_iso_code = country_iso_code
        self.flops_sample = flops_sample
        self.loss_fn = loss_fn
        self.grad_norm = grad_norm
        self.param_change = param_change
        self.gpu_energy_reader = gpu_energy_reader
        self.epochs: list[EpochCosts] = []
        self.flops_per_sample: float | None = None
        self._state = _NOT_STARTED

    # -- lifecycle ------------------------------------------------------------

    def __enter__(self) -> "CostTracker":
        self.start()
        return self

    def __exit__(self, exc_type, exc_value, tb) -> None:
        self.stop()

    def start(self) -> None:
        """Check the arguments, start the energy meter, count FLOPs and snapshot the weights.

        Called by ``with tracker:``; the set-up cost (about 1-2 s for
        codecarbon's hardware probe, the first time in a process) falls
        outside every epoch.
        """
        if self._state != _NOT_STARTED:
            raise TrackingStateError(
                "start()", self._state, "A CostTracker records one training run; make a new one for another."
            )
        self._validate()
        self._named = [(name, p) for name, p in self.model.named_parameters() if p.requires_grad]
        self._params = [p for _, p in self._named]
        devices = {p.device for p in self.model.parameters()} or {torch.device("cpu")}
        self._cuda_devices = sorted((d for d in devices if d.type == "cuda"), key=str)
        self._meter = self._build_meter() if self.energy else None
        try:
            if self._meter is not None:
                self._meter.start()
            if self.flops_sample is not None:
                inputs, targets = self.flops_sample
                self.flops_per_sample = _flops_per_sample(self.model, inputs, targets, self.loss_fn)
            if self.param_change:
                with torch.no_grad():
                    self._start_weights = {name: p.detach().clone() for name, p in self._named}
                    self._previous_weights = {name: p.detach().clone() for name, p in self._named}
        except BaseException:
            # A bad country code or a loss_fn that does not fit: release codecarbon and NVML, then report.
            if self._meter is not None:
                self._meter.stop()
            raise
        self._energy_total = EnergyReport()
        self._grad_total, self._grad_total_steps = 0.0, 0
        self._state = _BETWEEN

    def stop(self) -> None:
        """Stop the energy meter; an epoch left open (e.g. by an exception) is dropped."""
        if self._state in (_NOT_STARTED, _STOPPED):
            self._state = _STOPPED
            return
        if self._meter is not None:
            self._meter.stop()
        self._state = _STOPPED

    # -- hooks ----------------------------------------------------------------

    def start_epoch(self) -> None:
        """Begin an epoch: start its clock and energy interval."""
        self._require(_BETWEEN, "start_epoch()", "Call end_epoch() to close the current epoch first.")
        self._steps = self._samples = self._grad_steps = 0
        self._grad_sum: torch.Tensor | None = None
        self._grad_last: torch.Tensor | None = None
        self._eval_seconds = 0.0
        if self._meter is not None:
            self._synchronize()
            self._meter.begin()
        self._epoch_start = self._now()
        self._cpu_start = time.process_time()
        self._state = _EPOCH

    def after_backward(self, full_batch: bool = True) -> None:
        """Read the gradients: call after ``loss.backward()``, before ``optimizer.zero_grad()``.

        Adds the global gradient norm to the epoch's running sum, on the
        device: no host synchronisation happens here. Pass
        ``full_batch=False`` for a ragged last batch: it counts in the mean but
        is never the "last" norm (a 6-image batch's gradient is mostly noise).
        """
        self._require(_EPOCH, "after_backward()", "Call it inside an epoch, outside tracker.evaluation().")
        if self.grad_norm:
            norm = global_grad_norm(self._params)
            if norm is not None:
                # Running sum on the device: read once, at end_epoch.
                self._grad_sum = norm if self._grad_sum is None else self._grad_sum + norm
                if full_batch:
                    self._grad_last = norm
                self._grad_steps += 1

    def after_step(self, batch_size: int) -> None:
        """Count one optimizer step of `batch_size` training samples (call after ``optimizer.step()``)."""
        self._require(_EPOCH, "after_step()", "Call it inside an epoch, outside tracker.evaluation().")
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise InvalidParameterError("batch_size", batch_size, "a positive int", hint="Pass len(inputs).")
        self._steps += 1
        self._samples += int(batch_size)

    @contextlib.contextmanager
    def evaluation(self):
        """Time the enclosed block as evaluation rather than training.

        It does not switch the model to ``eval()`` mode; the loop still does.
        """
        self._require(_EPOCH, "evaluation()", "Use it inside an epoch (after start_epoch()), and do not nest it.")
        begin = self._now()
        self._state = _EVAL
        try:
            yield self
        finally:
            self._eval_seconds += self._now() - begin
            if self._state == _EVAL:
                self._state = _EPOCH

    def end_epoch(self, **metrics) -> EpochCosts:
        """Close the epoch and return its record (also appended to :attr:`epochs`).

        Parameters
        ----------
        **metrics
            Extra numbers or strings to keep with the record, e.g.
            ``val_accuracy=0.91``; 0-dim tensors are converted with ``.item()``.
        """
        self._require(_EPOCH, "end_epoch()", "Call start_epoch() first, and leave tracker.evaluation() before.")
        metrics = {name: _plain_metric(name, value) for name, value in metrics.items()}
        epoch_seconds = self._now() - self._epoch_start
        cpu_seconds = time.process_time() - self._cpu_start
        energy = self._meter.end() if self._meter is not None else _energy_off()
        record = EpochCosts(
            epoch=len(self.epochs),
            steps=self._steps,
            samples=self._samples,
            train_seconds=max(epoch_seconds - self._eval_seconds, 0.0),
            eval_seconds=self._eval_seconds,
            cpu_seconds=cpu_seconds,
            train_flops=None if self.flops_per_sample is None else self.flops_per_sample * self._samples,
            metrics=metrics,
            **_energy_fields(energy),
        )
        if self._grad_sum is not None:
            device = self._grad_sum.device
            last = self._grad_last.to(device) if self._grad_last is not None else torch.full((), math.nan, device=device)
            last, total = torch.stack([last, self._grad_sum]).tolist()
            record.grad_norm_last = None if math.isnan(last) else last
            record.grad_norm_mean = total / self._grad_steps
            self._grad_total += total
            self._grad_total_steps += self._grad_steps
        if self.param_change:
            current = {name: p for name, p in self._named}
            with torch.no_grad():
                record.param_change_from_start, record.layer_change_from_start = parameter_change(
                    current, self._start_weights
                )
                record.param_change_from_previous, record.layer_change_from_previous = parameter_change(
                    current, self._previous_weights
                )
                for name, p in self._named:
                    self._previous_weights[name].copy_(p.detach())
        self._energy_total = self._energy_total + energy
        self.epochs.append(record)
        self._state = _BETWEEN
        return record

    # -- results --------------------------------------------------------------

    def totals(self) -> TrainingCosts:
        """Sums over the finished epochs, and the state after the last one."""
        if self._state == _NOT_STARTED:
            raise TrackingStateError("totals()", self._state, "Enter `with tracker:` and finish an epoch first.")
        epochs = self.epochs
        last = epochs[-1] if epochs else None
        with_norm = [e for e in epochs if e.grad_norm_last is not None]
        samples = sum(e.samples for e in epochs)
        if self._meter is None:
            energy = _energy_off()
        else:
            # The meter's intensity holds even before the first epoch's report.
            energy = dataclasses.replace(self._energy_total, carbon_intensity=self._meter.carbon_intensity)
        fields = _energy_fields(energy)
        return TrainingCosts(
            intervals=len(epochs),
            steps=sum(e.steps for e in epochs),
            samples=samples,
            train_seconds=sum(e.train_seconds for e in epochs),
            eval_seconds=sum(e.eval_seconds for e in epochs),
            cpu_seconds=sum(e.cpu_seconds for e in epochs),
            flops_per_sample=self.flops_per_sample,
            train_flops=None if self.flops_per_sample is None else self.flops_per_sample * samples,
            grad_norm_last=with_norm[-1].grad_norm_last if with_norm else None,
            grad_norm_mean=self._grad_total / self._grad_total_steps if self._grad_total_steps else None,
            param_change_from_start=last.param_change_from_start if last else None,
            layer_change_from_start=dict(last.layer_change_from_start) if last else {},
            carbon_intensity=energy.carbon_intensity,
            country_iso_code=self.country_iso_code.upper() if self.energy else "",
            provenance=self._provenance(),
            **fields,
        )

    # -- internals ------------------------------------------------------------

    def _validate(self) -> None:
        if not isinstance(self.model, nn.Module):
            raise InvalidParameterError("model", type(self.model).__name__, "a torch.nn.Module")
        for name in ("energy", "grad_norm", "param_change"):
            if not isinstance(getattr(self, name), bool):
                raise InvalidParameterError(name, getattr(self, name), (True, False))
        code = self.country_iso_code
        if not (isinstance(code, str) and len(code) == 3 and code.isalpha()):
            raise InvalidParameterError(
                "country_iso_code", code, "a 3-letter ISO 3166-1 alpha-3 code", hint='E.g. "USA", "FRA", "DEU".'
            )
        if self.flops_sample is not None:
            if not (isinstance(self.flops_sample, (tuple, list)) and len(self.flops_sample) == 2):
                raise InvalidParameterError(
                    "flops_sample", type(self.flops_sample).__name__, "an (inputs, targets) pair of tensors"
                )
            if not isinstance(self.flops_sample[0], torch.Tensor) or len(self.flops_sample[0]) == 0:
                raise InvalidParameterError(
                    "flops_sample", "inputs of type " + type(self.flops_sample[0]).__name__, "a non-empty tensor batch"
                )
        if self.loss_fn is not None and not callable(self.loss_fn):
            raise InvalidParameterError("loss_fn", self.loss_fn, "a callable loss_fn(outputs, targets)")
        reader = self.gpu_energy_reader
        if reader is not None and reader is not False:
            if not callable(getattr(reader, "read_kwh", None)) or not isinstance(getattr(reader, "source", None), str):
                raise InvalidParameterError(
                    "gpu_energy_reader",
                    type(reader).__name__,
                    "None, False, or an object with read_kwh() and a `source` string",
                )
            if not self.energy:
                raise InvalidParameterError(
                    "gpu_energy_reader", type(reader).__name__, "None when energy=False", hint="Set energy=True to use it."
                )

    def _build_meter(self) -> EnergyMeter:
        reader, reason = self.gpu_energy_reader, "no CUDA device"
        if reader is False:
            reader, reason = None, "gpu_energy_reader=False"
        elif reader is None and self._cuda_devices:
            try:
                reader = NvmlEnergyReader.for_torch_device(self._cuda_devices[0])
            except Exception as error:  # no pynvml, or a GPU older than Volta
                reader, reason = None, f"NVML energy counter unavailable ({type(error).__name__}: {error})"
        return EnergyMeter(self.country_iso_code, reader, gpu_unavailable_reason=reason)

    def _require(self, state: str, action: str, fix: str) -> None:
        if self._state == state:
            return
        if self._state == _NOT_STARTED:
            fix = "Enter `with tracker:` (or call tracker.start()) first."
        elif self._state == _STOPPED:
            fix = "The `with tracker:` block has ended; a tracker records one run."
        raise TrackingStateError(action, self._state, fix)

    def _synchronize(self) -> None:
        for device in self._cuda_devices:
            torch.cuda.synchronize(device)

    def _now(self) -> float:
        # Queued GPU work belongs to the interval that launched it.
        self._synchronize()
        return time.perf_counter()

    def _provenance(self) -> dict[str, str]:
        if self._cuda_devices:
            device = ", ".join(f"{d} ({torch.cuda.get_device_name(d)})" for d in self._cuda_devices)
        else:
            device = f"cpu ({platform.processor() or platform.machine()})"
        host = self._meter.host if self._meter is not None else None
        return {
            "device": device,
            "torch": torch.__version__,
            "codecarbon": host.codecarbon_version if host is not None else "",
            "flop_counter": "torch.utils.flop_counter.FlopCounterMode" if self.flops_per_sample is not None else "",
        }


def _energy_off() -> EnergyReport:
    return EnergyReport(unavailable={part: "energy=False" for part in ("gpu", "cpu", "ram")})


def _plain_metric(name: str, value):
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise InvalidParameterError(name, value, "a number, a string, a bool or None (a one-element tensor is read)")
