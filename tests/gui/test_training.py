"""Real training runs driven from the window: plots fill, Stop, Pause, closing mid-run."""

from __future__ import annotations

import errno
import json
import time

import numpy as np
import pytest

from effstudio import pipeline
from effstudio.engine.events import StartEvent, StepEvent
from effstudio.gui.main_window import MODEL, MONITOR
from effstudio.gui.training_process import TrainingProcessError

from .conftest import tiny_config

LONG = {"train.steps": 100_000, "train.eval_every": 1_000, "train.attention_every": 1_000}


def steps_seen(window) -> int:
    return len(window.monitor_panel.curves.loss)


def test_run_fills_the_plots(window, qtbot):
    job = window.start_training()
    assert job is not None and window.running
    assert window.current_section() == MONITOR
    with qtbot.waitSignal(job.finished, timeout=60_000) as finished:
        pass
    done = window.last_done
    assert finished.args == ["finished"] and done.status == "finished" and done.steps == 20
    qtbot.waitUntil(lambda: window.job is None, timeout=5_000)
    curves = window.monitor_panel.curves
    x, y = curves.loss_raw_curve.getData()
    assert list(x) == list(range(1, 21)) and np.all(np.isfinite(y))
    assert len(curves.loss_curve.getData()[0]) == 20
    assert len(curves.val_loss_curve.getData()[0]) == 4  # eval every 5 steps
    assert len(curves.lr_curve.getData()[0]) == 20
    assert len(curves.rss_curve.getData()[0]) == 20
    attention = window.monitor_panel.attention
    assert attention.current_event is not None
    layers, heads, n, _ = attention.current_event.maps.shape
    assert attention.choice.layer_box.count() == layers and attention.choice.head_box.count() == heads + 1
    assert attention.current_map().shape == (n, n)
    assert window.state == "finished"
    assert window.train_panel.progress.value() == 1000
    assert "Finished after 20 steps" in window.log.text()
    assert window.action_map["start"].isEnabled()
    # the window's run writes the events log that `effstudio train` writes, through the same pipeline
    records = [json.loads(line) for line in (window.out_dir / "events.jsonl").read_text().splitlines()]
    kinds = [record["event"] for record in records]
    assert kinds[0] == "start" and kinds[-1] == "done" and kinds.count("step") == 20
    assert records[-1]["status"] == "finished" and records[-1]["steps"] == 20


