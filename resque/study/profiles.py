"""Profiles: the grid of a study, declared in YAML.

A profile names the dataset, model, shift families x intensities, tasks, seeds
and training configs; :func:`expand` turns it into the ordered list of
experiments (source models first, since every other experiment starts from one).
Profiles ship in ``resque/study/profiles/*.yaml``; a path to a YAML file works too.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import from_dict
from ..extras import require
from ..errors import InvalidParameterError, ProfileError
from ..cost.training import TrainConfig
from .results import SUMMARY_IDS, format_intensity, run_id

__all__ = ["PROFILE_DIR", "Profile", "Experiment", "list_profiles", "load_profile", "expand", "NOTEBOOKS"]

PROFILE_DIR = Path(__file__).with_name("profiles")

#: A repeat's retraining seed is its run's seed plus this (far from every source seed a profile uses).
REPLICATE_SEED_OFFSET = 1000

#: Version of what :meth:`Profile.run_settings` records; bump it when a change of code
#: makes old records incomparable with new ones even under the same profile.
SETTINGS_VERSION = 2  # 2: checks before any update and within epochs, relative targets, larger validation

#: Experiment kind -> template notebook (file name under notebooks/).
NOTEBOOKS = {
    "source": "source.ipynb",
    "shift": "shift.ipynb",
    "task": "task.ipynb",
    "energy": "energy.ipynb",
    "analysis": "analysis.ipynb",
}


@dataclass
class Profile:
    """One study grid (see the YAML files in ``resque/study/profiles``).

    Attributes
    ----------
    name, description : str
    dataset : str
        Source dataset (a :func:`resque.list_datasets` name).
    model : str
        A :func:`resque.list_models` name; ``model_kwargs`` go to ``create_model``.
    image_size, channels : int or None
        Input shape every dataset is brought to (None: the source dataset's own).
    n_per_class : int or None
        Images per class kept in each of S0/S1/S2 and the test split (None: all).
    seeds : list of int
    source, retrain : dict
        :class:`~resque.cost.training.TrainConfig` fields for training the source
        model and for every retraining (seed is set per experiment).
    shifts : dict of str to list of float
        Shift family -> intensities.
    tasks : list of str
        Derived-task preset names (:func:`resque.list_tasks`).
    rho : float
        Relative target: a shift run retrains to ``rho * a_src`` (the source
        model's clean validation accuracy), a task run to ``rho * a_ref`` (the
        best validation accuracy of the from-scratch yardstick, trained to its
        plateau). Any ``target_accuracy`` under ``retrain`` is replaced by these.
    scratch : bool
        Also train a fresh model on each experiment's data (the yardstick).
        Task runs need it (it gives ``a_ref``).
    shift_scratch_seeds : list of int or None
        The seeds whose shift runs train the yardstick (None: every seed). The
        yardstick is the largest single cost of a shift run, and what reuse
        saves needs it on some seeds, not all; the savings are then those of
        these seeds. Task runs always train theirs.
    replicate_seeds : list of int
        The source seeds whose shift and task runs are retrained a second time
        with another retraining seed (``seed + REPLICATE_SEED_OFFSET``: another
        data order, dropout and new head), kept in the run's record
        (``record.replicates``): the test-retest reliability of each cost, the
        ceiling of any predictor's correlation with it. Default: none.
    paired : bool
        Also compute RESQUE_dist in paired mode (same images clean and shifted).
    task_conv_layer : str or None
        A convolutional layer of the model (a ``named_modules()`` name, e.g.
        ``"features"``) at which every task run also computes the four
        RESQUE_task variants (``resque_task_conv_<pool>_<init>``): there mean
        pooling and flattening differ, unlike at a 2-D embedding. None: not computed.
    task_scores : list of str or None
        The transferability scores each task run computes, from
        :data:`resque.predictors.transfer.SCORES` (None: all of them). The
        linear probe is the costly one (5-fold logistic regression: about 4.5 s
        of a task run's 15 s on the quick profile, on 2 CPU cores).
    energy : bool
        Track energy and carbon; ``country_iso_code`` sets the carbon intensity.
    download : bool
        Let torchvision download online datasets (needs internet).
    """

    name: str
    description: str = ""
    dataset: str = "fashion_mnist"
    model: str = "small_cnn"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    image_size: int | None = None
    channels: int | None = None
    n_per_class: int | None = None
    seeds: list[int] = field(default_factory=lambda: [0])
    source: dict[str, Any] = field(default_factory=dict)
    retrain: dict[str, Any] = field(default_factory=dict)
    shifts: dict[str, list[float]] = field(default_factory=dict)
    tasks: list[str] = field(default_factory=list)
    rho: float = 0.98
    scratch: bool = True
    shift_scratch_seeds: list[int] | None = None
    replicate_seeds: list[int] = field(default_factory=list)
    paired: bool = True
    task_conv_layer: str | None = None
    task_scores: list[str] | None = None
    energy: bool = True
    country_iso_code: str = "USA"
    download: bool = False

    def __post_init__(self) -> None:
        # Validate names and ranges now, before any kernel starts.
        from ..data.datasets import list_datasets
        from ..data.tasks import list_tasks
        from ..models.zoo import list_models
        from ..data.shifts import create_shift, list_shifts

        if self.dataset not in list_datasets():
            raise InvalidParameterError("dataset", self.dataset, list_datasets())
        if self.model not in list_models():
            raise InvalidParameterError("model", self.model, list_models())
        for family, intensities in self.shifts.items():
            if family not in list_shifts():
                raise InvalidParameterError("shifts", family, list_shifts())
            if not isinstance(intensities, list) or not intensities:
                raise InvalidParameterError(f"shifts.{family}", intensities, "a non-empty list of intensities")
            for value in intensities:
                create_shift(family).check_intensity(value)
            _refuse_duplicates(f"shifts.{family}", intensities, format_intensity,
                               "two intensities that the run id writes the same way would share one record")
        for task in self.tasks:
            if task not in list_tasks():
                raise InvalidParameterError("tasks", task, list_tasks())
        if not self.seeds or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in self.seeds):
            raise InvalidParameterError("seeds", self.seeds, "a non-empty list of non-negative integers")
        _refuse_duplicates("seeds", self.seeds, str, "each seed is one replicate")
        _refuse_duplicates("tasks", self.tasks, str, "each task is one experiment per seed")
        # below 20 a class has no image left for the 10 % validation split of S1+S2
        if self.n_per_class is not None and (not isinstance(self.n_per_class, int) or self.n_per_class < 20):
            raise InvalidParameterError("n_per_class", self.n_per_class, "an integer >= 20, or null for all images")
        if isinstance(self.rho, bool) or not isinstance(self.rho, (int, float)) or not 0.0 < self.rho <= 1.0:
            raise InvalidParameterError("rho", self.rho, "a fraction in (0, 1], e.g. 0.98",
                                        "Targets are rho x the accuracy the model had (a_src) or can reach (a_ref).")
        if self.shift_scratch_seeds is not None:
            unknown = [s for s in self.shift_scratch_seeds if s not in self.seeds]
            if not isinstance(self.shift_scratch_seeds, list) or unknown:
                raise InvalidParameterError("shift_scratch_seeds", self.shift_scratch_seeds,
                                            f"a list of the profile's seeds {self.seeds}, or null for all of them")
        if not isinstance(self.replicate_seeds, list) or any(s not in self.seeds for s in self.replicate_seeds):
            raise InvalidParameterError("replicate_seeds", self.replicate_seeds,
                                        f"a list of the profile's seeds {self.seeds} (or [] for no repeats)")
        _refuse_duplicates("replicate_seeds", self.replicate_seeds, str, "each seed's runs are repeated once")
        if self.task_scores is not None:
            from ..predictors.transfer import SCORES

            for name in self.task_scores:
                if name not in SCORES:
                    raise InvalidParameterError("task_scores", name, list(SCORES))
            _refuse_duplicates("task_scores", self.task_scores, str, "each score is computed once")
        if self.tasks and not self.scratch:
            raise InvalidParameterError("scratch", self.scratch, [True],
                                        "Task runs retrain to rho x a_ref, which the from-scratch yardstick gives.")
        self.source_config(0)
        self.retrain_config(0)

    def check_runnable(self) -> None:
        """What a run needs beyond the profile's own values, checked before any kernel starts.

        The energy tracker's country code, ``task_conv_layer`` (a layer of the
        model) and the datasets (source and tasks),
        which must be on disk unless ``download`` (nothing is downloaded here).
        Raises the error the run would have raised later, minutes into it.
        The model's arguments are checked by the source notebook's first
        cell, once the data's shape is known.
        """
        from ..cost.energy import _check_country
        from ..data.datasets import check_available
        from ..data.tasks import get_task

        if self.energy:
            try:
                _check_country(self.country_iso_code)
            except ImportError:  # no codecarbon: the run records no energy and says so
                pass
        if self.task_conv_layer is not None and self.tasks:
            from ..models.zoo import create_model

            layers = [name for name, _ in create_model(self.model, **self.model_kwargs).named_modules() if name]
            if self.task_conv_layer not in layers:
                raise InvalidParameterError("task_conv_layer", self.task_conv_layer, layers,
                                            f"A layer of the model {self.model!r}, by its named_modules() name.")
        for dataset in sorted({self.dataset} | {get_task(task).dataset for task in self.tasks}):
            check_available(dataset, download=self.download)

    def run_settings(self, kind: str, seed: int, *, shift: str | None = None, intensity: float | None = None,
                     task: str | None = None) -> dict[str, Any]:
        """The profile's settings that one run's results depend on, as plain values.

        Stored in the run's record (``record.settings``); on resume the runner
        compares them with the profile's current ones, so that a folder never
        mixes runs made with different settings. A shift or task run depends
        on its source model too, so its settings include the source's.
        """
        settings: dict[str, Any] = {
            "settings_version": SETTINGS_VERSION,
            "dataset": self.dataset, "model": self.model, "model_kwargs": dict(self.model_kwargs),
            "image_size": self.image_size, "channels": self.channels, "n_per_class": self.n_per_class,
            "source": dataclasses.asdict(self.source_config(seed)), "energy": self.energy,
            "country_iso_code": self.country_iso_code if self.energy else None,
        }
        if kind == "source":
            return settings
        settings.update({"retrain": dataclasses.asdict(self.retrain_config(seed)),
                         "scratch": self.trains_scratch(kind, seed),
                         "replicates": self.replicate_retrain_seeds(seed),
                         "rho": self.rho})
        if kind == "shift":
            settings.update({"shift": shift, "intensity": float(intensity), "paired": self.paired})
        elif kind == "task":
            settings.update({"task": task, "task_scores": self.task_score_names(), "task_conv_layer": self.task_conv_layer})
        else:
            raise InvalidParameterError("kind", kind, ["source", "shift", "task"])
        return settings

    def replicate_retrain_seeds(self, seed: int) -> list[int]:
        """The retraining seeds of the repeats of each shift and task run of source seed `seed` ([] for none)."""
        return [seed + REPLICATE_SEED_OFFSET] if seed in self.replicate_seeds else []

    def task_score_names(self) -> list[str]:
        """The transferability scores a task run computes, in :data:`~resque.predictors.transfer.SCORES` order."""
        from ..predictors.transfer import SCORES

        return [name for name in SCORES if self.task_scores is None or name in self.task_scores]

    def trains_scratch(self, kind: str, seed: int) -> bool:
        """Whether a run of `kind` ("shift" or "task") and `seed` trains the from-scratch yardstick."""
        if kind == "shift" and self.shift_scratch_seeds is not None:
            return self.scratch and seed in self.shift_scratch_seeds
        return self.scratch

    def duplicate_shifts(self) -> dict[tuple[str, float], tuple[str, float]]:
        """Shift experiments whose data would repeat another's, found by content: ``(family, intensity) -> kept``.

        Each family at each intensity is applied to the same probe images
        (random, of the profile's input shape and the dataset's channels) with the same seed;
        when two give identical images, only the first in profile order is run.
        This catches families that coincide on this data (impulse noise and
        salt-and-pepper on grey images) and the intensity-0 controls, which are
        the clean data in every family: one control per seed is run, under the
        first family that lists intensity 0.
        """
        import hashlib

        from ..data.shifts import apply_shift

        probe = _probe_images(self)
        seen: dict[str, tuple[str, float]] = {}
        duplicates = {}
        for family, intensities in self.shifts.items():
            for intensity in intensities:
                shifted = apply_shift(probe, family, float(intensity), seed=0)
                digest = hashlib.sha256(shifted.contiguous().numpy().tobytes()).hexdigest()
                if digest in seen:
                    duplicates[(family, float(intensity))] = seen[digest]
                else:
                    seen[digest] = (family, float(intensity))
        return duplicates

    def describe_duplicates(self) -> list[str]:
        """One line per shift experiment left out by :meth:`duplicate_shifts`, saying why."""
        duplicates = self.duplicate_shifts()
        lines, controls = [], [family for (family, intensity) in duplicates if intensity == 0]
        if controls:
            kept = duplicates[(controls[0], 0.0)][0]
            lines.append(f"intensity 0 is the clean data in every family: one control per seed, run as {kept} at 0 "
                         f"(left out for {', '.join(controls)})")
        by_family: dict[str, list[tuple[float, tuple[str, float]]]] = {}
        for (family, intensity), kept in duplicates.items():
            if intensity != 0:
                by_family.setdefault(family, []).append((intensity, kept))
        for family, pairs in by_family.items():
            same = {kept for _, (kept, _) in pairs}
            every = len(pairs) == sum(1 for i in self.shifts[family] if float(i) != 0)
            at = "every intensity" if every else "intensities " + ", ".join(format_intensity(i) for i, _ in pairs)
            lines.append(f"{family} gives the same images as {' / '.join(sorted(same))} at {at} on "
                         f"{self.dataset}'s {_colour(self)} images: counted once ({family} left out there)")
        return lines

    def source_config(self, seed: int) -> TrainConfig:
        return from_dict(TrainConfig, {**self.source, "seed": seed}, name="source")

    def retrain_config(self, seed: int) -> TrainConfig:
        return from_dict(TrainConfig, {**self.retrain, "seed": seed}, name="retrain")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Experiment:
    """One notebook execution: ``run_id``, its template and its parameters.

    ``parameters`` are plain literals (they are injected into the notebook's
    ``parameters`` cell); every notebook receives ``profile`` (a name or a YAML
    path), ``results_dir``, ``seed`` and its own keys. A shift experiment is
    the page of one family and seed: it runs the family's whole intensity grid
    (``intensities``) in one kernel and writes one record per intensity
    (:meth:`runs`); a task experiment is the page of a seed's ``tasks``, one
    record per task.
    """

    run_id: str
    kind: str
    parameters: dict[str, Any]

    @property
    def notebook(self) -> str:
        return NOTEBOOKS[self.kind]

    def runs(self) -> list[tuple[str, dict[str, Any]]]:
        """``(run_id, parameters)`` of each record this experiment writes (none for the summary pages)."""
        if self.kind in SUMMARY_IDS:
            return []
        p = self.parameters
        if self.kind == "shift" and "intensities" in p:
            return [(run_id("shift", seed=p["seed"], shift=p["shift"], intensity=value), {**p, "intensity": value})
                    for value in p["intensities"]]
        if self.kind == "task" and "tasks" in p:
            return [(run_id("task", seed=p["seed"], task=task), {**p, "task": task}) for task in p["tasks"]]
        return [(self.run_id, p)]


def list_profiles() -> list[str]:
    """Names of the profiles shipped with resque."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def load_profile(profile: str | os.PathLike) -> Profile:
    """A profile by name (``"quick"``) or from a YAML file path; unknown keys are refused."""
    yaml = require("yaml", "reading a profile")

    path = Path(profile)
    if path.suffix not in (".yaml", ".yml"):
        path = PROFILE_DIR / f"{profile}.yaml"
        if not path.exists():
            raise InvalidParameterError("profile", str(profile), list_profiles(), "Or pass the path of a YAML file.")
    elif not path.exists():
        raise InvalidParameterError("profile", str(profile), "an existing YAML file or one of " + ", ".join(list_profiles()))
    text = path.read_text()
    try:
        values = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}" if mark is not None else str(path)
        problem = " ".join(str(part) for part in (getattr(error, "context", None), getattr(error, "problem", None)) if part)
        raise ProfileError(f"{where}: not valid YAML ({problem or error}). A profile is a mapping of fields, "
                           "e.g. `seeds: [0, 1, 2]` and `shifts: {gaussian_noise: [0, 0.04]}`.") from None
    if not isinstance(values, dict):
        raise ProfileError(f"{path}: a profile is a YAML mapping of fields (name: value), got a {type(values).__name__}.")
    _check_shapes(values, yaml.compose(text), path)
    values.setdefault("name", path.stem)
    return from_dict(Profile, values, name=f"profile {path.name}")


