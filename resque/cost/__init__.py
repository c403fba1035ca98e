"""Retraining and what it costs.

- :mod:`.training`: the one training loop and its stop rules;
- :mod:`.tracking`: the cost trackers (gradient norm, parameter change, time, FLOPs, energy);
- :mod:`.energy`: energy and carbon, with the source of each figure;
- :mod:`.runs`: tracked runs that write records; :mod:`.records`: the record format;
- :mod:`.measures`: the table of cost measures (label, unit, estimate or not).
"""

from .energy import NvmlEnergyReader, carbon_intensity
from .records import RunRecord, load_record
from .runs import retrain_shift, retrain_task, run_training, train_from_scratch
from .tracking import CostTracker, EpochCosts, TrainingCosts
from .training import TrainConfig, TrainResult, evaluate, retrain_for_task, train

__all__ = [
    "NvmlEnergyReader", "carbon_intensity", "RunRecord", "load_record",
    "retrain_shift", "retrain_task", "run_training", "train_from_scratch",
    "CostTracker", "EpochCosts", "TrainingCosts", "TrainConfig", "TrainResult", "evaluate", "retrain_for_task", "train",
]
