"""Side-by-side measurement of model variants: checkpoints of any kind and ONNX files.

Every file is evaluated on the same validation split (its task must be the
compared task) and timed on the same inputs: batch 1 (the first validation
example) and batch 32 (the first 32, padded to the longest), median (p50) and
95th percentile of repeated forward passes after a warm-up, on the CPU with
torch's thread count. ``peak_mb`` is the peak resident memory above the
baseline while running the batch of 32 (the kernel's high-water mark).

The CLI's ``--json`` rows carry exactly ``name, params, file_bytes, accuracy,
latency_ms_b1, latency_ms_b32, peak_mb``; the p95 figures are for the table.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from effstudio.compress.events import CompareRowEvent
from effstudio.compress.export import (
    evaluate_onnx,
    latency_ms,
    onnx_params,
    run_session,
    session,
)
from effstudio.compress.formats import count_params
from effstudio.engine.build import build_task
from effstudio.engine.checkpoint import TASK_FILES_KEY, CheckpointError, task_data_beside
from effstudio.engine.data import Batch, make_batch
from effstudio.engine.events import Event, JobControl, LogEvent
from effstudio.engine.loading import CompressError, config_of_file, load_checkpoint
from effstudio.engine.memory import PeakMemory
from effstudio.engine.objective import evaluate
from effstudio.engine.run_config import RunConfig
from effstudio.tasks.base import Split, Task

CPU = torch.device("cpu")


def compare_task(paths: Sequence[Path], task_name: str | None = None) -> tuple[Task, RunConfig]:
    """The task every file is measured on; a file made for another task is refused."""
    if not paths:
        raise CompressError("name at least one file to compare")
    configs = []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise CompressError(f"{path} does not exist or is not a file")
        config, metadata = config_of_file(path)
        configs.append((path, config, metadata))
    wanted = task_name or configs[0][1].task_name
    chosen = next(((p, c, m) for p, c, m in configs if c.task_name == wanted), None)
    if chosen is None:
        raise CompressError(f"none of the files was made for task {wanted!r}")
    chosen_path, chosen_config, chosen_metadata = chosen
    chosen_files = chosen_metadata.get(TASK_FILES_KEY)
    for path, config, metadata in configs:
        files = metadata.get(TASK_FILES_KEY)
        if (config.task_name, config.task) != (chosen_config.task_name, chosen_config.task):
            raise CompressError(f"{path.name} was made for {config.task_name!r} with other task settings than "
                                f"{wanted!r}; compare files of one task")
        if files is not None and chosen_files is not None and files != chosen_files:
            raise CompressError(f"{path.name} was trained with another tokenizer or label map than "
                                f"{chosen_path.name}; compare files of one run and what was made from it")
    # the task is rebuilt with the tokenizer and label map kept beside the file (checkpoint or ONNX)
    return build_task(chosen_config, saved=task_data_beside(chosen_path, chosen_metadata)), chosen_config


def timing_batches(split: Split, pad_id: int) -> tuple[Batch, Batch]:
    one = make_batch(split, torch.arange(1), pad_id)
    many = make_batch(split, torch.arange(min(32, len(split))), pad_id)
    return one, many


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of (latency, accuracy) points that no other point beats on both (lower latency, higher accuracy)."""
    front = []
    for i, (lat, acc) in enumerate(points):
        dominated = any((lat2 <= lat and acc2 >= acc) and (lat2 < lat or acc2 > acc)
                        for j, (lat2, acc2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


def measure_file(path: Path, task: Task, repeats: int = 20, eval_batch_size: int = 64) -> CompareRowEvent:
    path = Path(path)
    spec = task.spec
    val = task.split("val")
    one, many = timing_batches(val, spec.pad_id)
    if path.suffix.lower() == ".onnx":
        sess = session(path)
        params = onnx_params(path)
        accuracy = evaluate_onnx(sess, val, spec, eval_batch_size)[1]

        def forward(batch: Batch) -> Any:
            return run_session(sess, batch.inputs, batch.mask)
    else:
        loaded = load_checkpoint(path)
        model = loaded.model
        params = count_params(model)
        accuracy = evaluate(model, val, spec.pad_id, spec.objective, eval_batch_size, CPU)[1]

        def forward(batch: Batch) -> Any:
            with torch.inference_mode():
                return model(batch.inputs, batch.mask)
    b1 = latency_ms(lambda: forward(one), repeats=repeats)
    forward(many)
    memory = PeakMemory(CPU)
    b32 = latency_ms(lambda: forward(many), repeats=max(3, repeats // 4), warmup=0)
    peak = memory.peak_mb()
    return CompareRowEvent(path.name, int(params), path.stat().st_size, float(accuracy), b1[0], b32[0],
                           round(peak, 2), b1[1], b32[1], str(path))


def compare_job(paths: Sequence[Path], task_name: str | None = None, control: JobControl | None = None,
                repeats: int = 20) -> Iterator[Event]:
    """Measure every file; yields one CompareRowEvent each (a file that fails gets a row with its error)."""
    control = control or JobControl()
    paths = [Path(p) for p in paths]
    task, _ = compare_task(paths, task_name)
    task.split("val")
    for path in paths:
        if control.stop_requested:
            return
        yield LogEvent("info", f"measuring {path.name}")
        try:
            yield measure_file(path, task, repeats)
        except (CompressError, CheckpointError, RuntimeError, ValueError) as err:
            yield CompareRowEvent(path.name, 0, path.stat().st_size, None, None, None, None, path=str(path),
                                  error=str(err))


# ------------------------------------------------------------------ exports
COLUMNS = (("name", "Variant"), ("params", "Parameters"), ("file_bytes", "File bytes"), ("accuracy", "Accuracy"),
           ("latency_ms_b1", "p50 b1 (ms)"), ("latency_p95_ms_b1", "p95 b1 (ms)"),
           ("latency_ms_b32", "p50 b32 (ms)"), ("latency_p95_ms_b32", "p95 b32 (ms)"), ("peak_mb", "Peak MB"))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if value < 10 else f"{value:.1f}"
    return str(value)


def rows_to_csv(rows: Sequence[CompareRowEvent]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([key for key, _ in COLUMNS] + ["pareto"])
    front = set(pareto_indices(rows))
    for index, row in enumerate(rows):
        writer.writerow([getattr(row, key) if getattr(row, key) is not None else "" for key, _ in COLUMNS]
                        + [index in front])
    return buffer.getvalue()


def rows_to_markdown(rows: Sequence[CompareRowEvent]) -> str:
    front = set(pareto_indices(rows))
    lines = ["| " + " | ".join(label for _, label in COLUMNS) + " | Pareto |",
             "|" + "---|" * (len(COLUMNS) + 1)]
    for index, row in enumerate(rows):
        cells = [_cell(getattr(row, key)) for key, _ in COLUMNS]
        lines.append("| " + " | ".join(cells) + f" | {'yes' if index in front else ''} |")
    return "\n".join(lines) + "\n"


def pareto_indices(rows: Sequence[CompareRowEvent]) -> list[int]:
    """Rows on the accuracy-vs-latency (batch 1) Pareto front; rows without figures are left out."""
    usable = [i for i, r in enumerate(rows) if r.accuracy is not None and r.latency_ms_b1 is not None]
    front = pareto_front([(rows[i].latency_ms_b1, rows[i].accuracy) for i in usable])
    return [usable[i] for i in front]
