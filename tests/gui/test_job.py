"""The generic job worker: events in order, in the GUI thread; failures, stop, shutdown."""

from __future__ import annotations

import threading
import time

from PySide6.QtCore import QThread

from effstudio.config import ConfigError
from effstudio.gui.job import Job


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
    assert "bad plugin" in job.worker.details and "Traceback" in job.worker.details


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
