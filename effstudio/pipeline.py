"""The training flow, one generator for every front-end: train -> run record -> events log ->
compression steps -> artifacts.

:func:`run_pipeline` yields, in order, the trainer's events (with the run store's RunRecordedEvent
after the start), then, when the plan has ``[[compress]]`` steps, the steps' events ending with a
CompressDoneEvent. On the way it appends every event to the run folder's ``events.jsonl`` (what
``effstudio runs import`` reads back) and, through the steps, records each output file as an
artifact of the run. :func:`recorded_outputs` does the same for one compression job run by hand
(``effstudio prune``, the Compress section). ``effstudio train`` drives it with a progress bar, the window with its worker
(passing its child-process training function as ``train_fn``), the tests with a plain loop.

``stage`` on the :class:`Pipeline` says which part the event just yielded belongs to, for a
front-end that shows training and compression differently.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import IO, Protocol

from effstudio.atomic_file import write_text_atomic
from effstudio.compress.events import ProgressEvent, ResultEvent
from effstudio.compress.steps import CompressDoneEvent, CompressStepEvent, run_steps
from effstudio.engine import trainer
from effstudio.engine.checkpoint import (
    CheckpointError,
    naming_task_files,
    read_info,
    saved_task_data,
)
from effstudio.engine.distributed import context_from_env, leave_process_group, single_process
from effstudio.engine.events import DoneEvent, Event, JobControl, LogEvent, StartEvent
from effstudio.engine.run_config import RunConfig
from effstudio.engine.run_lock import RunFolderBusy, RunFolderLock
from effstudio.engine.run_plan import RunPlan, artifact_kind
from effstudio.runs.recorder import (
    RunRecordedEvent,
    record_artifact,
    record_output,
    record_run,
    recording_enabled,
)

TRAINING, COMPRESSING = "training", "compressing"


class TrainFn(Protocol):
    """``engine.trainer.train`` or a stand-in with its arguments and events (the window's child process)."""

    def __call__(self, config: RunConfig, *, control: JobControl | None = None, out_dir: Path | None = None,
                 resume: Path | None = None, init: Path | None = None) -> Iterator[Event]: ...


def print_warning(message: str) -> None:
    """How a problem with the events log is told by default: one line on stderr, as the CLI does."""
    print(f"effstudio: warning: {message}", file=sys.stderr)


class EventLog:
    """A run folder's ``events.jsonl``, one JSON record per line. It never fails the run: a log that
    cannot be opened or written (a full disk) is a warning, and writing stops."""

    def __init__(self, run_dir: Path, warn: Callable[[str], None]):
        self.warn = warn
        self.path = run_dir / "events.jsonl"
        self.file: IO[str] | None = None
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            _end_last_line(self.path)
            self.file = open(self.path, "a", encoding="utf-8", buffering=1)
        except OSError as err:
            warn(f"cannot write {self.path}: {err.strerror or err}")

    def write(self, event: Event) -> None:
        if self.file is None:
            return
        try:
            self.file.write(json.dumps(event.to_json()) + "\n")
        except OSError as err:
            self.warn(f"stopped writing {self.path}: {err.strerror or err}")
            self.close()

    def close(self) -> None:
        file, self.file = self.file, None
        if file is not None:
            with suppress(OSError):
                file.close()


def _end_last_line(path: Path) -> None:
    """End a last line cut short by a killed run, so that the records appended now start on a line of
    their own and `runs import` still finds them."""
    with open(path, "a+b", buffering=0) as handle:
        if handle.seek(0, os.SEEK_END) > 0:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                handle.write(b"\n")


class Pipeline:
    """One run of a plan; iterate over it for its events (see the module docstring)."""

    def __init__(self, plan: RunPlan, *, control: JobControl | None = None, out_dir: Path | None = None,
                 resume: Path | None = None, init: Path | None = None, train_fn: TrainFn | None = None,
                 source: str = "cli", name: str | None = None, record: bool = True,
                 warn: Callable[[str], None] = print_warning):
        self.plan, self.warn = plan, warn
        self.control = control if control is not None else JobControl()
        self.out_dir, self.resume, self.init = out_dir, resume, init
        self.train_fn = train_fn
        self.source, self.name, self.record = source, name, record
        self.stage = TRAINING
        self.run_dir: Path | None = None  # from the StartEvent
        self.done: DoneEvent | None = None  # the training's end
        self.recorded: RunRecordedEvent | None = None  # the run's id and store, when it is recorded

    def __iter__(self) -> Iterator[Event]:
        dist = context_from_env()
        yield from self._training(dist.is_main, dist.world_size)
        if dist.is_main:
            # under torchrun, rank 0 alone compresses what it saved, as a process of its own
            with single_process():
                yield from self.compression()

    def training(self, control: JobControl | None = None) -> Iterator[Event]:
        """The training stage alone, in one process, stopped by ``control`` when given (a front-end that
        shows the stages in two places, as the window does, drives :meth:`compression` afterwards)."""
        if control is not None:
            self.control = control
        return self._training(True, 1)

    def compression(self, control: JobControl | None = None) -> Iterator[Event]:
        """The plan's compression steps on what training saved; nothing when the plan has none."""
        if control is not None:
            self.control = control
        if not self.plan.compress or self.done is None:
            return
        self.stage = COMPRESSING
        yield from self._compression(self.done)

    def _training(self, is_main: bool, world_size: int) -> Iterator[Event]:
        plan = self.plan
        log: EventLog | None = None
        events: Iterator[Event] | None = None
        try:
            train = self.train_fn or trainer.train  # looked up at each run, not at import
            events = train(plan.config, control=self.control, out_dir=self.out_dir, resume=self.resume,
                           init=self.init)
            if not is_main:  # the other ranks of a torchrun job train, and leave the telling to rank 0
                for _ in events:
                    pass
                return
            if self.record and recording_enabled():
                # the store records the whole plan when there are steps, so that the run reproduces them
                events = record_run(events, plan if plan.compress else plan.config, source=self.source,
                                    name=self.name, world_size=world_size)
            for event in events:
                if isinstance(event, StartEvent):
                    self.run_dir = Path(event.run_dir)
                    log = EventLog(self.run_dir, self.warn)
                elif isinstance(event, RunRecordedEvent):
                    self.recorded = event
                elif isinstance(event, DoneEvent):
                    self.done = event
                if log is not None:
                    log.write(event)
                yield event
        finally:
            close = getattr(events, "close", None)
            if close is not None:  # a run left early ends now (the trainer saves, a child process stops)
                close()
            if log is not None:
                log.close()
            # every rank leaves the job's process group once training is over: a gloo group left to the
            # interpreter's exit can abort a rank ("terminate called without an active exception")
            leave_process_group()

    def _compression(self, done: DoneEvent) -> Iterator[Event]:
        recorded = self.recorded
        events = steps_after_training(self.plan, done, self.run_dir, self.control,
                                      run_id=None if recorded is None else recorded.id,
                                      store_path=None if recorded is None else recorded.store)
        if done.status != "finished" or not done.checkpoint:
            yield from events  # only the "skipped" notice: no run folder to log into
            return
        log = EventLog(self.run_dir or Path(done.checkpoint).parent, self.warn)
        try:
            for event in events:
                if not isinstance(event, ProgressEvent):  # the log keeps what happened, not how far it got
                    log.write(event)
                yield event
        finally:
            log.close()


def run_pipeline(plan: RunPlan, *, control: JobControl | None = None, out_dir: Path | None = None, resume: Path | None = None,
                 init: Path | None = None, train_fn: TrainFn | None = None, source: str = "cli",
                 name: str | None = None, record: bool = True,
                 warn: Callable[[str], None] = print_warning) -> Pipeline:
    """The run of ``plan``, checked beforehand (``RunPlan.checked``); iterate over it for its events.

    ``train_fn`` trains (default: ``engine.trainer.train`` in this process); ``source`` and ``name`` go
    into the run store, unless ``record`` is false or EFFSTUDIO_RECORD_RUNS=0 turns it off; ``warn``
    tells a problem with the events log."""
    return Pipeline(plan, control=control, out_dir=out_dir, resume=resume, init=init, train_fn=train_fn,
                    source=source, name=name, record=record, warn=warn)


def steps_after_training(plan: RunPlan, done: DoneEvent, run_dir: str | Path | None = None,
                         control: JobControl | None = None, *, run_id: int | None = None,
                         store_path: str | Path | None = None) -> Iterator[Event]:
    """What follows a run of a plan with steps, for ``train --config`` and the window alike.

    A run that did not finish with a checkpoint gives one CompressDoneEvent ``skipped``. Otherwise
    the run folder's ``config.toml`` (the trainer wrote the training part) becomes the whole plan,
    so it reproduces the run; then :func:`run_steps` runs, and each output is recorded as an artifact
    of the recorded run ``run_id`` (in the run store ``store_path``, default the user's) before its
    ResultEvent is passed on. A store that cannot be written costs a warning, never the step. The
    run folder's lock is held throughout; a folder that another run holds fails the steps in one line.
    """
    steps = plan.compress
    if done.status != "finished" or not done.checkpoint:
        yield CompressDoneEvent("skipped", 0, len(steps), [],
                                f"training {done.status}, so the {len(steps)} compression step(s) did not run")
        return
    folder = Path(run_dir) if run_dir is not None else Path(done.checkpoint).parent
    try:  # the steps read the trained checkpoint: no other run may write the folder meanwhile
        lock = RunFolderLock.acquire(folder)
    except RunFolderBusy as err:
        yield CompressDoneEvent("failed", 0, len(steps), [], f"the compression steps did not run: {err.message}")
        return
    try:
        yield from _steps_in_locked_folder(plan, done, folder, control, run_id, store_path)
    finally:  # also when the window or Ctrl+C closes this generator
        lock.release()


def _as_written_beside(plan: RunPlan, checkpoint: Path) -> RunPlan:
    """The plan as the run folder's config.toml names it: the tokenizer its checkpoint keeps beside both,
    as the trainer writes the file (see naming_task_files)."""
    saved = saved_task_data(read_info(checkpoint))
    return plan if saved is None else plan.with_config(naming_task_files(plan.config, checkpoint, saved))


def _steps_in_locked_folder(plan: RunPlan, done: DoneEvent, folder: Path, control: JobControl | None,
                            run_id: int | None, store_path: str | Path | None) -> Iterator[Event]:
    steps = plan.compress
    try:  # a full disk keeps the training's file
        write_text_atomic(folder / "config.toml", _as_written_beside(plan, Path(done.checkpoint)).to_toml())
    except (OSError, CheckpointError) as err:
        yield LogEvent("warning", f"cannot write {folder / 'config.toml'}: {getattr(err, 'strerror', None) or err}")
    artifact = "compressed"
    for event in run_steps(steps, done.checkpoint, folder, control):
        if isinstance(event, CompressStepEvent):
            artifact = event.artifact
        problem = None
        if isinstance(event, ResultEvent) and run_id is not None:
            problem = record_artifact(run_id, artifact, event.path, store_path=store_path)
        yield event
        if problem:
            yield LogEvent("warning", f"the run store could not record {event.path}: {problem}")


def recorded_outputs(events: Iterator[Event], source: str | Path, *,
                     store_path: str | Path | None = None) -> Iterator[Event]:
    """A compression job's ``events``, with the file it writes recorded as a file of the run that its
    input ``source`` belongs to (a recorded run's checkpoint, or another file made from it).

    The CLI's compress commands and the window's Compress section both run their jobs through
    this, so a file made either way is listed by ``effstudio runs show ID`` and in Runs -> Files.
    When it is recorded, a LogEvent says so just before the job's ResultEvent; an input of no
    recorded run (or a store that cannot be written) records nothing and says nothing.
    """
    for event in events:
        if isinstance(event, ResultEvent):
            run_id = record_output(source, event.path, artifact_kind(event.method), store_path=store_path)
            if run_id is not None:
                yield LogEvent("info", f"recorded as a file of run {run_id} (effstudio runs show {run_id})")
        yield event
