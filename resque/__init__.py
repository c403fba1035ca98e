"""resque: estimate, before retraining, what retraining a model will cost.

Implements RESQUE (Sangarya & Kim, AAAI 2025): RESQUE_dist for a distribution
shift and RESQUE_task for a task change, each from one forward pass of the
existing model.
"""

from .dist import ClassSums, DistResult, fingerprint, load_fingerprint, resque_dist
from .errors import (
    ClassMismatchError,
    DataError,
    DegenerateEmbeddingError,
    FingerprintError,
    InvalidParameterError,
    LayerNotFoundError,
    ResqueError,
)
from .task import TaskResult, resque_task, resque_task_variants

__version__ = "0.1.0"

__all__ = [
    "resque_dist",
    "resque_task",
    "resque_task_variants",
    "fingerprint",
    "load_fingerprint",
    "ClassSums",
    "DistResult",
    "TaskResult",
    "ResqueError",
    "InvalidParameterError",
    "LayerNotFoundError",
    "DataError",
    "ClassMismatchError",
    "DegenerateEmbeddingError",
    "FingerprintError",
    "__version__",
]
