"""The Inspect section in the window: drop a file, `effstudio PATH`, recent files, Open in lab, bad files."""

from __future__ import annotations

import torch
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from effstudio.gui.main_window import INSPECT, MODEL
from tests.inspect import files

TIMEOUT = 15_000


def wait_idle(qtbot, panel):
    qtbot.waitUntil(lambda: not panel.busy, timeout=TIMEOUT)


def test_drop_on_the_window_opens_inspect(window, qtbot, tmp_path):
    path = files.onnx_model(tmp_path / "tiny.onnx")
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(QPointF(200, 200), Qt.DropAction.CopyAction, data, Qt.MouseButton.NoButton,
                       Qt.KeyboardModifier.NoModifier)
    window.dropEvent(event)
    assert window.current_section() == INSPECT
    panel = window.inspect_panel
    qtbot.waitUntil(lambda: panel.state == "ready", timeout=TIMEOUT)
    assert panel.summary.tiles["format"].value.text() == "onnx"
    assert "MatMul" in panel.details.toPlainText()
    window.fill_recent_menu()
    assert [a.text() for a in window.recent_menu.actions()][0] == str(path)
    wait_idle(qtbot, panel)


def test_a_path_given_at_start_opens_in_inspect(window, qtbot, tmp_path):
    path = files.safetensors_file(tmp_path / "m.safetensors")
    assert window.open_path(path)  # what `effstudio PATH` (and "Open with") calls
    assert window.current_section() == INSPECT
    qtbot.waitUntil(lambda: window.inspect_panel.state == "ready", timeout=TIMEOUT)
    wait_idle(qtbot, window.inspect_panel)


def test_a_malicious_drop_leaves_the_window_working(window, qtbot, tmp_path):
    marker = tmp_path / "PWNED"
    evil = files.malicious_files(tmp_path / "evil", marker)[0]
    assert window.open_path(evil)
    panel = window.inspect_panel
    qtbot.waitUntil(lambda: panel.state == "failed", timeout=TIMEOUT)
    assert "refused" in panel.error_banner.text() and not marker.exists()
    window.show_section(MODEL)  # the rest of the window still answers
    assert window.build_config().model_type == "transformer"
    window.fill_recent_menu()
    assert str(evil) not in [a.text() for a in window.recent_menu.actions()]


def test_open_in_lab_loads_the_checkpoint_settings(window, qtbot, tmp_path):
    from effstudio.engine.checkpoint import save_checkpoint

    from .conftest import tiny_config

    config = tiny_config(**{"model.d_model": 48, "train.steps": 9})
    path = save_checkpoint(tmp_path / "checkpoint.safetensors", torch.nn.Linear(2, 2), config, step=9)
    window.inspect_path(path)
    panel = window.inspect_panel
    qtbot.waitUntil(lambda: panel.state == "ready", timeout=TIMEOUT)
    assert panel.lab_button.isVisibleTo(panel) and panel.resume_button.isVisibleTo(panel)
    assert "effstudio transformer" in panel.architecture.text()
    panel.lab_button.click()
    assert window.current_section() == MODEL
    assert window.build_config().model.d_model == 48 and window.build_config().train.steps == 9
    assert window.compress_panel.source == path  # ready to prune, quantize, distill or export
    assert panel.copy_resume_command().startswith("effstudio train --resume ")
    wait_idle(qtbot, panel)
