"""safetensors files, read from their header and memory-mapped, never loaded whole.

The layout is an 8-byte little-endian header length N, N bytes of JSON (name ->
dtype, shape, data_offsets; an optional ``__metadata__`` of strings), then the
data. The header is checked against the file before anything is mapped, by the
same validation that checkpoint loading uses
(:mod:`effstudio.engine.safetensors_header`), so inspect, resume, compare and
prune give one verdict: a truncated file, overlapping offsets, duplicate names,
a shape of ``true`` or offsets that disagree with a tensor's shape are refused
with a message that says so (reading past the end of a mapped file would crash
the process).
"""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Any

import numpy as np

from effstudio.engine.safetensors_header import SafetensorsHeader, check_file
from effstudio.inspect.dtypes import SAFETENSORS, STORAGE
from effstudio.inspect.tensors import Inspected, InspectError, TensorRef


def read_header(path: Path) -> SafetensorsHeader:
    """The header, checked by the one validation every safetensors reader of effstudio uses."""
    if path.stat().st_size == 0:
        raise InspectError(f"{path.name}: the file is empty (0 bytes)")
    return check_file(path, InspectError)


def read_safetensors(path: Path) -> Inspected:
    header = read_header(path)
    entries = []
    skipped: dict[str, int] = {}
    for tensor in header.tensors:
        dtype = SAFETENSORS.get(tensor.dtype)
        if dtype is None:
            skipped[tensor.dtype] = skipped.get(tensor.dtype, 0) + 1
            continue
        entries.append((tensor.name, dtype, tensor.shape, tensor.begin, tensor.end))

    tensors: list[TensorRef] = []
    keepalive: list[Any] = []
    data_start = header.data_start
    if entries:
        with open(path, "rb") as handle:
            mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        keepalive.append(mapping)
        for name, dtype, shape, begin, end in entries:
            tensors.append(TensorRef(name, shape, dtype, _loader(path, mapping, dtype, shape, data_start + begin,
                                                                  data_start + end), mapped=True))
    inspected = Inspected(path, "safetensors", header.file_bytes, tensors, metadata=dict(header.metadata),
                          files=[path], keepalive=keepalive)
    if skipped:
        listed = ", ".join(f"{count} {code}" for code, count in skipped.items())
        inspected.notes.append(f"skipped tensors of types effstudio cannot read: {listed}")
    return inspected


def _loader(path: Path, mapping: mmap.mmap, dtype: str, shape: tuple[int, ...], start: int, end: int):
    storage = STORAGE[dtype]

    def load() -> np.ndarray:
        if end == start:
            return np.empty(shape, dtype=storage)
        if mapping.size() < end:  # the file shrank on disk: reading past its end would kill the process
            raise InspectError(f"{path.name} was truncated on disk after it was opened")
        return np.frombuffer(mapping, dtype=storage, count=(end - start) // storage.itemsize,
                             offset=start).reshape(shape)

    return load
