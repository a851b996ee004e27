"""Any long job off the GUI thread: a generator of events driven in a QThread.

A job function takes a :class:`~effstudio.engine.events.JobControl` and returns
an iterator of events (``lambda control: run_attention_bench(settings, control)``).
:class:`JobWorker` drives it in a worker thread and turns what happens into
signals; :class:`Job` owns the worker and its thread, relays the worker's signals
so that every one of them is emitted in the GUI thread (a plain function or a
lambda connected to a Job runs there too), and cleans up.

The order of signals is fixed: ``event(object)`` for every event, then
``failed(str)`` when the job raised, then ``finished(str)`` with the status
("finished", "stopped" or "failed"), then ``ended()`` once the thread is gone.
No exception ever reaches the GUI thread: the job keeps it (``exception``), so
a window can still read a ConfigError's field.

With ``throttle_s`` set, a fast job cannot flood the GUI thread: step events are
sent as one list per interval, and only the newest attention map and memory
sample of an interval are kept (see :class:`StepBatcher`).

Stop and pause go through the JobControl (thread-safe), which the generator
checks between and, where it can, within its steps; the worker keeps reading
until the generator returns, so a job can still report what it did before it
stopped. Training in a child process is a job function like any other
(``training_process.train_in_process`` forwards the control to the child).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, QThread, QTimer, Signal, Slot

from effstudio.config import ConfigError
from effstudio.engine.events import AttentionEvent, JobControl, MemoryEvent, StepEvent

JobFn = Callable[[JobControl], Iterator[Any]]

# Every started job until its thread has ended (and a turn of the event loop after): a running
# QThread must never be destroyed, whatever happens to the panel that started it.
_running_jobs: set[Job] = set()


class StepBatcher:
    """Coalesces a fast stream: step events in one list per ``throttle_s``, the newest attention map
    and memory sample of that interval; any other event first sends what is pending, so order holds."""

    def __init__(self, send: Callable[[Any], None], throttle_s: float):
        self.send = send
        self.throttle_s = throttle_s
        self._steps: list[StepEvent] = []
        self._attention: AttentionEvent | None = None
        self._memory: MemoryEvent | None = None
        self._last_flush = float("-inf")  # the first step goes at once

    def add(self, event: Any) -> None:
        if isinstance(event, StepEvent):
            self._steps.append(event)
            if time.perf_counter() - self._last_flush >= self.throttle_s:
                self.flush()
        elif isinstance(event, AttentionEvent):
            self._attention = event
        elif isinstance(event, MemoryEvent):
            self._memory = event
        else:
            self.flush()
            self.send(event)

    def flush(self) -> None:
        self._last_flush = time.perf_counter()
        if self._steps:
            batch, self._steps = self._steps, []
            self.send(batch)
        for pending in (self._memory, self._attention):
            if pending is not None:
                self.send(pending)
        self._memory = self._attention = None


def failure_message(err: BaseException) -> str:
    """One line for a job's exception: a bad setting or a failure reported from elsewhere (it carries
    its own ``details``, a child process's traceback) by its message, anything else with its class."""
    if isinstance(err, ConfigError) or hasattr(err, "details"):
        return str(err)
    return f"{type(err).__name__}: {err}"


class JobWorker(QObject):
    """Runs one job function; lives in the job's thread while it runs."""

    event = Signal(object)  # an event, or with batching a list of StepEvents
    failed = Signal(str)  # a one-line message; the traceback is in ``details``
    finished = Signal(str)  # "finished" | "stopped" | "failed", always the last signal

    def __init__(self, fn: JobFn, control: JobControl, throttle_s: float | None = None):
        super().__init__()
        self.fn = fn
        self.control = control
        self.throttle_s = throttle_s
        self.status: str | None = None
        self.error: str | None = None
        self.exception: BaseException | None = None
        self.details = ""
        self.seconds = 0.0

    @Slot()
    def run(self) -> None:
        started = time.perf_counter()
        status = "finished"
        events: Iterator[Any] | None = None
        batcher = StepBatcher(self.event.emit, self.throttle_s) if self.throttle_s is not None else None
        # a report made within a step travels as this worker's event: the job function never needs to
        # touch its panel's objects from this thread (the panel may be gone before the job ends)
        self.control.on_report = self.event.emit
        try:
            events = iter(self.fn(self.control))
            for event in events:
                if batcher is None:
                    self.event.emit(event)
                else:
                    batcher.add(event)
            if self.control.stop_requested:
                status = "stopped"
        except Exception as err:  # a plugin, a child process or a bad setting may raise anything
            status = "failed"
            self.error = failure_message(err)
            self.details = getattr(err, "details", "") or traceback.format_exc()
            # kept without its traceback: its frames hold this worker, a cycle that would free the
            # worker's QObject later, from the garbage collector, in whichever thread it runs
            self.exception = err.with_traceback(None)
            if batcher is not None:
                batcher.flush()  # what came before the failure arrives before it
            self.failed.emit(self.error)
        finally:
            if events is not None and hasattr(events, "close"):
                try:
                    events.close()  # a generator left early runs its cleanup now, in this thread
                except Exception:  # noqa: S110 - the job's outcome is already decided
                    pass
            self.control.on_report = None  # nothing arrives after ``finished``
            if batcher is not None:
                batcher.flush()
            self.seconds = time.perf_counter() - started
            self.status = status
            self.finished.emit(status)
            thread = self.thread()
            app = QCoreApplication.instance()
            if thread is not None and (app is None or thread is not app.thread()):
                thread.quit()  # a direct call: the GUI thread may be blocked in wait()


