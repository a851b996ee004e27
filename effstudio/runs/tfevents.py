"""TensorBoard event files, written without TensorFlow or the tensorboard package.

An event file is a sequence of TFRecords; each record is

    uint64 length (little-endian)
    uint32 masked CRC32C of the 8 length bytes
    bytes  data (a serialised ``tensorflow.Event`` protobuf)
    uint32 masked CRC32C of the data

where CRC32C is the Castagnoli CRC (reflected polynomial 0x82F63B78, initial
value and final xor 0xFFFFFFFF; RFC 3720) and masking is
``((crc >> 15) | (crc << 17)) + 0xA282EAD8`` modulo 2**32.

The protobuf messages are encoded by hand; only these fields are used::

    message Event   { double wall_time = 1; int64 step = 2;
                      oneof what { string file_version = 3; Summary summary = 5; } }
    message Summary { repeated Value value = 1; }
    message Value   { string tag = 1; float simple_value = 2; }

The first event of a file carries ``file_version = "brain.Event:2"``. Scalars as
``simple_value`` are read by every TensorBoard (its data server converts them).
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import Iterable
from pathlib import Path


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64s take ten bytes, as protobuf writes them
    out = bytearray()
    while True:
        bits = value & 0x7F
        value >>= 7
        if value:
            out.append(bits | 0x80)
        else:
            out.append(bits)
            return bytes(out)


def _length_delimited(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def encode_event(wall_time: float, step: int = 0, *, file_version: str | None = None,
                 scalars: Iterable[tuple[str, float]] = ()) -> bytes:
    """A serialised Event with a file version or a summary of scalar values."""
    data = b"\x09" + struct.pack("<d", wall_time)  # field 1, fixed64
    if step:
        data += b"\x10" + _varint(int(step))  # field 2, varint
    if file_version is not None:
        return data + _length_delimited(3, file_version.encode())
    summary = b"".join(
        _length_delimited(1, _length_delimited(1, tag.encode()) + b"\x15" + struct.pack("<f", value))
        for tag, value in scalars)  # Value: tag (field 1), simple_value (field 2, fixed32)
    return data + _length_delimited(5, summary)


def frame_record(data: bytes) -> bytes:
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


class EventFileWriter:
    """Writes one ``events.out.tfevents.*`` file in ``folder``; use as a context manager."""

    def __init__(self, folder: str | Path, suffix: str = ".effstudio"):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}{suffix}"
        self.path = self.folder / name
        self._file = open(self.path, "wb")
        self._file.write(frame_record(encode_event(time.time(), file_version="brain.Event:2")))

    def add_scalars(self, step: int, scalars: Iterable[tuple[str, float]], wall_time: float | None = None) -> None:
        scalars = list(scalars)
        if scalars:
            event = encode_event(time.time() if wall_time is None else wall_time, step, scalars=scalars)
            self._file.write(frame_record(event))

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def __enter__(self) -> EventFileWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
