"""Ctrl+C during a long job: the first asks the job to stop (and save), a second interrupts at once."""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # engine.events brings numpy, which `effstudio --version` need not load
    from effstudio.engine.events import JobControl


@contextmanager
def graceful_interrupt(control: JobControl) -> Iterator[None]:
    """Within: the first Ctrl+C calls ``control.stop()``; a second one raises KeyboardInterrupt."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if control.stop_requested:
            raise KeyboardInterrupt
        print("\nstopping after this step (Ctrl+C again to abort)...", file=sys.stderr)
        control.stop()

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
