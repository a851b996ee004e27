"""Tensor statistics computed in chunks, so a file of any size is read once and never held whole.

A tensor's raw elements (a view of a memory-mapped file for most formats) are
walked in blocks of :data:`CHUNK_ELEMENTS`; each block is converted to floats,
folded into running min/max/zero-count and a mean and sum of squared deviations
combined with Chan's parallel formula, and its file pages are then released
(:mod:`effstudio.inspect.pages`). Memory stays at a few blocks whatever the
file size. NaN and infinities are counted and left out of min, max, mean, std.

:func:`iter_stats` is the job: a generator of one :class:`TensorStatsEvent`
per tensor and a final :class:`StatsDoneEvent`, so the GUI fills its tree live
and the CLI shows progress. It honours a JobControl's stop between blocks.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from effstudio.engine.events import Event, JobControl
from effstudio.inspect import pages
from effstudio.inspect.dtypes import has_statistics, to_float
from effstudio.inspect.tensors import Inspected, InspectError, TensorRef

CHUNK_ELEMENTS = 1 << 22  # 4 Mi elements: 16 MB of float32, 32 MB once widened to float64


class Stopped(Exception):
    """The JobControl asked to stop in the middle of a tensor."""


@dataclass(frozen=True)
class TensorStats:
    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    sparsity: float | None  # percentage of elements equal to zero
    nonfinite: int = 0  # NaN and infinities, left out of min/max/mean/std

    def to_json(self) -> dict[str, float | None]:
        return {"min": self.min, "max": self.max, "mean": self.mean, "std": self.std, "sparsity": self.sparsity}


EMPTY = TensorStats(None, None, None, None, None)


def blocks(raw: np.ndarray, chunk: int = CHUNK_ELEMENTS) -> Iterator[np.ndarray]:
    """Flat, C-ordered pieces of ``raw`` of at most ``chunk`` elements (views where the layout allows)."""
    if raw.ndim == 0:
        yield raw.reshape(1)
        return
    if raw.flags.c_contiguous:
        flat = raw.reshape(-1)
        for start in range(0, flat.size, chunk):
            yield flat[start:start + chunk]
        return
    row = math.prod(raw.shape[1:])
    if row <= chunk or raw.ndim == 1:
        step = max(1, chunk // max(row, 1))
        for start in range(0, raw.shape[0], step):
            yield np.ascontiguousarray(raw[start:start + step]).reshape(-1)
    else:
        for index in range(raw.shape[0]):
            yield from blocks(raw[index], chunk)


class Accumulator:
    """Running min, max, mean, squared deviations and zero count over float blocks."""

    def __init__(self) -> None:
        self.count = 0  # finite values
        self.total = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.low = math.inf
        self.high = -math.inf
        self.zeros = 0
        self.nonfinite = 0

    def add(self, values: np.ndarray) -> None:
        if values.size == 0:
            return
        self.total += values.size
        self.zeros += values.size - int(np.count_nonzero(values))
        low, high = values.min(), values.max()
        if not (math.isfinite(low) and math.isfinite(high)):
            finite = np.isfinite(values)
            kept = int(np.count_nonzero(finite))
            self.nonfinite += values.size - kept
            if kept == 0:
                return
            values = values[finite]
            low, high = values.min(), values.max()
        self.low = min(self.low, float(low))
        self.high = max(self.high, float(high))
        count = values.size
        mean = float(values.sum(dtype=np.float64)) / count
        deviation = values.astype(np.float64)
        deviation -= mean
        m2 = float(np.einsum("i,i->", deviation, deviation))  # no BLAS: its threads stall on a busy CPU
        both = self.count + count
        delta = mean - self.mean
        self.mean += delta * count / both
        self.m2 += m2 + delta * delta * self.count * count / both
        self.count = both

    def result(self) -> TensorStats:
        if self.total == 0:
            return EMPTY
        sparsity = 100.0 * self.zeros / self.total
        if self.count == 0:
            return TensorStats(None, None, None, None, sparsity, self.nonfinite)
        return TensorStats(self.low, self.high, self.mean, math.sqrt(max(self.m2, 0.0) / self.count), sparsity,
                           self.nonfinite)


def float_blocks(tensor: TensorRef, chunk: int = CHUNK_ELEMENTS,
                 control: JobControl | None = None) -> Iterator[np.ndarray]:
    """The tensor's elements as float blocks; each block's file pages are released after use."""
    raw = tensor.raw()
    for block in blocks(raw, chunk):
        if control is not None and control.stop_requested:
            raise Stopped
        yield to_float(block, tensor.dtype)
        if tensor.mapped:
            pages.release(block)


def tensor_stats(tensor: TensorRef, chunk: int = CHUNK_ELEMENTS, control: JobControl | None = None) -> TensorStats:
    if tensor.numel == 0 or not has_statistics(tensor.dtype):
        return EMPTY
    accumulator = Accumulator()
    for values in float_blocks(tensor, chunk, control):
        accumulator.add(values)
    return accumulator.result()


@dataclass(frozen=True)
class TensorStatsEvent(Event):
    kind: ClassVar[str] = "tensor_stats"
    index: int
    total: int
    name: str
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    sparsity: float | None = None
    nonfinite: int = 0
    error: str | None = None

    @property
    def stats(self) -> TensorStats | None:
        if self.error is not None:
            return None
        return TensorStats(self.min, self.max, self.mean, self.std, self.sparsity, self.nonfinite)


@dataclass(frozen=True)
class StatsDoneEvent(Event):
    kind: ClassVar[str] = "stats_done"
    tensors: int
    seconds: float
    status: str  # finished | stopped


def iter_stats(inspected: Inspected, control: JobControl | None = None, names: Iterable[str] | None = None,
               chunk: int = CHUNK_ELEMENTS) -> Iterator[Event]:
    """One TensorStatsEvent per tensor (in file order), then a StatsDoneEvent."""
    started = time.perf_counter()
    wanted = set(names) if names is not None else None
    tensors = [t for t in inspected.tensors if wanted is None or t.name in wanted]
    done = 0
    status = "finished"
    for index, tensor in enumerate(tensors):
        if control is not None and control.stop_requested:
            status = "stopped"
            break
        try:
            stats = tensor_stats(tensor, chunk, control)
        except Stopped:
            status = "stopped"
            break
        except (InspectError, OSError, ValueError, MemoryError) as err:
            yield TensorStatsEvent(index, len(tensors), tensor.name, error=str(err) or type(err).__name__)
            continue
        done += 1
        yield TensorStatsEvent(index, len(tensors), tensor.name, stats.min, stats.max, stats.mean, stats.std,
                               stats.sparsity, stats.nonfinite)
    yield StatsDoneEvent(done, time.perf_counter() - started, status)


def all_stats(inspected: Inspected, control: JobControl | None = None) -> dict[str, TensorStats | str]:
    """Every tensor's statistics (or the error that kept them from being read), by name."""
    result: dict[str, TensorStats | str] = {}
    for event in iter_stats(inspected, control):
        if isinstance(event, TensorStatsEvent):
            result[event.name] = event.error if event.error is not None else event.stats  # type: ignore[assignment]
    return result


