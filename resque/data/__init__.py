"""What the estimators and the retraining are fed: datasets, derived tasks, splits and shifts."""

from .datasets import DATASETS, LabelledImages, ToModelInput, data_root, list_datasets, load_dataset, to_model_input
from .shifts import SHIFTS, ShiftedDataset, ShiftFamily, apply_shift, create_shift, list_shifts, recommended_grid
from .splits import ProtocolSplit, protocol_split, subsample_per_class, subset, validation_split
from .tasks import TASKS, TaskSpec, derive_task, get_task, list_tasks, load_task

__all__ = [
    "DATASETS", "LabelledImages", "ToModelInput", "data_root", "list_datasets", "load_dataset", "to_model_input",
    "SHIFTS", "ShiftedDataset", "ShiftFamily", "apply_shift", "create_shift", "list_shifts", "recommended_grid",
    "ProtocolSplit", "protocol_split", "subsample_per_class", "subset", "validation_split",
    "TASKS", "TaskSpec", "derive_task", "get_task", "list_tasks", "load_task",
]
