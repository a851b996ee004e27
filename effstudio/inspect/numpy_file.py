"""NumPy .npy and .npz files, memory-mapped where the layout allows, never unpickled.

A .npy file is mapped with ``np.load(mmap_mode="r")``. In an .npz archive, a
member stored without compression is mapped in place (its offset found from
the zip's local header and the .npy header after it); a compressed member is
decompressed when its statistics are asked for, into a buffer of the size its
.npy header declares, and only when the zip's declared inflated size and ratio
are within the limits (:mod:`effstudio.engine.zip_members`): a 4 MB member that
inflates to 4 GiB is refused, naming the limit, before a byte is inflated.
Object arrays (pickles) are refused: ``allow_pickle`` is never set.
"""

from __future__ import annotations

import math
import struct
import zipfile
from pathlib import Path
from typing import IO

import numpy as np

from effstudio.engine.zip_members import InflationBudget, layout_problem, read_exactly
from effstudio.inspect.dtypes import from_numpy
from effstudio.inspect.tensors import Inspected, InspectError, TensorRef

_PICKLED = "holds Python objects (a pickle), which effstudio never loads"


def _fail(path: Path, reason: str) -> InspectError:
    return InspectError(f"{path.name}: {reason}")


def _read_npy_header(stream: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, Fortran order, dtype) of an .npy header; ValueError for one that numpy accepts but no array has."""
    version = np.lib.format.read_magic(stream)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(stream)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(stream)
    if any(dim < 0 for dim in shape):  # numpy's header reader lets (-4, -4) through: 16 elements to math.prod
        raise ValueError(f"the header's shape {shape} has a negative dimension")
    return shape, fortran, dtype


def read_npy(path: Path) -> Inspected:
    size = path.stat().st_size
    with open(path, "rb") as stream:
        try:
            shape, fortran, dtype = _read_npy_header(stream)
        except (ValueError, EOFError) as err:
            raise _fail(path, f"not a readable .npy file ({err})") from None
        offset = stream.tell()
    if dtype.hasobject:
        raise _fail(path, f"the array {_PICKLED}")
    name = from_numpy(dtype)
    if name is None:
        raise _fail(path, f"arrays of type {dtype} have no numbers to inspect")
    needed = offset + math.prod(shape) * dtype.itemsize
    if needed > size:
        raise _fail(path, f"the file is truncated: its header describes {needed:,} bytes but the file has {size:,}")
    tensor = TensorRef(path.stem, tuple(shape), name, _mapped(path, dtype, shape, fortran, offset), mapped=True)
    return Inspected(path, "npy", size, [tensor], files=[path])


def _mapped(path: Path, dtype: np.dtype, shape: tuple[int, ...], fortran: bool, offset: int):
    def load() -> np.ndarray:
        if math.prod(shape) == 0:
            return np.empty(shape, dtype=dtype)
        if path.stat().st_size < offset + math.prod(shape) * dtype.itemsize:
            raise InspectError(f"{path.name} was truncated on disk after it was opened")
        return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape, order="F" if fortran else "C")

    return load


def _member_data_offset(path: Path, info: zipfile.ZipInfo) -> int:
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        local = handle.read(30)
    if len(local) < 30 or local[:4] != b"PK\x03\x04":
        raise _fail(path, f"the zip entry {info.filename} is damaged")
    name_length, extra_length = struct.unpack("<HH", local[26:30])
    return info.header_offset + 30 + name_length + extra_length


def read_npz(path: Path) -> Inspected:
    size = path.stat().st_size
    tensors: list[TensorRef] = []
    notes: list[str] = []
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as err:
        raise _fail(path, f"the zip archive is damaged or truncated ({err})") from None
    budget = InflationBudget()
    with archive:
        layout = layout_problem(archive)
        if layout is not None:
            raise _fail(path, f"refused: {layout}")
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            name = info.filename[:-4]
            try:
                with archive.open(info) as stream:
                    shape, fortran, dtype = _read_npy_header(stream)
                    header_bytes = stream.tell()
            except (ValueError, EOFError, zipfile.BadZipFile, OSError) as err:
                raise _fail(path, f"the array {name!r} is damaged ({err})") from None
            if dtype.hasobject:
                notes.append(f"skipped {name!r}: it {_PICKLED}")
                continue
            canonical = from_numpy(dtype)
            if canonical is None:
                notes.append(f"skipped {name!r}: arrays of type {dtype} have no numbers to inspect")
                continue
            nbytes = math.prod(shape) * dtype.itemsize
            if header_bytes + nbytes > info.file_size:
                raise _fail(path, f"the array {name!r} is truncated: its .npy header describes {nbytes:,} bytes of "
                                  f"data but its zip entry holds {info.file_size - header_bytes:,}")
            if info.compress_type == zipfile.ZIP_STORED:
                offset = _member_data_offset(path, info) + header_bytes
                if offset + nbytes > size:
                    raise _fail(path, f"the array {name!r} is truncated")
                loader, mapped = _mapped(path, dtype, shape, fortran, offset), True
            else:
                problem = budget.problem(info)
                loader = (_compressed(path, info, dtype, shape, fortran) if problem is None
                          else _refused(path, name, problem))
                mapped = False
            tensors.append(TensorRef(name, tuple(shape), canonical, loader, mapped=mapped))
    if not tensors and not notes:
        raise _fail(path, "a zip archive without any .npy arrays: not a NumPy .npz file")
    if not tensors:
        raise _fail(path, f"no array effstudio reads: {'; '.join(notes)}")
    if any(not t.mapped for t in tensors):
        notes.append("compressed arrays are decompressed into memory one at a time when read")
    return Inspected(path, "npz", size, tensors, notes=notes, files=[path])


def _compressed(path: Path, info: zipfile.ZipInfo, dtype: np.dtype, shape: tuple[int, ...], fortran: bool):
    """Inflate the member into a buffer of the size its header declares (checked against the limits)."""

    def load() -> np.ndarray:
        buffer = bytearray(math.prod(shape) * dtype.itemsize)
        try:
            with zipfile.ZipFile(path) as archive, archive.open(info.filename) as stream:
                _read_npy_header(stream)
                read_exactly(stream, memoryview(buffer))
        except (ValueError, EOFError, zipfile.BadZipFile, OSError) as err:
            raise InspectError(f"{path.name}: cannot read {info.filename} ({err})") from None
        return np.frombuffer(buffer, dtype=dtype).reshape(shape, order="F" if fortran else "C")

    return load


def _refused(path: Path, name: str, problem: str):
    def load() -> np.ndarray:
        raise InspectError(f"{path.name}: the array {name!r} is not read: {problem}")

    return load