class Job(QObject):
    """One run of a job function: its control, worker and thread, and a clean way to end them.

    It lives in the GUI thread; its signals are the worker's, relayed there. It has no Qt parent and
    stays referenced here from ``start`` until its thread has ended, so neither Qt deleting the panel
    that started it nor the garbage collector can destroy a running thread.
    """

    event = Signal(object)
    failed = Signal(str)
    finished = Signal(str)
    ended = Signal()  # the thread has stopped: the job may be dropped

    def __init__(self, fn: JobFn, name: str = "effstudio-job", parent: QObject | None = None, *,
                 throttle_s: float | None = None):
        """``throttle_s`` batches step events (see :class:`StepBatcher`); None sends each event alone."""
        super().__init__(parent)
        self.fn = fn
        self.control = JobControl()
        self.worker = JobWorker(fn, self.control, throttle_s)
        self.qthread = QThread()
        self.qthread.setObjectName(name)
        self.worker.moveToThread(self.qthread)
        self.qthread.started.connect(self.worker.run)
        # receivers are this object's slots, so the connections are queued into the GUI thread
        self.worker.event.connect(self._relay_event)
        self.worker.failed.connect(self._relay_failed)
        self.worker.finished.connect(self._relay_finished)
        self.qthread.finished.connect(self._thread_finished)
        self._started = False

    # ------------------------------------------------------------ the GUI side
    def start(self) -> None:
        if not self._started:
            self._started = True
            _running_jobs.add(self)
            self.qthread.start()

    @property
    def running(self) -> bool:
        return self.qthread.isRunning()

    @property
    def status(self) -> str | None:
        """The final status once the worker is done, else None."""
        return self.worker.status

    @property
    def error(self) -> str | None:
        return self.worker.error

    @property
    def exception(self) -> BaseException | None:
        """What the job function raised (a ConfigError names its ``field``), once ``failed`` is sent."""
        return self.worker.exception

    @property
    def details(self) -> str:
        """The failure's traceback (a child process's own, where it sent one)."""
        return self.worker.details

    @property
    def seconds(self) -> float:
        return self.worker.seconds

    def stop(self) -> None:
        self.control.stop()

    def pause(self) -> bool:
        """Ask the job to wait before its next step; False when there is nothing to pause."""
        if not self.running or self.control.paused or self.control.stop_requested:
            return False
        self.control.pause()
        return True

    def resume(self) -> bool:
        if not self.control.paused:
            return False
        self.control.resume()
        return True

    @property
    def paused(self) -> bool:
        return self.control.paused

    def wait(self, timeout_ms: int = 30_000) -> bool:
        return self.qthread.wait(timeout_ms)

    def shutdown(self, timeout_ms: int = 30_000) -> bool:
        """Stop the job and wait for its thread; True when the thread has ended.

        A thread still running after ``timeout_ms`` stays alive (a job is never destroyed
        while it runs) and the job is reported as not ended.
        """
        if not self.qthread.isRunning():
            return True
        self.control.stop()
        return self.qthread.wait(timeout_ms)

    @Slot(object)
    def _relay_event(self, event: Any) -> None:
        self.event.emit(event)

    @Slot(str)
    def _relay_failed(self, message: str) -> None:
        self.failed.emit(message)

    @Slot(str)
    def _relay_finished(self, status: str) -> None:
        self.finished.emit(status)

    @Slot()
    def _thread_finished(self) -> None:
        # QThread.finished is sent from the thread just before it exits: let it exit, so that a
        # receiver may delete the job (and with it the QThread) at once
        self.qthread.wait()
        self.ended.emit()
        # let go from the event loop, not from within this slot: the last reference may be this one
        QTimer.singleShot(0, partial(_running_jobs.discard, self))