#: The YAML form of each field that is not a plain value, as a profile's author would write it.
_SHAPES = {
    "seeds": (list, "a list of integers, e.g. [0, 1, 2]"),
    "shift_scratch_seeds": ((list, type(None)), "a list of the profile's seeds, e.g. [0], or null for all"),
    "replicate_seeds": (list, "a list of the profile's seeds, e.g. [0], or [] for none"),
    "tasks": (list, "a list of task names, e.g. [fashion_coarse4]"),
    "task_scores": ((list, type(None)), "a list of score names, e.g. [logme, leep, nce], or null for all"),
    "shifts": (dict, "a mapping of shift family -> list of intensities, e.g. {gaussian_noise: [0, 0.04, 0.08]}"),
    "source": (dict, "a mapping of training settings, e.g. {max_epochs: 20, lr: 0.001}"),
    "retrain": (dict, "a mapping of training settings, e.g. {max_epochs: 20, lr: 0.001}"),
    "model_kwargs": (dict, "a mapping of model arguments, e.g. {width: 16}"),
}


def _check_shapes(values: dict, document, path: Path) -> None:
    """Refuse a field of the wrong YAML form, naming the file, the line and the form expected."""
    lines = {key.value: key.start_mark.line + 1 for key, _ in getattr(document, "value", [])
             if hasattr(key, "value")}
    for name, (kind, form) in _SHAPES.items():
        value = values.get(name)
        if name in values and not isinstance(value, kind):
            found = "nothing" if value is None else f"a {type(value).__name__} ({value!r})"
            raise ProfileError(f"{path}, line {lines.get(name, '?')}: `{name}` must be {form}; got {found}.")
    for family, intensities in (values.get("shifts") or {}).items():
        if not isinstance(intensities, list):
            raise ProfileError(f"{path}, line {lines.get('shifts', '?')}: the intensities of shift `{family}` must "
                               f"be a list of numbers, e.g. [0, 0.04, 0.08]; got {intensities!r}.")


