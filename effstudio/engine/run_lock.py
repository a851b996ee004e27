"""One writer per run folder: a lock held while a run trains into it.

The checkpoint's commit protocol (engine/checkpoint.py) assumes that nothing else
writes the folder: its clean-up removes every temporary file of the checkpoint,
which would delete another process's half-written save. So a run takes the lock
of its folder before it touches anything there, and a second run into the same
folder (two ``train --out F``, a ``--resume`` of a run still training) is refused
with a message that names the process holding it.

The lock is an OS lock on ``.effstudio.lock`` in the folder (``fcntl.flock`` on
Linux and macOS, ``msvcrt.locking`` on Windows): the system releases it when its
process ends, however it ends, so a run killed with SIGKILL never leaves a lock that
blocks the next one. The holder removes the file as it lets go (a killed one leaves it,
unlocked, for the next run to take); its text, the holder's process id, host and
start time, is only there for the message.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path

from effstudio.config import ConfigError

LOCK_NAME = ".effstudio.lock"
MAX_HOLDER_BYTES = 4096  # what the message reads of the holder's description
# what a file system without locks says when asked for one
LOCKS_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP), errno.ENOSYS}

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt


class RunFolderBusy(ConfigError):
    """Another process trains into the folder (the run's ``out`` setting); the message names it."""

    def __init__(self, message: str):
        super().__init__("out", message)


class RunFolderLock:
    """The held lock of one run folder; :meth:`release` (or the process's end) lets it go."""

    def __init__(self, folder: Path, fd: int):
        self.folder, self._fd = folder, fd

    @classmethod
    def acquire(cls, folder: str | Path) -> RunFolderLock:
        """Take the lock of ``folder`` (created if needed) or raise RunFolderBusy naming the holder."""
        folder = Path(folder)
        path = folder / LOCK_NAME
        while True:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:  # a read-only place, a full disk, a file where the folder should be
                raise ConfigError("out", f"cannot write the run folder {folder}: {err.strerror or err}") from None
            try:
                locked = _try_lock(fd)
                # the holder removes the file as it lets go: a lock taken on a file already removed
                # guards nothing, so take the one now at the path
                current = locked and _same_file(fd, path)
            except BaseException:
                os.close(fd)
                raise
            if current:
                break
            if not locked:
                holder = _holder(fd)
                os.close(fd)
                raise RunFolderBusy(f"the run folder {folder} is in use by {holder}: two runs cannot write one "
                                    f"folder; wait for that run to end, or train into another folder (--out)")
            os.close(fd)
        _describe_self(fd)
        return cls(folder, fd)

    def release(self) -> None:
        """Remove the lock file, then let the lock go (a process killed first leaves the file, unlocked)."""
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        try:
            if fcntl is not None:  # Windows cannot remove a file that is open
                (self.folder / LOCK_NAME).unlink(missing_ok=True)
            _unlock(fd)
        except OSError:
            pass  # the lock ends with its descriptor anyway
        finally:
            os.close(fd)

    def __enter__(self) -> RunFolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _try_lock(fd: int) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except BlockingIOError:
        return False
    except PermissionError:  # what msvcrt says of a byte locked by another process
        if fcntl is not None:
            raise
        return False
    except OSError as err:
        if err.errno in LOCKS_UNSUPPORTED:  # some network shares: the run goes on, unguarded, as it did before
            return True
        raise
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        there = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _describe_self(fd: int) -> None:
    """Write who holds the lock, for the message another process shows; failing to is harmless
    (a full disk): the lock is the OS's, not the file's text."""
    text = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode()
    try:
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, text)
    except OSError:
        pass


def _holder(fd: int) -> str:
    """The holder as its own description says ("process 1234 on host, since 12:03:07"), read with a bound."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = json.loads(os.read(fd, MAX_HOLDER_BYTES).decode("utf-8"))
        pid, host, since = int(data["pid"]), str(data["host"])[:100], float(data["since"])
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since))
    except (OSError, ValueError, TypeError, KeyError, OverflowError, RecursionError):  # being written, or not ours
        return "another process"
    return f"process {pid} on {host} (since {started})"
