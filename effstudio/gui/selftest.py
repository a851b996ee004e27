"""The window part of `effstudio --self-test`: the main window builds offscreen and inspects a file.

Called by the CLI only when Qt can be imported; the core checks live in
:mod:`effstudio.selftest`.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path


def _wait(condition, timeout_s: float) -> bool:  # noqa: ANN001 - a plain callable
    from PySide6.QtCore import QCoreApplication, QThread

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        QCoreApplication.processEvents()
        if condition():
            return True
        QThread.msleep(10)
    return bool(condition())


def check_window(checkpoint: Path | None = None, screenshot: Path | None = None) -> str:
    """Build the main window offscreen, show it, and (given a checkpoint) open it in the Inspect section.

    Raises on failure; returns a detail line. ``screenshot`` saves what the window shows.
    """
    from PySide6.QtWidgets import QApplication

    if QApplication.instance() is None and not os.environ.get("QT_QPA_PLATFORM"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"  # a self-test never pops a window up
    from effstudio.gui.app import application
    from effstudio.gui.collector import collecting_in_gui_thread
    from effstudio.gui.main_window import INSPECT, MainWindow
    from effstudio.gui.settings import file_settings

    app = application()
    platform = app.platformName()
    with tempfile.TemporaryDirectory(prefix="effstudio-selftest-gui-") as tmp, collecting_in_gui_thread():
        window = MainWindow(file_settings(str(Path(tmp) / "settings.ini")), out_dir=Path(tmp) / "run",
                            restore=False, isolate=False)
        try:
            window.resize(1100, 700)
            window.show()
            app.processEvents()
            if window.windowIcon().isNull():
                raise AssertionError("the window has no icon")
            detail = f"{platform} platform"
            if checkpoint is not None:
                if not window.open_path(str(checkpoint)) or window.current_section() != INSPECT:
                    raise AssertionError(f"{checkpoint.name} did not open in the Inspect section")
                panel = window.inspect_panel
                if not _wait(lambda: panel.state in ("ready", "failed"), 30.0):
                    raise AssertionError(f"the inspector is still reading {checkpoint.name} after 30 s")
                _wait(lambda: panel.stats_done, 15.0)  # let the statistics finish before closing
                if panel.state != "ready":
                    raise AssertionError(f"the inspector could not read {checkpoint.name}")
                detail += f", {checkpoint.name} inspected"
            image = window.grab()
            if image.isNull() or image.width() < 100:
                raise AssertionError("the window rendered nothing")
            if screenshot is not None:
                image.save(str(screenshot))
            return detail + f", {image.width()}x{image.height()} rendered"
        finally:
            window.close()
            window.deleteLater()
            app.processEvents()
