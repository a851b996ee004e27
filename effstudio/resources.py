"""Where effstudio's resource files (icons, desktop entries) are: a source checkout or a frozen bundle.

A source checkout keeps them in ``resources/`` beside the package; a PyInstaller
bundle unpacks them into ``resources/`` under ``sys._MEIPASS``. A wheel installed
from PyPI has none, and callers fall back to what they can draw themselves.
"""

from __future__ import annotations

import sys
from pathlib import Path

ICON_SIZES = (16, 24, 32, 48, 64, 128, 256)


def resources_dir() -> Path | None:
    candidates = []
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        candidates.append(Path(bundle) / "resources")
    candidates.append(Path(__file__).resolve().parents[1] / "resources")
    for folder in candidates:
        if (folder / "icons").is_dir():
            return folder
    return None


def app_icon_pngs() -> dict[int, Path]:
    """The app icon's PNG files by pixel size (empty when the resources are not installed)."""
    folder = resources_dir()
    if folder is None:
        return {}
    found = {}
    for size in ICON_SIZES:
        path = folder / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "effstudio.png"
        if path.is_file():
            found[size] = path
    return found
