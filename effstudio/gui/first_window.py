"""Measure a start-up: when EFFSTUDIO_FIRST_WINDOW=FILE.png is set, the first shown window is saved and the app quits.

packaging/build.py starts the bundle this way to time the cold start to the first
window and to check that a file argument reaches the inspector. Beside the PNG, a
JSON file records when the window was first shown (``time.time()``, so the caller
compares it with its own clock), the section it shows and the inspector's state.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

ENV = "EFFSTUDIO_FIRST_WINDOW"


def report_first_window(app: QApplication, window, target: str, wait_for_inspector: bool) -> None:  # noqa: ANN001
    """Once the event loop runs, note the time; save the window (after the inspector has read its file) and quit."""
    record: dict[str, object] = {}
    started = time.monotonic()

    def shown() -> None:
        record["shown_at"] = time.time()
        poll()

    def poll() -> None:
        panel = window.inspect_panel
        busy = panel.state == "opening" or (panel.state == "ready" and not panel.stats_done)
        if wait_for_inspector and busy and time.monotonic() - started < 30:
            QTimer.singleShot(50, poll)
            return
        window.grab().save(target)
        record.update(section=window.sidebar.currentItem().text() if window.sidebar.currentItem() else "",
                      inspect_state=panel.state, title=window.windowTitle())
        Path(target).with_suffix(".json").write_text(json.dumps(record), encoding="utf-8")
        app.quit()

    QTimer.singleShot(0, shown)
