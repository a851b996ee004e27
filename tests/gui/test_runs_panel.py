"""The Runs section: the table fills, filters and sorts; two selected runs give two curves; editing
asks before deleting; a config opens in the forms; a run continues from its checkpoint; and a run
started from the window is recorded once."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QInputDialog, QMessageBox

from effstudio.engine.events import CheckpointEvent, DoneEvent, EvalEvent, StartEvent, StepEvent
from effstudio.engine.run_config import RunConfig
from effstudio.gui.panels.runs_panel import RunsPanel
from effstudio.gui.panels.runs_table import COLUMNS
from effstudio.runs.recorder import record_run
from effstudio.runs.store import RunStore

from .conftest import tiny_config


def events(run_dir, steps, scale, status="finished", checkpoint=None):
    yield StartEvent(str(run_dir), "cpu", 1000, steps, 0)
    for step in range(1, steps + 1):
        yield StepEvent(step, steps, scale / step, 1e-3, 1000.0, 100.0, 1.0, 0.1 * step)
        if step % 5 == 0:
            yield EvalEvent(step, scale / step, min(1.0, step / steps))
    if checkpoint is not None:
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        checkpoint.write_bytes(b"weights")
        yield CheckpointEvent(steps, str(checkpoint))
    yield DoneEvent(steps, scale / steps, 0.5, str(checkpoint) if checkpoint else None, 1.0, status)


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "runs.sqlite"
    config = tiny_config()
    listops = RunConfig.create("transformer", "listops", {"train.steps": 20})
    list(record_run(events(tmp_path / "r1", 20, 3.0, checkpoint=tmp_path / "r1" / "checkpoint.safetensors"),
                    listops, path=path, name="alpha"))
    list(record_run(events(tmp_path / "r2", 10, 2.0), config, path=path, name="beta"))
    list(record_run(events(tmp_path / "r3", 15, 5.0, status="failed"), config, path=path, name="gamma"))
    return path


@pytest.fixture
def panel(app, qtbot, db):
    widget = RunsPanel(store_path=db)
    qtbot.addWidget(widget)
    widget.resize(1000, 700)
    widget.show()
    widget.refresh()
    yield widget
    widget.close_store()


def column(panel, name):
    index = COLUMNS.index(name)
    return [panel.table.proxy.index(row, index).data() for row in range(panel.table.proxy.rowCount())]


def test_the_table_fills_newest_first(panel):
    assert panel.table.records.rowCount() == 3
    assert column(panel, "Name") == ["gamma", "beta", "alpha"]
    assert column(panel, "Status") == ["failed", "finished", "finished"]
    assert column(panel, "Steps") == ["15 / 15", "10 / 10", "20 / 20"]
    assert panel.count_label.text() == "3 runs"
    assert panel.stack.currentIndex() == 1


def test_sorting_by_a_number_column_is_numeric(panel):
    panel.table.sortByColumn(COLUMNS.index("Final loss"), Qt.SortOrder.AscendingOrder)
    assert column(panel, "Name") == ["alpha", "beta", "gamma"]  # 0.15 < 0.2 < 0.333


def test_filter_by_text_and_status(panel):
    panel.filter_edit.setText("listops")
    assert column(panel, "Name") == ["alpha"]
    panel.filter_edit.setText("copy ga")
    assert column(panel, "Name") == ["gamma"]
    panel.filter_edit.clear()
    panel.status_box.setCurrentIndex(panel.status_box.findData("failed"))
    assert column(panel, "Name") == ["gamma"]
    assert panel.count_label.text() == "1 of 3 runs"


def test_selecting_two_runs_overlays_two_curves(panel):
    assert panel.compare.currentIndex() == 0  # a hint until something is selected
    panel.select_ids([1, 2])
    assert sorted(panel.compare.curves["loss"]) == [1, 2]
    assert panel.compare.currentIndex() == 1
    x, y = panel.compare.curves["loss"][2].getData()
    assert list(x) == list(range(1, 11))
    labels = [label.text for _, label in panel.compare.legend.items]
    assert labels == ["#2 beta", "#1 alpha"]
    panel.compare.set_metrics(["val_accuracy"])
    x, y = panel.compare.curves["val_accuracy"][1].getData()
    assert list(x) == [5, 10, 15, 20] and y[-1] == pytest.approx(100.0)
    assert panel.selection_label.text() == "2 runs selected"


def test_delete_asks_first(panel, monkeypatch, tmp_path):
    answers = []

    def answer(box):
        answers.append(box.text())
        return answers_to_give.pop(0)

    answers_to_give = [QMessageBox.StandardButton.Cancel, QMessageBox.StandardButton.Yes]
    monkeypatch.setattr(QMessageBox, "exec", answer)
    panel.select_ids([1])
    assert panel.delete_button.isEnabled()
    assert not panel.delete_selected()
    assert panel.table.records.rowCount() == 3 and (tmp_path / "r1" / "checkpoint.safetensors").exists()
    assert "Delete 1 run (#1 alpha) and 1 file(s)" in answers[0]
    assert panel.delete_selected()
    assert panel.table.records.rowCount() == 2
    assert not (tmp_path / "r1").exists()


def test_rename_and_tag(panel, monkeypatch):
    panel.select_ids([2])
    monkeypatch.setattr(QInputDialog, "getText", lambda *args, **kwargs: ("renamed", True))
    assert panel.rename_selected()
    assert column(panel, "Name")[1] == "renamed"
    monkeypatch.setattr(QInputDialog, "getText", lambda *args, **kwargs: ("a, b", True))
    assert panel.tag_selected()
    assert column(panel, "Tags")[1] == "a, b"
    assert panel.selected_ids() == [2]  # the selection survives the refresh
    panel.filter_edit.setText("b")
    assert "renamed" in column(panel, "Name")


def test_open_config_and_continue(panel, qtbot, monkeypatch, tmp_path):
    panel.select_ids([1])
    with qtbot.waitSignal(panel.open_config) as opened:
        assert panel.open_selected_config()
    assert opened.args[0].task_name == "listops" and opened.args[0].config.train.steps == 20
    monkeypatch.setattr(QInputDialog, "getInt", lambda *args, **kwargs: (30, True))  # it ended at step 20
    with qtbot.waitSignal(panel.continue_run) as continued:
        assert panel.continue_selected()
    config, checkpoint, run_dir = continued.args
    assert config.train.steps == 30
    assert checkpoint == str(tmp_path / "r1" / "checkpoint.safetensors") and run_dir == str(tmp_path / "r1")
    panel.select_ids([2])
    assert not panel.continue_selected()  # no checkpoint


def test_an_empty_store_says_so(app, qtbot, tmp_path):
    widget = RunsPanel(store_path=tmp_path / "empty.sqlite")
    qtbot.addWidget(widget)
    widget.refresh()
    assert widget.stack.currentIndex() == 0 and "No runs recorded yet" in widget.empty.text()
    widget.close_store()


def test_a_run_from_the_window_is_recorded_once(window, qtbot, tmp_path):
    from effstudio.gui.main_window import RUNS

    job = window.start_training()
    with qtbot.waitSignal(job.finished, timeout=60_000):
        pass
    qtbot.waitUntil(lambda: window.job is None, timeout=10_000)
    with RunStore() as store:
        runs = [r for r in store.list_runs() if r.run_dir == str(tmp_path / "run")]
    assert len(runs) == 1 and (runs[0].source, runs[0].status) == ("gui", "finished")
    window.show_section(RUNS)
    ids = [window.runs_panel.table.proxy.index(r, 0).data() for r in range(window.runs_panel.table.proxy.rowCount())]
    assert str(runs[0].id) in ids

    # Continue from checkpoint: the same record goes on, in the same folder
    config = RunConfig.from_dict(runs[0].config).with_overrides({"train.steps": 24})
    from effstudio.engine.run_plan import QuantizeStep

    window.set_compress_steps((QuantizeStep(quantize="fp16"),))  # of a config loaded since: not this run's
    job = window.continue_run(config, str(tmp_path / "run" / "checkpoint.safetensors"), str(tmp_path / "run"))
    assert window.compress_steps == ()  # the continued run takes the steps of its own folder (none)
    with qtbot.waitSignal(job.finished, timeout=60_000) as finished:
        pass
    assert finished.args == ["finished"]
    assert window.last_done.status == "finished" and window.last_done.steps == 24
    qtbot.waitUntil(lambda: window.job is None, timeout=10_000)
    with RunStore() as store:
        run = store.get_run(runs[0].id)
        assert (run.status, run.steps) == ("finished", 24)
        assert store.metrics(run.id)["loss"].steps.tolist() == list(range(1, 25))


def test_copy_as_torchrun_command(window, app):
    import shlex

    window.apply_config(tiny_config(**{"train.lr": 3e-4}))
    text = window.copy_torchrun_command()
    words = shlex.split(text)
    assert words[:7] == ["torchrun", "--standalone", "--nproc_per_node", "gpu", "-m", "effstudio", "train"]
    assert "train.lr=0.0003" in words and "model.d_model=32" in words
    assert "train.device=cpu" not in words  # each process takes its GPU
    assert app.clipboard().text() == text


def test_a_models_own_metrics_can_be_compared(app, qtbot, tmp_path):
    path = tmp_path / "extras.sqlite"

    def stream():
        yield StartEvent(str(tmp_path / "u"), "cpu", 1, 3, 0)
        for step in (1, 2, 3):
            yield StepEvent(step, 3, 1.0, 1e-3, 1.0, 1.0, 1.0, 0.0, metrics={"ponder_mean": float(step)})

    list(record_run(stream(), tiny_config(), path=path))
    widget = RunsPanel(store_path=path)
    qtbot.addWidget(widget)
    widget.refresh()
    widget.select_ids([1])
    assert widget.compare.metric_actions["ponder_mean"].text() == "Ponder mean"
    widget.compare.set_metrics(["ponder_mean"])
    assert list(widget.compare.curves["ponder_mean"][1].getData()[1]) == [1.0, 2.0, 3.0]
    widget.close_store()


def test_several_metrics_at_once_share_the_x_axis(panel, qtbot):
    panel.select_ids([1, 2])
    with qtbot.waitSignal(panel.compare.changed):
        panel.compare.set_metrics(["loss", "val_accuracy", "rss_mb"])
    assert list(panel.compare.plots) == ["loss", "val_accuracy", "rss_mb"]
    assert sorted(panel.compare.curves["loss"]) == sorted(panel.compare.curves["val_accuracy"]) == [1, 2]
    assert panel.compare.curves["rss_mb"] == {}  # these runs recorded no memory samples
    plots = panel.compare.plots
    assert plots["val_accuracy"].getViewBox().linkedView(0) is plots["loss"].getViewBox()
    low, high = plots["val_accuracy"].getViewBox().viewRange()[1]
    assert 0 <= low < high <= 100  # accuracy in percent, never below zero
    assert plots["rss_mb"].getAxis("left").labelText == "memory (MB)"
    assert panel.compare.metrics_button.text() == "Metrics: Training loss and 2 more"
    assert "Validation accuracy" in panel.compare.metrics_button.toolTip()


def test_the_x_axis_is_the_step_the_relative_time_or_the_wall_clock(panel):
    import time

    panel.select_ids([1])
    steps, _ = panel.compare.curves["loss"][1].getData()
    assert list(steps) == list(range(1, 21))
    panel.compare.set_x_axis("relative")
    seconds = panel.compare.curves["loss"][1].xData  # all the data (getData is what the view shows)
    assert seconds[0] == 0 and (np.diff(seconds) >= 0).all() and seconds[-1] < 60
    assert panel.compare.plots["loss"].getAxis("bottom").labelText == "time since the run's start (s)"
    panel.compare.set_x_axis("wall")
    wall = panel.compare.curves["loss"][1].xData
    assert abs(wall[-1] - time.time()) < 600
    assert isinstance(panel.compare.plots["loss"].getAxis("bottom"), pg.DateAxisItem)


def test_the_smoothing_slider_smooths_the_noisy_metrics(panel):
    from effstudio.gui.plots.curves import ema

    panel.select_ids([2])
    panel.compare.smoothing.setValue(0)
    _, raw = panel.compare.curves["loss"][2].getData()
    assert list(raw) == pytest.approx([2.0 / step for step in range(1, 11)])
    panel.compare.smoothing.setValue(50)
    assert panel.compare.smoothing_value.text() == "0.50"
    _, smooth = panel.compare.curves["loss"][2].getData()
    assert list(smooth) == pytest.approx(list(ema(np.asarray(raw), 0.5)[0]))
    panel.compare.set_metrics(["val_loss"])  # evaluations are few: not smoothed
    _, values = panel.compare.curves["val_loss"][2].getData()
    assert list(values) == pytest.approx([2.0 / 5, 2.0 / 10])