# ------------------------------------------------------------------ views
def histogram(tensor: TensorRef, bins: int = 64, value_range: tuple[float, float] | None = None,
              chunk: int = CHUNK_ELEMENTS, control: JobControl | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(counts, edges) over the finite values, in chunks; the range is found first when not given."""
    if value_range is None:
        stats = tensor_stats(tensor, chunk, control)
        value_range = (stats.min, stats.max) if stats.min is not None else (0.0, 1.0)  # type: ignore[assignment]
    low, high = float(value_range[0]), float(value_range[1])
    if high <= low:
        low, high = low - 0.5, high + 0.5
    edges = np.linspace(low, high, bins + 1)
    counts = np.zeros(bins, dtype=np.int64)
    if tensor.numel and has_statistics(tensor.dtype):
        for values in float_blocks(tensor, chunk, control):
            counts += np.histogram(values[np.isfinite(values)] if values.dtype.kind == "f" else values,
                                   bins=edges)[0]
    return counts, edges


@dataclass(frozen=True)
class MatrixView:
    """A tensor as a 2-D picture: sampled rows and columns of its matrix view."""

    values: np.ndarray  # (rows shown, columns shown) float32, NaN where a 1-D tensor's last row is short
    rows: int  # of the whole matrix view
    cols: int
    row_step: float  # rows of the matrix per row shown (1 = every row)
    col_step: float
    description: str


def _sample(count: int, limit: int) -> np.ndarray:
    if count <= limit:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, limit).round().astype(np.int64))


def matrix_view(tensor: TensorRef, max_side: int = 512) -> MatrixView:
    """2-D tensors as they are, others reshaped (first axis x the rest; 1-D as a near-square), sampled."""
    shape = tensor.shape
    if not has_statistics(tensor.dtype):
        raise InspectError(f"{tensor.dtype} tensors have no picture")
    n = tensor.numel
    times = " \u00d7 "
    if len(shape) == 2:
        rows, cols = shape
        description = f"{rows}{times}{cols}"
    elif len(shape) >= 3:
        rows = shape[0]
        cols = n // rows if rows else 0
        description = f"{times.join(map(str, shape))} shown as {rows}{times}{cols} (first axis{times}the rest)"
    else:
        cols = max(1, math.ceil(math.sqrt(n)))
        rows = max(1, math.ceil(n / cols))
        description = f"{n} values shown as {rows}{times}{cols}, row by row" if shape else "a single value"
    if n == 0:
        return MatrixView(np.full((1, 1), np.nan, dtype=np.float32), rows, cols, 1, 1, description + " (empty)")
    raw = tensor.raw()
    mapped = tensor.mapped
    if len(shape) != 2 and not raw.flags.c_contiguous:
        raw, mapped = np.ascontiguousarray(raw), False
    flat = raw.reshape(-1)
    row_index, col_index = _sample(rows, max_side), _sample(cols, max_side)
    picture = np.full((len(row_index), len(col_index)), np.nan, dtype=np.float32)
    for out_row, row in enumerate(row_index):
        line = raw[row] if len(shape) == 2 else flat[row * cols:(row + 1) * cols]
        picked = col_index[col_index < line.shape[0]]
        picture[out_row, :len(picked)] = to_float(np.asarray(line[picked]), tensor.dtype)
        if mapped and line.flags.c_contiguous:
            pages.release(line)
    if len(row_index) < rows or len(col_index) < cols:
        description += f"; sampled {len(row_index)} of {rows} rows, {len(col_index)} of {cols} columns"
    return MatrixView(picture, rows, cols, rows / len(row_index), cols / len(col_index), description)


@dataclass(frozen=True)
class TensorPictureEvent(Event):
    """What the Inspect section draws for one tensor: its histogram and its matrix view."""

    kind: ClassVar[str] = "tensor_picture"
    name: str
    counts: np.ndarray | None = None
    edges: np.ndarray | None = None
    view: MatrixView | None = None
    stats: TensorStats | None = None
    error: str | None = None


def iter_picture(tensor: TensorRef, stats: TensorStats | None = None, control: JobControl | None = None,
                 bins: int = 80, max_side: int = 512) -> Iterator[Event]:
    """One TensorPictureEvent (or nothing when stopped): statistics if not known, histogram, matrix view."""
    try:
        if not has_statistics(tensor.dtype):
            raise InspectError(f"{tensor.dtype} tensors have no histogram or picture")
        if stats is None:
            stats = tensor_stats(tensor, control=control)
        value_range = (stats.min, stats.max) if stats.min is not None and stats.max is not None else None
        counts, edges = histogram(tensor, bins, value_range, control=control)  # type: ignore[arg-type]
        view = matrix_view(tensor, max_side)
    except Stopped:
        return
    except (InspectError, OSError, ValueError, MemoryError) as err:
        yield TensorPictureEvent(tensor.name, error=str(err) or type(err).__name__)
        return
    yield TensorPictureEvent(tensor.name, counts, edges, view, stats)
