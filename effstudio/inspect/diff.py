"""Compare two checkpoints: tensors added, removed, reshaped, and how much each shared one changed.

Names are matched after each file's unwrapping (a ``module.`` prefix or a
Lightning ``state_dict`` does not make every tensor look new). For each tensor
present in both with the same shape, the relative change ``||B - A|| / ||A||``
(Frobenius norms), the largest absolute change and the share of zeros on both
sides are computed in chunks over the two memory-mapped files, so pruning shows
up as a jump in zeros and fine-tuning as a small relative change.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from effstudio.engine.events import Event, JobControl
from effstudio.inspect.dtypes import has_statistics
from effstudio.inspect.stats import (
    CHUNK_ELEMENTS,
    MatrixView,
    Stopped,
    float_blocks,
    histogram,
    matrix_view,
    tensor_stats,
)
from effstudio.inspect.tensors import Inspected, InspectError, TensorRef


@dataclass(frozen=True)
class TensorChange:
    name: str
    shape: tuple[int, ...]
    dtype_a: str
    dtype_b: str
    relative_change: float | None = None  # None: not computed, not finite, or A is all zeros while B is not
    max_abs_change: float | None = None
    sparsity_a: float | None = None  # percentage of zeros
    sparsity_b: float | None = None
    error: str | None = None

    @property
    def changed(self) -> bool:
        return self.max_abs_change is None or self.max_abs_change != 0.0

    def to_json(self) -> dict[str, Any]:
        record = {"name": self.name, "shape": list(self.shape), "dtype_a": self.dtype_a, "dtype_b": self.dtype_b,
                  "relative_change": self.relative_change, "max_abs_change": self.max_abs_change,
                  "sparsity_a": self.sparsity_a, "sparsity_b": self.sparsity_b}
        if self.error:
            record["error"] = self.error
        return record


@dataclass
class CheckpointDiff:
    a: str
    b: str
    added: list[TensorRef] = field(default_factory=list)  # in B only
    removed: list[TensorRef] = field(default_factory=list)  # in A only
    reshaped: list[tuple[TensorRef, TensorRef]] = field(default_factory=list)
    common: list[tuple[TensorRef, TensorRef]] = field(default_factory=list)  # same name and shape
    compared: list[TensorChange] = field(default_factory=list)

    def summary(self) -> dict[str, int]:
        changed = sum(1 for c in self.compared if c.changed)
        return {"added": len(self.added), "removed": len(self.removed), "reshaped": len(self.reshaped),
                "changed": changed, "unchanged": len(self.compared) - changed}

    def to_json(self) -> dict[str, Any]:
        def listed(tensors: list[TensorRef]) -> list[dict[str, Any]]:
            return [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype} for t in tensors]

        return {
            "a": self.a, "b": self.b, "summary": self.summary(),
            "added": listed(self.added), "removed": listed(self.removed),
            "reshaped": [{"name": a.name, "shape_a": list(a.shape), "shape_b": list(b.shape)} for a, b in self.reshaped],
            "compared": [c.to_json() for c in self.compared],
        }


def compare_names(a: Inspected, b: Inspected) -> CheckpointDiff:
    """The structural part of the diff (no tensor data read)."""
    in_b = {t.name: t for t in b.tensors}
    in_a = {t.name: t for t in a.tensors}
    diff = CheckpointDiff(str(a.path), str(b.path))
    for tensor in a.tensors:
        other = in_b.get(tensor.name)
        if other is None:
            diff.removed.append(tensor)
        elif other.shape != tensor.shape:
            diff.reshaped.append((tensor, other))
        else:
            diff.common.append((tensor, other))
    diff.added = [t for t in b.tensors if t.name not in in_a]
    return diff


def _aligned(first: Iterator[np.ndarray], second: Iterator[np.ndarray]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Pairs of equally long pieces of two block streams over the same number of elements."""
    a = b = np.empty(0)
    while True:
        if a.size == 0:
            a = next(first, None)  # type: ignore[assignment]
        if b.size == 0:
            b = next(second, None)  # type: ignore[assignment]
        if a is None or b is None:
            return
        n = min(a.size, b.size)
        yield a[:n], b[:n]
        a, b = a[n:], b[n:]


