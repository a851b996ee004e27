"""Training off the GUI thread: a QObject worker in a QThread drives ``train()``.

The worker turns each event of the trainer's generator into a Qt signal. Step
events are coalesced: they are sent in batches (``steps(list)``) at most every
``throttle_s`` seconds, and only the newest attention map of a batch is kept, so
a fast model cannot flood the GUI thread. Signals carry the events themselves,
which hold Python numbers, strings and numpy arrays only.

Stop, pause and resume go through the trainer's JobControl (thread-safe, checked
between optimizer steps), so Stop acts within one step. Any exception, a
ConfigError on the first ``next()`` included, ends as ``failed(message)``
followed by ``finished(DoneEvent(status="failed"))``: the GUI never sees a raise.

With ``record`` on (the default), the events are tapped by the run store's
recorder on their way (``effstudio.runs.recorder``): a run from the window is
recorded like one from the CLI, here in the window's process, never in the
child process that trains, so it is recorded once.

:class:`TrainingJob` owns the thread and the worker and cleans both up;
``shutdown()`` stops a run and waits for its thread (used when the window closes).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal, Slot

from effstudio.config import ConfigError
from effstudio.engine.events import (
    AttentionEvent,
    CheckpointEvent,
    DoneEvent,
    EvalEvent,
    Event,
    JobControl,
    LogEvent,
    MemoryEvent,
    StartEvent,
    StepEvent,
)
from effstudio.engine.run_config import RunConfig

TrainFn = Callable[..., Iterator[Event]]


def default_train_fn() -> TrainFn:
    from effstudio.engine.trainer import train

    return train


class TrainWorker(QObject):
    """Runs one training generator; lives in a worker thread while it runs."""

    started = Signal(object)  # StartEvent
    steps = Signal(list)  # list[StepEvent], coalesced
    evaluated = Signal(object)  # EvalEvent
    attention = Signal(object)  # AttentionEvent (newest only)
    memory = Signal(object)  # MemoryEvent
    checkpoint = Signal(object)  # CheckpointEvent
    log = Signal(str, str)  # level, message
    recorded = Signal(int)  # the run's id in the run store
    failed = Signal(str)  # a clear, one-paragraph message
    config_error = Signal(str, str)  # field, message: the form highlights the field
    finished = Signal(object)  # DoneEvent, always the last signal

    def __init__(
        self,
        config: RunConfig,
        *,
        out_dir: Path | None = None,
        resume: Path | None = None,
        init: Path | None = None,
        train_fn: TrainFn | None = None,
        throttle_s: float = 0.05,
        record: bool = True,
        record_config: Any = None,
    ):
        """``record`` writes the run to the run store (here, in the window's process, not in a child);
        ``record_config`` is what the store keeps as its config (a RunPlan with compression steps),
        by default ``config``."""
        super().__init__()
        self.config = config
        self.record = record
        self.record_config = record_config if record_config is not None else config
        self.out_dir = out_dir
        self.resume_from = resume
        self.init_from = init
        self.train_fn = train_fn
        self.throttle_s = throttle_s
        self.control = JobControl()
        self._pending_steps: list[StepEvent] = []
        self._pending_attention: AttentionEvent | None = None
        self._pending_memory: MemoryEvent | None = None
        self._last_flush = 0.0
        self._failed_sent = False
        self.done: DoneEvent | None = None

    # ----------------------------------------------------- control (any thread)
    # No signals here: this object lives in the worker thread, and a signal emitted
    # from the GUI thread could be queued to it while it is busy training.
    def stop(self) -> None:
        self.control.stop()

    def pause(self) -> None:
        if not self.control.stop_requested:
            self.control.pause()

    def resume(self) -> None:
        self.control.resume()

    @property
    def is_paused(self) -> bool:
        return self.control.paused

    # ------------------------------------------------------- the worker thread
    @Slot()
    def run(self) -> None:
        started = time.perf_counter()
        done: DoneEvent | None = None
        self._failed_sent = False
        try:
            train = self.train_fn or default_train_fn()
            events = train(self.config, control=self.control, out_dir=self.out_dir, resume=self.resume_from,
                           init=self.init_from)
            if self.record:
                from effstudio.runs.recorder import record_run, recording_enabled

                if recording_enabled():
                    events = record_run(events, self.record_config, source="gui")
            for event in events:
                if isinstance(event, DoneEvent):
                    done = event
                    break
                self._dispatch(event)
        except ConfigError as err:
            self._flush()
            self.config_error.emit(err.field, err.message)
            done = self._failure(f"Invalid setting {err.field}: {err.message}", started)
        except Exception as err:  # anything from a model, a task, a plugin or the child process
            self._flush()
            details = getattr(err, "details", "") or traceback.format_exc()
            self.log.emit("error", details.rstrip())
            what = str(err) if hasattr(err, "details") else f"{type(err).__name__}: {err}"
            done = self._failure(f"Training failed: {what}", started)
        finally:
            self._flush()
            if done is None:
                done = self._failure("Training ended without a final event.", started)
            elif done.status == "failed" and not self._failed_sent:
                self.failed.emit(done.error or "Training failed.")
            self.done = done
            self.finished.emit(done)
            thread = self.thread()
            app = QCoreApplication.instance()
            if thread is not None and (app is None or thread is not app.thread()):
                thread.quit()  # a direct call: the GUI thread may be blocked in wait()

    def _failure(self, message: str, started: float) -> DoneEvent:
        self._failed_sent = True
        self.failed.emit(message)
        self.log.emit("error", message)
        return DoneEvent(0, None, None, None, time.perf_counter() - started, "failed", message)

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, StepEvent):
            self._pending_steps.append(event)
            if time.perf_counter() - self._last_flush >= self.throttle_s:
                self._flush()
            return
        if isinstance(event, AttentionEvent):
            self._pending_attention = event
            return
        if isinstance(event, MemoryEvent):
            self._pending_memory = event
            return
        self._flush()  # keep rare events in order with the steps before them
        if isinstance(event, StartEvent):
            self.started.emit(event)
        elif isinstance(event, EvalEvent):
            self.evaluated.emit(event)
        elif isinstance(event, CheckpointEvent):
            self.checkpoint.emit(event)
        elif isinstance(event, LogEvent):
            self.log.emit(event.level, event.message)
        elif event.kind == "run":  # RunRecordedEvent
            self.recorded.emit(event.id)
        else:
            self.log.emit("info", f"{event.kind}: {event.to_json()}")

    def _flush(self) -> None:
        self._last_flush = time.perf_counter()
        if self._pending_steps:
            batch, self._pending_steps = self._pending_steps, []
            self.steps.emit(batch)
        if self._pending_memory is not None:
            memory, self._pending_memory = self._pending_memory, None
            self.memory.emit(memory)
        if self._pending_attention is not None:
            attention, self._pending_attention = self._pending_attention, None
            self.attention.emit(attention)


class TrainingJob(QObject):
    """One run: its worker, its thread, and a clean way to end both.

    It lives in the GUI thread, so ``paused_changed`` reaches GUI slots directly.
    """

    paused_changed = Signal(bool)

    def __init__(self, worker: TrainWorker, parent: QObject | None = None):
        super().__init__(parent)
        self.worker = worker
        self.qthread = QThread()
        self.qthread.setObjectName("effstudio-training")
        worker.moveToThread(self.qthread)
        self.qthread.started.connect(worker.run)

    def start(self) -> None:
        self.qthread.start()

    @property
    def running(self) -> bool:
        return self.qthread.isRunning()

    def stop(self) -> None:
        self.worker.stop()

    def pause(self) -> None:
        if self.running and not self.worker.is_paused and not self.worker.control.stop_requested:
            self.worker.pause()
            self.paused_changed.emit(True)

    def resume(self) -> None:
        if self.worker.is_paused:
            self.worker.resume()
            self.paused_changed.emit(False)

    @property
    def paused(self) -> bool:
        return self.worker.is_paused

    def wait(self, timeout_ms: int = 30_000) -> bool:
        return self.qthread.wait(timeout_ms)

    def shutdown(self, timeout_ms: int = 30_000) -> bool:
        """Stop the run and wait for its thread; True when the thread has ended."""
        if not self.qthread.isRunning():
            return True
        self.worker.stop()
        return self.qthread.wait(timeout_ms)
