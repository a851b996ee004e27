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


def test_an_export_in_the_window_joins_its_run_and_shows_its_check(panel, qtbot, tmp_path):
    from effstudio.gui.panels.compress_views import COLUMNS
    from effstudio.runs.store import RunStore

    source = make_checkpoint(tmp_path / "run" / "checkpoint.safetensors")
    with RunStore() as store:  # a recorded run whose checkpoint the window compresses
        run_id = store.create_run(config={}, model_type="transformer", task="listops", total_steps=1)
        store.add_artifact(run_id, "checkpoint", str(source.absolute()))
    logged, stages = [], []
    panel.steps_log.connect(lambda level, message: logged.append(message))
    show_progress = panel._on_progress
    panel._on_progress = lambda event: (stages.append(event.stage), show_progress(event))
    panel.set_checkpoint(source)
    assert panel.start_operation("export")
    qtbot.waitUntil(lambda: len(panel.rows) == 2 and panel.job is None, timeout=TIMEOUT)
    assert panel.error is None
    onnx = source.parent / "checkpoint.onnx"
    with RunStore() as store:  # as `effstudio runs show ID --json` and Runs -> Files list them
        assert ("onnx", str(onnx.absolute())) in [(a.kind, a.path) for a in store.artifacts(run_id)]
    assert f"recorded as a file of run {run_id} (effstudio runs show {run_id})" in logged
    assert any(m.startswith("ONNX check passed: max |PyTorch - onnxruntime| = ") for m in logged)
    assert "ONNX check passed" in panel.status_label.text()  # still in view after the comparison
    assert {"exporting to ONNX", "evaluating the checkpoint", "evaluating the ONNX file"} <= set(stages)

    table = panel.table
    cells = {table.item(r, 0).text(): [table.item(r, c) for c in range(table.columnCount())]
             for r in range(table.rowCount())}
    original, exported = cells["original"], cells["ONNX"]
    check = exported[COLUMNS.index("ONNX check")]
    assert float(check.text()) < 1e-4 and check.toolTip().startswith("ONNX check passed")
    assert original[COLUMNS.index("ONNX check")].text() == "\u2014"
    assert original[COLUMNS.index("Params")].text() == exported[COLUMNS.index("Params")].text()
    assert exported[COLUMNS.index("Accuracy")].text().endswith("%")
    peak = original[COLUMNS.index("Peak MB")]
    assert float(peak.text()) > 0 and "weights excluded" in peak.toolTip()
    onnx_peak = exported[COLUMNS.index("Peak MB")]
    assert onnx_peak.text() == "\u2014" and "own memory arena" in onnx_peak.toolTip()
    # both variants timed together at the longest validation example, with a verdict on the spread
    lengths = {row.length for row in panel.ordered_rows()}
    assert len(lengths) == 1 and f"at {lengths.pop()} tokens" in panel.verdict_label.text()
    assert "(\u00d7" in original[COLUMNS.index("b1 p95")].text()

    # the original is measured: quantizing it does not evaluate it again, and the table is timed anew
    stages.clear()
    panel.tabs.setCurrentIndex(1)
    panel.forms["quantize"].editor("quantize").setCurrentText("dynamic-int8")
    assert panel.start_operation("quantize")
    qtbot.waitUntil(lambda: len(panel.rows) == 3 and panel.job is None, timeout=TIMEOUT)
    # only the new file is evaluated, in the job; the comparison reuses what the job measured
    assert {stage for stage in stages if stage.startswith("evaluating")} == {"evaluating the quantized model"}
    rows = panel.ordered_rows()
    assert {row.reused for row in rows} == {("accuracy",)}
    assert len({row.length for row in rows}) == 1


def test_a_chosen_length_times_every_variant(panel, qtbot, tmp_path):
    source = make_checkpoint(tmp_path / "tiny.safetensors")
    panel.length_box.setValue(16)
    panel.add_variants([source])
    qtbot.waitUntil(lambda: len(panel.rows) == 1 and panel.job is None, timeout=TIMEOUT)
    assert panel.ordered_rows()[0].length == 16
    assert "at 16 tokens" in panel.verdict_label.text()


def test_accuracy_is_a_percentage_in_every_compress_view(panel):
    from effstudio.compress.events import CompareRowEvent, PruneStepEvent, ResultEvent
    from effstudio.gui.panels.compress_views import describe_result

    panel.live.add(PruneStepEvent(0, 1, 0.0, 0.5, 100))  # one point: the axis stays inside 0..100
    assert panel.live.points["sparsity"] == [(0.0, 50.0)]
    plot = panel.live._curves["sparsity"].getViewBox()
    plot.autoRange()
    low, high = plot.viewRange()[1]
    assert 0.0 <= low <= 50.0 <= high <= 100.0
    row = CompareRowEvent("a.safetensors", 10, 100, 0.875, 1.0, 2.0, 0.5, 1.2, 2.2, path="/tmp/a.safetensors")
    panel.table.show_rows([row], ["original"])
    assert panel.table.item(0, 3).text() == "87.5%"
    panel.scatter.draw([row], ["original"])
    assert "87.5%" in describe_result(ResultEvent("fp16", "/tmp/b.safetensors", 10, 10, 100, 0.875, 0.9)) and \
        "was 90.0%" in describe_result(ResultEvent("fp16", "/tmp/b.safetensors", 10, 10, 100, 0.875, 0.9))
