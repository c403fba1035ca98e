"""The model zoo (:mod:`.zoo`) and safe checkpoints, tensors plus configuration (:mod:`.checkpoint`)."""

from .checkpoint import load_checkpoint, read_checkpoint_config, save_checkpoint
from .zoo import MODELS, create_model, default_layer, head_name, input_shape, list_models, replace_head

__all__ = [
    "MODELS", "create_model", "default_layer", "head_name", "input_shape", "list_models", "replace_head",
    "load_checkpoint", "read_checkpoint_config", "save_checkpoint",
]
