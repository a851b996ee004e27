"""`effstudio gui --screenshot FILE.png`: a real short run, offscreen, saved as a PNG."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PySide6.QtCore import QEventLoop, QTimer


def _offscreen_if_headless() -> None:
    from PySide6.QtWidgets import QApplication

    if QApplication.instance() is None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def wait_until_done(window: object, timeout_s: float) -> None:
    """Run the event loop until the window's job has ended (thread finished) or time runs out."""
    loop = QEventLoop()
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: loop.quit() if getattr(window, "job", None) is None else None)
    timer.start()
    deadline = QTimer()
    deadline.setSingleShot(True)
    deadline.timeout.connect(loop.quit)
    deadline.start(int(timeout_s * 1000))
    loop.exec()
    timer.stop()
    deadline.stop()


def save_screenshot(path: str | Path, steps: int = 60, *, timeout_s: float = 600.0, isolate: bool = True) -> None:
    """Train a small model in the window for ``steps`` steps, then save the Monitor section to ``path``."""
    _offscreen_if_headless()
    from effstudio.gui.app import application
    from effstudio.gui.collector import collecting_in_gui_thread
    from effstudio.gui.demo import demo_config
    from effstudio.gui.main_window import MONITOR, MainWindow
    from effstudio.gui.settings import file_settings

    app = application()
    with tempfile.TemporaryDirectory(prefix="effstudio-screenshot-") as tmp, collecting_in_gui_thread():
        window = MainWindow(file_settings(str(Path(tmp) / "settings.ini")), out_dir=Path(tmp) / "run",
                            restore=False, isolate=isolate)
        window.resize(1280, 800)
        window.apply_config(demo_config(steps))
        window.show()
        app.processEvents()
        if window.start_training() is None:
            problems = "; ".join(f"{e.field}: {e.message}" for e in window.config_problems)
            window.close()
            raise RuntimeError(f"the demo run could not start: {problems}")
        wait_until_done(window, timeout_s)
        done = window.last_done
        window.show_section(MONITOR)
        window.monitor_panel.curves.refresh()
        for _ in range(5):
            app.processEvents()
        image = window.grab()
        window.close()
        window.deleteLater()
        app.processEvents()
    if done is None or done.status == "failed":
        reason = done.error if done is not None else "it did not finish in time"
        raise RuntimeError(f"the demo run failed: {reason}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not image.save(str(path)):
        raise OSError(f"cannot write {path}")
