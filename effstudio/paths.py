"""Where effstudio writes: runs, caches, settings and logs from platformdirs; and checks of the
paths a person or a file names, before anything is read or written.

Nothing goes into the installation folder or the current directory by default.
EFFSTUDIO_DATA_DIR, EFFSTUDIO_CACHE_DIR and EFFSTUDIO_LOG_DIR override the
locations (tests and shared machines use them); with only EFFSTUDIO_DATA_DIR
set, logs go into its ``logs`` folder.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import platformdirs

from effstudio.config import ConfigError

if TYPE_CHECKING:
    import argparse

APP_NAME = "effstudio"


def data_dir() -> Path:
    override = os.environ.get("EFFSTUDIO_DATA_DIR")
    return Path(override) if override else Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def cache_dir() -> Path:
    override = os.environ.get("EFFSTUDIO_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False))


def runs_dir() -> Path:
    return data_dir() / "runs"


def task_cache_dir(task_name: str) -> Path:
    return cache_dir() / "tasks" / task_name


# ------------------------------------------------ paths that a file names
# A run config, a checkpoint header or an imported run folder may name other files (an
# output, a text to train on, an artifact). Such files are shared, so what they name must
# stay inside their own folder: a downloaded config must not write over ~/.bashrc or feed
# /etc/shadow to a model. A path the user gives on the command line (or picks in the
# window) is theirs and may be anywhere; `allow_path` records those for this process.
_allowed: set[Path] = set()


def _resolved(path: str | Path) -> Path:
    """``path`` as the file system reads it (``..`` after a symbolic link); PathError for a symlink loop."""
    try:
        return Path(path).expanduser().resolve()
    except RuntimeError:  # Python before 3.13 says a loop so
        raise PathError(path, "symlink loop") from None
    except OSError as err:  # 3.13 and later: ELOOP
        raise PathError(path, "symlink loop" if err.errno == errno.ELOOP else str(err.strerror or err)) from None


def allow_path(path: str | Path) -> None:
    """The user named ``path`` themselves: a file that names it may read it (a folder: what is under it)."""
    _allowed.add(_resolved(path))


def forget_allowed_paths() -> None:
    """Start a new command with no path allowed: what one command's user named is not the next one's."""
    _allowed.clear()


def add_allow_path_option(parser: argparse.ArgumentParser) -> None:
    """``--allow-path PATH`` on a command (an argparse parser): the command line calls allow_path."""
    parser.add_argument("--allow-path", action="append", type=Path, metavar="PATH",
                        help="read this file or folder (e.g. a charlm text) where a run config, a checkpoint "
                             "or a run folder names it outside its own folder, which is refused otherwise "
                             "(repeatable)")


def user_allowed(path: str | Path) -> bool:
    if "\x00" in str(path):  # no user can name such a file; confine says why it is refused
        return False
    try:
        target = _resolved(path)
    except PathError:  # confine says why
        return False
    return any(target == allowed or target.is_relative_to(allowed) for allowed in _allowed)


def confine(path: str | Path, folder: str | Path, field: str, named_by: str | Path,
            folder_is: str = "its folder") -> Path:
    """``path`` (relative to ``folder``, or absolute) as an absolute path inside ``folder``.

    Symbolic links are followed, so a link that leads out is refused like ``..`` or an
    absolute path elsewhere. Raises ConfigError naming ``field``, the file ``named_by`` and
    the folder (``folder_is`` says what it is to the file: "its folder", "the run folder").
    """
    if "\x00" in str(path):  # no file system takes it; Python's path functions raise ValueError on it
        raise ConfigError(field, f"{str(path)!r} in {named_by} holds a NUL character, which no file name can")
    try:
        base = _resolved(folder)
        target = Path(path).expanduser()
        target = _resolved(target if target.is_absolute() else base / target)
    except PathError as err:
        raise ConfigError(field, f"{str(path)!r} in {named_by}: {err}") from None
    if not target.is_relative_to(base):
        raise ConfigError(field, f"{str(path)!r} in {named_by} leads outside {folder_is} {base} (to {target}); "
                                 "a path that a file names must stay inside the folder it belongs to")
    return target
def escape_reason(path: str | Path, folder: str | Path) -> str | None:
    """Why the existing file ``path``, found in ``folder`` or named by a file there (a shard index, ONNX
    external data), is not the folder's own; None when it is.

    A symbolic link (of the file or of a folder on the way) or ``..`` that resolves outside
    ``folder`` leads out, except into the ``blobs`` folder of a Hugging Face cache, where the
    files of a ``snapshots/<revision>`` folder are links by design. A hard link is one file
    under several names, any of which may lie outside: it is refused too (a copy is not).
    """
    try:
        base, target = _resolved(folder), _resolved(path)
    except PathError as err:
        return err.reason
    if not (target.is_relative_to(base) or _in_hugging_face_blobs(base, target)):
        return f"leads outside the folder {base} (to {target})"
    info = _stat(target)
    if info is not None and stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
        return (f"is a hard link ({info.st_nlink} names for one file, which may lie outside the folder {base}); "
                "copy the file to read it")
    return None


def _in_hugging_face_blobs(snapshot: Path, target: Path) -> bool:
    """``target`` is a blob of the Hugging Face cache that the resolved ``snapshot`` folder belongs to."""
    blobs = snapshot.parent.parent / "blobs"
    return (snapshot.parent.name == "snapshots" and target.parent == blobs and blobs.is_dir()
            and not blobs.is_symlink())


def logs_dir() -> Path:
    """Where the traceback of an unexpected error is written (the CLI prints only its path)."""
    override = os.environ.get("EFFSTUDIO_LOG_DIR")
    if override:
        return Path(override)
    if os.environ.get("EFFSTUDIO_DATA_DIR"):
        return data_dir() / "logs"
    return Path(platformdirs.user_log_dir(APP_NAME, appauthor=False))


# ------------------------------------------------------------ checks of paths
class PathError(ValueError):
    """A path cannot be used as asked (a symlink loop, a folder where a file belongs): one line says why.

    ``reason`` is the why without the path; ``option`` the command-line option that named it, if any.
    """

    def __init__(self, path: str | Path, reason: str, option: str | None = None):
        self.path, self.reason, self.option = Path(path), reason, option
        super().__init__(f"{option} {path}: {reason}" if option else f"{path}: {reason}")


def _stat(path: Path) -> os.stat_result | None:
    """``os.stat`` following links; None when nothing is there. A symlink loop is a PathError."""
    try:
        return os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except ValueError:  # a NUL character in the name
        raise PathError(path, "the name holds a NUL character, which no file name can") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise PathError(path, "symlink loop") from None
        raise PathError(path, str(err.strerror or err)) from None


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "a file"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def refuse_symlink_loop(path: str | Path) -> None:
    """Raise PathError when ``path`` (or a folder on the way to it) is a symlink loop."""
    _stat(Path(path))


def open_regular_file(path: str | Path, *, what: str = "file") -> BinaryIO:
    """Open an existing regular file for reading in binary mode; anything else (missing, a folder, a
    device or pipe that would block or never end, a symlink loop) is a PathError naming it."""
    path = Path(path)
    info = _stat(path)
    if info is None:
        raise PathError(path, f"the {what} file does not exist")
    if not stat.S_ISREG(info.st_mode):
        raise PathError(path, f"the {what} file is {_kind(info.st_mode)}, not a regular file")
    try:
        return open(path, "rb")
    except OSError as err:
        raise PathError(path, f"cannot read the {what} file: {err.strerror or err}") from None


def check_output_file(path: str | Path, option: str = "--out") -> None:
    """Refuse an output file that is a folder, a device or pipe (/dev/null), or lies under a file."""
    _check_output(Path(path), option, stat.S_ISREG, "name a file to write")


def check_output_folder(path: str | Path, option: str = "--out") -> None:
    """Refuse an output folder that exists as a file (or device), or lies under a file."""
    _check_output(Path(path), option, stat.S_ISDIR, "name a folder")


def _check_output(path: Path, option: str, is_right_kind: Callable[[int], bool], advice: str) -> None:
    info = _stat(path)
    if info is None:
        _check_parent(path, option)
    elif not is_right_kind(info.st_mode):
        raise PathError(path, f"is {_kind(info.st_mode)}; {advice}", option)


def _check_parent(path: Path, option: str) -> None:
    """The nearest existing folder above ``path`` must be a folder, not a file."""
    for parent in path.absolute().parents:
        info = _stat(parent)
        if info is None:
            continue
        if not stat.S_ISDIR(info.st_mode):
            raise PathError(path, f"{parent} is {_kind(info.st_mode)}, not a folder", option)
        return
