"""`effstudio bench responsiveness`: how late the GUI thread runs while a model trains.

A timer on the GUI thread fires every PROBE_MS; each tick records how much later
than planned it ran. Training, signal delivery and plot redraws all delay it,
so the percentiles say how responsive the window feels during a run.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, QTimer

PROBE_MS = 10


class LatenessProbe:
    """A precise timer on the calling thread that records its own lateness in ms."""

    def __init__(self, interval_ms: int = PROBE_MS):
        self.interval_ms = interval_ms
        self.samples: list[float] = []
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self._last = 0.0

    def start(self) -> None:
        self._last = time.perf_counter()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.samples.append(max(0.0, (now - self._last) * 1000 - self.interval_ms))
        self._last = now

    def summary(self) -> dict[str, float]:
        values = np.asarray(self.samples or [0.0])
        return {
            "p50_ms": float(np.percentile(values, 50)),
            "p99_ms": float(np.percentile(values, 99)),
            "max_ms": float(values.max()),
        }


def measure_responsiveness(steps: int = 200, *, timeout_s: float = 600.0) -> dict:
    """Train a small model in the window for ``steps`` steps while probing the GUI thread.

    Returns p50_ms, p99_ms and max_ms of the probe's lateness, plus the number of
    samples, the steps trained and the wall time.
    """
    from PySide6.QtWidgets import QApplication

    if QApplication.instance() is None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from effstudio.gui.app import application
    from effstudio.gui.demo import demo_config
    from effstudio.gui.main_window import MainWindow
    from effstudio.gui.screenshot import wait_until_done
    from effstudio.gui.settings import file_settings

    app = application()
    with tempfile.TemporaryDirectory(prefix="effstudio-responsiveness-") as tmp:
        window = MainWindow(file_settings(str(Path(tmp) / "settings.ini")), out_dir=Path(tmp) / "run",
                            restore=False)
        window.resize(1280, 800)
        window.apply_config(demo_config(steps).with_overrides({"train.attention_every": max(1, steps // 10)}))
        window.show()
        app.processEvents()
        probe = LatenessProbe()
        begin = time.perf_counter()
        if window.start_training() is None:
            window.close()
            raise RuntimeError("the measurement run could not start")
        probe.start()
        wait_until_done(window, timeout_s)
        probe.stop()
        seconds = time.perf_counter() - begin
        done = window.last_done
        window.close()
        window.deleteLater()
        app.processEvents()
    result: dict = probe.summary()
    result.update({
        "samples": len(probe.samples),
        "steps": done.steps if done is not None else 0,
        "status": done.status if done is not None else "timeout",
        "seconds": seconds,
    })
    return result
