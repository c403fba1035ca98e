"""Which optional dependency comes with which extra, and the error that says so.

The bare install (``pip install resque``) scores, trains and tracks; the study
(``[study]``: papermill, pandas, plots, the book) and energy figures
(``[energy]``: codecarbon, NVML) are extras. Code that needs one calls
:func:`require`; the command line turns any missing one into a one-line message.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import ResqueError

__all__ = ["EXTRAS", "MissingExtraError", "require", "extra_of"]

#: Top-level module -> the extra of resque that installs it.
EXTRAS = {
    "pandas": "study", "scipy": "study", "matplotlib": "study", "seaborn": "study", "yaml": "study",
    "papermill": "study", "nbformat": "study", "ipykernel": "study", "jupyter_client": "study",
    "dask": "study", "distributed": "study", "jupyter_book": "study",
    "codecarbon": "energy", "pynvml": "energy",
}


class MissingExtraError(ResqueError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""

    def __init__(self, module: str, what: str = ""):
        self.module = module
        self.extra = extra_of(module)
        need = f"{what} needs {module}" if what else f"{module} is not installed"
        fix = f"pip install 'resque[{self.extra}]'" if self.extra else f"pip install {module}"
        super().__init__(f"{need}, which is not installed: {fix}", name=module)


def extra_of(module: str) -> str | None:
    """The extra that installs `module` (a dotted name is looked up by its top-level package)."""
    return EXTRAS.get(module.split(".")[0])


def require(module: str, what: str = "") -> ModuleType:
    """Import `module`, or raise :class:`MissingExtraError` naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        if error.name is not None and error.name.split(".")[0] != module.split(".")[0]:
            raise  # the module is there but something it imports is broken: show that
        raise MissingExtraError(module, what) from None
