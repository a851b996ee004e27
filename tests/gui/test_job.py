"""The one job mechanism: events in order, in the GUI thread; step batching; failures, pause, stop,
shutdown; and JobHost, the panels' mixin (slots, stop-on-restart, busy state, errors)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from PySide6.QtCore import QThread
from PySide6.QtWidgets import QWidget

from effstudio.config import ConfigError
from effstudio.engine.events import (
    AttentionEvent,
    DoneEvent,
    EvalEvent,
    LogEvent,
    MemoryEvent,
    StartEvent,
    StepEvent,
)
from effstudio.gui.job import Job, JobHost


def record(job: Job) -> list:
    seen: list = []
    job.event.connect(lambda e: seen.append(("event", e, QThread.currentThread())))
    job.failed.connect(lambda m: seen.append(("failed", m)))
    job.finished.connect(lambda s: seen.append(("finished", s)))
    job.ended.connect(lambda: seen.append(("ended",)))
    return seen


def run_to_end(qtbot, job: Job, timeout: int = 5_000) -> None:
    with qtbot.waitSignal(job.ended, timeout=timeout):
        job.start()
    assert not job.running


def test_events_arrive_in_order_in_the_gui_thread(qapp, qtbot):
    job = Job(lambda control: iter(range(5)))
    seen = record(job)
    run_to_end(qtbot, job)
    assert [s[1] for s in seen if s[0] == "event"] == [0, 1, 2, 3, 4]
    assert all(s[2] is qapp.thread() for s in seen if s[0] == "event")  # lambdas run in the GUI thread
    assert [s[0] for s in seen][-2:] == ["finished", "ended"]
    assert ("finished", "finished") in seen
    assert job.status == "finished" and job.error is None


def test_the_generator_runs_in_the_worker_thread(qapp, qtbot):
    threads = []

    def fn(control):
        threads.append(threading.current_thread())
        yield "one"

    job = Job(fn)
    run_to_end(qtbot, job)
    assert threads and threads[0] is not threading.main_thread()


def test_an_exception_ends_as_failed_and_never_reaches_the_gui(qtbot):
    def fn(control):
        yield 1
        raise ValueError("bad plugin")

    job = Job(fn)
    seen = record(job)
    run_to_end(qtbot, job)
    assert [s[0] for s in seen] == ["event", "failed", "finished", "ended"]
    assert ("failed", "ValueError: bad plugin") in seen and ("finished", "failed") in seen
    assert "bad plugin" in job.details and "Traceback" in job.details


def test_a_config_error_is_reported_by_its_message(qtbot):
    def fn(control):
        raise ConfigError("lengths", "must be positive")

    job = Job(fn)
    seen = record(job)
    run_to_end(qtbot, job)
    assert ("failed", "lengths: must be positive") in seen  # no exception class name for a bad setting
    assert job.status == "failed" and job.error == "lengths: must be positive"


def test_stop_is_seen_by_the_generator_and_ends_as_stopped(qtbot):
    cleaned = threading.Event()
    inside = threading.Event()

    def fn(control):
        try:
            yield "started"
            inside.set()
            while not control.stop_requested:
                time.sleep(0.002)
            yield "saw the stop"
        finally:
            cleaned.set()

    job = Job(fn)
    seen = record(job)
    job.start()
    assert inside.wait(5)
    with qtbot.waitSignal(job.ended, timeout=5_000):
        job.stop()
    assert [s[1] for s in seen if s[0] == "event"] == ["started", "saw the stop"]
    assert ("finished", "stopped") in seen and job.status == "stopped"
    assert cleaned.is_set()


def test_shutdown_stops_and_waits_for_the_thread(qtbot):
    def fn(control):
        while not control.stop_requested:
            time.sleep(0.002)
            yield "tick"

    job = Job(fn)
    job.start()
    qtbot.waitUntil(lambda: job.running, timeout=5_000)
    assert job.shutdown(5_000)
    assert not job.running and job.status == "stopped"
    assert job.shutdown(10)  # a second call is harmless


# ------------------------------------------------------------- step batching
def fake_train(steps: int = 100, step_s: float = 0.0, fail_at: int | None = None):
    """A job function shaped like a training run: a start, steps, evals and attention maps, a done."""

    def fn(control):
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

    return fn


def received(seen: list) -> list:
    return [s[1] for s in seen if s[0] == "event"]


def steps_in(events: list) -> list[int]:
    return [e.step for batch in events if isinstance(batch, list) for e in batch]


def test_steps_are_batched_and_all_arrive_in_order(qtbot):
    job = Job(fake_train(200), throttle_s=0.05)
    seen = record(job)
    run_to_end(qtbot, job, timeout=10_000)
    events = received(seen)
    assert steps_in(events) == list(range(1, 201))
    batches = [e for e in events if isinstance(e, list)]
    assert len(batches) < 50  # batched, not one signal per step
    assert all(isinstance(e, StepEvent) for batch in batches for e in batch)
    evals = [i for i, e in enumerate(events) if isinstance(e, EvalEvent)]
    assert len(evals) == 20
    for index in evals:  # a rare event sends the pending steps first: order holds
        assert steps_in(events[:index]) == list(range(1, events[index].step + 1))
    assert 1 <= sum(isinstance(e, AttentionEvent) for e in events) <= 20
    assert isinstance(events[0], StartEvent) and events[0].total_steps == 200
    assert isinstance(events[-1], DoneEvent) and events[-1].status == "finished"
    assert job.status == "finished" and not [s for s in seen if s[0] == "failed"]


def test_only_the_newest_attention_map_and_memory_sample_of_a_batch_are_sent(qtbot):
    def fn(control):
        yield StepEvent(1, 2, 1.0, 1e-3, 100.0, 50.0, 1.0, 0.01)  # the first step goes at once
        for step in (2, 3, 4):
            yield AttentionEvent(step, np.zeros((1, 1, 2, 2), dtype=np.float32), ("a", "b"))
            yield MemoryEvent(step, 100.0 + step, "cpu")
        yield StepEvent(2, 2, 1.0, 1e-3, 100.0, 50.0, 1.0, 0.01)

    job = Job(fn, throttle_s=60.0)
    seen = record(job)
    run_to_end(qtbot, job)
    kinds = [(type(e).__name__, getattr(e, "step", None)) if not isinstance(e, list) else ("batch", len(e))
             for e in received(seen)]
    assert kinds == [("batch", 1), ("batch", 1), ("MemoryEvent", 4), ("AttentionEvent", 4)]


def test_events_before_a_failure_arrive_before_it(qtbot):
    job = Job(fake_train(50, fail_at=7), throttle_s=60.0)
    seen = record(job)
    run_to_end(qtbot, job)
    assert [s[0] for s in seen][-3:] == ["failed", "finished", "ended"]
    assert steps_in(received(seen)) == list(range(1, 7))
    assert ("failed", "RuntimeError: boom") in seen and job.status == "failed"
    assert isinstance(job.exception, RuntimeError) and "boom" in job.details


def test_the_raised_config_error_is_kept_with_its_field(qtbot):
    def fn(control):
        raise ConfigError("model.heads", "model width 30 is not divisible by 4 heads")
        yield  # pragma: no cover

    job = Job(fn, throttle_s=0.05)
    seen = record(job)
    run_to_end(qtbot, job)
    assert ("failed", "model.heads: model width 30 is not divisible by 4 heads") in seen
    assert isinstance(job.exception, ConfigError) and job.exception.field == "model.heads"
    assert job.status == "failed"


def test_a_failure_from_another_process_keeps_its_message_and_traceback(qtbot):
    from effstudio.gui.training_process import TrainingProcessError

    def fn(control):
        raise TrainingProcessError("the training process ended unexpectedly (exit code -9)", "child traceback")
        yield  # pragma: no cover

    job = Job(fn)
    seen = record(job)
    run_to_end(qtbot, job)
    assert ("failed", "the training process ended unexpectedly (exit code -9)") in seen
    assert job.details == "child traceback"


def test_pause_resume_and_stop_through_the_job(qtbot):
    job = Job(fake_train(100_000, step_s=0.002), throttle_s=0.05)
    seen = record(job)
    with qtbot.waitSignal(job.event, timeout=5_000, check_params_cb=lambda e: isinstance(e, list)):
        job.start()
    assert job.pause() and job.paused
    assert not job.pause()  # already paused
    qtbot.wait(100)
    count = len(steps_in(received(seen)))
    qtbot.wait(200)
    assert len(steps_in(received(seen))) == count  # nothing moves while paused
    assert job.resume() and not job.paused
    qtbot.waitUntil(lambda: len(steps_in(received(seen))) > count, timeout=2_000)
    with qtbot.waitSignal(job.finished, timeout=2_000) as finished:
        job.stop()
    assert finished.args == ["stopped"]
    assert isinstance(received(seen)[-1], DoneEvent) and received(seen)[-1].status == "stopped"
    assert not job.pause()  # a stopped job is not paused again
    assert job.wait(2_000)


@pytest.mark.parametrize("paused", [False, True])
def test_shutdown_ends_the_thread_even_when_paused(qtbot, paused):
    job = Job(fake_train(100_000, step_s=0.002), throttle_s=0.05)
    with qtbot.waitSignal(job.event, timeout=5_000):
        job.start()
    if paused:
        assert job.pause()
    assert job.shutdown(5_000)
    assert job.qthread.isFinished() and job.status == "stopped"


# ------------------------------------------------------------------- JobHost
class Host(JobHost, QWidget):
    def __init__(self):
        super().__init__()
        self.init_jobs()
        self.changes: list[bool] = []
        self.errors: list[str] = []

    def jobs_changed(self) -> None:
        self.changes.append(self.busy)

    def show_job_error(self, message: str) -> None:
        self.errors.append(message)


def ticking(name: str, gate: threading.Event | None = None):
    def fn(control):
        while not control.stop_requested:
            yield name
            time.sleep(0.002)
            if gate is not None:
                gate.set()

    return fn


@pytest.fixture
def host(qtbot):
    widget = Host()
    qtbot.addWidget(widget)
    yield widget
    widget.shutdown(5_000)


def test_host_runs_a_job_and_reports_in_the_gui_thread(qapp, qtbot, host):
    seen: list = []
    finished: list = []
    go = threading.Event()

    def fn(control):
        go.wait(5)
        yield from (1, 2, 3)

    job = host.start_job(fn, "work", on_event=lambda e: seen.append((e, QThread.currentThread())),
                         on_finished=finished.append)
    assert host.job_of("work") is job and host.job_running("work") and host.changes[-1] is True
    with qtbot.waitSignal(job.ended, timeout=5_000):
        go.set()
    assert [e for e, _ in seen] == [1, 2, 3] and all(t is qapp.thread() for _, t in seen)
    assert finished == ["finished"]
    assert host.job_of("work") is None and not host.job_running("work") and not host.busy
    assert host.changes[-1] is False and len(host.changes) >= 3  # start, finish, end


def test_starting_in_a_busy_slot_stops_the_old_job_and_drops_its_events(qtbot, host):
    first_seen: list = []
    first_finished: list = []
    gate = threading.Event()
    first = host.start_job(ticking("old", gate), on_event=first_seen.append, on_finished=first_finished.append)
    assert gate.wait(5)
    qtbot.waitUntil(lambda: bool(first_seen), timeout=5_000)
    second_seen: list = []
    second_finished: list = []
    second = host.start_job(lambda control: iter(["new"]), on_event=second_seen.append,
                            on_finished=second_finished.append)
    assert first.control.stop_requested
    with qtbot.waitSignal(second.ended, timeout=5_000):
        pass
    qtbot.waitUntil(lambda: first.status is not None and not first.running, timeout=5_000)
    count = len(first_seen)
    qtbot.wait(50)
    assert first.status == "stopped" and first_finished == [] and len(first_seen) == count
    assert second_seen == ["new"] and second_finished == ["finished"]
    assert not host.busy


def test_slots_run_side_by_side_and_shutdown_stops_them_all(qtbot, host):
    jobs = [host.start_job(ticking(slot), slot) for slot in ("left", "right")]
    qtbot.waitUntil(lambda: host.job_running("left") and host.job_running("right"), timeout=5_000)
    assert host.busy
    host.stop_jobs()
    assert all(job.control.stop_requested for job in jobs)
    assert host.shutdown(5_000)
    assert all(job.qthread.isFinished() and job.status == "stopped" for job in jobs)


def test_cancel_stops_every_job_and_drops_what_they_still_send(qtbot, host):
    seen: list = []
    finished: list = []
    errors: list = []
    gate = threading.Event()

    def failing_after_stop(control):
        gate.wait(5)
        while not control.stop_requested:
            time.sleep(0.002)
        yield "late"
        raise RuntimeError("raised after the stop")

    jobs = [host.start_job(ticking("tick"), "ticks", on_event=seen.append, on_finished=finished.append),
            host.start_job(failing_after_stop, "fails", on_event=seen.append, on_failed=errors.append,
                           on_finished=finished.append)]
    qtbot.waitUntil(lambda: "tick" in seen, timeout=5_000)
    host.cancel_jobs()
    count = len(seen)
    assert host.job_of("ticks") is None and host.job_of("fails") is None
    assert host.busy  # until their threads end: their last signals may still be queued
    gate.set()
    for job in jobs:
        qtbot.waitUntil(lambda job=job: job.status is not None, timeout=5_000)
    qtbot.waitUntil(lambda: not host.busy, timeout=5_000)
    assert [job.status for job in jobs] == ["stopped", "failed"]
    assert len(seen) == count and "late" not in seen and finished == [] and errors == [] and host.errors == []


def test_a_failure_goes_to_the_callback_or_the_error_hook(qtbot, host):
    def failing(control):
        raise ValueError("bad input")
        yield  # pragma: no cover

    failures: list = []
    job = host.start_job(failing, "a", on_failed=failures.append)
    with qtbot.waitSignal(job.ended, timeout=5_000):
        pass
    assert failures == ["ValueError: bad input"] and host.errors == []
    job = host.start_job(failing, "b")
    with qtbot.waitSignal(job.ended, timeout=5_000):
        pass
    assert host.errors == ["ValueError: bad input"]


def test_the_host_passes_batching_on(qtbot, host):
    events: list = []
    job = host.start_job(fake_train(30), on_event=events.append, throttle_s=60.0)
    with qtbot.waitSignal(job.ended, timeout=5_000):
        pass
    assert steps_in(events) == list(range(1, 31))
    # within the interval, steps wait for a rarer event (an eval every 10 steps) or the end
    assert [len(e) for e in events if isinstance(e, list)] == [10, 10, 10]


def test_a_host_let_go_while_its_ended_job_awaits_deletion_is_freed_once(qtbot):
    widget = Host()  # a top-level host that only Python holds, like a panel in a test
    job = widget.start_job(lambda control: iter([1]))
    with qtbot.waitSignal(job.ended, timeout=5_000):
        pass
    del widget, job  # the job's deleteLater is still pending
    qtbot.wait(50)  # Qt deletes the job, then Python frees the host: nothing is deleted twice (no crash)


@pytest.mark.parametrize("how", ["deleteLater", "python"])
def test_a_host_deleted_while_its_job_runs_stops_it_and_the_job_ends_unharmed(qtbot, how):
    """Qt deleting a panel (its window closed, a test ending) or Python freeing it must neither destroy
    the running thread nor leave it running: the job is stopped and still ends cleanly."""
    started, seen_stop = threading.Event(), threading.Event()

    def fn(control):
        started.set()
        while not control.stop_requested:
            control.report("working")  # a report within a step, from the job's own thread
            time.sleep(0.002)
        seen_stop.set()
        yield "after the stop"

    widget = Host()
    job = widget.start_job(fn)
    assert started.wait(5)
    ended: list = []
    job.ended.connect(lambda: ended.append(True))
    if how == "deleteLater":
        widget.deleteLater()
    else:
        del widget
        import gc

        gc.collect()
    qtbot.waitUntil(lambda: seen_stop.is_set(), timeout=5_000)
    qtbot.waitUntil(lambda: bool(ended), timeout=5_000)
    assert job.status == "stopped" and job.error is None


def test_reports_from_within_a_step_arrive_in_the_gui_thread_before_the_end(qapp, qtbot):
    """control.report is the way a step tells how far it got, from the job's thread or a helper's."""

    def fn(control):
        control.report("from the job")
        helper = threading.Thread(target=control.report, args=("from a helper",))
        helper.start()
        helper.join()
        yield "yielded"

    job = Job(fn)
    seen = record(job)
    run_to_end(qtbot, job)
    events = [s[1] for s in seen if s[0] == "event"]
    assert events == ["from the job", "from a helper", "yielded"]
    assert all(s[2] is qapp.thread() for s in seen if s[0] == "event")
    assert job.control.on_report is None  # nothing can be sent after the job's end


def test_no_host_in_the_window_shadows_a_name_of_job_host(window):
    """A panel's own attribute named like one of JobHost's would silently break its job bookkeeping."""
    hosts = [window] + [child for child in window.findChildren(QWidget) if isinstance(child, JobHost)]
    assert len(hosts) >= 5  # the window, compress, benchmark, inspect, data
    own = {name for name in vars(JobHost) if not name.startswith("__")}
    for host in hosts:
        for name in own:
            assert name not in vars(host), f"{type(host).__name__} sets {name} on itself"
            if name not in ("jobs_changed", "show_job_error", "busy", "shutdown"):  # the hooks a host overrides
                assert getattr(type(host), name) is getattr(JobHost, name), f"{type(host).__name__}.{name}"
