"""Panels that must not keep showing what no longer holds: the ETA after Stop, the Run box after another
run's settings are loaded, a tensor the filter hid, the inspection under a refused file."""

from __future__ import annotations

import numpy as np
import pytest

from effstudio.gui.metrics import DASH
from effstudio.gui.panels.inspect_panel import InspectPanel
from tests.inspect import files

from .conftest import tiny_config

TIMEOUT = 20_000


def test_stop_clears_the_eta_and_loading_settings_clears_the_run_box(window, qtbot):
    window.apply_config(tiny_config(**{"train.steps": 2000}))
    window.start_training()
    qtbot.waitUntil(lambda: window.progress.step > 3, timeout=TIMEOUT)
    assert window.monitor_panel.metrics.tiles["ETA"].value.text() != DASH
    window.stop_training()
    assert window.monitor_panel.metrics.tiles["ETA"].value.text() == DASH
    assert "ETA" not in window.train_panel.eta_label.text()
    qtbot.waitUntil(lambda: window.job is None, timeout=TIMEOUT)
    assert window.monitor_panel.metrics.tiles["ETA"].value.text() == DASH
    assert "ETA" not in window.train_panel.eta_label.text()
    assert window.train_panel.metrics.tiles["step"].value.text() != DASH  # the stopped run's figures stay

    window.open_run_config(tiny_config(**{"train.steps": 7}))
    tiles = window.train_panel.metrics.tiles
    assert {tile.value.text() for tile in tiles.values()} == {DASH}
    assert window.train_panel.run_dir.text() == "" and window.train_panel.eta_label.text() == ""
    assert window.train_panel.progress.format() == "idle" and window.train_panel.progress.value() == 0


@pytest.fixture
def panel(app, qtbot):
    widget = InspectPanel()
    qtbot.addWidget(widget)
    widget.resize(1200, 760)
    widget.show()
    yield widget
    widget.shutdown(10_000)


def open_and_wait(qtbot, panel, path):
    panel.open(path)
    qtbot.waitUntil(lambda: panel.state in ("ready", "failed"), timeout=TIMEOUT)


def test_a_filter_that_hides_the_shown_tensor_clears_the_side_pane(panel, qtbot, tmp_path):
    open_and_wait(qtbot, panel, files.safetensors_file(tmp_path / "m.safetensors"))
    name = "encoder.layer.1.output.dense.weight"
    assert panel.select_tensor(name)
    qtbot.waitUntil(lambda: panel.tensor_view.picture is not None and panel.tensor_view.picture.name == name,
                    timeout=TIMEOUT)
    with qtbot.waitSignal(panel.tensors.unlisted, timeout=1000):
        panel.tensors.filter.setText("query")
    assert panel.tensor_view.picture is None and panel.tensor_view.stack.currentIndex() == 0
    assert "filtered out" in panel.tensor_view.placeholder.text()
    assert panel.tensors.current_name() is None
    panel.tensors.filter.setText("output.dense")  # a filter that keeps the shown tensor keeps the pane
    assert panel.select_tensor(name)
    qtbot.waitUntil(lambda: panel.tensor_view.picture is not None, timeout=TIMEOUT)
    panel.tensors.filter.setText("layer.1.output")
    assert panel.tensor_view.picture is not None and panel.tensor_view.picture.name == name


def test_a_refused_file_leaves_the_open_inspection_and_its_diff(panel, qtbot, tmp_path):
    a = files.bert_tensors()
    b = dict(a, **{"classifier.weight": np.ones((2, 32), np.float32)})
    good = files.safetensors_file(tmp_path / "a.safetensors", a)
    open_and_wait(qtbot, panel, good)
    panel.compare_with(files.safetensors_file(tmp_path / "b.safetensors", b))
    qtbot.waitUntil(lambda: panel.diff_view.done, timeout=TIMEOUT)
    rows = panel.diff_view.model.rowCount()
    bad = tmp_path / "empty.pt"
    bad.write_bytes(b"")
    open_and_wait(qtbot, panel, bad)
    assert panel.state == "ready" and panel.inspected is not None and panel.inspected.path == good
    assert not panel.error_banner.isHidden()
    banner = panel.error_banner.text()
    assert "empty.pt cannot be inspected</b>" in banner and "a.safetensors stays open" in banner and "empty" in banner
    assert panel.stack.currentIndex() == 1 and set(panel.tensors.model.leaves) == set(a)
    assert panel.diff_view.model.rowCount() == rows
    assert panel.subtitle.text() == str(good)
