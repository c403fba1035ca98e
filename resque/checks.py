"""The constraint vocabulary: one small set of checks used at every public boundary.

Each check returns the value in its plain Python form (``np.int64(3)`` -> ``3``)
or raises :class:`~resque.errors.InvalidParameterError` naming the parameter,
the value received and what is allowed. Booleans are never numbers here:
``seed=True`` is a typo, not a seed.

Examples
--------
>>> check_int("seed", np.int64(3), minimum=0)
3
>>> check_choice("pool", "maen", ("mean", "flatten"))
Traceback (most recent call last):
...
resque.errors.InvalidParameterError: pool='maen' is not allowed; expected one of 'mean', 'flatten'. Did you mean 'mean'?
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable

import numpy as np

from .errors import InvalidParameterError

__all__ = ["close_matches", "did_you_mean", "check_int", "check_real", "check_choice", "check_seed"]


def close_matches(value, names: Iterable[str], n: int = 3, cutoff: float = 0.6) -> list[str]:
    """Names that look like `value` (for "did you mean"), best first."""
    return difflib.get_close_matches(str(value), [str(name) for name in names], n=n, cutoff=cutoff)


def did_you_mean(value, names: Iterable[str], n: int = 3, cutoff: float = 0.6) -> str:
    """``"Did you mean 'a' or 'b'?"``, or ``""`` when nothing is close."""
    close = close_matches(value, names, n=n, cutoff=cutoff)
    return f"Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


def _bounds_text(kind: str, minimum, maximum, *, closed_max: bool = True) -> str:
    if minimum is not None and maximum is not None:
        return f"{kind} in [{minimum}, {maximum}{']' if closed_max else ')'}"
    if minimum is not None:
        return f"{kind} >= {minimum}"
    if maximum is not None:
        return f"{kind} <= {maximum}" if closed_max else f"{kind} < {maximum}"
    return kind


def check_int(name: str, value, *, minimum: int | None = None, maximum: int | None = None,
              allowed: str | None = None) -> int:
    """`value` as an ``int`` (numpy integers accepted) within ``[minimum, maximum]``.

    `allowed` replaces the generated description of what is accepted.
    """
    if (isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer))
            or (minimum is not None and value < minimum) or (maximum is not None and value > maximum)):
        raise InvalidParameterError(name, value, allowed or _bounds_text("an integer", minimum, maximum))
    return int(value)


def check_real(name: str, value, *, minimum: float | None = None, maximum: float | None = None,
               closed_max: bool = True, allowed: str | None = None) -> float:
    """`value` as a finite ``float`` within ``[minimum, maximum]`` (``[minimum, maximum)`` with ``closed_max=False``)."""
    ok = not isinstance(value, bool) and isinstance(value, (numbers.Real, np.floating, np.integer))
    if ok:
        number = float(value)
        ok = math.isfinite(number) and (minimum is None or number >= minimum) and (
            maximum is None or (number <= maximum if closed_max else number < maximum))
    if not ok:
        raise InvalidParameterError(
            name, value, allowed or _bounds_text("a finite number", minimum, maximum, closed_max=closed_max))
    return number


def check_choice(name: str, value, allowed: Iterable[str]):
    """`value` if it is one of `allowed`; otherwise an error listing them, with close matches."""
    allowed = list(allowed)
    try:
        if value in allowed:
            return value
    except TypeError:  # unhashable or incomparable values are simply not allowed
        pass
    raise InvalidParameterError(name, value, allowed, did_you_mean(value, allowed))


def check_seed(value, name: str = "seed") -> int:
    """A random seed: a non-negative integer."""
    return check_int(name, value, minimum=0, allowed="a non-negative integer")
