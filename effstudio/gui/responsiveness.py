"""`effstudio bench responsiveness`: how late the GUI thread runs while a model trains.

A timer on the GUI thread fires every PROBE_MS; each tick records how much later
than planned it ran. Training, signal delivery and plot redraws all delay it, so
the percentiles say how responsive the window feels during a run. The same probe
on the idle window first gives the machine's own baseline (a busy or virtualised
machine delays even an idle event loop), and ``gui_busy`` is the share of the run
the GUI thread spent on the CPU.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QEventLoop, Qt, QTimer

PROBE_MS = 10
BASELINE_S = 1.0


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
        self.samples = []
        self._last = time.perf_counter()
        self.timer.start()

    def stop(self) -> None:
        self.timer.stop()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.samples.append(max(0.0, (now - self._last) * 1000 - self.interval_ms))
        self._last = now

    def summary(self, prefix: str = "") -> dict[str, float]:
        values = np.asarray(self.samples or [0.0])
        return {
            f"{prefix}p50_ms": float(np.percentile(values, 50)),
            f"{prefix}p99_ms": float(np.percentile(values, 99)),
            f"{prefix}max_ms": float(values.max()),
        }


def _spin(seconds: float) -> None:
    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def measure_responsiveness(steps: int = 200, *, timeout_s: float = 600.0, isolate: bool = True) -> dict:
    """Train a small model in the window for ``steps`` steps while probing the GUI thread.

    Returns p50_ms, p99_ms and max_ms of the probe's lateness during the run, the
    idle baseline (idle_p50_ms, idle_p99_ms, idle_max_ms), gui_busy (CPU share of
    the GUI thread), samples, steps, status, seconds and whether training ran in a
    child process (isolated).
    """
    from PySide6.QtWidgets import QApplication

    if QApplication.instance() is None:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from effstudio.gui import training_process
    from effstudio.gui.app import application
    from effstudio.gui.collector import collecting_in_gui_thread
    from effstudio.gui.demo import demo_config
    from effstudio.gui.main_window import MainWindow
    from effstudio.gui.screenshot import wait_until_done
    from effstudio.gui.settings import file_settings

    app = application()
    with tempfile.TemporaryDirectory(prefix="effstudio-responsiveness-") as tmp, collecting_in_gui_thread():
        window = MainWindow(file_settings(str(Path(tmp) / "settings.ini")), out_dir=Path(tmp) / "run",
                            restore=False, isolate=isolate)
        window.resize(1280, 800)
        window.apply_config(demo_config(steps).with_overrides({"train.attention_every": max(1, steps // 10)}))
        window.show()
        if isolate:
            training_process.wait_for_spare()
        probe = LatenessProbe()
        probe.start()
        _spin(BASELINE_S)
        probe.stop()
        baseline = probe.summary("idle_")
        probe.start()
        begin, cpu_begin = time.perf_counter(), time.thread_time()
        if window.start_training() is None:
            window.close()
            raise RuntimeError("the measurement run could not start")
        wait_until_done(window, timeout_s)
        probe.stop()
        seconds = time.perf_counter() - begin
        busy = (time.thread_time() - cpu_begin) / seconds if seconds > 0 else 0.0
        done = window.last_done
        window.close()
        window.deleteLater()
        app.processEvents()
    result: dict = probe.summary()
    result.update(baseline)
    result.update({
        "gui_busy": busy,
        "samples": len(probe.samples),
        "steps": done.steps if done is not None else 0,
        "status": done.status if done is not None else "timeout",
        "seconds": seconds,
        "isolated": isolate,
        "child_nice": training_process.CHILD_NICE if isolate else None,
    })
    return result
