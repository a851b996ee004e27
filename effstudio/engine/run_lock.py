"""One training at a time in a run folder.

Two trainings writing into one folder (a second `train --out` or `--resume` while the first
runs, the window and the command line at once) would rename their checkpoints over each other and
interleave their event logs. The first holds an exclusive lock on a file in the folder for as long
as it trains; the operating system drops it when the process ends, also on SIGKILL, so a killed run
leaves no stale lock.
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
        self.created_file = not self.path.exists()
        run_dir.mkdir(parents=True, exist_ok=True)
        self.handle: IO[bytes] | None = open(self.path, "ab")
        try:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.handle.close()
            self.handle = None
            raise ConfigError("out", f"{run_dir} is in use by another training (its process id is in "
                                     f"{self.path}); wait for it to end or choose another folder") from None
        self.handle.truncate(0)
        self.handle.write(f"{os.getpid()}\n".encode())
        self.handle.flush()

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def undo(self) -> None:
        self.release()
        if self.created_file:
            self.path.unlink(missing_ok=True)
        for folder in self.created_dirs:  # deepest first; only an empty folder goes
            try:
                folder.rmdir()
            except OSError:
                break


def lock_run_dir(run_dir: Path) -> RunLock | None:
    """Hold the run folder's lock (the folder is created if needed). Raises ConfigError when another
    training holds it."""
    return RunLock(Path(run_dir)) if fcntl is not None else None
