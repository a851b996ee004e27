"""Members of zip archives (.npz, PyTorch zip checkpoints), inflated only within the limits.

A zip's central directory declares each member's inflated size; Python's
zipfile never returns more than that, so checking the declaration *before*
opening a member bounds the work, and a member that inflates to more than it
declares ends in a CRC error, not in more bytes. :func:`inflation_problem` is
that check: the size cap and, for large members, the compression-ratio cap of
:mod:`effstudio.engine.read_limits`. :func:`read_exactly` then streams a member
into a buffer of the declared size, never growing it.
"""

from __future__ import annotations

import zipfile
from typing import IO

from effstudio.engine import read_limits

_STREAM_CHUNK = 16 << 20


def inflation_problem(info: zipfile.ZipInfo, limit: int | None = None) -> str | None:
    """Why inflating this member is refused (it names the limit), or None when it may be read."""
    if info.compress_type == zipfile.ZIP_STORED:
        return None  # its bytes are on disk as they are: nothing to inflate
    limit = read_limits.MAX_INFLATED_BYTES if limit is None else limit
    if info.file_size > limit:
        return (f"{info.filename} would inflate to {info.file_size:,} bytes, more than the {limit:,} effstudio "
                "decompresses (MAX_INFLATED_BYTES)")
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > read_limits.RATIO_CHECKED_ABOVE and ratio > read_limits.MAX_INFLATE_RATIO:
        return (f"{info.filename} would inflate {info.compress_size:,} bytes to {info.file_size:,} "
                f"({ratio:,.0f}:1), more than the {read_limits.MAX_INFLATE_RATIO}:1 effstudio accepts for members "
                f"above {read_limits.RATIO_CHECKED_ABOVE:,} bytes (MAX_INFLATE_RATIO): a zip bomb, not weights")
    return None


def read_exactly(stream: IO[bytes], buffer: memoryview) -> None:
    """Fill ``buffer`` from ``stream`` in chunks; EOFError when the stream ends first."""
    filled = 0
    while filled < len(buffer):
        data = stream.read(min(_STREAM_CHUNK, len(buffer) - filled))
        if not data:
            raise EOFError(f"the data ends after {filled:,} of {len(buffer):,} bytes")
        buffer[filled:filled + len(data)] = data
        filled += len(data)