def test_an_events_log_that_cannot_be_written_is_a_warning_in_the_log_and_the_run_goes_on(window, qtbot,
                                                                                          monkeypatch):
    def full_disk(path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(pipeline, "_end_last_line", full_disk)  # the log's opening, in the job's thread
    job = window.start_training()
    with qtbot.waitSignal(job.finished, timeout=60_000) as finished:
        pass
    text = window.log.text()
    assert finished.args == ["finished"] and window.last_done.steps == 20, text
    assert "cannot write" in text and "events.jsonl" in text
    assert "Finished after 20 steps" in text


def test_plots_grow_then_pause_resume_and_stop_within_a_step(window, qtbot):
    window.apply_config(tiny_config(**LONG))
    job = window.start_training()
    qtbot.waitUntil(lambda: steps_seen(window) >= 3, timeout=30_000)
    first = steps_seen(window)
    curve = window.monitor_panel.curves.loss_raw_curve
    qtbot.waitUntil(lambda: len(curve.getOriginalDataset()[0] if curve.getOriginalDataset()[0] is not None
                                else ()) > first, timeout=10_000)
    assert window.state == "running"
    assert "step" in window.train_panel.progress.format()

    window.toggle_pause()
    assert window.state == "paused" and job.paused
    assert window.action_map["pause"].text() == "Resume"
    # the step in flight may still land; the trainer says "paused at step N" once it has stopped between
    # steps, and the batched steps before it arrive before that line
    qtbot.waitUntil(lambda: "paused at step" in window.log.text(), timeout=10_000)
    frozen = steps_seen(window)
    assert f"paused at step {frozen}" in window.log.text()
    qtbot.wait(400)
    assert steps_seen(window) == frozen
    window.toggle_pause()
    assert window.state == "running" and not job.paused
    qtbot.waitUntil(lambda: steps_seen(window) > frozen, timeout=10_000)

    begin = time.perf_counter()
    with qtbot.waitSignal(job.finished, timeout=10_000) as finished:
        window.stop_training()
        assert window.state == "stopping"
        assert not window.action_map["stop"].isEnabled()
    done = window.last_done
    assert finished.args == ["stopped"] and done.status == "stopped" and done.steps < 100_000
    assert done.checkpoint  # stopping saves a checkpoint
    assert time.perf_counter() - begin < 5.0
    qtbot.waitUntil(lambda: window.job is None, timeout=5_000)
    assert window.state == "stopped"
    assert window.action_map["start"].isEnabled()


def test_closing_the_window_mid_run_stops_cleanly(window, qtbot):
    window.apply_config(tiny_config(**LONG))
    window.start_training()
    qtbot.waitUntil(lambda: steps_seen(window) >= 2, timeout=30_000)
    job = window.job
    assert job is not None and job.running
    window.close()
    assert job.qthread.isFinished() and job.status == "stopped"
    qtbot.waitUntil(lambda: window.last_done is not None, timeout=5_000)  # the run's last events, delivered
    assert window.last_done.status == "stopped"


def start_and_fail(window, qtbot) -> str:
    """Start a run that fails; wait until the window has let go of its job; the job's own status."""
    job = window.start_training()
    assert job is not None
    with qtbot.waitSignal(job.finished, timeout=30_000) as finished:
        pass
    assert window.last_done.status == "failed"
    qtbot.waitUntil(lambda: window.job is None, timeout=5_000)
    return finished.args[0]


def test_a_model_that_cannot_take_the_task_marks_its_field_before_start(window, qtbot):
    # an encoder cannot learn a language-modelling task: refused as the field changes, not after Start
    window.model_panel.model_form.set_value("mode", "encoder")
    assert "encoder" in window.model_panel.model_form.error_text("mode")
    assert not window.action_map["start"].isEnabled()
    assert window.start_training() is None and window.job is None
    assert window.current_section() == MODEL


def test_start_refuses_a_model_too_large_for_the_machine(window, qtbot):
    """The window's Start runs the same size check as `train`: the width field shows the estimate."""
    window.model_panel.model_form.set_value("d_model", 1_000_000)
    start_and_fail(window, qtbot)
    assert "would need about" in window.model_panel.model_form.error_text("d_model")
    assert "EFFSTUDIO_MEMORY_LIMIT_GB" in window.log.text()


def failing_train(error: Exception | None):
    """A train function that starts, takes two steps, then raises ``error`` (or just ends, None)."""

    def train(config, *, control, out_dir=None, resume=None, init=None):
        yield StartEvent(str(out_dir), "cpu", 10, 5, 0)
        for step in (1, 2):
            yield StepEvent(step, 5, 1.0, 1e-3, 100.0, 50.0, 1.0, 0.01)
        if error is not None:
            raise error

    return train


@pytest.mark.parametrize(("error", "message", "details"), [
    (RuntimeError("boom"), "Training failed: RuntimeError: boom", "Traceback"),
    (TrainingProcessError("the training process ended unexpectedly (exit code -9)", "the child's traceback"),
     "Training failed: the training process ended unexpectedly (exit code -9)", "the child's traceback"),
    (None, "Training ended without a final event.", None),
])
def test_a_run_that_fails_says_why_and_frees_the_controls(window, qtbot, error, message, details):
    window.train_fn = failing_train(error)
    assert start_and_fail(window, qtbot) == ("finished" if error is None else "failed")
    done = window.last_done
    assert (done.status, done.error, done.steps) == ("failed", message, 0)
    log = window.log.text()
    assert message in log and f"Failed: {message}" in log
    if details is not None:
        assert details in log
    assert steps_seen(window) == 2  # the steps before the failure were shown
    assert window.state == "failed" and window.action_map["start"].isEnabled()
    assert not window.action_map["stop"].isEnabled()
