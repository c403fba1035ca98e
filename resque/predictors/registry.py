"""One registry of every predictor of retraining cost: RESQUE itself and its rivals.

Each entry says what the predictor is called, whether it scores a
distribution shift or a task change, and which way it points. The study, the
analysis and the book read these facts from here; adding a predictor is one
:func:`register_predictor` call, and the tests parametrised over
:func:`list_predictors` check it.

Examples
--------
>>> list_predictors("shift")[:3]
['accuracy_drop', 'cka', 'constant']
>>> get_predictor("cka").sign  # higher CKA = smaller shift = less retraining
-1
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..checks import check_choice
from ..errors import InvalidParameterError
from ..index.dist import resque_dist
from ..index.task import resque_task
from ..registry import Registry
from . import shift, transfer

__all__ = ["KINDS", "PREDICTORS", "Predictor", "get_predictor", "list_predictors", "register_predictor", "resque_task_name"]

KINDS = ("shift", "task")


@dataclass(frozen=True)
class Predictor:
    """A predictor of retraining cost.

    Attributes
    ----------
    name : str
        Its key in run records (``record.estimators``) and in the runs table.
    label : str
        How tables and plots name it.
    kind : {"shift", "task"}
        ``"shift"``: called as ``function(model, original, shifted, layer, **options)``;
        ``"task"``: as ``function(model, data, layer, **options)``. Options are
        the forward-pass ones (``device``, ``batch_size``, ``num_workers``,
        ``progress``) and the predictor's own; the result converts to float.
    higher_is_easier : bool
        True for similarities and transferability scores (a higher value
        predicts *less* retraining), False for RESQUE and distances.
    function : callable
        Computes it from one forward pass over each dataset.
    paired : bool
        Shift predictors only: `original` must be the same images as `shifted`
        before the shift, in the same order.
    reading : str
        One line on how to read the value.
    design : bool
        True for the trivial baselines that come from the experiment's design
        (the shift's intensity) rather than from the data or the model: the
        constant and the intensity rank. The analysis computes them from the
        runs table (:func:`resque.study.analysis.questions.add_baselines`);
        called, they read a :class:`resque.ShiftedDataset`'s shift and intensity.
    """

    name: str
    label: str
    kind: str
    higher_is_easier: bool
    function: Callable[..., object]
    paired: bool = False
    reading: str = ""
    design: bool = False

    @property
    def sign(self) -> int:
        """+1 or -1, so that ``sign * value`` grows with the retraining predicted."""
        return -1 if self.higher_is_easier else 1

    def __call__(self, *args, **kwargs) -> float:
        return float(self.function(*args, **kwargs))


PREDICTORS = Registry("predictor")


def register_predictor(predictor: Predictor) -> Predictor:
    """Add `predictor` to the registry (its name must be new and lowercase)."""
    check_choice("kind", predictor.kind, KINDS)
    if predictor.paired and predictor.kind != "shift":
        raise InvalidParameterError("paired", True, "False for task predictors (only a shift has clean/shifted pairs)")
    PREDICTORS.register(predictor.name)(predictor)
    return predictor


def list_predictors(kind: str | None = None, pattern: str | None = None) -> list[str]:
    """Names of the registered predictors, sorted; `kind` keeps ``"shift"`` or ``"task"`` ones, `pattern` filters."""
    if kind is not None:
        check_choice("kind", kind, KINDS)
    return [n for n in PREDICTORS.names(pattern) if kind is None or PREDICTORS.get(n).kind == kind]


def get_predictor(name: str) -> Predictor:
    """The :class:`Predictor` registered as `name` (unknown names list close matches)."""
    return PREDICTORS.get(name)


# --------------------------------------------------------------------------- RESQUE


def resque_task_name(pool: str, init: str, conv: bool = False) -> str:
    """The record key of a RESQUE_task variant: ``resque_task_<pool>_<init>`` (``k-means++`` spelled ``kmeanspp``).

    With `conv`, the variant at a convolutional layer (a study's
    ``task_conv_layer``, named in the run's ``experiment``):
    ``resque_task_conv_<pool>_<init>``.

    The default variant (mean pooling, centroids) is also stored as plain ``resque_task``.
    """
    return f"resque_task_{'conv_' if conv else ''}{pool}_{init.replace('k-means++', 'kmeanspp')}"


def _resque_task_variant(pool: str, init: str) -> Callable[..., float]:
    def variant(model, data, layer, **options) -> float:
        return float(resque_task(model, data, layer, pool=pool, init=init, **options))

    variant.__name__ = resque_task_name(pool, init)
    return variant


_HARDER = "higher = more retraining predicted"

for _predictor in (
    Predictor("resque_dist", "RESQUE_dist", "shift", False, resque_dist,
              reading="mean per-class angle in [0, 1]; clean S0+S2 against shifted S1+S2 (the authors' protocol)"),
    Predictor("resque_dist_paired", "RESQUE_dist (paired)", "shift", False, resque_dist, paired=True,
              reading="RESQUE_dist between the same images clean and shifted"),
    Predictor("resque_task", "RESQUE_task", "task", False, resque_task,
              reading="1 - ARI of k-means on the pooled embeddings, started at the class centroids"),
    *(Predictor(resque_task_name(pool, init), f"RESQUE_task ({'pooled' if pool == 'mean' else 'flat'}, {init})",
                "task", False, _resque_task_variant(pool, init), reading=_HARDER)
      for pool, init in (("mean", "k-means++"), ("flatten", "centroids"), ("flatten", "k-means++"))),
    # the same four at a convolutional layer, where pooling and flattening differ (a study's task_conv_layer)
    *(Predictor(resque_task_name(pool, init, conv=True),
                f"RESQUE_task at a conv layer ({'pooled' if pool == 'mean' else 'flat'}, {init})",
                "task", False, _resque_task_variant(pool, init), reading=_HARDER + "; at a convolutional output")
      for pool in ("mean", "flatten") for init in ("centroids", "k-means++")),
):
    register_predictor(_predictor)


# --------------------------------------------------------------------------- rivals


def _accuracy_drop(model, original, shifted, layer=None, **options):
    return shift.accuracy_drop(model, original, shifted, **options)  # the model's output, not a layer


def _resque_dist_untrained(model, original, shifted, layer, *, seed: int = 0, **options):
    return resque_dist(shift.untrained_copy(model, seed), original, shifted, layer, **options)


def _constant(model, original, shifted, layer=None, **options) -> float:
    """The no-information baseline: the same value (0) for every shift."""
    return 0.0


def _intensity_rank(model, original, shifted, layer=None, *, grid=None, **options) -> float:
    """The shift's intensity as its rank in its family's grid: 0 for no shift, then 1, 2, ...

    `shifted` must be a :class:`resque.ShiftedDataset` (its ``shift`` and
    ``intensity`` are read); `grid` is the family's intensities (default: its
    :func:`resque.recommended_grid`), and the intensity must be one of them (or 0).
    """
    from ..data.shifts import recommended_grid

    family, intensity = getattr(shifted, "shift", None), getattr(shifted, "intensity", None)
    if family is None or intensity is None:
        raise InvalidParameterError(
            "shifted", type(shifted).__name__,
            "a resque.ShiftedDataset (the intensity rank reads its shift and intensity, not its images)")
    levels = sorted({float(v) for v in (recommended_grid(family) if grid is None else grid)} | {0.0})
    if float(intensity) not in levels:
        raise InvalidParameterError(
            "intensity", intensity, f"one of the family's grid {levels}",
            "The rank is only defined on the grid it ranks: pass grid= the intensities your study runs.")
    return float(levels.index(float(intensity)))


def _transfer_score(name: str) -> Callable[..., float]:
    def score(model, data, layer, **options) -> float:
        return transfer.task_scores(model, data, layer, names=(name,), **options)[name]

    score.__name__ = name
    return score


_EASIER = "higher = easier transfer (less retraining predicted)"

for _predictor in (
    Predictor("accuracy_drop", "Accuracy drop of the source model", "shift", False, _accuracy_drop,
              reading="higher = larger shift (accuracy lost, in [-1, 1])"),
    Predictor("mmd", "MMD (RBF, median heuristic)", "shift", False, shift.mmd,
              reading="higher = larger shift (0 = same distribution; the unbiased estimate can dip slightly below 0)"),
    Predictor("frechet", "Fréchet distance", "shift", False, shift.frechet,
              reading="higher = larger shift (0 = same mean and covariance)"),
    Predictor("cka", "Linear CKA (paired)", "shift", True, shift.cka, paired=True,
              reading="similarity: higher = SMALLER shift (1 = representations unchanged; 1 - cka is a shift size)"),
    Predictor("pixel_distance", "Pixel RMS distance (no model)", "shift", False, shift.pixel_distance, paired=True,
              reading="higher = the images moved further (RMS on the [0, 1] scale; model-free baseline)"),
    Predictor("resque_dist_untrained", "RESQUE_dist, untrained network", "shift", False, _resque_dist_untrained,
              reading="RESQUE_dist from a freshly initialised network of the same architecture (negative control)"),
    # trivial baselines from the design, not the data: what any predictor must beat
    Predictor("constant", "Constant (no information)", "shift", False, _constant, design=True,
              reading="the same value for every run: a rank correlation is undefined, C = 0.5"),
    Predictor("intensity_rank", "Intensity rank within the family", "shift", False, _intensity_rank, design=True,
              reading="0 for the clean control (in every family), then 1, 2, ... by intensity"),
    Predictor("logme", "LogME", "task", True, _transfer_score("logme"), reading=_EASIER),
    Predictor("leep", "LEEP", "task", True, _transfer_score("leep"), reading=_EASIER),
    Predictor("nce", "NCE", "task", True, _transfer_score("nce"), reading=_EASIER),
    Predictor("h_score", "H-score", "task", True, _transfer_score("h_score"), reading=_EASIER),
    Predictor("gbc", "GBC", "task", True, _transfer_score("gbc"), reading=_EASIER),
    Predictor("knn_accuracy", "k-NN accuracy", "task", True, _transfer_score("knn_accuracy"), reading=_EASIER),
    Predictor("linear_probe_accuracy", "Linear-probe accuracy", "task", True,
              _transfer_score("linear_probe_accuracy"), reading=_EASIER),
):
    register_predictor(_predictor)
