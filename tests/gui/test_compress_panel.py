"""The Compress section: a prune job run from the panel, its result measured into the compare table."""

from __future__ import annotations

import pytest
import torch
from PySide6.QtCore import Qt

from effstudio.gui.panels.compress_panel import CompressPanel
from effstudio.registry import get_registry
from tests.compress.conftest import make_checkpoint

TIMEOUT = 60_000


@pytest.fixture
def panel(qtbot):
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # quick, steady timings on a busy machine
    widget = CompressPanel(get_registry())
    qtbot.addWidget(widget)
    widget.resize(1280, 800)
    yield widget
    widget.shutdown()
    torch.set_num_threads(previous)


def test_a_prune_job_from_the_panel_fills_the_compare_table(panel, qtbot, tmp_path):
    source = make_checkpoint(tmp_path / "tiny.safetensors")
    panel.set_checkpoint(source)
    assert panel.forms["prune"].editor("out").text().endswith("tiny-magnitude-50.safetensors")
    assert panel.run_button.isEnabled()
    panel.forms["prune"].editor("prune").setCurrentText("heads")
    assert panel.start_operation("prune")
    # the prune job, then the compare job that measures the original and the result
    qtbot.waitUntil(lambda: len(panel.rows) == 2 and not panel.running, timeout=TIMEOUT)
    assert panel.error is None and panel.problem.isHidden()
    out = tmp_path / "tiny-heads-50.safetensors"
    assert out.is_file()
    names = [panel.table.item(r, 0).text() for r in range(panel.table.rowCount())]
    paths = [panel.table.item(r, 0).data(Qt.ItemDataRole.UserRole) for r in range(panel.table.rowCount())]
    assert "heads 50%" in names and str(out) in paths
    assert "original" in names
    assert len(panel.live.points["sparsity"]) == 2  # the accuracy-vs-sparsity curve: the original and the pruned point
    rows = {row.name: row for row in panel.ordered_rows()}
    assert rows["tiny-heads-50.safetensors"].params < rows["tiny.safetensors"].params
    assert "heads 50%" in panel.export_text("md")
    assert panel.export_text("csv").splitlines()[0].startswith("name,params")


def test_bad_input_is_shown_in_the_panel(panel, qtbot, tmp_path):
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    panel.set_checkpoint(tmp_path / "junk.safetensors")
    assert "Not an effstudio checkpoint" in panel.source_info.text()
    assert panel.start_operation("quantize")
    qtbot.waitUntil(lambda: not panel.running and panel.job is None, timeout=TIMEOUT)
    assert not panel.problem.isHidden() and panel.error
    assert not panel.rows


def test_the_tabs_are_the_steps_settings_and_a_bad_one_is_refused(panel, tmp_path):
    from effstudio.engine.run_plan import ExportStep, PruneStep, QuantizeStep

    source = make_checkpoint(tmp_path / "tiny.safetensors")
    panel.set_checkpoint(source)
    assert panel.forms["prune"].config() == PruneStep(out=str(tmp_path / "tiny-magnitude-50.safetensors"))
    assert panel.forms["export"].config() == ExportStep(check=True, out=str(tmp_path / "tiny.onnx"))
    quantize = panel.forms["quantize"]
    quantize.editor("quantize").setCurrentText("onnx-int8")  # the suggested file follows the method
    assert quantize.config() == QuantizeStep(quantize="onnx-int8", out=str(tmp_path / "tiny-onnx-int8.onnx"))
    student = panel.forms["distill"].config()
    assert (student.steps, student.student_settings()) == (200, ("model.d_model=64", "model.heads=2", "model.layers=2",
                                                                 "model.attention=sdpa"))
    amount = panel.forms["prune"].editor("amount")
    amount.setText("1.5")
    amount.textEdited.emit("1.5")
    assert "must be <= 1.0" in panel.forms["prune"].error_text("amount")
    assert not panel.start_operation("prune") and not panel.running
    assert "amount" in panel.problem.text() and not panel.problem.isHidden()
