"""What `effstudio inspect` prints: the JSON record (a contract) and the human-readable table.

JSON of one file::

    {"format", "file_bytes", "params", "architecture",
     "tensors": [{"name", "shape", "dtype", "numel", "min", "max", "mean", "std", "sparsity"}],
     "path", "tensor_count", "dtypes", "metadata", "config", "graph", "notes", "warnings"}

``sparsity`` is the percentage of elements equal to zero; statistics leave NaN
and infinities out (``warnings`` says where there were some) and are null for
empty and complex tensors, or when not computed (``--no-stats``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from effstudio.inspect.stats import TensorStats
from effstudio.inspect.tensors import Inspected

if TYPE_CHECKING:
    from effstudio.inspect.diff import CheckpointDiff

TENSOR_FIELDS = ("name", "shape", "dtype", "numel", "min", "max", "mean", "std", "sparsity")


def format_bytes(count: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(count) < 1000 or unit == "TB":
            return f"{count:,.0f} {unit}" if unit == "bytes" else f"{count:,.1f} {unit}"
        count /= 1000
    return f"{count} TB"


def format_count(count: int) -> str:
    for limit, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if count >= limit:
            return f"{count / limit:.2f}{suffix}"
    return str(count)


def summary_record(inspected: Inspected) -> dict[str, Any]:
    return {"format": inspected.format, "file_bytes": inspected.file_bytes, "params": inspected.params,
            "architecture": inspected.architecture}


def inspect_record(inspected: Inspected, stats: dict[str, TensorStats | str] | None = None) -> dict[str, Any]:
    """The `effstudio inspect --json` object."""
    stats = stats or {}
    tensors = []
    warnings = []
    for tensor in inspected.tensors:
        found = stats.get(tensor.name)
        values = found.to_json() if isinstance(found, TensorStats) else dict.fromkeys(TENSOR_FIELDS[4:])
        if isinstance(found, str):
            warnings.append(f"{tensor.name}: {found}")
        elif isinstance(found, TensorStats) and found.nonfinite:
            warnings.append(f"{tensor.name}: {found.nonfinite} NaN or infinite values (left out of the statistics)")
        tensors.append({"name": tensor.name, "shape": list(tensor.shape), "dtype": tensor.dtype,
                        "numel": tensor.numel, **values})
    return {**summary_record(inspected), "tensors": tensors, "path": str(inspected.path),
            "tensor_count": len(inspected.tensors), "dtypes": inspected.dtypes(), "metadata": inspected.metadata,
            "config": inspected.config, "graph": inspected.graph, "notes": inspected.notes, "warnings": warnings}


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}"


def summary_lines(inspected: Inspected) -> list[str]:
    dtypes = ", ".join(f"{name} ({count})" for name, count in inspected.dtypes().items()) or "-"
    lines = [
        f"{inspected.path}",
        f"  format        {inspected.format}, {format_bytes(inspected.file_bytes)}",
        f"  architecture  {inspected.architecture}",
        f"  tensors       {len(inspected.tensors):,}, {inspected.params:,} parameters ({format_count(inspected.params)})",
        f"  dtypes        {dtypes}",
    ]
    graph = inspected.graph
    if graph:
        opset = ", ".join(f"{domain} {version}" for domain, version in graph["opset"].items())
        lines.append(f"  opset         {opset}")
        for label, key in (("inputs", "inputs"), ("outputs", "outputs")):
            shown = "; ".join(f"{v['name']} {v['dtype']} {v['shape']}" for v in graph[key])
            lines.append(f"  {label:<13} {shown or '-'}")
        operators = ", ".join(f"{op} {n}" for op, n in graph["operators"].items())
        lines.append(f"  operators     {operators or '-'}")
    for note in inspected.notes:
        lines.append(f"  note          {note}")
    return lines


def table_lines(inspected: Inspected, stats: dict[str, TensorStats | str]) -> list[str]:
    width = min(60, max((len(t.name) for t in inspected.tensors), default=4))
    header = (f"{'name':<{width}} {'shape':<18} {'dtype':<9} {'numel':>12} {'min':>10} {'max':>10} "
              f"{'mean':>10} {'std':>10} {'zeros%':>7}")
    lines = [header]
    for tensor in inspected.tensors:
        name = tensor.name if len(tensor.name) <= width else "\u2026" + tensor.name[-(width - 1):]
        shape = "\u00d7".join(map(str, tensor.shape)) or "scalar"
        found = stats.get(tensor.name)
        row = f"{name:<{width}} {shape:<18} {tensor.dtype:<9} {tensor.numel:>12,}"
        if isinstance(found, TensorStats):
            sparsity = "-" if found.sparsity is None else f"{found.sparsity:.1f}"
            row += (f" {_number(found.min):>10} {_number(found.max):>10} {_number(found.mean):>10} "
                    f"{_number(found.std):>10} {sparsity:>7}")
        elif isinstance(found, str):
            row += f"  error: {found}"
        lines.append(row)
    return lines


def diff_lines(diff: CheckpointDiff) -> list[str]:
    summary = diff.summary()
    lines = [f"A: {diff.a}", f"B: {diff.b}",
             ", ".join(f"{count} {what}" for what, count in summary.items())]
    for tensor in diff.added:
        lines.append(f"  + {tensor.name} {list(tensor.shape)} {tensor.dtype}")
    for tensor in diff.removed:
        lines.append(f"  - {tensor.name} {list(tensor.shape)} {tensor.dtype}")
    for a, b in diff.reshaped:
        lines.append(f"  ~ {a.name} {list(a.shape)} -> {list(b.shape)}")
    changed = sorted((c for c in diff.compared if c.changed), key=lambda c: -(c.relative_change or 0.0))
    if changed:
        width = min(60, max(len(c.name) for c in changed))
        lines.append(f"{'changed':<{width}} {'relative':>10} {'max |d|':>10} {'zeros% A':>9} {'zeros% B':>9}")
        for change in changed:
            if change.error:
                lines.append(f"{change.name:<{width}}  error: {change.error}")
                continue
            zeros_a = "-" if change.sparsity_a is None else f"{change.sparsity_a:.1f}"
            zeros_b = "-" if change.sparsity_b is None else f"{change.sparsity_b:.1f}"
            lines.append(f"{change.name:<{width}} {_number(change.relative_change):>10} "
                         f"{_number(change.max_abs_change):>10} {zeros_a:>9} {zeros_b:>9}")
    return lines


def dumps(record: Any) -> str:
    return json.dumps(record, allow_nan=False)