class JobHost:
    """What every panel that runs jobs shares: start, stop-on-restart, busy state, errors, shutdown.

    Mix it into a QWidget panel and call :meth:`init_jobs` in ``__init__``. Jobs
    live in named slots; starting a job in a slot whose job still runs stops the
    old one first (its late events are dropped), so only the newest job of a slot
    reports. The panel overrides :meth:`jobs_changed` to set its buttons (it is
    called after every start and end) and may override :meth:`show_job_error`.
    ``shutdown()`` stops every job and waits for its thread (the window calls it on close).
    """

    def init_jobs(self) -> None:
        self._job_slots: dict[str, Job] = {}
        self._live_jobs: list[Job] = []  # running or not yet ended, replaced ones included
        self._job_callbacks: dict[Job, _Callbacks] = {}
        # a panel deleted without shutdown() (by its parent, or as a test ends) stops what it started;
        # the list, not the panel: nothing here may keep the panel alive
        self.destroyed.connect(partial(_stop_each, self._live_jobs))  # type: ignore[attr-defined]

    def start_job(self, fn: JobFn, slot: str = "main", *, on_event: Callable[[Any], None] | None = None,
                  on_failed: Callable[[str], None] | None = None,
                  on_finished: Callable[[str], None] | None = None, throttle_s: float | None = None) -> Job:
        """Run ``fn`` in its own thread; the callbacks run in the GUI thread while this job is its slot's newest.

        ``throttle_s`` batches its step events (see :class:`StepBatcher`)."""
        previous = self._job_slots.get(slot)
        if previous is not None:
            previous.stop()
        job = Job(fn, name=f"effstudio-{type(self).__name__.lower()}-{slot}", throttle_s=throttle_s)
        # the host's own methods, not closures: Qt drops these connections when the host is deleted,
        # while a closure would keep the host's Python side alive for as long as the job lives
        self._job_callbacks[job] = _Callbacks(slot, on_event, on_failed or self.show_job_error, on_finished)
        job.event.connect(self._job_event)
        job.failed.connect(self._job_failed)
        job.finished.connect(self._job_finished)
        job.ended.connect(self._job_ended)
        self._job_slots[slot] = job
        self._live_jobs.append(job)
        job.start()
        self.jobs_changed()
        return job

    def job_of(self, slot: str = "main") -> Job | None:
        return self._job_slots.get(slot)

    def job_running(self, slot: str = "main") -> bool:
        job = self._job_slots.get(slot)
        return job is not None and job.running

    @property
    def busy(self) -> bool:
        """A job has not ended yet (its last events may still be on their way to the GUI thread)."""
        return bool(self._live_jobs)

    def stop_jobs(self) -> None:
        _stop_each(self._live_jobs)

    def cancel_job(self, slot: str) -> None:
        """Stop the job of ``slot`` and forget it: nothing it still sends reaches the panel."""
        job = self._job_slots.pop(slot, None)
        if job is not None:
            job.stop()

    def cancel_jobs(self) -> None:
        """Stop every job and forget it: nothing it still sends reaches the panel (what it worked on is gone)."""
        self.stop_jobs()
        self._job_slots.clear()

    def shutdown(self, timeout_ms: int = 30_000) -> bool:
        """Stop every job and wait for its thread; True when all ended."""
        ended = True
        for job in list(self._live_jobs):
            ended = job.shutdown(timeout_ms) and ended
        return ended

    def jobs_changed(self) -> None:
        """A job started or ended: the panel sets its buttons here."""

    def show_job_error(self, message: str) -> None:
        """A job raised; panels show ``message`` where their status is."""

    def _job_sender(self) -> tuple[Job | None, _Callbacks | None]:
        """The job that sent the signal being handled, and its callbacks while it is its slot's newest."""
        job = self.sender()  # type: ignore[attr-defined]
        callbacks = self._job_callbacks.get(job)
        if callbacks is None or self._job_slots.get(callbacks.slot) is not job:
            return job, None
        return job, callbacks

    def _job_event(self, event: Any) -> None:
        _job, callbacks = self._job_sender()
        if callbacks is not None and callbacks.on_event is not None:
            callbacks.on_event(event)

    def _job_failed(self, message: str) -> None:
        _job, callbacks = self._job_sender()
        if callbacks is not None:
            callbacks.on_failed(message)

    def _job_finished(self, status: str) -> None:
        _job, callbacks = self._job_sender()
        if callbacks is not None:
            del self._job_slots[callbacks.slot]
            if callbacks.on_finished is not None:
                callbacks.on_finished(status)
        self.jobs_changed()

    def _job_ended(self) -> None:
        job = self.sender()  # type: ignore[attr-defined]
        if job in self._live_jobs:
            self._live_jobs.remove(job)
        self._job_callbacks.pop(job, None)
        job.deleteLater()
        self.jobs_changed()


def _stop_each(jobs: list[Job], *_destroyed: object) -> None:
    for job in jobs:
        job.stop()


@dataclass(frozen=True)
class _Callbacks:
    slot: str
    on_event: Callable[[Any], None] | None
    on_failed: Callable[[str], None]
    on_finished: Callable[[str], None] | None
