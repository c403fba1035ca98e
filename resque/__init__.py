"""resque: estimate, before retraining, what retraining a model will cost.

Implements RESQUE (Sangarya & Kim, AAAI 2025): RESQUE_dist for a distribution
shift and RESQUE_task for a task change, each from one forward pass of the
existing model; plus the datasets, models and shifts the study feeds them with.
"""

from .models.checkpoint import load_checkpoint, read_checkpoint_config, save_checkpoint
from .data.datasets import DATASETS, LabelledImages, ToModelInput, data_root, list_datasets, load_dataset, to_model_input
from .data.tasks import TASKS, TaskSpec, derive_task, get_task, list_tasks, load_task
from .forecast import CostForecast, ForecastError, fit_forecast, forecast
from .cost.energy import NvmlEnergyReader, carbon_intensity
from .index.dist import ClassSums, DistResult, fingerprint, load_fingerprint, resque_dist
from .errors import (
    CheckpointError,
    ClassMismatchError,
    DataError,
    DegenerateEmbeddingError,
    FingerprintError,
    InvalidParameterError,
    LayerNotFoundError,
    ResqueError,
    TrackingStateError,
)
from .models.zoo import MODELS, create_model, default_layer, head_name, input_shape, list_models, replace_head
from .cost.runs import retrain_shift, retrain_task, run_training, train_from_scratch
from .data.shifts import SHIFTS, ShiftedDataset, ShiftFamily, apply_shift, create_shift, list_shifts, recommended_grid
from .data.splits import ProtocolSplit, protocol_split, subsample_per_class, subset, validation_split
from .cost.records import RecordError, RunRecord, load_record
from .index.task import TaskResult, resque_task, resque_task_variants
from .predictors.registry import Predictor, get_predictor, list_predictors
from .cost.tracking import CostTracker, EpochCosts, TrainingCosts
from .cost.training import TrainConfig, TrainResult, evaluate, retrain_for_task, train

from ._version import __version__

__all__ = [
    # estimators
    "resque_dist",
    "resque_task",
    "resque_task_variants",
    "fingerprint",
    "load_fingerprint",
    "ClassSums",
    "DistResult",
    "TaskResult",
    # data
    "DATASETS",
    "list_datasets",
    "load_dataset",
    "LabelledImages",
    "ToModelInput",
    "to_model_input",
    "data_root",
    "protocol_split",
    "ProtocolSplit",
    "validation_split",
    "subsample_per_class",
    "subset",
    "TASKS",
    "TaskSpec",
    "list_tasks",
    "get_task",
    "load_task",
    "derive_task",
    # shifts
    "SHIFTS",
    "list_shifts",
    "create_shift",
    "apply_shift",
    "recommended_grid",
    "ShiftFamily",
    "ShiftedDataset",
    # models
    "MODELS",
    "list_models",
    "create_model",
    "default_layer",
    "head_name",
    "replace_head",
    "input_shape",
    "save_checkpoint",
    "load_checkpoint",
    "read_checkpoint_config",
    # retraining and its cost
    "TrainConfig",
    "TrainResult",
    "train",
    "evaluate",
    "retrain_for_task",
    "run_training",
    "retrain_shift",
    "retrain_task",
    "train_from_scratch",
    "CostTracker",
    "EpochCosts",
    "TrainingCosts",
    "NvmlEnergyReader",
    "carbon_intensity",
    "RunRecord",
    "load_record",
    # every predictor of retraining cost (RESQUE and its rivals: resque.predictors)
    "list_predictors",
    "get_predictor",
    "Predictor",
    # beyond the paper: a cost forecast
    "forecast",
    "fit_forecast",
    "CostForecast",
    "ForecastError",
    # errors
    "ResqueError",
    "InvalidParameterError",
    "LayerNotFoundError",
    "DataError",
    "ClassMismatchError",
    "DegenerateEmbeddingError",
    "FingerprintError",
    "CheckpointError",
    "TrackingStateError",
    "RecordError",
    "__version__",
]
