"""The training worker: signals from a generator, coalescing, failures, control."""

from __future__ import annotations

import time

import numpy as np
import pytest

from effstudio.config import ConfigError
from effstudio.engine.events import (
    AttentionEvent,
    DoneEvent,
    EvalEvent,
    LogEvent,
    StartEvent,
    StepEvent,
)
from effstudio.gui.worker import TrainingJob, TrainWorker

from .conftest import tiny_config


def fake_train(steps: int = 100, step_s: float = 0.0, fail_at: int | None = None):
    def train(config, *, control, out_dir=None, resume=None, init=None):
        yield StartEvent("run", "cpu", 10, steps, 0)
        for step in range(1, steps + 1):
            if control.paused:
                yield LogEvent("info", f"paused at step {step - 1}")
                control.wait_while_paused()
            if control.stop_requested:
                yield DoneEvent(step - 1, 1.0, None, None, 0.1, "stopped")
                return
            if fail_at == step:
                raise RuntimeError("boom")
            time.sleep(step_s)
            yield StepEvent(step, steps, 1.0 / step, 1e-3, 100.0, 50.0, 1.0, 0.01 * step)
            if step % 10 == 0:
                yield EvalEvent(step, 0.5, 0.9)
                yield AttentionEvent(step, np.full((1, 2, 3, 3), 1 / 3, dtype=np.float32), ("a", "b", "c"))
        yield DoneEvent(steps, 0.01, 0.9, None, 0.1, "finished")

    return train


def collect(worker: TrainWorker) -> dict[str, list]:
    seen: dict[str, list] = {name: [] for name in ("started", "steps", "evaluated", "attention", "log",
                                                   "failed", "config_error", "finished")}
    worker.started.connect(seen["started"].append)
    worker.steps.connect(seen["steps"].append)
    worker.evaluated.connect(seen["evaluated"].append)
    worker.attention.connect(seen["attention"].append)
    worker.log.connect(lambda level, msg: seen["log"].append((level, msg)))
    worker.failed.connect(seen["failed"].append)
    worker.config_error.connect(lambda field, msg: seen["config_error"].append((field, msg)))
    worker.finished.connect(seen["finished"].append)
    return seen


def run_job(qtbot, worker: TrainWorker, timeout_ms: int = 10_000) -> TrainingJob:
    job = TrainingJob(worker)
    with qtbot.waitSignal(worker.finished, timeout=timeout_ms):
        job.start()
    assert job.wait(5_000)
    return job


def test_steps_are_coalesced_and_all_arrive_in_order(app, qtbot):
    worker = TrainWorker(tiny_config(), train_fn=fake_train(200), throttle_s=0.05)
    seen = collect(worker)
    run_job(qtbot, worker)
    qtbot.wait(20)
    steps = [e.step for batch in seen["steps"] for e in batch]
    assert steps == list(range(1, 201))
    assert len(seen["steps"]) < 50  # batched, not one signal per step
    assert len(seen["evaluated"]) == 20
    assert 1 <= len(seen["attention"]) <= 20
    assert seen["started"][0].total_steps == 200
    [done] = seen["finished"]
    assert done.status == "finished" and not seen["failed"]


def test_exception_becomes_failed_signal(app, qtbot):
    worker = TrainWorker(tiny_config(), train_fn=fake_train(50, fail_at=7))
    seen = collect(worker)
    run_job(qtbot, worker)
    qtbot.wait(20)
    assert seen["failed"] == ["Training failed: RuntimeError: boom"]
    [done] = seen["finished"]
    assert done.status == "failed" and "boom" in done.error
    assert [e.step for batch in seen["steps"] for e in batch] == list(range(1, 7))


def test_config_error_names_the_field(app, qtbot):
    def bad(config, **kwargs):
        raise ConfigError("model.heads", "model width 30 is not divisible by 4 heads")
        yield  # pragma: no cover

    worker = TrainWorker(tiny_config(), train_fn=bad)
    seen = collect(worker)
    run_job(qtbot, worker)
    qtbot.wait(20)
    assert seen["config_error"] == [("model.heads", "model width 30 is not divisible by 4 heads")]
    assert "model.heads" in seen["failed"][0]
    assert seen["finished"][0].status == "failed"


def test_stop_and_pause_through_job_control(app, qtbot):
    worker = TrainWorker(tiny_config(), train_fn=fake_train(100_000, step_s=0.002))
    seen = collect(worker)
    job = TrainingJob(worker)
    with qtbot.waitSignal(worker.steps, timeout=5_000):
        job.start()
    with qtbot.waitSignal(job.paused_changed, timeout=1_000) as paused:
        job.pause()
    assert paused.args == [True]
    qtbot.wait(100)
    count = sum(len(b) for b in seen["steps"])
    qtbot.wait(200)
    assert sum(len(b) for b in seen["steps"]) == count  # nothing moves while paused
    job.resume()
    qtbot.waitUntil(lambda: sum(len(b) for b in seen["steps"]) > count, timeout=2_000)
    with qtbot.waitSignal(worker.finished, timeout=2_000) as finished:
        job.stop()
    assert finished.args[0].status == "stopped"
    assert job.wait(2_000)


@pytest.mark.parametrize("paused", [False, True])
def test_shutdown_ends_the_thread(app, qtbot, paused):
    worker = TrainWorker(tiny_config(), train_fn=fake_train(100_000, step_s=0.002))
    job = TrainingJob(worker)
    with qtbot.waitSignal(worker.steps, timeout=5_000):
        job.start()
    if paused:
        job.pause()
    assert job.shutdown(5_000)
    assert job.qthread.isFinished()
