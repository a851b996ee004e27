"""safetensors files, read from their header and memory-mapped, never loaded whole.

The layout is an 8-byte little-endian header length N, N bytes of JSON (name ->
dtype, shape, data_offsets; an optional ``__metadata__`` of strings), then the
data. The header is checked against the file before anything is mapped: a
truncated file, a header that claims more bytes than the file holds, or offsets
that disagree with a tensor's shape are refused with a message that says so,
since reading past the end of a mapped file would crash the process.
"""

from __future__ import annotations

import math
import mmap
import struct
from pathlib import Path
from typing import Any

import numpy as np

from effstudio.bounded_parse import loads_json
from effstudio.config import ConfigError
from effstudio.inspect.dtypes import SAFETENSORS, STORAGE
from effstudio.inspect.tensors import Inspected, InspectError, TensorRef

MAX_HEADER_BYTES = 100 * 1024 * 1024  # the reference implementation's limit


def _fail(path: Path, reason: str) -> InspectError:
    return InspectError(f"{path.name}: {reason}")


def read_header(path: Path) -> tuple[int, dict[str, Any], int]:
    """(header length, parsed header, file size), after checking the header against the file."""
    size = path.stat().st_size
    if size == 0:
        raise _fail(path, "the file is empty (0 bytes)")
    if size < 8:
        raise _fail(path, f"the file is {size} bytes long, too short for a safetensors header")
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if length > size - 8:
            raise _fail(path, f"the header claims {length:,} bytes but the file has only {size - 8:,} after "
                              "the length field: the file is truncated or is not a safetensors file")
        if length > MAX_HEADER_BYTES:
            raise _fail(path, f"the header claims {length:,} bytes, more than any real safetensors header")
        text = handle.read(length)
    try:
        header = loads_json(text, source=path, field="header", max_bytes=MAX_HEADER_BYTES)
    except ConfigError as err:  # not UTF-8, not JSON, or nested past any real header's depth
        raise _fail(path, f"the header is {err.message}; the file is damaged or truncated") from None
    if not isinstance(header, dict):
        raise _fail(path, "the header is not a JSON object")
    return length, header, size


def _tensor_entry(path: Path, name: str, entry: Any) -> tuple[str, tuple[int, ...], int, int]:
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= set(entry):
        raise _fail(path, f"tensor {name!r} has no dtype, shape or data_offsets in the header")
    shape, offsets = entry["shape"], entry["data_offsets"]
    if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
        raise _fail(path, f"tensor {name!r} has an invalid shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) and o >= 0 for o in offsets)
            and offsets[0] <= offsets[1]):
        raise _fail(path, f"tensor {name!r} has invalid data_offsets {offsets!r}")
    return str(entry["dtype"]), tuple(shape), offsets[0], offsets[1]


def read_safetensors(path: Path) -> Inspected:
    length, header, size = read_header(path)
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise _fail(path, "__metadata__ in the header is not a JSON object")
    data_start = 8 + length
    data_bytes = size - data_start
    entries = []
    skipped: dict[str, int] = {}
    for name, entry in header.items():
        code, shape, begin, end = _tensor_entry(path, name, entry)
        dtype = SAFETENSORS.get(code)
        if dtype is None:
            skipped[code] = skipped.get(code, 0) + 1
            continue
        expected = math.prod(shape) * STORAGE[dtype].itemsize
        if end - begin != expected:
            raise _fail(path, f"the header is inconsistent: tensor {name!r} ({code} {list(shape)}) needs "
                              f"{expected:,} bytes but its offsets span {end - begin:,}")
        entries.append((name, dtype, shape, begin, end))
    needed = max((end for *_, end in entries), default=0)
    if needed > data_bytes:
        first = min((e for e in entries if e[4] > data_bytes), key=lambda e: e[3])
        raise _fail(path, f"the file is truncated: its header describes {data_start + needed:,} bytes but the "
                          f"file has {size:,}; tensor {first[0]!r} and later ones are cut off")

    tensors: list[TensorRef] = []
    keepalive: list[Any] = []
    if entries:
        with open(path, "rb") as handle:
            mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        keepalive.append(mapping)
        for name, dtype, shape, begin, end in sorted(entries, key=lambda e: e[3]):
            tensors.append(TensorRef(name, shape, dtype, _loader(path, mapping, dtype, shape, data_start + begin,
                                                                  data_start + end), mapped=True))
    inspected = Inspected(path, "safetensors", size, tensors, metadata={str(k): str(v) for k, v in metadata.items()},
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
