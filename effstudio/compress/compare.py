"""Side-by-side measurement of model variants: checkpoints of any kind and ONNX files.

Every file is evaluated on the same validation split (its task must be the
compared task); all of them are then timed together, alternately, on the same
stated length: batch 1 is one sequence of ``length`` tokens (default: the
longest validation example), batch 32 the 32 longest examples at that length
(a shorter one is repeated up to it, a longer one cut). The CPU runs with
torch's thread count; median (p50) and 95th percentile of the passes after a
warm-up, and a :class:`CompareVerdictEvent` after the rows says whether the
spread of the passes lets the comparison hold (see :mod:`effstudio.engine.timing`).

``peak_mb`` is the peak of the tensors a forward pass of the batch of 32
allocates, weights excluded (:class:`effstudio.engine.memory.TensorPeak`): the
same computation gives the same figure whatever the process did before. An
onnxruntime graph allocates from its own arena, which no reading in this process
sees: its ``peak_mb`` is None and ``peak_mb_note`` says why.

Figures of a file that is unchanged since they were taken (its size and
modification time; :class:`Measurements`) are reused instead of measured again:
its accuracy and its peak memory at the length. Latency is always timed anew,
with the other variants of the comparison.

The CLI's ``--json`` rows carry exactly ``name, params, file_bytes, accuracy,
latency_ms_b1, latency_ms_b32, peak_mb``; the p95 figures and notes are for the table.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from effstudio.compress.events import CompareRowEvent, CompareVerdictEvent
from effstudio.compress.export import onnx_evaluation, onnx_param_counts, run_session, session
from effstudio.compress.formats import count_params
from effstudio.compress.progress import evaluated, reported
from effstudio.compress.timed import BATCH, check_length, timing_batches
from effstudio.engine.build import build_task
from effstudio.engine.checkpoint import (
    TASK_FILES_KEY,
    CheckpointError,
    task_data_beside,
    task_settings_but_kept_files,
)
from effstudio.engine.data import Batch
from effstudio.engine.events import Event, JobControl, LogEvent
from effstudio.engine.loading import CompressError, config_of_file, load_checkpoint
from effstudio.engine.memory import forward_peak_mb
from effstudio.engine.run_config import RunConfig
from effstudio.engine.timing import comparison_verdict, timing_rounds
from effstudio.tasks.base import Task

ONNX_MEMORY_NOTE = ("onnxruntime allocates from its own memory arena, which no reading in this process can see; "
                    "no figure rather than a wrong one")


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
        if (config.task_name, task_settings_but_kept_files(config)) != (
                chosen_config.task_name, task_settings_but_kept_files(chosen_config)):
            raise CompressError(f"{path.name} was made for {config.task_name!r} with other task settings than "
                                f"{wanted!r}; compare files of one task")
        if files is not None and chosen_files is not None and files != chosen_files:
            raise CompressError(f"{path.name} was trained with another tokenizer or label map than "
                                f"{chosen_path.name}; compare files of one run and what was made from it")
    # the task is rebuilt with the tokenizer and label map kept beside the file (checkpoint or ONNX)
    return build_task(chosen_config, saved=task_data_beside(chosen_path, chosen_metadata)), chosen_config


# ----------------------------------------------------- figures kept per file
FileKey = tuple[str, int, int]


def file_key(path: Path) -> FileKey:
    """What identifies a file's content for reuse: where it is, its size and its modification time (ns)."""
    stat = Path(path).stat()
    return str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns


@dataclass
class Measurements:
    """Figures of files, valid while the file is unchanged: ``accuracy`` (validation split),
    ``peak_mb@LENGTH``, an ONNX file's ``max_abs_diff``. A changed file's figures are dropped."""

    figures: dict[FileKey, dict[str, Any]] = field(default_factory=dict)

    def get(self, path: Path, name: str) -> Any | None:
        try:
            return self.figures.get(file_key(path), {}).get(name)
        except OSError:
            return None

    def put(self, path: Path, **values: Any) -> None:
        try:
            key = file_key(path)
        except OSError:
            return
        for stale in [k for k in self.figures if k[0] == key[0] and k != key]:
            del self.figures[stale]
        self.figures.setdefault(key, {}).update({k: v for k, v in values.items() if v is not None})


