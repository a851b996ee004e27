"""Progress of a long data step (hashing, reading, tokenizing a file) for a front-end that shows it.

A task calls :func:`report` as it goes; the CLI (a tqdm bar) or the GUI wraps the work
in :func:`reporting` with a callback. Without one nothing is shown and a report costs a
lookup. A context variable carries the callback, so a generator driven from inside the
``with`` block reports to it, and two threads each keep their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# (what is being done, how far, out of how much or None): "reading data.csv", 1_048_576, 73_400_320
ProgressCallback = Callable[[str, float, float | None], None]

_callback: ContextVar[ProgressCallback | None] = ContextVar("effstudio_task_progress", default=None)


@contextmanager
def reporting(callback: ProgressCallback) -> Iterator[None]:
    """Send the progress reports made inside the block to ``callback``."""
    token = _callback.set(callback)
    try:
        yield
    finally:
        _callback.reset(token)


def report(what: str, done: float, total: float | None = None) -> None:
    callback = _callback.get()
    if callback is not None:
        callback(what, done, total)


def bound_report() -> ProgressCallback:
    """:func:`report` bound to this context's callback, for work that another thread will run (a library that
    consumes an iterator from a thread of its own does not see this thread's context)."""
    callback = _callback.get()
    return callback if callback is not None else _ignore


def _ignore(what: str, done: float, total: float | None) -> None:
    """Nobody is shown the progress."""
