"""A recorded run as CSV, JSON or TensorBoard event files.

- CSV: one row per step, a column per metric (empty where a metric was not
  recorded at that step), in the order of :data:`METRIC_ORDER`.
- JSON: the run (as ``runs show --json``), its artifacts and every metric series
  ``{"steps": [...], "values": [...], "wall_times": [...]}``.
- TensorBoard: an event file in a folder, scalars tagged ``train/loss``,
  ``val/accuracy``, ``memory/rss_mb``... (:data:`TENSORBOARD_TAGS`; a model's own step
  metrics, such as a mixture of experts' balance loss, as ``model/NAME``), at their
  step and original wall-clock time. Point ``tensorboard --logdir`` at the
  parent folder to compare several exported runs.
"""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path
from typing import Any, TextIO

from effstudio.paths import data_dir
from effstudio.runs.store import RunStore
from effstudio.runs.tfevents import EventFileWriter

FORMATS = ("csv", "json", "tensorboard")
METRIC_ORDER = ("loss", "val_loss", "val_accuracy", "lr", "tokens_per_s", "grad_norm", "rss_mb",
                "cuda_allocated_mb", "cuda_reserved_mb", "cuda_peak_mb")
TENSORBOARD_TAGS = {
    "loss": "train/loss", "lr": "train/lr", "tokens_per_s": "train/tokens_per_s", "grad_norm": "train/grad_norm",
    "val_loss": "val/loss", "val_accuracy": "val/accuracy", "rss_mb": "memory/rss_mb",
    "cuda_allocated_mb": "memory/cuda_allocated_mb", "cuda_reserved_mb": "memory/cuda_reserved_mb",
    "cuda_peak_mb": "memory/cuda_peak_mb",
}


def ordered_names(names: list[str]) -> list[str]:
    known = [n for n in METRIC_ORDER if n in names]
    return known + sorted(n for n in names if n not in METRIC_ORDER)


def _number(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else float(value)


def export_json(store: RunStore, run_id: int) -> dict[str, Any]:
    run = store.get_run(run_id)
    metrics = store.metrics(run_id)
    return {
        "run": run.to_json(),
        "artifacts": [a.to_json() for a in store.artifacts(run_id)],
        "metrics": {
            name: {"steps": series.steps.tolist(), "values": [_number(v) for v in series.values.tolist()],
                   "wall_times": series.wall_times.tolist()}
            for name, series in ((n, metrics[n]) for n in ordered_names(list(metrics)))
        },
    }


def write_csv(store: RunStore, run_id: int, out: TextIO) -> int:
    """Write the wide table; return the number of data rows."""
    store.get_run(run_id)
    metrics = store.metrics(run_id)
    names = ordered_names(list(metrics))
    table: dict[int, dict[str, float]] = {}
    for name in names:
        series = metrics[name]
        for step, value in zip(series.steps.tolist(), series.values.tolist(), strict=True):
            table.setdefault(step, {})[name] = value
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["step", *names])
    for step in sorted(table):
        row = table[step]
        writer.writerow([step, *("" if n not in row or _number(row[n]) is None else repr(row[n]) for n in names)])
    return len(table)


def tensorboard_folder(store: RunStore, run_id: int) -> Path:
    """The default export folder: ``<data>/tensorboard/run-<id>-<name>``."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", store.get_run(run_id).name).strip("_") or "run"
    return data_dir() / "tensorboard" / f"run-{run_id}-{name}"


def write_tensorboard(store: RunStore, run_id: int, folder: str | Path | None = None) -> Path:
    """Write the run's scalars as one event file in ``folder``; return the file's path.

    Event files written by an earlier export of the same run into the same folder are
    replaced, so exporting twice does not show every point twice.
    """
    folder = Path(folder) if folder is not None else tensorboard_folder(store, run_id)
    store.get_run(run_id)
    metrics = store.metrics(run_id)
    by_step: dict[int, list[tuple[str, float]]] = {}
    wall: dict[int, float] = {}
    for name in ordered_names(list(metrics)):
        series = metrics[name]
        tag = TENSORBOARD_TAGS.get(name, f"model/{name}")  # a model's own step metrics
        for step, value, time_s in zip(series.steps.tolist(), series.values.tolist(),
                                       series.wall_times.tolist(), strict=True):
            if _number(value) is None:
                continue
            by_step.setdefault(step, []).append((tag, value))
            wall[step] = max(wall.get(step, 0.0), time_s)
    if folder.is_dir():
        for old in folder.glob("events.out.tfevents.*.effstudio"):
            old.unlink()
    with EventFileWriter(folder) as writer:
        for step in sorted(by_step):
            writer.add_scalars(step, by_step[step], wall_time=wall[step])
    return writer.path
