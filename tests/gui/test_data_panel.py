"""The Data section's preview job: its examples, a task that cannot be built, a preview gone stale, progress."""

from __future__ import annotations

import threading
import time

from effstudio.gui.panels import data_panel
from effstudio.gui.panels.data_panel import PREVIEW, DataPanel, Preview
from effstudio.registry import get_registry
from effstudio.tasks.progress import report


def shown_panel(qtbot) -> DataPanel:
    panel = DataPanel(get_registry())
    qtbot.addWidget(panel)
    return panel


def test_a_task_that_cannot_be_built_says_why(app, qtbot, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("no such file")

    monkeypatch.setattr(data_panel, "build_preview", broken)
    panel = shown_panel(qtbot)
    with qtbot.waitSignal(panel.preview_ready, timeout=10_000):
        panel.show()
    assert panel.preview_status.text() == "Cannot build the task: OSError: no such file"
    assert panel.refresh_button.isEnabled() and panel.job_of(PREVIEW) is None
    assert panel.shutdown(5_000)


def test_a_preview_gone_stale_while_it_ran_is_built_again(app, qtbot, monkeypatch):
    gate = threading.Event()
    calls: list[str] = []

    def slow(registry, task_name, config, count=8):
        calls.append(task_name)
        gate.wait(10)
        return Preview(f"preview {len(calls)}", [("in", "out")])

    monkeypatch.setattr(data_panel, "build_preview", slow)
    panel = shown_panel(qtbot)
    panel.show()
    qtbot.waitUntil(lambda: len(calls) == 1, timeout=10_000)
    assert not panel.refresh_button.isEnabled()
    panel.refresh_preview()  # one preview at a time
    panel.form.changed.emit("a setting")  # changed while the preview ran: it is stale
    assert len(calls) == 1
    gate.set()
    qtbot.waitUntil(lambda: len(calls) == 2 and panel.job_of(PREVIEW) is None, timeout=10_000)
    assert panel.summary.text() == "preview 2" and panel.table.rowCount() == 1
    assert panel.refresh_button.isEnabled()
    assert panel.shutdown(5_000)


def test_a_long_read_of_settings_gone_stale_ends_at_its_next_progress_report(app, qtbot, monkeypatch):
    started: list[float] = []
    ended: list[str] = []

    def long_read(registry, task_name, config, count=8):
        started.append(time.monotonic())
        try:
            for i in range(1000):  # ten seconds unless stopped
                report("reading big.csv", i, 1000)
                time.sleep(0.01)
        finally:
            ended.append("reading")
        return Preview("read to the end", [])

    monkeypatch.setattr(data_panel, "build_preview", long_read)
    panel = shown_panel(qtbot)
    shown: list[tuple[str, float, float]] = []
    panel.data_progress.connect(lambda *report: shown.append(report))
    panel.show()
    qtbot.waitUntil(lambda: len(shown) >= 2, timeout=10_000)
    assert not panel.progress.isHidden() and panel.progress.format() == "reading big.csv \u00b7 %p%"
    panel.form.changed.emit("a setting")  # the read in progress is of stale settings
    qtbot.waitUntil(lambda: len(started) == 2, timeout=5_000)  # stopped, and started again at once
    assert ended == ["reading"] and started[1] - started[0] < 5
    assert panel.summary.text() != "read to the end"
    assert panel.shutdown(5_000)
