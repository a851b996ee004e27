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


def test_a_preview_of_another_task_that_ends_after_the_change_is_never_shown(app, qtbot, monkeypatch):
    """A preview that finishes after the task changed belongs to the old task: its table, summary and
    columns must not appear over the new task's (a dropped CSV showed the previous task's table)."""
    gate = threading.Event()
    calls: list[str] = []
    original = data_panel.build_preview

    def slow(registry, task_name, config, count=8):
        calls.append(task_name)
        if len(calls) == 1:
            gate.wait(10)
            return Preview("the old task", [("in", "out")])
        return original(registry, task_name, config, count)

    monkeypatch.setattr(data_panel, "build_preview", slow)
    panel = shown_panel(qtbot)
    panel.show()
    qtbot.waitUntil(lambda: len(calls) == 1, timeout=10_000)
    shown: list[str] = []
    set_text = panel.summary.setText
    panel.summary.setText = lambda text: (shown.append(text), set_text(text))  # every summary shown
    panel.task_box.setCurrentIndex(panel.task_box.findData("listops"))  # while the old preview runs
    gate.set()
    qtbot.waitUntil(lambda: len(calls) == 2 and panel.preview_settled, timeout=30_000)
    assert calls[1] == "listops"
    assert "the old task" not in shown and shown and panel.summary.text() == shown[-1]
    assert panel.table.rowCount() > 0 and panel.table.item(0, 0).text() != "in"
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


def test_an_image_task_previews_its_images_in_a_grid_with_their_labels(app, qtbot):
    from effstudio.engine.build import build_task
    from effstudio.engine.run_config import RunConfig

    panel = shown_panel(qtbot)
    panel.resize(1100, 700)
    panel.task_box.setCurrentIndex(panel.task_box.findData("digits"))
    panel.form.set_value("val_size", 12)
    with qtbot.waitSignal(panel.preview_ready, timeout=30_000):
        panel.show()
    qtbot.waitUntil(lambda: panel.preview_settled, timeout=30_000)
    assert panel.image_grid.isVisible() and not panel.table.isVisible()
    task = build_task(RunConfig.create("vit", "digits", {"task.val_size": 12}))
    split = task.split("val")
    count = len(panel.image_grid.cells)
    assert 0 < count <= 12
    names = task.spec.class_names
    assert panel.image_grid.labels() == [names[int(t)] if names else str(int(t)) for t in split.targets[:count]]
    pixmap = panel.image_grid.cells[0][0].pixmap()
    assert pixmap.width() > 16 and not pixmap.isNull()
    picture = pixmap.toImage().scaled(16, 16)
    expected = split.inputs[0][0].numpy()  # (H, W) grey in [0, 1]
    drawn = [[picture.pixelColor(x, y).value() / 255 for x in range(16)] for y in range(16)]
    assert abs(sum(map(sum, drawn)) / 256 - float(expected.mean())) < 0.05
    assert panel.preview_status.text() == f"First {count} validation images with their labels."
    panel.task_box.setCurrentIndex(panel.task_box.findData("listops"))  # a token task: the table again
    assert not panel.image_grid.isVisible() and panel.table.isVisible()
    assert panel.shutdown(60_000)
