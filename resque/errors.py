"""One exception root for everything `resque` raises on purpose.

Catch :class:`ResqueError` to handle any of them. The subclasses also inherit
from the built-in exception a Python user would expect (``ValueError``,
``KeyError``), so existing ``except ValueError`` code keeps working.
"""

from __future__ import annotations

__all__ = [
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
    "ForecastError",
    "ForecastWarning",
    "BookError",
    "BookBuildError",
    "ProfileError",
    "PixelRangeWarning",
    "SettingsChangedError",
]


class ResqueError(Exception):
    """Root of every error raised by `resque` itself."""


class InvalidParameterError(ResqueError, ValueError):
    """A public argument has a value outside what is allowed.

    Attributes
    ----------
    parameter : str
        Name of the offending argument.
    value : object
        The value received.
    allowed : object
        What would have been accepted (a collection or a description).
    """

    def __init__(self, parameter: str, value, allowed, hint: str = ""):
        self.parameter = parameter
        self.value = value
        self.allowed = allowed
        if isinstance(allowed, (list, tuple, set, frozenset)):
            allowed_text = "one of " + ", ".join(repr(a) for a in allowed)
        else:
            allowed_text = str(allowed)
        message = f"{parameter}={value!r} is not allowed; expected {allowed_text}."
        if hint:
            message += " " + hint
        super().__init__(message)


class LayerNotFoundError(ResqueError, KeyError):
    """The layer name is not one of ``model.named_modules()``."""

    def __init__(self, layer: str, close_matches: list[str], valid: list[str]):
        self.layer = layer
        self.close_matches = close_matches
        self.valid = valid
        message = f"layer={layer!r} is not a module of this model."
        if close_matches:
            message += " Did you mean " + " or ".join(repr(m) for m in close_matches) + "?"
        shown = valid if len(valid) <= 25 else valid[:12] + ["..."] + valid[-12:]
        message += " Valid names (from model.named_modules()): " + ", ".join(shown) + "."
        super().__init__(message)

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return self.args[0]


class DataError(ResqueError, ValueError):
    """A dataset or a batch from it cannot be used (empty, bad labels, NaN images...)."""


class ClassMismatchError(DataError):
    """The original and shifted data do not cover the same classes."""

    def __init__(self, only_original: list[int], only_shifted: list[int]):
        self.only_original = only_original
        self.only_shifted = only_shifted
        parts = []
        if only_original:
            parts.append(f"classes {only_original} are in `original` but not in `shifted`")
        if only_shifted:
            parts.append(f"classes {only_shifted} are in `shifted` but not in `original`")
        super().__init__(
            "RESQUE_dist compares the same classes before and after the shift, but "
            + "; ".join(parts)
            + ". Restrict both datasets to the classes they share (e.g. with torch.utils.data.Subset)."
        )


class DegenerateEmbeddingError(DataError):
    """An embedding sum has zero length, so its direction (and the angle) is undefined."""


class FingerprintError(ResqueError, ValueError):
    """A fingerprint file is missing, corrupt, or does not match the call it is used in."""


class CheckpointError(ResqueError, ValueError):
    """A checkpoint file is missing, unsafe, corrupt, or does not fit its model.

    Attributes
    ----------
    path : str
        The file.
    problem : str
        What is wrong with it, and what to do.
    """

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"Checkpoint {self.path!r}: {problem}")


class TrackingStateError(ResqueError, RuntimeError):
    """A :class:`CostTracker` hook was called out of order (e.g. ``end_epoch`` before ``start_epoch``).

    Attributes
    ----------
    action : str
        The hook that was called.
    state : str
        Where the tracker was: ``"not started"``, ``"between epochs"``,
        ``"in an epoch"``, ``"in evaluation"`` or ``"stopped"``.
    """

    def __init__(self, action: str, state: str, fix: str):
        self.action = action
        self.state = state
        super().__init__(f"{action} was called while the tracker is {state}. {fix}")


class RecordError(ResqueError, ValueError):
    """A run record cannot be read: missing, not JSON, other schema, or incomplete."""


class ForecastError(ResqueError, ValueError):
    """A forecast cannot be fitted from the calibration runs given (usually: too few).

    Attributes
    ----------
    measure : str
        The cost column that could not be fitted.
    n_runs : int
        Usable calibration runs found for it.
    min_runs : int
        Runs needed.
    """

    def __init__(self, message: str, *, measure: str = "", n_runs: int = 0, min_runs: int = 0):
        self.measure = measure
        self.n_runs = n_runs
        self.min_runs = min_runs
        super().__init__(message)


class BookError(ResqueError):
    """The book cannot be assembled (e.g. the results folder does not exist)."""


class BookBuildError(BookError, RuntimeError):
    """``jupyter-book build`` failed or warned (with ``-W``).

    Attributes
    ----------
    command : list of str
        The command that ran.
    returncode : int
    log_tail : str
        The warnings and errors it printed (or its last lines).
    """

    def __init__(self, command: list[str], returncode: int, log_tail: str):
        self.command = command
        self.returncode = returncode
        self.log_tail = log_tail
        super().__init__(
            f"The book build failed (exit status {returncode}): {' '.join(command)}\n{log_tail}\n"
            "Every warning is an error in this build (-W); fix the page or notebook it names, "
            "or pass strict=False (--no-strict) to see the book anyway."
        )


class ProfileError(ResqueError, ValueError):
    """A study profile file cannot be read: not YAML, or a field of the wrong form (the line is named)."""


class SettingsChangedError(ResqueError, ValueError):
    """A results folder holds runs made with other settings than the profile now asks for.

    Attributes
    ----------
    changed : dict of str to list of str
        run id -> the settings that differ.
    """

    def __init__(self, message: str, changed: dict[str, list[str]]):
        self.changed = changed
        super().__init__(message)


class PixelRangeWarning(UserWarning):
    """Float images go beyond [0, 1] (0-255 pixels, or unnormalised data): resque computes as given, and says so."""


class ForecastWarning(UserWarning):
    """A forecast is being applied where its calibration may not hold (e.g. to a model that is not its source)."""
