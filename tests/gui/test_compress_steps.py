"""The window runs a run config's [[compress]] steps after a run it trained, as `train --config` does."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PySide6.QtCore import Qt

from effstudio.engine.run_plan import ExportStep, PruneStep, QuantizeStep, RunPlan
from effstudio.gui.main_window import COMPRESS
from effstudio.runs.store import RunStore, default_path

from .conftest import tiny_config

TIMEOUT = 60_000
PRUNED = "checkpoint-pruned-heads-0.5.safetensors"
INT8 = "checkpoint-pruned-heads-0.5-dynamic-int8.safetensors"


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # quick, steady timings on a busy machine
    yield
    torch.set_num_threads(previous)


def _screenshot(window, path):
    window.show_section(COMPRESS)
    window.grab().save(path)


def _train_then_steps(window, qtbot, steps):
    window.set_compress_steps(steps)
    panel = window.compress_panel
    with qtbot.waitSignal(panel.steps_done, timeout=TIMEOUT) as ended:
        assert window.start_training() is not None
    return ended.args[0]


def test_a_finished_run_runs_its_steps_into_its_folder_table_and_record(window, qtbot, tmp_path):
    steps = (PruneStep(prune="heads", amount=0.5), QuantizeStep(quantize="dynamic-int8"))
    window.set_compress_steps(steps)
    assert "the window runs them" in window.log.text()
    command = window.copy_command()
    assert "trains only" in command and "--config" in command.split("  # ", 1)[1]

    done = _train_then_steps(window, qtbot, steps)
    panel = window.compress_panel
    assert done.status == "finished" and done.completed == 2, done
    folder = Path(window.last_done.checkpoint).parent
    assert (folder / PRUNED).is_file() and (folder / INT8).is_file()
    assert [Path(p).name for p in done.outputs] == [PRUNED, INT8]
    assert RunPlan.from_toml(folder / "config.toml").compress == steps  # the folder reproduces the whole run
    assert panel.problem.isHidden()

    # the outputs join the comparison with the trained checkpoint and are measured like results made by hand
    qtbot.waitUntil(lambda: len(panel.rows) == 3 and panel.job is None, timeout=TIMEOUT)
    assert panel.status_label.text().startswith("Ran the 2 compression step(s); wrote " + PRUNED)
    assert "Measured 3 variants" in panel.status_label.text()
    names = {panel.table.item(r, 0).data(Qt.ItemDataRole.UserRole): panel.table.item(r, 0).text()
             for r in range(panel.table.rowCount())}
    assert names == {window.last_done.checkpoint: "original", str(folder / PRUNED): "prune heads 0.5",
                     str(folder / INT8): "quantize dynamic-int8"}
    assert all(row.error is None and row.accuracy is not None for row in panel.ordered_rows())
    assert len(panel.live.points["sparsity"]) == 2  # the pruning step drew its live curve
    _screenshot(window, str(tmp_path / "compress-steps.png"))

    with RunStore(default_path()) as store:
        run = store.get_run(window._run_id)
        artifacts = {(a.kind, Path(a.path).name) for a in store.artifacts(window._run_id)}
    assert run.status == "finished" and len(run.config["compress"]) == 2
    assert {("pruned", PRUNED), ("quantized", INT8)} <= artifacts
    assert "Compression steps finished" in window.log.text()


def test_a_failing_step_shows_its_message_and_skips_the_rest(window, qtbot, tmp_path):
    window.out_dir.mkdir(parents=True, exist_ok=True)
    blocker = window.out_dir / "blocker"
    blocker.write_text("a file where the export wants a folder", encoding="utf-8")
    steps = (ExportStep(out="blocker/model.onnx"), QuantizeStep(quantize="fp16"))
    done = _train_then_steps(window, qtbot, steps)
    panel = window.compress_panel
    assert done.status == "failed" and done.completed == 0 and done.outputs == []
    assert not panel.problem.isHidden() and "compress[1] (export onnx) failed" in panel.problem.text()
    assert "the 1 later step(s) were skipped" in panel.status_label.text()
    folder = Path(window.last_done.checkpoint).parent
    assert not list(folder.glob("*fp16*")) and not list(folder.glob("*.onnx"))
    assert "compress[1] (export onnx) failed" in window.log.text()
    qtbot.waitUntil(lambda: panel.job is None, timeout=TIMEOUT)
    _screenshot(window, str(tmp_path / "compress-steps-failed.png"))


def _wait_for_the_prune_step(window, qtbot):
    panel = window.compress_panel
    window.set_compress_steps((PruneStep(prune="heads", amount=0.5, finetune_steps=40_000),
                               QuantizeStep(quantize="fp16")))
    assert window.start_training() is not None
    qtbot.waitUntil(lambda: panel.running and panel._step is not None and bool(panel.live.points["sparsity"]),
                    timeout=TIMEOUT)
    return Path(window.last_done.checkpoint).parent


def test_stop_in_the_compress_section_stops_the_chain(window, qtbot, tmp_path):
    folder = _wait_for_the_prune_step(window, qtbot)
    panel = window.compress_panel
    assert panel.stop_button.isEnabled() and not panel.run_button.isEnabled()
    # the step in the bar with how far its fine-tuning got and the time left; what runs in the status line
    qtbot.waitUntil(lambda: "left" in panel.progress.format(), timeout=TIMEOUT)
    assert panel.progress.format().startswith("1/2 prune \u00b7 ")
    assert "fine-tuning (" in panel.status_label.text()
    _screenshot(window, str(tmp_path / "compress-steps-running.png"))
    with qtbot.waitSignal(panel.steps_done, timeout=TIMEOUT) as ended:
        panel.stop_button.click()
    assert ended.args[0].status == "stopped" and ended.args[0].outputs == []
    assert "Stopped after 0 of 2" in panel.status_label.text()
    assert not (folder / PRUNED).exists() and not list(folder.glob("*fp16*"))
    assert not list(folder.glob("*.tmp*"))  # nothing half-written


def test_closing_the_window_mid_chain_stops_it(window, qtbot):
    folder = _wait_for_the_prune_step(window, qtbot)
    panel = window.compress_panel
    job = panel.job
    window.close()
    assert not job.running  # the shutdown path stopped the chain and waited for its thread
    assert not (folder / PRUNED).exists() and not list(folder.glob("*fp16*"))


def test_a_stopped_run_runs_no_steps(window, qtbot):
    window.set_compress_steps((QuantizeStep(quantize="fp16"),))
    window.apply_config(tiny_config(**{"train.steps": 100_000}))
    assert window.start_training() is not None
    qtbot.waitUntil(lambda: window.progress.step > 0, timeout=TIMEOUT)
    window.stop_training()
    qtbot.waitUntil(lambda: window.job is None, timeout=TIMEOUT)
    assert window.last_done.status == "stopped"
    assert "so the 1 compression step(s) did not run" in window.log.text()
    assert not window.compress_panel.running


def test_steps_wait_for_a_job_the_section_is_running(app, qtbot, tmp_path):
    from effstudio.engine.events import DoneEvent
    from effstudio.gui.panels.compress_panel import CompressPanel
    from effstudio.pipeline import steps_after_training
    from effstudio.registry import get_registry
    from tests.compress.conftest import make_checkpoint

    panel = CompressPanel(get_registry())
    qtbot.addWidget(panel)
    checkpoint = make_checkpoint(tmp_path / "checkpoint.safetensors")
    panel.set_checkpoint(checkpoint)
    assert panel.start_operation("quantize")  # a job by hand (dynamic-int8) is running
    plan = RunPlan(tiny_config(), (QuantizeStep(quantize="fp16"),))
    done = DoneEvent(20, 1.0, 0.5, str(checkpoint), 1.0)
    with qtbot.waitSignal(panel.steps_done, timeout=TIMEOUT) as ended:
        assert not panel.start_steps(checkpoint, lambda control: steps_after_training(plan, done, tmp_path,
                                                                                     control))
        assert "start when this job ends" in panel.status_label.text()
    assert ended.args[0].status == "finished" and (tmp_path / "checkpoint-fp16.safetensors").is_file()
    # the hand-made result and the step's output are measured together afterwards
    qtbot.waitUntil(lambda: len(panel.rows) == 3 and panel.job is None, timeout=TIMEOUT)
    panel.shutdown()


def test_a_chain_waiting_behind_a_stopped_chain_still_runs(app, qtbot, tmp_path):
    from effstudio.engine.events import DoneEvent
    from effstudio.gui.panels.compress_panel import CompressPanel
    from effstudio.pipeline import steps_after_training
    from effstudio.registry import get_registry
    from tests.compress.conftest import make_checkpoint

    panel = CompressPanel(get_registry())
    qtbot.addWidget(panel)
    checkpoint = make_checkpoint(tmp_path / "checkpoint.safetensors")
    done = DoneEvent(20, 1.0, 0.5, str(checkpoint), 1.0)
    slow = RunPlan(tiny_config(), (PruneStep(prune="heads", amount=0.5, finetune_steps=10_000),))
    quick = RunPlan(tiny_config(), (QuantizeStep(quantize="fp16"),))
    assert panel.start_steps(checkpoint, lambda control: steps_after_training(slow, done, tmp_path, control))
    assert not panel.start_steps(checkpoint, lambda control: steps_after_training(quick, done, tmp_path, control))
    qtbot.waitUntil(lambda: bool(panel.live.points["sparsity"]), timeout=TIMEOUT)  # the slow chain is fine-tuning
    ended = []
    panel.steps_done.connect(lambda event: ended.append(event.status))
    panel.stop()
    qtbot.waitUntil(lambda: ended == ["stopped", "finished"], timeout=TIMEOUT)
    assert (tmp_path / "checkpoint-fp16.safetensors").is_file()
    qtbot.waitUntil(lambda: panel.job is None, timeout=TIMEOUT)
    panel.shutdown()
