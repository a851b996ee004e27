"""Window geometry and last-used settings, kept in QSettings("effstudio", "effstudio").

The window takes a QSettings object so tests (and the screenshot tool) can point
it at a temporary INI file instead of the user's real settings.
"""

from __future__ import annotations

import sys
from typing import Any

from PySide6.QtCore import QByteArray, QSettings

from effstudio.config import ConfigError
from effstudio.engine.run_config import RunConfig
from effstudio.registry import Registry, UnknownEntryError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ORGANISATION = APPLICATION = "effstudio"

GEOMETRY = "window/geometry"
STATE = "window/state"
SECTION = "window/section"
SPLITTERS = "window/splitters"
RUN_CONFIG = "run/config_toml"
SMOOTHING = "monitor/smoothing"
LAST_DIR = "files/last_dir"
RECENT_FILES = "files/recent"
RECENT_LIMIT = 10
# the first window's model and task: a pair that trains at once, with no file to choose
FIRST_MODEL, FIRST_TASK = "transformer", "listops"


def user_settings() -> QSettings:
    return QSettings(ORGANISATION, APPLICATION)


def file_settings(path: str) -> QSettings:
    """Settings in one INI file (tests, screenshots): never the user's own."""
    return QSettings(path, QSettings.Format.IniFormat)


def read_bytes(settings: QSettings, key: str) -> QByteArray | None:
    value = settings.value(key)
    return value if isinstance(value, QByteArray) and not value.isEmpty() else None


def read_int(settings: QSettings, key: str, default: int) -> int:
    try:
        return int(settings.value(key, default))
    except (TypeError, ValueError):
        return default


def read_float(settings: QSettings, key: str, default: float) -> float:
    try:
        return float(settings.value(key, default))
    except (TypeError, ValueError):
        return default


def read_str(settings: QSettings, key: str, default: str = "") -> str:
    value: Any = settings.value(key, default)
    return value if isinstance(value, str) else default


def recent_files(settings: QSettings) -> list[str]:
    """Files and folders opened in the Inspect section, newest first."""
    value: Any = settings.value(RECENT_FILES, [])
    if isinstance(value, str):  # QSettings gives a one-item list back as a string
        value = [value]
    return [str(v) for v in value if isinstance(v, str) and v] if isinstance(value, list) else []


def add_recent_file(settings: QSettings, path: str) -> None:
    paths = [path] + [p for p in recent_files(settings) if p != path]
    settings.setValue(RECENT_FILES, paths[:RECENT_LIMIT])


def save_run_config(settings: QSettings, config: RunConfig) -> None:
    settings.setValue(RUN_CONFIG, config.to_toml())


def first_run_config(registry: Registry) -> RunConfig | None:
    """The settings of a first window (nothing remembered yet); None when a plugin set lacks the pair."""
    if FIRST_MODEL not in registry.names("models") or FIRST_TASK not in registry.names("tasks"):
        return None
    return RunConfig.create(FIRST_MODEL, FIRST_TASK, registry=registry)


def load_run_config(settings: QSettings) -> RunConfig | None:
    """The last run config, or None when absent or no longer valid (a plugin went away)."""
    text = read_str(settings, RUN_CONFIG)
    if not text:
        return None
    try:
        return RunConfig.from_dict(tomllib.loads(text))
    except (ConfigError, UnknownEntryError, tomllib.TOMLDecodeError, TypeError, ValueError):
        return None
