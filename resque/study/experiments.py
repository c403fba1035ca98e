"""The three experiments of the study, as functions the notebooks call.

Each returns what its notebook shows (images, RESQUE values, records) and
writes its records under the results directory (layout: :mod:`resque.study`).
The notebooks hold only parameters, calls and plots.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from ..predictors.registry import resque_task_name
from ..predictors.shift import dataset_pass, pair_embeddings, pixel_rms_distance, scores_from, untrained_copy
from ..predictors.transfer import scores_from_outputs
from ..models.checkpoint import load_checkpoint, save_checkpoint
from ..data.datasets import load_dataset
from ..data.tasks import derive_task, get_task, load_task
from ..index.dist import ClassSums, DistResult, fingerprint, load_fingerprint, model_digest, resque_dist
from ..errors import DataError, InvalidParameterError
from ..models.zoo import default_layer, input_shape
from ..cost.records import RunRecord, load_record
from ..cost.runs import cost_to_target, replicate_summary, retrain_shift, retrain_task, train_from_scratch
from ..data.shifts import ShiftedDataset
from ..data.splits import protocol_split, subsample_per_class, subset, validation_split
from ..index.embedding import ForwardOptions, model_outputs
from ..index.functional import POOLS, pool_embedding
from ..index.task import variants_from_embeddings
from ..cost.training import TensorData, as_tensors
from .profiles import Profile, load_profile
from .results import ResultsDir, run_id as make_run_id, scratch_run_id

__all__ = [
    "StudyData",
    "study_data",
    "run_source",
    "run_shift",
    "run_shift_grid",
    "run_task",
    "run_task_grid",
    "ShiftOutcome",
    "TaskOutcome",
]

#: Validation holds at least this many images, or this share of the data when it is small (see validation_share).
VALIDATION_IMAGES, VALIDATION_SHARE, VALIDATION_MAX_SHARE = 1000, 0.2, 0.5

#: The untrained network of a seed's shift page is initialised with seed + this (never a source's own seed).
UNTRAINED_SEED_OFFSET = 5000


def validation_share(n_images: int) -> float:
    """Share of `n_images` held out for validation: enough for 1,000 images, at least 20 %, at most half.

    A validation accuracy near the target is compared with it to a point or
    so; with 150 images its standard error is over 3 points, with 1,000 about
    1.3 (book/method.md, "What retraining costs").

    >>> validation_share(20_000), validation_share(3_000), validation_share(1_000)
    (0.2, 0.3333333333333333, 0.5)
    """
    return min(VALIDATION_MAX_SHARE, max(VALIDATION_SHARE, VALIDATION_IMAGES / max(n_images, 1)))


def _profile(profile: Profile | str) -> Profile:
    return profile if isinstance(profile, Profile) else load_profile(profile)


@dataclass
class StudyData:
    """The source dataset of one seed, split as book/method.md says.

    Attributes
    ----------
    original : Dataset
        Clean S0+S2: the source model's data (``original_fit`` + ``original_val``).
    shifted_base : Dataset
        Clean S1+S2: what a shift is applied to.
    test : Dataset
        The dataset's test split (subsampled like the rest).
    """

    original: object
    original_fit: object
    original_val: object
    shifted_base: object
    test: object
    classes: list[str]


def _pick(data, n_per_class: int | None, seed: int):
    if n_per_class is None:
        return data
    return subset(data, subsample_per_class(data, n_per_class, seed=seed, allow_fewer=True))


def study_data(profile: Profile | str, seed: int) -> StudyData:
    """Load the profile's source dataset and split it for `seed` (stratified, seeded)."""
    profile = _profile(profile)
    options = dict(image_size=profile.image_size, channels=profile.channels, download=profile.download)
    train = _pick(load_dataset(profile.dataset, "train", **options), profile.n_per_class, seed)
    test = load_dataset(profile.dataset, "test", **options)
    test = _pick(test, None if profile.n_per_class is None else max(5, profile.n_per_class // 2), seed)
    split = protocol_split(train, seed=seed)
    original = subset(train, split.original)
    fit, val = validation_split(original, validation_share(len(original)), seed=seed)
    return StudyData(
        original=original,
        original_fit=subset(original, fit),
        original_val=subset(original, val),
        shifted_base=subset(train, split.shifted),
        test=test,
        classes=list(train.classes),
    )


def _model_kwargs(profile: Profile, data: StudyData) -> dict:
    image, _ = data.original[0]
    return {"num_classes": len(data.classes), "in_channels": image.shape[0], "image_size": image.shape[-1],
            **profile.model_kwargs}


# --------------------------------------------------------------------------- source


def run_source(profile: Profile | str, seed: int, results_dir: str | os.PathLike, *, progress: bool = True) -> RunRecord:
    """Train the source model on clean S0+S2; save it, its fingerprint and its record."""
    profile = _profile(profile)
    results = ResultsDir(results_dir)
    data = study_data(profile, seed)
    model, record = train_from_scratch(
        profile.model, data.original_fit, data.original_val, profile.source_config(seed),
        model_kwargs=_model_kwargs(profile, data), kind="source", run_id=make_run_id("source", seed=seed),
        experiment={"dataset": profile.dataset, "profile": profile.name}, test_data=data.test,
        energy=profile.energy, country_iso_code=profile.country_iso_code, progress=progress,
        settings=profile.run_settings("source", seed),
    )
    results.source_model(seed).parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, results.source_model(seed), seed=seed, profile=profile.name)
    fingerprint(model, data.original, default_layer(model), progress=progress).save(results.source_fingerprint(seed))
    record.save(results.record(make_run_id("source", seed=seed)))  # last: its presence means the source is complete
    return record


def load_source(results_dir: str | os.PathLike, seed: int) -> tuple[nn.Module, ClassSums]:
    """The source model and its fingerprint written by :func:`run_source`."""
    results = ResultsDir(results_dir)
    if not results.complete(make_run_id("source", seed=seed)):
        raise DataError(
            f"No finished source model for seed {seed} in {results.root}; run the source experiment first "
            f"(resque study run runs it before the others)."
        )
    return load_checkpoint(results.source_model(seed)), load_fingerprint(results.source_fingerprint(seed))


def source_accuracy(results_dir: str | os.PathLike, seed: int) -> float:
    """``a_src``: the source model's clean validation accuracy, from its record (the weights it ended with)."""
    record = load_record(ResultsDir(results_dir).record(make_run_id("source", seed=seed)), require_complete=True)
    accuracy = record.totals.get("final_val_accuracy")
    if accuracy is None:  # a record from before evaluations were recorded this way
        accuracy = record.evaluations[-1]["val_accuracy"]
    return float(accuracy)


# --------------------------------------------------------------------------- shift


@dataclass
class ShiftOutcome:
    """What :func:`run_shift` computed for one intensity, for its notebook."""

    record: RunRecord
    scratch: RunRecord | None
    dist: DistResult
    dist_paired: DistResult | None
    accuracy_clean: float
    accuracy_shifted: float
    clean_examples: torch.Tensor  # (8, C, H, W)
    shifted_examples: torch.Tensor  # (8, C, H, W)
    example_labels: torch.Tensor  # (8,)
    classes: list[str] = field(default_factory=list)
    shift: str = ""
    intensity: float = 0.0


@dataclass
class _ShiftSetting:
    """What every intensity of one family and seed shares: loaded and computed once per page."""

    profile: Profile
    results: ResultsDir
    seed: int
    source: nn.Module
    fingerprint: ClassSums
    layer: str
    data: StudyData
    on_clean: object
    on_original: object
    clean_tensors: TensorData
    test_tensors: TensorData
    a_src: float
    untrained: nn.Module  # the negative control: the source's architecture, freshly initialised
    untrained_fingerprint: ClassSums


#: The last shift page's shared setting, kept for the next page of the same seed in the same process
#: (the study's pages run one after another in one kernel; see resque.study.kernels).
_LAST_SETTING: list = []


def _shift_setting(profile: Profile, seed: int, results_dir, progress: bool) -> _ShiftSetting:
    """What every shift page of `seed` shares, computed once per process while the source model stays the same.

    The seven family pages of a seed start from the same source model and the
    same clean data, so their passes over the clean data, the untrained
    network and its fingerprint are the same too: the next page in the same
    process reuses them. They are recomputed when anything they depend on
    changes: the profile, the seed, the results folder, the source model's
    weights (their digest), its fingerprint or its record's ``a_src``.
    """
    results = ResultsDir(results_dir)
    source, source_fingerprint = load_source(results_dir, seed)
    a_src = source_accuracy(results_dir, seed)
    key = (repr(profile), seed, str(results.root.resolve()), model_digest(source), source_fingerprint.model_digest,
           a_src)
    if _LAST_SETTING and _LAST_SETTING[0][0] == key:
        return replace(_LAST_SETTING[0][1], source=source, fingerprint=source_fingerprint)
    layer = default_layer(source)
    data = study_data(profile, seed)
    untrained = untrained_copy(source, seed + UNTRAINED_SEED_OFFSET)
    setting = _ShiftSetting(
        profile=profile, results=results, seed=seed, source=source, fingerprint=source_fingerprint, layer=layer,
        data=data, untrained=untrained,
        untrained_fingerprint=fingerprint(untrained, data.original, layer, progress=progress),
        on_clean=dataset_pass(source, data.shifted_base, layer, name="clean S1+S2", progress=progress),
        on_original=dataset_pass(source, data.original, layer, name="original", progress=progress),
        clean_tensors=as_tensors(data.shifted_base, "shifted_base"),
        test_tensors=as_tensors(data.test, "test"),
        a_src=a_src,
    )
    _LAST_SETTING[:] = [(key, setting)]
    return setting


def run_shift(
    profile: Profile | str, seed: int, shift: str, intensity: float, results_dir: str | os.PathLike,
    *, progress: bool = True,
) -> ShiftOutcome:
    """Score a shift with RESQUE_dist, then retrain the source model on the shifted data.

    RESQUE_dist compares clean S0+S2 (from the stored fingerprint) with shifted
    S1+S2, the authors' unpaired protocol; with ``profile.paired`` it is also
    computed between clean and shifted S1+S2 (the same images). The source
    model's accuracy on clean and shifted S1+S2 is stored as a simple baseline,
    next to the competing predictors (:mod:`resque.predictors`). Retraining
    fine-tunes all layers on shifted S1+S2 minus its validation split
    (:func:`validation_share`) and stops on that split, at ``rho * a_src``;
    with ``profile.scratch`` a fresh model is trained on the same data as the
    yardstick. :func:`run_shift_grid` runs several intensities of one family
    and shares what they have in common.
    """
    return run_shift_grid(profile, seed, shift, [intensity], results_dir, progress=progress)[0]


def run_shift_grid(
    profile: Profile | str, seed: int, shift: str, intensities, results_dir: str | os.PathLike,
    *, progress: bool = True,
) -> list[ShiftOutcome]:
    """:func:`run_shift` at each of `intensities`, in order: one record (and yardstick) per intensity.

    The study data, the source model, its fingerprint and its passes over the
    clean data are loaded and computed once for the whole grid. Each record is
    saved as soon as its run ends, so a run cut off mid-grid keeps the
    intensities it finished.
    """
    profile = _profile(profile)
    intensities = [float(value) for value in intensities]
    if not intensities:
        raise InvalidParameterError("intensities", intensities, "a non-empty list of intensities")
    setting = _shift_setting(profile, seed, results_dir, progress)
    return [_run_shift_at(setting, shift, intensity, progress) for intensity in intensities]


def _items(tensors: TensorData):
    """A map-style dataset of (image, label) over tensors already decoded (no per-image decoding)."""
    return torch.utils.data.TensorDataset(tensors.images, tensors.labels)


def _run_shift_at(setting: _ShiftSetting, shift: str, intensity: float, progress: bool) -> ShiftOutcome:
    profile, results, seed, source, data, layer = (setting.profile, setting.results, setting.seed, setting.source,
                                                   setting.data, setting.layer)
    run_id = make_run_id("shift", seed=seed, shift=shift, intensity=intensity)
    # the shift is applied to the clean images decoded once per page (the same values as data.shifted_base's)
    shifted = ShiftedDataset(_items(setting.clean_tensors), shift, intensity, seed=seed, progress=progress)
    # One forward pass per dataset serves RESQUE, its paired form, the accuracies and every baseline.
    on_shifted = dataset_pass(source, shifted, layer, name="shifted", progress=progress)
    on_clean, on_original = setting.on_clean, setting.on_original
    dist = resque_dist(source, setting.fingerprint, on_shifted.class_sums, layer)
    paired = resque_dist(source, on_clean.class_sums, on_shifted.class_sums, layer) if profile.paired else None
    clean_tensors = setting.clean_tensors
    shifted_tensors = TensorData(shifted.images_, torch.as_tensor(clean_tensors.labels))
    accuracy_clean, accuracy_shifted = on_clean.accuracy, on_shifted.accuracy
    # Baselines that know nothing a trained model knows: how far the pixels moved, and the same index
    # from a network that learnt nothing (a negative control).
    on_untrained = dataset_pass(setting.untrained, shifted, layer, name="shifted (untrained network)", progress=progress)
    untrained_dist = resque_dist(setting.untrained, setting.untrained_fingerprint, on_untrained.class_sums, layer)
    estimators = {
        "resque_dist": float(dist),
        "accuracy_clean": accuracy_clean,
        "accuracy_shifted": accuracy_shifted,
        "accuracy_drop": accuracy_clean - accuracy_shifted,
        "pixel_distance": pixel_rms_distance(setting.clean_tensors.images, shifted.images_),
        "resque_dist_untrained": float(untrained_dist),
    }
    if paired is not None:
        estimators["resque_dist_paired"] = float(paired)
    # Competing predictors, on the same data (see resque.predictors.registry for each sign).
    unpaired_scores = scores_from(pair_embeddings(on_original, on_shifted, seed=seed), ("mmd", "frechet"))
    estimators.update({name: float(score) for name, score in unpaired_scores.items()})
    if profile.paired:
        estimators["cka"] = float(scores_from(pair_embeddings(on_clean, on_shifted, seed=seed), ("cka",))["cka"])

    fit, val = validation_split(shifted_tensors.labels, validation_share(len(shifted_tensors)), seed=seed)
    train_set = TensorData(shifted_tensors.images[fit], shifted_tensors.labels[fit])
    val_set = TensorData(shifted_tensors.images[val], shifted_tensors.labels[val])
    test_shifted = ShiftedDataset(_items(setting.test_tensors), shift, intensity, seed=seed + 10_000, progress=False)
    test_shifted = TensorData(test_shifted.images_, torch.as_tensor(setting.test_tensors.labels))
    # "Get back to where you were": the target is rho x the source model's clean validation accuracy.
    a_src = setting.a_src
    config = replace(profile.retrain_config(seed), target_accuracy=profile.rho * a_src)
    experiment = {"shift": shift, "intensity": float(intensity), "dataset": profile.dataset, "profile": profile.name,
                  "source_model_digest": setting.fingerprint.model_digest, "a_src": a_src, "rho": profile.rho,
                  "target_accuracy": config.target_accuracy}
    options = dict(energy=profile.energy, country_iso_code=profile.country_iso_code, progress=progress,
                   test_data=test_shifted, settings=profile.run_settings("shift", seed, shift=shift, intensity=intensity))
    scratch = None
    if profile.trains_scratch("shift", seed):
        _, scratch = train_from_scratch(
            source.resque_config["name"], train_set, val_set, config, model_kwargs=source.resque_config["kwargs"],
            run_id=scratch_run_id(run_id), experiment={**experiment, "yardstick_for": run_id}, **options,
        )
        scratch.save(results.record(scratch_run_id(run_id)))
        experiment["scratch_run_id"] = scratch_run_id(run_id)
    record = retrain_shift(  # a copy: the next intensity of the grid starts from the source model too
        copy.deepcopy(source), train_set, val_set, config, run_id=run_id, experiment=experiment, estimators=estimators, **options,
    )
    for retrain_seed in profile.replicate_retrain_seeds(seed):  # test-retest: the same retraining, another seed
        repeat = retrain_shift(copy.deepcopy(source), train_set, val_set, replace(config, seed=retrain_seed),
                               run_id=f"{run_id} (repeat)", experiment=experiment, **options)
        record.replicates.append(replicate_summary(repeat))
    record.save(results.record(run_id))  # last: the run counts as done only now
    return ShiftOutcome(
        record=record, scratch=scratch, dist=dist, dist_paired=paired,
        accuracy_clean=accuracy_clean, accuracy_shifted=accuracy_shifted,
        clean_examples=clean_tensors.images[:8], shifted_examples=shifted_tensors.images[:8],
        example_labels=clean_tensors.labels[:8], classes=data.classes, shift=shift, intensity=float(intensity),
    )


# --------------------------------------------------------------------------- task


def task_images(profile: Profile, seed: int, spec, options: dict):
    """A task's training images, never ones the source model of `seed` trained on.

    A task on the source's own dataset (a relabelling, a subset of classes,
    inverted images) draws from the training split's images outside the
    source's S0+S2 (the rest of the split when the profile subsamples, and
    S1); other datasets are independent of the source. Subsampled to
    ``n_per_class`` per task class with a seed of its own.
    """
    if spec.dataset != profile.dataset:
        return _pick(load_task(spec, "train", **options), profile.n_per_class, seed)
    base = load_dataset(spec.dataset, "train", **options)
    used = source_training_indices(profile, seed, base)
    unused = torch.ones(len(base), dtype=torch.bool)
    unused[used] = False
    pool = derive_task(subset(base, torch.nonzero(unused).flatten()), spec)
    return _pick(pool, profile.n_per_class, seed + 7919)


def source_training_indices(profile: Profile, seed: int, base) -> torch.Tensor:
    """Indices into the full training split of the images the source model of `seed` trained on (S0+S2)."""
    chosen = (torch.arange(len(base)) if profile.n_per_class is None
              else subsample_per_class(base, profile.n_per_class, seed=seed, allow_fewer=True))
    split = protocol_split(subset(base, chosen), seed=seed)
    return chosen[torch.as_tensor(split.original)]



@dataclass
class TaskOutcome:
    """What :func:`run_task` computed, for its notebook."""

    record: RunRecord
    scratch: RunRecord | None
    variants: dict  # (pool, init) -> TaskResult
    conv_variants: dict  # the same at profile.task_conv_layer ({} when it is None)
    examples: torch.Tensor  # (8, C, H, W)
    example_labels: torch.Tensor  # (8,)
    classes: list[str] = field(default_factory=list)
    task: str = ""


def run_task(profile: Profile | str, seed: int, task: str, results_dir: str | os.PathLike,
             *, progress: bool = True) -> TaskOutcome:
    """Score a task change with RESQUE_task (all four variants), then retrain with a fresh head.

    The new task's images are brought to the source model's input shape. The
    default variant (mean pooling, centroid initialisation) is stored as
    ``resque_task``; the others as ``resque_task_<pool>_<init>``.
    :func:`run_task_grid` runs several tasks of one seed and loads the source once.
    """
    return run_task_grid(profile, seed, [task], results_dir, progress=progress)[0]


def _task_pass(model: nn.Module, tensors: TensorData, layers: tuple[str, ...], progress: bool):
    """One pass over a task's images: each layer's embeddings pooled both ways, the first layer's mean-pooled
    features in float64, the source-class logits and the labels.

    The same values :func:`resque_task_variants` and :func:`task_scores` take from passes of their own.
    """
    pooled = [{pool: [] for pool in POOLS} for _ in layers]
    features, logits, labels = [], [], []
    for outputs, final, batch_labels in model_outputs(model, _items(tensors), list(layers), name="task data",
                                                      forward=ForwardOptions(progress=progress)):
        if not isinstance(final, torch.Tensor) or final.ndim != 2:
            raise DataError("LEEP and NCE need the model to return (B, Z) source-class logits; it returned "
                            + (f"shape {tuple(final.shape)}" if isinstance(final, torch.Tensor) else type(final).__name__)
                            + ".")
        for chunks, output in zip(pooled, outputs):
            for pool in POOLS:
                chunks[pool].append(pool_embedding(output, pool).float().cpu())
        features.append(pool_embedding(outputs[0], "mean").double().cpu())
        logits.append(final.double().cpu())
        labels.append(batch_labels.cpu())
    embeddings = [{pool: torch.cat(parts) for pool, parts in chunks.items()} for chunks in pooled]
    return embeddings, torch.cat(features).numpy(), torch.cat(logits), torch.cat(labels)


def run_task_grid(profile: Profile | str, seed: int, tasks, results_dir: str | os.PathLike,
                  *, progress: bool = True) -> list[TaskOutcome]:
    """:func:`run_task` for each of `tasks`, in order: one record (and yardstick) per task, each saved when it ends."""
    profile = _profile(profile)
    tasks = list(tasks)
    if not tasks:
        raise InvalidParameterError("tasks", tasks, "a non-empty list of task names")
    source, _ = load_source(results_dir, seed)
    # each task retrains a copy: the next one starts from the source model too
    return [_run_task_with(profile, seed, task, results_dir, copy.deepcopy(source), progress) for task in tasks]


def _run_task_with(profile: Profile, seed: int, task: str, results_dir, source: nn.Module,
                   progress: bool) -> TaskOutcome:
    results = ResultsDir(results_dir)
    run_id = make_run_id("task", seed=seed, task=task)
    channels, size, _ = input_shape(source)
    options = dict(image_size=size, channels=channels, download=profile.download)
    spec = get_task(task)
    train = task_images(profile, seed, spec, options)
    test = _pick(load_task(spec, "test", **options), None if profile.n_per_class is None else max(5, profile.n_per_class // 2), seed)
    # each split decoded once: the estimators' passes, the yardstick and the retraining all read these tensors
    tensors, test = as_tensors(train, "task data"), as_tensors(test, "task test data")
    # One forward pass serves RESQUE_task's variants at both layers and every transferability score.
    layer = default_layer(source)
    layers = (layer,) if profile.task_conv_layer is None else (layer, profile.task_conv_layer)
    embeddings, features, logits, labels = _task_pass(source, tensors, layers, progress)
    variants = variants_from_embeddings(embeddings[0], labels, layer, seed=seed)
    estimators = {"resque_task": float(variants[("mean", "centroids")])}
    for (pool, init), result in variants.items():
        estimators[resque_task_name(pool, init)] = float(result)
    at_conv = {}
    if profile.task_conv_layer is not None:  # where pooling and flattening differ
        at_conv = variants_from_embeddings(embeddings[1], labels, profile.task_conv_layer, seed=seed)
        for (pool, init), result in at_conv.items():
            estimators[resque_task_name(pool, init, conv=True)] = float(result)
    # Transferability scores on the same data ("higher = easier", see resque.predictors.transfer).
    estimators.update(scores_from_outputs(features, logits, labels.numpy(), names=profile.task_score_names(), seed=seed))

    fit, val = validation_split(tensors.labels, validation_share(len(tensors)), seed=seed)
    train_set = TensorData(tensors.images[fit], tensors.labels[fit])
    val_set = TensorData(tensors.images[val], tensors.labels[val])
    num_classes = len(train.classes) if hasattr(train, "classes") else int(tensors.labels.max()) + 1
    experiment = {"task": task, "task_dataset": spec.dataset, "num_classes": num_classes, "profile": profile.name,
                  "task_conv_layer": profile.task_conv_layer,
                  "source_model_digest": model_digest(source), "rho": profile.rho}
    run_options = dict(energy=profile.energy, country_iso_code=profile.country_iso_code, progress=progress,
                       test_data=test, settings=profile.run_settings("task", seed, task=task))
    # The yardstick first, trained to its plateau: its best validation accuracy is a_ref, and its cost to
    # rho x a_ref (read off its evaluations) is what reuse is compared with.
    kwargs = {**source.resque_config["kwargs"], "num_classes": num_classes}
    _, scratch = train_from_scratch(
        source.resque_config["name"], train_set, val_set, replace(profile.retrain_config(seed), target_accuracy=None),
        model_kwargs=kwargs, run_id=scratch_run_id(run_id), experiment={**experiment, "yardstick_for": run_id},
        **run_options,
    )
    a_ref = max(row["val_accuracy"] for row in scratch.evaluations)
    target = profile.rho * a_ref
    plateau = {key: scratch.totals.get(key) for key in ("epochs", "steps", "samples", "evaluations",
                                                        "train_seconds", "eval_seconds", "cpu_seconds", "energy_kwh",
                                                        "final_val_accuracy")}
    scratch.totals, _ = cost_to_target(scratch, target)  # always met: a_ref is its best accuracy and rho <= 1
    scratch.totals["plateau"] = {**plateau, "stop_reason": scratch.stop_reason}
    scratch.stop_reason = "reached"
    scratch.experiment.update(a_ref=a_ref, target_accuracy=target)
    scratch.save(results.record(scratch_run_id(run_id)))
    experiment.update(scratch_run_id=scratch_run_id(run_id), a_ref=a_ref, target_accuracy=target)
    config = replace(profile.retrain_config(seed), target_accuracy=target)
    repeats = [(retrain_seed, copy.deepcopy(source)) for retrain_seed in profile.replicate_retrain_seeds(seed)]
    record = retrain_task(source, train_set, val_set, num_classes, config, run_id=run_id,
                          experiment=experiment, estimators=estimators, **run_options)
    for retrain_seed, model in repeats:  # test-retest: the same retraining with another seed (and new head)
        repeat = retrain_task(model, train_set, val_set, num_classes, replace(config, seed=retrain_seed),
                              run_id=f"{run_id} (repeat)", experiment=experiment, **run_options)
        record.replicates.append(replicate_summary(repeat))
    record.save(results.record(run_id))
    return TaskOutcome(record=record, scratch=scratch, variants=variants, conv_variants=at_conv, examples=tensors.images[:8],
                       example_labels=tensors.labels[:8], classes=list(getattr(train, "classes", [])), task=task)
