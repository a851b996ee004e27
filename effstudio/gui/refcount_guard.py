"""Work around PySide6 builds that drop a reference to None/True/False per call.

PySide6-Essentials 6.12.0 on Python 3.11 returns ``None`` from every void method
(and ``True`` from ``Signal.emit``) without taking a reference. From Python 3.12
these singletons are immortal and nothing happens; on 3.11 their reference
counts fall by one per call until the interpreter aborts with "deallocating
None" after a few thousand calls, i.e. seconds into a GUI session.

:func:`install` detects the leak empirically and, only where it exists, gives
the three singletons a huge reference count, which is what Python 3.12 does for
them anyway. It is a no-op on Python >= 3.12 and on builds without the leak.
"""

from __future__ import annotations

import ctypes
import sys

HEADROOM = 1 << 40  # ~10^12 leaked calls before the count could reach zero
PROBE_CALLS = 64
_installed = False


def leaks_none() -> bool:
    """True when a void Qt call drops a reference to None."""
    from PySide6.QtCore import QObject

    probe = QObject()
    before = sys.getrefcount(None)
    for _ in range(PROBE_CALLS):
        probe.setObjectName("probe")
    return before - sys.getrefcount(None) >= PROBE_CALLS // 2


def _add_references(obj: object, count: int) -> bool:
    before = sys.getrefcount(obj)
    cell = ctypes.c_ssize_t.from_address(id(obj))  # ob_refcnt is the first field of a PyObject
    if cell.value != before - 1:  # the layout is not the one expected (a debug build): leave it
        return False
    cell.value += count
    return True


def install() -> bool:
    """Protect None, True and False if this PySide6 build needs it; True when it did."""
    global _installed
    if _installed:
        return True
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython" or not leaks_none():
        return False
    _installed = all(_add_references(obj, HEADROOM) for obj in (None, True, False))
    return _installed
