"""One training at a time in a run folder.

Two trainings writing into one folder (a second `train --out` or `--resume` while the first
runs, the window and the command line at once) would rename their checkpoints over each other and
interleave their event logs. The first holds an exclusive lock on a file in the folder for as long
as it trains and removes the file when it ends; the operating system drops the lock when the process
ends, also on SIGKILL, so the file a killed run leaves behind locks nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO

from effstudio.config import ConfigError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks here; the folder is not guarded
    fcntl = None

LOCK_NAME = ".effstudio.lock"


class RunLock:
    """The held lock of a run folder; ``release()`` lets another training in, ``undo()`` also removes
    what taking it created (the lock file, the folder), for a run that fails before it starts."""

    def __init__(self, run_dir: Path):
        self.run_dir, self.path = run_dir, run_dir / LOCK_NAME
        # the folders this creates (the run folder and any missing above it), removed again by undo()
        self.created_dirs = [folder for folder in (run_dir, *run_dir.parents) if not folder.exists()]
        run_dir.mkdir(parents=True, exist_ok=True)
        self.handle: IO[bytes] | None = None
        for _ in range(3):  # a training that ended meanwhile removed the file this locked: once more
            handle = open(self.path, "ab")
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                break
            if _same_file(handle, self.path):
                self.handle = handle
                break
            handle.close()
        if self.handle is None:
            raise ConfigError("out", f"{run_dir} is in use by another training (its process id is in "
                                     f"{self.path}); wait for it to end or choose another folder")
        self.handle.truncate(0)
        self.handle.write(f"{os.getpid()}\n".encode())
        self.handle.flush()

    def release(self) -> None:
        """Let another training in; the lock file goes first, while it is still held, so that no one
        locks it after this one and then finds the name taken by a new file (they check: _same_file)."""
        if self.handle is not None:
            self.path.unlink(missing_ok=True)
            self.handle.close()
            self.handle = None

    def undo(self) -> None:
        self.release()
        for folder in self.created_dirs:  # deepest first; only an empty folder goes
            try:
                folder.rmdir()
            except OSError:
                break


def _same_file(handle: IO[bytes], path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(handle.fileno()), os.stat(path))
    except FileNotFoundError:
        return False


def lock_run_dir(run_dir: Path) -> RunLock | None:
    """Hold the run folder's lock (the folder is created if needed). Raises ConfigError when another
    training holds it."""
    return RunLock(Path(run_dir)) if fcntl is not None else None
