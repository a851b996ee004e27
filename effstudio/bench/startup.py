"""Start-up time: ``effstudio --version`` and the time to the first shown window, in fresh processes.

Each measurement starts a new interpreter, as a user's click or command does. The
first window is timed from the process's start to the moment the window is shown
(``gui/first_window.py`` writes that moment and quits). With ``compare`` (the root of
another effstudio checkout, an older one for instance), both trees are timed
alternately, so that a machine that gets busier slows both alike. Every figure is a
median over ``repeats`` runs with its minimum and maximum, in seconds.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

WINDOW_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, seconds: list[float]) -> Spread:
        return cls(statistics.median(seconds), min(seconds), max(seconds))

    def to_json(self) -> dict[str, float]:
        return {"median_s": round(self.median, 4), "min_s": round(self.low, 4), "max_s": round(self.high, 4)}


def _environment(tree: Path | None, home: Path) -> dict[str, str]:
    # the app's folders go one level below the working folder: a data folder named `effstudio` in the working
    # folder would shadow the package for `python -m effstudio` (the current folder comes first on its path)
    settings = str(home / "settings")
    env = dict(os.environ, QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"),
               XDG_CONFIG_HOME=settings, XDG_DATA_HOME=settings, XDG_CACHE_HOME=settings,
               EFFSTUDIO_RECORD_RUNS="0")
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(tree), os.environ.get("PYTHONPATH"))))
    return env


def time_version(tree: Path | None, home: Path) -> float:
    """Seconds for ``python -m effstudio --version`` (from ``tree`` when given, run from inside it)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "effstudio", "--version"], env=_environment(tree, home), cwd=tree or home,
                   check=True, capture_output=True, timeout=WINDOW_TIMEOUT_S)
    return time.perf_counter() - started


def time_first_window(tree: Path | None, home: Path) -> float:
    """Seconds from starting ``python -m effstudio`` to its first window being shown."""
    picture = home / "first-window.png"
    env = dict(_environment(tree, home), EFFSTUDIO_FIRST_WINDOW=str(picture))
    started = time.time()  # the window reports time.time(): the same clock
    subprocess.run([sys.executable, "-m", "effstudio"], env=env, cwd=tree or home, check=True, capture_output=True,
                   timeout=WINDOW_TIMEOUT_S)
    shown = json.loads(picture.with_suffix(".json").read_text(encoding="utf-8"))["shown_at"]
    return shown - started


def measure_startup(repeats: int = 7, compare: Path | None = None) -> dict[str, object]:
    """``{"version": Spread, "first_window": Spread}`` of this installation (and of ``compare``), alternated."""
    trees: dict[str, Path | None] = {"this": None}
    if compare is not None:
        trees["compare"] = compare
    seconds: dict[str, dict[str, list[float]]] = {name: {"version": [], "first_window": []} for name in trees}
    with tempfile.TemporaryDirectory(prefix="effstudio-startup-") as folder:
        for _ in range(repeats):
            for name, tree in trees.items():
                home = Path(folder) / name
                home.mkdir(exist_ok=True)
                seconds[name]["version"].append(time_version(tree, home))
                seconds[name]["first_window"].append(time_first_window(tree, home))
    result: dict[str, object] = {"repeats": repeats, "load_average": _load_average()}
    for name, figures in seconds.items():
        result[name] = {what: Spread.of(values).to_json() for what, values in figures.items()}
    if compare is not None:
        result["compare_tree"] = str(compare)
    return result


def _load_average() -> float | None:
    """The machine's 1-minute load, for saying when it was too busy for the figures to hold."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):  # not on Windows
        return None
