"""Members of zip archives (.npz, PyTorch zip checkpoints), inflated only within the limits.

A zip's central directory declares each member's inflated size; Python's
zipfile never returns more than that, so checking the declaration *before*
opening a member bounds the work, and a member that inflates to more than it
declares ends in a CRC error, not in more bytes. :class:`InflationBudget` is
that check: the size cap and, for large members and for all members together,
the compression-ratio cap of :mod:`effstudio.read_limits`. :func:`read_exactly` then streams a member
into a buffer of the declared size, never growing it.
"""

from __future__ import annotations

import struct
import zipfile
from typing import IO

from effstudio import read_limits

_STREAM_CHUNK = 16 << 20
_LOCAL_HEADER_BYTES = 30  # a zip member's local header before its name and extra field


class InflationBudget:
    """The inflation limits for the members of one archive, member by member.

    Each compressed member may inflate to at most MAX_INFLATED_BYTES, and above
    RATIO_CHECKED_ABOVE at most MAX_INFLATE_RATIO times its compressed size; the
    ratio is also kept for the members accepted so far *together*, so a thousand
    small bombs just under the per-member threshold are refused like one big one.
    """

    def __init__(self) -> None:
        self.inflated = 0
        self.compressed = 0

    def problem(self, info: zipfile.ZipInfo) -> str | None:
        """Why inflating this member is refused (it names the limit), or None: then it counts as accepted."""
        if info.compress_type == zipfile.ZIP_STORED:
            return None  # its bytes are on disk as they are: nothing to inflate
        limit = read_limits.MAX_INFLATED_BYTES
        if info.file_size > limit:
            return (f"{info.filename} would inflate to {info.file_size:,} bytes, more than the {limit:,} effstudio "
                    "decompresses (MAX_INFLATED_BYTES)")
        for inflated, compressed, what in ((info.file_size, info.compress_size, ""),
                                           (self.inflated + info.file_size, self.compressed + info.compress_size,
                                            " with the members before it")):
            ratio = inflated / max(compressed, 1)
            if inflated > read_limits.RATIO_CHECKED_ABOVE and ratio > read_limits.MAX_INFLATE_RATIO:
                return (f"{info.filename}{what} would inflate {compressed:,} bytes to {inflated:,} ({ratio:,.0f}:1), "
                        f"more than the {read_limits.MAX_INFLATE_RATIO}:1 effstudio accepts above "
                        f"{read_limits.RATIO_CHECKED_ABOVE:,} bytes (MAX_INFLATE_RATIO): a zip bomb, not weights")
        self.inflated += info.file_size
        self.compressed += info.compress_size
        return None


def layout_problem(archive: zipfile.ZipFile) -> str | None:
    """Why the archive's members cannot be read each once, or None.

    At most MAX_TENSORS members; no name twice (a reader would show one and
    skip the other, or read the same bytes under many entries); and no two
    members whose bytes overlap: central directory entries that point into one
    another's data make a 1 GB file read as a thousand (a "non-recursive" zip bomb).
    """
    infos = archive.infolist()
    if len(infos) > read_limits.MAX_TENSORS:
        return (f"the archive holds {len(infos):,} members, more than the {read_limits.MAX_TENSORS:,} effstudio "
                "reads in one file (MAX_TENSORS)")
    seen: set[str] = set()
    for info in infos:
        if info.filename in seen:
            return f"the archive holds {info.filename} twice; a reader would see only one of them"
        seen.add(info.filename)
    handle = archive.fp
    end, previous = 0, ""
    for info in sorted(infos, key=lambda i: i.header_offset):
        if info.header_offset < end:
            return f"the members {previous} and {info.filename} overlap in the file: their bytes would be read twice"
        handle.seek(info.header_offset)
        local = handle.read(_LOCAL_HEADER_BYTES)
        if len(local) < _LOCAL_HEADER_BYTES or local[:4] != b"PK\x03\x04":
            return f"the member {info.filename} has no local header where the directory says"
        name_length, extra_length = struct.unpack("<HH", local[26:30])
        end = info.header_offset + _LOCAL_HEADER_BYTES + name_length + extra_length + info.compress_size
        previous = info.filename
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
