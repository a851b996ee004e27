"""One way to replace a file so that no reader ever sees half of it: write a hidden temporary file
beside it (``.NAME.<random>.tmp``, the pattern the clean-up of a killed write looks for), fsync it,
rename it over the target, fsync the folder. A failure (a full disk, a killed process) leaves the old
file whole and removes the temporary one; the OSError (or whatever ``write`` raised) goes on to the
caller, who says what it means (a checkpoint, a cache, a run config).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> None:
    """Call ``write(temporary)`` to fill a temporary file beside ``path``, then put it in place at once."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    temporary = Path(name)
    try:
        write(temporary)
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    fsync_folder(path.parent)


def write_text_atomic(path: str | Path, text: str) -> None:
    """``text`` as the whole of ``path`` (UTF-8), replaced at once."""
    write_atomic(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable; a system without directory fsync (Windows) skips it."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
