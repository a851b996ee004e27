"""One check of a safetensors header, for every reader of the format.

The inspector, checkpoint loading (resume, init, compare, prune, quantize,
export, distill) and anything else that opens a ``.safetensors`` file call
:func:`read_header` first, so they all give one verdict and one message for a
damaged or hostile file. The check reads only the 8-byte length and the header
itself (bounded, see :mod:`effstudio.read_limits`), never the data.

It is at least as strict as the safetensors library, so that a header accepted
here never fails in the library afterwards with another message:

- the header is at most 100 MB of UTF-8 JSON describing at most MAX_TENSORS tensors (no NaN, no lone surrogates, not
  nested deeper than the format needs), an object, with no name twice;
- ``__metadata__`` maps strings to strings;
- each tensor has a known dtype, a shape of non-negative integers (``true`` is
  not a number here, whatever Python thinks) and two integer data offsets, all
  below 2**64, and its element count times the dtype's size is its byte range;
- the byte ranges, in order, tile the data section exactly: no overlap, no gap,
  nothing outside the file, no trailing bytes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effstudio import read_limits

_UNSIGNED_LIMIT = 2**64  # shapes and offsets are 64-bit unsigned integers in the format

# dtype -> bits per element, as the safetensors library knows them
DTYPE_BITS = {
    "BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8,
    "F8_E8M0": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
    "C64": 64, "F64": 64, "I64": 64, "U64": 64,
}


class HeaderError(ValueError):
    """A safetensors file whose header cannot be trusted; the message names the file and the field."""


@dataclass(frozen=True)
class HeaderTensor:
    name: str
    dtype: str  # the format's code: F32, BF16, ...
    shape: tuple[int, ...]
    begin: int  # byte offsets inside the data section
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    length: int  # bytes of JSON after the 8-byte length field
    metadata: dict[str, str]
    tensors: list[HeaderTensor]  # in the order of their data
    file_bytes: int

    @property
    def data_start(self) -> int:
        return 8 + self.length


def read_header(path: str | Path) -> SafetensorsHeader:
    """The checked header of a safetensors file; HeaderError saying what is wrong otherwise."""
    path = Path(path)

    def fail(reason: str) -> HeaderError:
        return HeaderError(f"{path.name}: {reason}")

    size = path.stat().st_size
    if size < 8:
        raise fail(f"not a readable safetensors file: it is {size} bytes long, too short for a header")
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        if length > read_limits.MAX_SAFETENSORS_HEADER_BYTES:
            raise fail(f"not a readable safetensors file: the header claims {length:,} bytes, more than the "
                       f"{read_limits.MAX_SAFETENSORS_HEADER_BYTES:,} a safetensors header may have")
        if length > size - 8:
            raise fail(f"not a readable safetensors file: the header claims {length:,} bytes but the file has only "
                       f"{size - 8:,} after the length field: the file is truncated or of another kind")
        text = handle.read(length)
    declared = text.count(b'"data_offsets"')  # one per tensor: counted before the JSON is parsed
    if declared > read_limits.MAX_TENSORS:
        raise fail(f"the header describes {declared:,} tensors, more than the {read_limits.MAX_TENSORS:,} effstudio "
                   "reads in one file (MAX_TENSORS)")
    header = _parse(text, fail)
    metadata = _metadata(header.pop("__metadata__", None), fail)
    tensors = [_tensor(name, entry, fail) for name, entry in header.items()]
    tensors.sort(key=lambda t: (t.begin, t.end))
    _check_layout(tensors, 8 + length, size, fail)
    return SafetensorsHeader(length, metadata, tensors, size)


def _parse(text: bytes, fail: Callable[[str], HeaderError]) -> dict[str, Any]:
    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in items:
            if key in seen:
                raise fail(f"the header names {key!r} twice")
            seen[key] = value
        return seen

    def no_constant(name: str) -> Any:
        raise fail(f"the header is not valid JSON ({name} is not a JSON number)")

    try:
        header = json.loads(text.decode("utf-8"), object_pairs_hook=pairs, parse_constant=no_constant)
    except UnicodeDecodeError as err:
        raise fail(f"the header is not UTF-8 text ({err.reason} at byte {err.start})") from None
    except json.JSONDecodeError as err:
        raise fail(f"the header is not valid JSON ({err}); the file is damaged or truncated") from None
    except RecursionError:
        raise fail(f"the header is nested more than {read_limits.MAX_DEPTH} levels deep") from None
    _check_values(header, fail)
    if not isinstance(header, dict):
        raise fail(f"the header is valid JSON but not an object (it is {_json_kind(header)}); a safetensors "
                   "header maps tensor names to their dtype, shape and offsets")
    return header


def _json_kind(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    return {list: "a list", str: "a string", int: "a number", float: "a number"}.get(type(value), "not an object")


def _check_values(root: Any, fail: Callable[[str], HeaderError]) -> None:
    """Depth and text of every value: what the library's JSON parser would refuse, refused here too."""
    pending = [(root, 1)]
    while pending:
        value, depth = pending.pop()
        if depth > read_limits.MAX_DEPTH:
            raise fail(f"the header is nested more than {read_limits.MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            for key, item in value.items():
                _check_text(key, fail)
                pending.append((item, depth + 1))
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            _check_text(value, fail)
        elif isinstance(value, float) and abs(value) == float("inf"):
            raise fail("the header holds a number too large for JSON")


def _check_text(text: str, fail: Callable[[str], HeaderError]) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise fail(f"the header holds an invalid \\u escape (a lone surrogate) in {text[:40]!r}") from None


def _metadata(value: Any, fail: Callable[[str], HeaderError]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise fail("__metadata__ in the header is not a JSON object")
    for key, item in value.items():
        if not isinstance(item, str):
            raise fail(f"__metadata__ entry {key!r} is not a string (it is {_json_kind(item)})")
    return value


def _is_unsigned(value: Any) -> bool:
    return type(value) is int and 0 <= value < _UNSIGNED_LIMIT  # bool is an int subclass: not a size


def _tensor(name: str, entry: Any, fail: Callable[[str], HeaderError]) -> HeaderTensor:
    if not isinstance(entry, dict):
        raise fail(f"tensor {name!r} is {_json_kind(entry)} in the header, not an object with its dtype, shape "
                   "and data_offsets")
    missing = [key for key in ("dtype", "shape", "data_offsets") if key not in entry]
    if missing:
        raise fail(f"tensor {name!r} has no {' or '.join(missing)} in the header")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        raise fail(f"tensor {name!r} has an unknown dtype {dtype!r}")
    if not (isinstance(shape, list) and all(_is_unsigned(d) for d in shape)):
        raise fail(f"tensor {name!r} has an invalid shape {json.dumps(shape)[:80]}: dimensions are "
                   "non-negative integers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_unsigned(o) for o in offsets)):
        raise fail(f"tensor {name!r} has invalid data_offsets {json.dumps(offsets)[:80]}: two non-negative "
                   "integers (begin, end)")
    begin, end = offsets
    if end < begin:
        raise fail(f"tensor {name!r} has data_offsets that end ({end:,}) before they begin ({begin:,})")
    elements = 1
    for dim in shape:  # in order, as the library checks it: an overflow on the way counts even if a 0 follows
        elements *= dim
        if elements >= _UNSIGNED_LIMIT:
            raise fail(f"tensor {name!r} has a shape {shape} whose element count overflows 64 bits")
    bits = elements * DTYPE_BITS[dtype]
    if bits >= _UNSIGNED_LIMIT:
        raise fail(f"tensor {name!r} ({dtype} {shape}) is larger than 2**64 bits")
    if bits % 8:
        raise fail(f"tensor {name!r} ({dtype} {shape}) does not fill whole bytes")
    if end - begin != bits // 8:
        raise fail(f"the header is inconsistent: tensor {name!r} ({dtype} {shape}) needs {bits // 8:,} bytes "
                   f"but its offsets span {end - begin:,}")
    return HeaderTensor(name, dtype, tuple(shape), begin, end)


def _check_layout(tensors: list[HeaderTensor], data_start: int, size: int, fail: Callable[[str], HeaderError]) -> None:
    """The byte ranges follow each other from 0 to the end of the file, each byte in exactly one tensor."""
    data_bytes = size - data_start
    needed = max((t.end for t in tensors), default=0)
    if needed > data_bytes:
        first = min((t for t in tensors if t.end > data_bytes), key=lambda t: t.begin)
        raise fail(f"the file is truncated: its header describes {data_start + needed:,} bytes but the file has "
                   f"{size:,}; tensor {first.name!r} and later ones are cut off")
    cursor = 0
    previous = ""
    for tensor in tensors:
        if tensor.begin < cursor:
            raise fail(f"tensors {previous!r} and {tensor.name!r} overlap: bytes {tensor.begin:,}-"
                       f"{min(cursor, tensor.end):,} of the data belong to both")
        if tensor.begin > cursor:
            raise fail(f"the data has a gap: bytes {cursor:,}-{tensor.begin:,} belong to no tensor (before "
                       f"{tensor.name!r})")
        cursor, previous = tensor.end, tensor.name
    if cursor != data_bytes:
        raise fail(f"the file has {data_bytes - cursor:,} bytes after the last tensor's data that no tensor "
                   "describes")


def check_file(path: str | Path, error: type[Exception]) -> SafetensorsHeader:
    """:func:`read_header`, its refusal (or an unreadable file) raised as ``error`` with the same message."""
    try:
        return read_header(path)
    except HeaderError as err:
        raise error(str(err)) from None
    except OSError as err:
        raise error(f"{Path(path).name}: {err.strerror or err}") from None
