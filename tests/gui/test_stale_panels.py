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


def test_clicking_a_changed_tensor_in_the_diff_overlays_both_histograms_and_maps_the_difference(
        panel, qtbot, tmp_path):
    a = files.bert_tensors()
    name = "encoder.layer.0.output.dense.weight"
    b = dict(a)
    changed = a[name].copy()
    changed[2, 5] += 1.0
    changed[abs(changed) < 0.01] = 0.0  # a pruned look: more zeros in B
    b[name] = changed
    b["classifier.weight"] = np.ones((2, 32), np.float32)
    open_and_wait(qtbot, panel, files.safetensors_file(tmp_path / "a.safetensors", a))
    panel.compare_with(files.safetensors_file(tmp_path / "b.safetensors", b))
    qtbot.waitUntil(lambda: panel.diff_view.done, timeout=TIMEOUT)
    view = panel.diff_view.picture
    with qtbot.waitSignal(panel.diff_view.tensor_clicked, timeout=1000) as clicked:
        assert panel.diff_view.select(name)
    assert clicked.args == [name]
    qtbot.waitUntil(lambda: view.picture is not None and view.picture.name == name, timeout=TIMEOUT)
    edges_a, counts_a = view.bars_a.getData()[0], view.picture.counts_a
    assert counts_a.sum() == a[name].size and view.picture.counts_b.sum() == a[name].size
    assert view.bars_a.getData()[0][0] == view.bars_b.getData()[0][0] == edges_a[0]  # the same bins
    difference = view.image.image
    expected = changed - a[name]
    assert difference.shape == expected.shape and np.allclose(difference, expected, atol=1e-6)
    low, high = view.colorbar.levels()
    assert low == -high
    assert "B \u2212 A" in view.title.text()
    assert view.heatmap.readout.show_at(5.5, 2.5).startswith("value 1")
    panel.diff_view.select("classifier.weight")  # only in B: nothing element-wise to draw
    assert view.picture is None and "only in B" in view.placeholder.text()
