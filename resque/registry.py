"""Name -> builder tables, one per kind (datasets, models, shifts).

Each kind module creates one ``Registry`` and exposes ``list_<kind>s()`` and
``create_<kind>(name, **kwargs)`` on top of it. Names are lowercase.

Examples
--------
>>> SHIFTS = Registry("shift")
>>> @SHIFTS.register("gaussian_noise")
... def gaussian_noise(images, intensity, generator=None): ...
>>> SHIFTS.names("gauss*")
['gaussian_noise']
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

from .checks import did_you_mean
from .errors import InvalidParameterError

__all__ = ["Registry"]


class Registry:
    """A table of named builders of one kind (e.g. ``"shift"``)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}

    def register(self, name: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator adding a builder under `name` (default: the function's name)."""

        def add(builder: Callable[..., Any]) -> Callable[..., Any]:
            key = name or builder.__name__
            if key != key.lower():
                raise InvalidParameterError(f"{self.kind} name", key, "a lowercase name")
            if key in self._entries:
                raise InvalidParameterError(f"{self.kind} name", key, "a name not registered yet",
                                            f"{key!r} is already registered; pick another name.")
            self._entries[key] = builder
            return builder

        return add

    def names(self, pattern: str | None = None) -> list[str]:
        """Registered names, sorted; `pattern` filters with shell wildcards (``"vgg*"``)."""
        names = sorted(self._entries)
        return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names

    def get(self, name: str) -> Callable[..., Any]:
        """The builder registered as `name`; unknown names list close matches and all names."""
        if name in self._entries:
            return self._entries[name]
        hint = did_you_mean(str(name).lower(), self._entries, cutoff=0.5)
        raise InvalidParameterError(self.kind, name, self.names(), hint)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)