def expand(profile: Profile, profile_ref: str, results_dir: str | os.PathLike) -> list[Experiment]:
    """All experiments of `profile`, in the order they must run.

    Source models come first (one per seed), then one page per shift family x
    seed (its whole intensity grid) and one per seed for its tasks, then the
    energy page, then the analysis. Shift intensities whose data repeat an earlier
    one's are left out (:meth:`Profile.duplicate_shifts`), and so is a family
    left with none.
    """
    common = {"profile": str(profile_ref), "results_dir": str(results_dir)}
    experiments = [
        Experiment(run_id("source", seed=seed), "source", {**common, "seed": seed}) for seed in profile.seeds
    ]
    duplicates = profile.duplicate_shifts() if profile.shifts else {}
    for seed in profile.seeds:
        for family, intensities in profile.shifts.items():
            # the same data as an earlier experiment is not run again (Profile.duplicate_shifts)
            kept = [float(i) for i in intensities if (family, float(i)) not in duplicates]
            if kept:
                experiments.append(Experiment(run_id("shift", seed=seed, shift=family), "shift",
                                              {**common, "seed": seed, "shift": family, "intensities": kept}))
        if profile.tasks:
            experiments.append(Experiment(run_id("task", seed=seed), "task",
                                          {**common, "seed": seed, "tasks": list(profile.tasks)}))
    for summary in SUMMARY_IDS:
        experiments.append(Experiment(run_id(summary), summary, {**common, "seed": profile.seeds[0]}))
    return experiments


def _colour(profile: Profile) -> str:
    from ..data.datasets import NATIVE_CHANNELS

    return "grey" if (profile.channels or NATIVE_CHANNELS.get(profile.dataset, 3)) == 1 else "colour"


def _probe_images(profile: Profile):
    """Random images of the profile's input shape for :meth:`Profile.duplicate_shifts` (seeded, no data loaded)."""
    import torch

    from ..data.datasets import NATIVE_CHANNELS

    channels = profile.channels or NATIVE_CHANNELS.get(profile.dataset, 3)
    size = profile.image_size or 28
    return torch.rand(16, channels, size, size, generator=torch.Generator().manual_seed(0))


def _refuse_duplicates(name: str, values, key, why: str) -> None:
    seen: dict[str, object] = {}
    for value in values:
        if key(value) in seen:
            raise InvalidParameterError(
                name, values, "a list without repeats",
                f"{seen[key(value)]!r} and {value!r} are the same experiment ({why}); remove one.",
            )
        seen[key(value)] = value