# --------------------------------------------------------------- a variant
@dataclass
class Variant:
    """One file opened for measuring: how to run it, and what is known of it."""

    path: Path
    forward: Callable[[Batch], Any]
    params: int
    params_note: str
    accuracy: float | None
    weights: list[torch.Tensor] | None  # what a forward does not allocate; None: not PyTorch (no tensor peak)
    reused: list[str]


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of (latency, accuracy) points that no other point beats on both (lower latency, higher accuracy)."""
    front = []
    for i, (lat, acc) in enumerate(points):
        dominated = any((lat2 <= lat and acc2 >= acc) and (lat2 < lat or acc2 > acc)
                        for j, (lat2, acc2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


def open_variant(path: Path, task: Task, known: Measurements,
                 eval_batch_size: int = 64) -> Iterator[Event]:
    """Open ``path`` and evaluate it unless its accuracy is known; yields progress, returns a Variant."""
    spec = task.spec
    val = task.split("val")
    accuracy = known.get(path, "accuracy")
    reused = ["accuracy"] if accuracy is not None else []
    stage = f"evaluating {path.name}"
    if path.suffix.lower() == ".onnx":
        sess = session(path)
        params, note = onnx_param_counts(path)
        if accuracy is None:
            accuracy = (yield from reported(stage, onnx_evaluation(sess, val, spec, eval_batch_size), len(val)))[1]
        return Variant(path, lambda batch: run_session(sess, batch.inputs, batch.mask), params, note, accuracy,
                       None, reused)
    model = load_checkpoint(path).model.eval()
    if accuracy is None:
        accuracy = yield from evaluated(stage, model, val, spec, eval_batch_size)

    def forward(batch: Batch) -> Any:
        with torch.inference_mode():
            return model(batch.inputs, batch.mask)

    weights = [*model.parameters(), *model.buffers()]
    return Variant(path, forward, count_params(model), "", accuracy, weights, reused)


def peak_of(variant: Variant, many: Batch, length: int | None, known: Measurements) -> tuple[float | None, str]:
    """(peak MB of a batch-32 forward, what it is) of a variant; reused when the file is unchanged."""
    shape = f"{many.inputs.shape[0]} x {length} tokens" if length is not None else f"{many.inputs.shape[0]} images"
    if variant.weights is None:
        return None, ONNX_MEMORY_NOTE
    note = f"peak of the tensors a forward pass of {shape} allocates, weights excluded"
    name = f"peak_mb@{length}"
    peak = known.get(variant.path, name)
    if peak is None:
        with torch.inference_mode():
            peak = forward_peak_mb(lambda: variant.forward(many), [*variant.weights, many.inputs, many.mask])
        known.put(variant.path, **{name: peak})
    return round(float(peak), 3), note


def compare_job(paths: Sequence[Path], task_name: str | None = None, control: JobControl | None = None,
                repeats: int = 20, length: int | None = None,
                measurements: Measurements | None = None) -> Iterator[Event]:
    """Measure every file and time them together; yields progress, one CompareRowEvent per file (a file
    that fails gets a row with its error), then a CompareVerdictEvent on the timings."""
    control = control or JobControl()
    known = measurements if measurements is not None else Measurements()
    paths = [Path(p) for p in paths]
    task, _ = compare_task(paths, task_name)
    check_length(length, task)
    one, many, length = timing_batches(task.split("val"), task.spec.pad_id, length)
    opened: dict[int, Variant] = {}
    failed: dict[int, CompareRowEvent] = {}
    for index, path in enumerate(paths):
        if control.stop_requested:
            return
        yield LogEvent("info", f"measuring {path.name}")
        try:
            opened[index] = yield from open_variant(path, task, known)
            known.put(path, accuracy=opened[index].accuracy)
        except (CompressError, CheckpointError, RuntimeError, ValueError) as err:
            failed[index] = CompareRowEvent(path.name, 0, path.stat().st_size, None, None, None, None,
                                            path=str(path), error=str(err), length=length)
    shape = f"{length} tokens" if length is not None else "whole images"
    for index, variant in list(opened.items()):  # a variant that cannot run at this length gets its row's error
        try:
            variant.forward(one)
            variant.forward(many)
        except (RuntimeError, ValueError) as err:
            del opened[index]
            failed[index] = CompareRowEvent(variant.path.name, variant.params, variant.path.stat().st_size,
                                            variant.accuracy, None, None, None, path=str(variant.path),
                                            error=f"does not run at {shape}: {err}", length=length)
    yield LogEvent("info", f"timing {len(opened)} variant(s) alternately at batch 1 and {BATCH}, {shape}")

    def stop() -> bool:
        return control.stop_requested

    single = {str(i): (lambda v=v: v.forward(one)) for i, v in opened.items()}
    rounds = min(5, repeats)
    b1 = yield from reported("timing batch 1", timing_rounds(single, repeats, rounds=rounds, stop=stop), rounds)
    batched = {str(i): (lambda v=v: v.forward(many)) for i, v in opened.items()}
    b32 = yield from reported(f"timing batch {BATCH}", timing_rounds(batched, max(3, repeats // 4), warmup=1,
                                                                      rounds=3, stop=stop), 3)
    if control.stop_requested:
        return
    for index, path in enumerate(paths):
        if index in failed:
            yield failed[index]
            continue
        variant = opened[index]
        peak, peak_note = peak_of(variant, many, length, known)
        t1, t32 = b1[str(index)], b32[str(index)]
        yield CompareRowEvent(path.name, int(variant.params), path.stat().st_size, float(variant.accuracy),
                              t1.p50_ms, t32.p50_ms, peak, t1.p95_ms, t32.p95_ms, str(path), length=length,
                              peak_mb_note=peak_note, params_note=variant.params_note,
                              max_abs_diff=known.get(path, "max_abs_diff"), reused=tuple(variant.reused))
    verdict = comparison_verdict({**{f"{paths[int(i)].name} at batch 1": t for i, t in b1.items()},
                                  **{f"{paths[int(i)].name} at batch {BATCH}": t for i, t in b32.items()}})
    yield CompareVerdictEvent(length, verdict.holds, verdict.text)


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
