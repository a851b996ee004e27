"""Python's cycle collector, run in the GUI thread only.

Left automatic, a collection starts in whichever thread happens to allocate: often a job's worker
thread. A cycle it frees there may hold Qt objects (a closed panel and its plots), and a widget
deleted outside the GUI thread corrupts Qt's state; the crash comes later, somewhere unrelated.
So while the window runs, the automatic collector is off and a timer in the GUI thread collects,
generation by generation, when the allocation counts pass the interpreter's own thresholds.
Reference counting still frees everything without cycles at once, in any thread.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

from PySide6.QtCore import QObject, QTimer

INTERVAL_MS = 500


def collect_due(thresholds: tuple[int, ...]) -> int:
    """Collect the oldest generation whose count (and every younger one's) passed its threshold, as the
    automatic collector would; the number of unreachable objects found, 0 when nothing was due. A
    threshold of 0 means never, as it does for the automatic collector (and for an interpreter that
    no longer counts that generation)."""
    counts = gc.get_count()
    due = -1
    for generation, (count, threshold) in enumerate(zip(counts, thresholds, strict=False)):
        if threshold <= 0 or count <= threshold:
            break
        due = generation
    return gc.collect(due) if due >= 0 else 0


class GuiThreadCollector(QObject):
    """Turns the automatic collector off and collects from a timer of the thread it was made in."""

    def __init__(self, interval_ms: int = INTERVAL_MS, parent: QObject | None = None):
        super().__init__(parent)
        self.thresholds = gc.get_threshold()
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self.collect)
        self._was_enabled = gc.isenabled()

    def start(self) -> None:
        self._was_enabled = gc.isenabled()
        gc.disable()
        self.timer.start()

    def stop(self) -> None:
        """Back to the automatic collector, after one full collection here."""
        self.timer.stop()
        gc.collect()
        if self._was_enabled:
            gc.enable()

    def collect(self) -> int:
        return collect_due(self.thresholds)


@contextmanager
def collecting_in_gui_thread(interval_ms: int = INTERVAL_MS) -> Iterator[GuiThreadCollector]:
    """Collect cycles only from this (the GUI) thread while the block runs; automatic again after it."""
    collector = GuiThreadCollector(interval_ms)
    collector.start()
    try:
        yield collector
    finally:
        collector.stop()
