"""Writing files so that a crash never leaves half a file behind.

Every writer of the package (records, checkpoints, fingerprints, summaries,
unpacked data) goes through :func:`atomic_path`: the content goes to a
temporary file in the target's folder, is flushed to disk, gets the mode a
plain ``open()`` would have given it (the umask is respected, so a results
folder can be shared), and is renamed over the target in one step.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_path", "write_text", "write_json"]


def _umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux's /proc)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    # Elsewhere it can only be read by setting it: put it straight back (not thread-safe, hence the fallback).
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def _default_mode() -> int:
    return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success it replaces `path` atomically.

    On any exception (KeyboardInterrupt included) the temporary file is removed
    and `path` is left as it was. The folder must exist.
    """
    path = Path(path)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    temporary = Path(temporary)
    try:
        yield temporary
        with open(temporary, "rb") as written:
            os.fsync(written.fileno())  # the data is on disk before the rename makes it visible
        os.chmod(temporary, _default_mode())  # mkstemp creates 0600 whatever the umask
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` atomically, creating its folder if needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        temporary.write_text(text)
    return path


def write_json(path: str | os.PathLike, values: Any, **dumps_options) -> Path:
    """Write `values` as indented JSON to `path` atomically (see :func:`write_text`)."""
    return write_text(path, json.dumps(values, indent=1, **dumps_options))
