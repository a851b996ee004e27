"""Where effstudio writes: runs, caches and settings from platformdirs.

Nothing goes into the installation folder or the current directory by default.
EFFSTUDIO_DATA_DIR and EFFSTUDIO_CACHE_DIR override the locations (tests and
shared machines use them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import platformdirs

from effstudio.config import ConfigError

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
    return Path(path).expanduser().resolve()  # `..` after a symbolic link, as the file system reads it


def allow_path(path: str | Path) -> None:
    """The user named ``path`` themselves: a file that names it may read it (a folder: what is under it)."""
    _allowed.add(_resolved(path))


def add_allow_path_option(parser: Any) -> None:
    """``--allow-path PATH`` on a command (an argparse parser): the command line calls allow_path."""
    parser.add_argument("--allow-path", action="append", type=Path, metavar="PATH",
                        help="read this file or folder (e.g. a charlm text) where a run config, a checkpoint "
                             "or a run folder names it outside its own folder, which is refused otherwise "
                             "(repeatable)")


def user_allowed(path: str | Path) -> bool:
    target = _resolved(path)
    return any(target == allowed or target.is_relative_to(allowed) for allowed in _allowed)


def confine(path: str | Path, folder: str | Path, field: str, named_by: str | Path,
            folder_is: str = "its folder") -> Path:
    """``path`` (relative to ``folder``, or absolute) as an absolute path inside ``folder``.

    Symbolic links are followed, so a link that leads out is refused like ``..`` or an
    absolute path elsewhere. Raises ConfigError naming ``field``, the file ``named_by`` and
    the folder (``folder_is`` says what it is to the file: "its folder", "the run folder").
    """
    base = _resolved(folder)
    target = Path(path).expanduser()
    target = _resolved(target if target.is_absolute() else base / target)
    if not target.is_relative_to(base):
        raise ConfigError(field, f"{str(path)!r} in {named_by} leads outside {folder_is} {base} (to {target}); "
                                 "a path that a file names must stay inside the folder it belongs to")
    return target
