"""Give back the pages of a memory-mapped file once a chunk of it has been read.

Reading a memory-mapped file makes its pages resident in the process, so a pass
over a 2 GB file would grow the resident set by 2 GB although nothing is copied.
After each chunk the statistics call :func:`release` on it: ``madvise(DONTNEED)``
drops the pages from the process (they stay in the OS file cache, and a later
read maps them back). Only whole pages inside the chunk are released, and only
for arrays that a reader marked as file-backed: on anonymous memory the same
call would discard data.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import sys
from collections.abc import Callable

import numpy as np

PAGE = mmap.PAGESIZE


def _load_madvise() -> Callable[[int, int, int], int] | None:
    if sys.platform == "win32" or not hasattr(mmap, "MADV_DONTNEED"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        function = libc.madvise
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    function.restype = ctypes.c_int
    return function


_madvise = _load_madvise()


def release(chunk: np.ndarray) -> None:
    """Drop the resident pages that lie wholly inside ``chunk`` (a contiguous view of a file mapping)."""
    if _madvise is None or chunk.nbytes < PAGE or not chunk.flags.c_contiguous:
        return
    start = chunk.__array_interface__["data"][0]
    first = -(-start // PAGE) * PAGE
    last = (start + chunk.nbytes) // PAGE * PAGE
    if last > first:
        _madvise(first, last - first, mmap.MADV_DONTNEED)
