"""Element types of stored tensors and their conversion to numbers numpy can add up.

Every reader describes a tensor by a canonical dtype name (``float32``,
``bfloat16``, ``float8_e4m3fn``...) and hands out its raw elements as a numpy
array of a *storage* type numpy knows (bfloat16 as uint16, float8 as uint8).
:func:`to_float` turns a chunk of raw elements into float32 or float64 values.
"""

from __future__ import annotations

from functools import cache

import numpy as np

# canonical name -> (numpy storage dtype, bytes per element)
STORAGE: dict[str, np.dtype] = {
    "float64": np.dtype("<f8"), "float32": np.dtype("<f4"), "float16": np.dtype("<f2"),
    "bfloat16": np.dtype("<u2"), "float8_e4m3fn": np.dtype("u1"), "float8_e5m2": np.dtype("u1"),
    "int64": np.dtype("<i8"), "int32": np.dtype("<i4"), "int16": np.dtype("<i2"), "int8": np.dtype("i1"),
    "uint64": np.dtype("<u8"), "uint32": np.dtype("<u4"), "uint16": np.dtype("<u2"), "uint8": np.dtype("u1"),
    "bool": np.dtype("?"), "complex64": np.dtype("<c8"), "complex128": np.dtype("<c16"),
}

# safetensors' names for the same types
SAFETENSORS = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2",
    "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
    "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8", "BOOL": "bool",
    "C64": "complex64",
}

FLOATING = {"float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2"}


def itemsize(dtype: str) -> int:
    return STORAGE[dtype].itemsize


def from_numpy(dtype: np.dtype) -> str | None:
    """The canonical name of a numpy dtype, or None for types effstudio does not read (objects, strings)."""
    dtype = np.dtype(dtype)
    return dtype.name if dtype.kind in "biufc" and dtype.name in STORAGE else None


def has_statistics(dtype: str) -> bool:
    return not dtype.startswith("complex")


@cache
def _float8_table(exponent_bits: int, mantissa_bits: int, finite_only: bool) -> np.ndarray:
    """All 256 values of an 8-bit float format, decoded by its definition."""
    codes = np.arange(256, dtype=np.int64)
    sign = np.where(codes >> 7, -1.0, 1.0)
    exponent = (codes >> mantissa_bits) & ((1 << exponent_bits) - 1)
    mantissa = codes & ((1 << mantissa_bits) - 1)
    bias = (1 << (exponent_bits - 1)) - 1
    fraction = mantissa / float(1 << mantissa_bits)
    normal = (1.0 + fraction) * np.exp2(exponent - bias)
    subnormal = fraction * np.exp2(1 - bias)
    values = sign * np.where(exponent == 0, subnormal, normal)
    top = (1 << exponent_bits) - 1
    if finite_only:  # e4m3fn: no infinities, only S.1111.111 is NaN
        values[(exponent == top) & (mantissa == (1 << mantissa_bits) - 1)] = np.nan
    else:  # IEEE-like: all-ones exponent is inf (mantissa 0) or NaN
        values[(exponent == top) & (mantissa == 0)] = sign[(exponent == top) & (mantissa == 0)] * np.inf
        values[(exponent == top) & (mantissa != 0)] = np.nan
    return values.astype(np.float32)


def to_float(raw: np.ndarray, dtype: str) -> np.ndarray:
    """Raw stored elements as floats: float64 stays float64, everything else becomes float32 or float64."""
    if dtype == "bfloat16":
        return (raw.astype(np.uint32) << 16).view(np.float32)
    if dtype == "float8_e4m3fn":
        return _float8_table(4, 3, True)[raw]
    if dtype == "float8_e5m2":
        return _float8_table(5, 2, False)[raw]
    if dtype in ("float32", "float64"):
        return raw
    if dtype == "float16":
        return raw.astype(np.float32)
    if dtype in ("int8", "uint8", "int16", "uint16", "bool"):
        return raw.astype(np.float32)
    if dtype.startswith("complex"):
        raise ValueError("complex tensors have no single min/max/mean")
    return raw.astype(np.float64)
