"""One path from a plain dict (or YAML) to a typed dataclass config.

Unknown keys are rejected with the list of known ones, so a typo in a profile
never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from .checks import close_matches
from .errors import InvalidParameterError

__all__ = ["from_dict"]

T = TypeVar("T")


def from_dict(cls: type[T], values: dict[str, Any] | None, *, name: str | None = None) -> T:
    """Build dataclass `cls` from `values`, refusing keys it does not declare."""
    values = dict(values or {})
    known = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(values) - set(known))
    if unknown:
        close = {k: close_matches(k, known, n=1) for k in unknown}
        hints = [f"{k!r} -> {c[0]!r}?" for k, c in close.items() if c]
        raise InvalidParameterError(
            f"{name or cls.__name__} keys", unknown, known,
            ("Did you mean " + ", ".join(hints)) if hints else "",
        )
    return cls(**values)

