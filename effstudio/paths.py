"""Where effstudio writes: runs, caches and settings from platformdirs.

Nothing goes into the installation folder or the current directory by default.
EFFSTUDIO_DATA_DIR and EFFSTUDIO_CACHE_DIR override the locations (tests and
shared machines use them).
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

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
