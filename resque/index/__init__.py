"""RESQUE itself: the two estimators and the forward pass they share.

- :mod:`.functional`: the math on tensors (pooling, per-class sums, angles, k-means, ARI);
- :mod:`.embedding`: one forward pass that captures a layer's output;
- :mod:`.dist`: RESQUE_dist and fingerprints; :mod:`.task`: RESQUE_task.
"""

from .dist import ClassSums, DistResult, fingerprint, load_fingerprint, resque_dist
from .task import TaskResult, resque_task, resque_task_variants

__all__ = [
    "ClassSums", "DistResult", "TaskResult",
    "fingerprint", "load_fingerprint", "resque_dist", "resque_task", "resque_task_variants",
]