def tensor_change(a: TensorRef, b: TensorRef, chunk: int = CHUNK_ELEMENTS,
                  control: JobControl | None = None) -> TensorChange:
    change = TensorChange(a.name, a.shape, a.dtype, b.dtype)
    if a.numel == 0 or not (has_statistics(a.dtype) and has_statistics(b.dtype)):
        return change
    diff_sq = base_sq = 0.0
    max_abs = 0.0
    zeros_a = zeros_b = 0
    for x, y in _aligned(float_blocks(a, chunk, control), float_blocks(b, chunk, control)):
        zeros_a += x.size - int(np.count_nonzero(x))
        zeros_b += y.size - int(np.count_nonzero(y))
        wide = x.astype(np.float64)
        base_sq += float(np.einsum("i,i->", wide, wide))
        np.subtract(y, wide, out=wide)
        diff_sq += float(np.einsum("i,i->", wide, wide))
        if wide.size:
            max_abs = max(max_abs, float(np.abs(wide).max()))
    if not (math.isfinite(diff_sq) and math.isfinite(base_sq)):
        relative = None
    elif base_sq == 0.0:
        relative = 0.0 if diff_sq == 0.0 else None
    else:
        relative = math.sqrt(diff_sq / base_sq)
    return TensorChange(a.name, a.shape, a.dtype, b.dtype, relative,
                        max_abs if math.isfinite(max_abs) else None,
                        100.0 * zeros_a / a.numel, 100.0 * zeros_b / b.numel)


@dataclass(frozen=True)
class TensorChangeEvent(Event):
    kind: ClassVar[str] = "tensor_change"
    index: int
    total: int
    change: TensorChange

    def to_json(self) -> dict[str, Any]:
        return {"event": self.kind, "index": self.index, "total": self.total, **self.change.to_json()}


@dataclass(frozen=True)
class DiffDoneEvent(Event):
    kind: ClassVar[str] = "diff_done"
    compared: int
    seconds: float
    status: str


def iter_diff(diff: CheckpointDiff, control: JobControl | None = None,
              chunk: int = CHUNK_ELEMENTS) -> Iterator[Event]:
    """Fill ``diff.compared``, one TensorChangeEvent per shared tensor, then a DiffDoneEvent."""
    started = time.perf_counter()
    status = "finished"
    diff.compared = []
    for index, (a, b) in enumerate(diff.common):
        if control is not None and control.stop_requested:
            status = "stopped"
            break
        try:
            change = tensor_change(a, b, chunk, control)
        except Stopped:
            status = "stopped"
            break
        except (InspectError, OSError, ValueError, MemoryError) as err:
            change = TensorChange(a.name, a.shape, a.dtype, b.dtype, error=str(err) or type(err).__name__)
        diff.compared.append(change)
        yield TensorChangeEvent(index, len(diff.common), change)
    yield DiffDoneEvent(len(diff.compared), time.perf_counter() - started, status)


def diff_models(a: Inspected, b: Inspected, control: JobControl | None = None) -> CheckpointDiff:
    diff = compare_names(a, b)
    for _event in iter_diff(diff, control):
        pass
    return diff


@dataclass(frozen=True)
class DiffPictureEvent(Event):
    """What the Diff tab draws for one shared tensor: both histograms over the same bins, and B - A as a
    picture (sampled at the same rows and columns of the matrix view as A and B)."""

    kind: ClassVar[str] = "diff_picture"
    name: str
    edges: np.ndarray | None = None  # (bins + 1,) shared by both histograms
    counts_a: np.ndarray | None = None  # (bins,)
    counts_b: np.ndarray | None = None
    difference: MatrixView | None = None  # values (rows shown, columns shown): B - A
    error: str | None = None


def iter_diff_picture(a: TensorRef, b: TensorRef, control: JobControl | None = None, bins: int = 80,
                      max_side: int = 512) -> Iterator[Event]:
    """One DiffPictureEvent for tensors ``a`` and ``b`` of the same name and shape (nothing when stopped)."""
    try:
        if a.shape != b.shape:
            raise InspectError(f"{a.name}: shapes differ ({a.shape} and {b.shape}); no element-wise difference")
        if not (has_statistics(a.dtype) and has_statistics(b.dtype)):
            raise InspectError(f"{a.dtype} or {b.dtype} tensors have no histogram or picture")
        ranges = [(s.min, s.max) for s in (tensor_stats(a, control=control), tensor_stats(b, control=control))
                  if s.min is not None and s.max is not None]
        value_range = (min(r[0] for r in ranges), max(r[1] for r in ranges)) if ranges else (0.0, 1.0)
        counts_a, edges = histogram(a, bins, value_range, control=control)
        counts_b, _ = histogram(b, bins, value_range, control=control)
        view_a, view_b = matrix_view(a, max_side), matrix_view(b, max_side)
    except Stopped:
        return
    except (InspectError, OSError, ValueError, MemoryError) as err:
        yield DiffPictureEvent(a.name, error=str(err) or type(err).__name__)
        return
    difference = dataclasses.replace(view_a, values=view_b.values - view_a.values,
                                     description=f"B \u2212 A, {view_a.description}")
    yield DiffPictureEvent(a.name, edges, counts_a, counts_b, difference)
