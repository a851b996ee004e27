"""Record a run by tapping the training generator's events.

``record_run(train(config, ...), config)`` yields the same events as ``train``
(and, right after the StartEvent, a :class:`RunRecordedEvent` with the run's id),
and writes them to the run store on the way: the run row at the start, metrics
in batches, checkpoints as artifacts, the status at the end. The CLI wraps its
generator this way; the GUI wraps it in its worker thread, in the window's
process (the child process that trains records nothing), so every run is
recorded exactly once. Under torchrun only rank 0 records.

Logging never slows training: a step costs a few list appends. Rows are handed
to a background writer thread (its own SQLite connection) every ``flush_s``
seconds and at evaluations, checkpoints and the end; the writer also beats a
heartbeat while a run is quiet. A store that cannot be written (disk full, a
locked or broken file) costs the run its record, never the run: a warning is
logged once and training goes on.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import effstudio
from effstudio.bounded_parse import json_lines
from effstudio.config import ConfigError, describe_kind, parse_typed, record_values
from effstudio.engine.events import (
    CheckpointEvent,
    DoneEvent,
    EvalEvent,
    Event,
    LogEvent,
    MemoryEvent,
    StartEvent,
    StepEvent,
)
from effstudio.engine.run_plan import RunPlan, artifact_kind
from effstudio.paths import confine, open_regular_file, refuse_symlink_loop
from effstudio.runs.store import RunStore, RunStoreError, default_path

if TYPE_CHECKING:
    from effstudio.engine.run_config import RunConfig

FLUSH_S = 2.0  # at most this long between writes of step metrics
HEARTBEAT_S = 30.0
STEP_METRICS = ("loss", "lr", "tokens_per_s", "grad_norm")
MEMORY_METRICS = ("rss_mb", "cuda_allocated_mb", "cuda_reserved_mb", "cuda_peak_mb")
_STOP = object()


@dataclass(frozen=True)
class RunRecordedEvent(Event):
    """Follows the StartEvent of a recorded run: its id in the run store, and the store's file."""

    kind: ClassVar[str] = "run"
    id: int
    store: str


def recording_enabled() -> bool:
    """False when ``EFFSTUDIO_RECORD_RUNS=0`` (or ``false``/``no``/``off``) turns the run store off."""
    return os.environ.get("EFFSTUDIO_RECORD_RUNS", "1").strip().lower() not in ("0", "false", "no", "off")


def _versions() -> dict[str, str]:
    import torch

    return {"effstudio": effstudio.__version__, "torch": torch.__version__}


class _Writer(threading.Thread):
    """Applies queued writes to the store in order, from its own connection."""

    def __init__(self, path: Path):
        super().__init__(name="effstudio-run-store", daemon=True)
        self.path = path
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.error: str | None = None
        self.run_id: int | None = None

    def submit(self, job: Callable[[RunStore], Any]) -> None:
        self.jobs.put(job)

    def run(self) -> None:
        store: RunStore | None = None
        try:
            store = RunStore(self.path, recover=False, migrate=False)
            while True:
                try:
                    job = self.jobs.get(timeout=HEARTBEAT_S)
                except queue.Empty:
                    if self.run_id is not None and self.error is None:
                        self._apply(store, lambda s: s.heartbeat(self.run_id))
                    continue
                if job is _STOP:
                    return
                if self.error is None:  # after a failure, drain without writing
                    self._apply(store, job)
        except (RunStoreError, sqlite3.Error) as err:
            self.error = str(err)
            while self.jobs.get() is not _STOP:
                pass
        finally:
            if store is not None:
                store.close()

    def _apply(self, store: RunStore, job: Callable[[RunStore], Any]) -> None:
        try:
            job(store)
        except (RunStoreError, sqlite3.Error, OSError) as err:
            self.error = str(err)

    def stop(self, timeout_s: float = 30.0) -> None:
        self.jobs.put(_STOP)
        self.join(timeout_s)


class RunRecorder:
    """Writes one run's events to the store; drive it with :meth:`wrap`."""

    def __init__(self, config: RunConfig | RunPlan, *, source: str = "cli", name: str | None = None,
                 path: str | Path | None = None, flush_s: float = FLUSH_S, world_size: int = 1):
        self.config = config
        self.source, self.name, self.world_size = source, name, world_size
        self.path = Path(path) if path is not None else default_path()
        self.flush_s = flush_s
        self.run_id: int | None = None
        self.finished = False
        self.error: str | None = None
        self._rows: list[tuple[int, str, int, float | None, float]] = []
        self._progress: dict[str, Any] = {}
        self._last_flush = time.monotonic()
        self._writer: _Writer | None = None
        self._warned = False

    # ------------------------------------------------------------- the stream
    def wrap(self, events: Iterable[Event]) -> Iterator[Event]:
        """Yield ``events`` unchanged (plus a RunRecordedEvent after the start), recording them."""
        try:
            for event in events:
                extra = self.handle(event)
                yield event
                yield from extra
            self.abandon("interrupted", "the run's events ended without a final event")
        except GeneratorExit:  # the consumer stopped listening before the run's end
            self.abandon("interrupted", "the program driving the run stopped before it ended")
            raise
        except KeyboardInterrupt:
            self.abandon("interrupted", "interrupted (Ctrl+C)")
            raise
        except BaseException as err:
            self.abandon("failed", f"{type(err).__name__}: {err}")
            raise
        finally:
            self.close()
            close = getattr(events, "close", None)
            if close is not None:
                close()  # a generator left mid-run ends now (the trainer saves, a child process stops)

    def handle(self, event: Event) -> list[Event]:
        """Record one event; return events to pass on after it (the run id, a warning)."""
        try:
            if isinstance(event, StepEvent):
                wall = time.time()
                run_id, step = self.run_id, event.step
                if run_id is not None:
                    self._rows += [(run_id, "loss", step, event.loss, wall), (run_id, "lr", step, event.lr, wall),
                                   (run_id, "tokens_per_s", step, event.tokens_per_s, wall),
                                   (run_id, "grad_norm", step, event.grad_norm, wall)]
                    for name, value in (getattr(event, "metrics", None) or {}).items():  # a model's extras
                        self._rows.append((run_id, name, step, value, wall))
                    self._progress["steps"] = step
                    if time.monotonic() - self._last_flush >= self.flush_s:
                        self.flush()
                        return self._warning()
                return []
            if isinstance(event, StartEvent):
                return self._start(event)
            if self.run_id is None:
                return []
            if isinstance(event, MemoryEvent):
                wall = time.time()
                for name in MEMORY_METRICS:
                    value = getattr(event, name)
                    if value is not None:
                        self._rows.append((self.run_id, name, event.step, value, wall))
            elif isinstance(event, EvalEvent):
                wall = time.time()
                self._rows += [(self.run_id, "val_loss", event.step, event.val_loss, wall),
                               (self.run_id, "val_accuracy", event.step, event.val_accuracy, wall)]
                self._progress.update(val_loss=event.val_loss, val_accuracy=event.val_accuracy)
                self.flush()
                return self._warning()
            elif isinstance(event, CheckpointEvent):
                run_id, path, step = self.run_id, event.path, event.step
                self.flush()
                self._submit(lambda store: store.add_artifact(run_id, "checkpoint", path, step))
            elif isinstance(event, DoneEvent):
                self._finish(event)
                return self._warning()
        except (RunStoreError, sqlite3.Error, OSError) as err:
            self.error = self.error or str(err)
            return self._warning()
        return []

    # ------------------------------------------------------------- internals
    def _start(self, event: StartEvent) -> list[Event]:
        config = self.config.to_dict()
        attention = getattr(self.config, "attention_kind", None)
        versions = _versions()
        with RunStore(self.path) as store:  # opening it also marks crashed runs interrupted
            run_id = store.resumable_run(event.run_dir) if event.start_step > 0 else None
            if run_id is not None:
                store.continue_run(run_id, start_step=event.start_step, config=config,
                                   total_steps=event.total_steps, device=event.device,
                                   world_size=self.world_size, versions=versions)
            else:
                run_id = store.create_run(
                    config=config, model_type=self.config.model_type, task=self.config.task_name,
                    attention=attention, name=self.name, device=event.device, run_dir=event.run_dir,
                    params=event.params, start_step=event.start_step, total_steps=event.total_steps,
                    source=self.source, world_size=self.world_size, versions=versions)
        self.run_id = run_id
        self._writer = _Writer(self.path)
        self._writer.run_id = run_id
        self._writer.start()
        return [RunRecordedEvent(run_id, str(self.path))]

    def _submit(self, job: Callable[[RunStore], Any]) -> None:
        if self._writer is not None:
            self._writer.submit(job)

    def flush(self) -> None:
        """Hand the pending rows to the writer thread (it writes them in one transaction)."""
        self._last_flush = time.monotonic()
        if self.run_id is None or (not self._rows and not self._progress):
            return
        rows, self._rows = self._rows, []
        progress, self._progress = {self.run_id: self._progress}, {}
        self._submit(lambda store: store.add_metrics(rows, progress))

    def _finish(self, done: DoneEvent) -> None:
        if self.run_id is None or self.finished:
            return
        self.finished = True
        self.flush()
        run_id = self.run_id
        if done.checkpoint:
            checkpoint = done.checkpoint
            self._submit(lambda store: store.add_artifact(run_id, "checkpoint", checkpoint, done.steps))
        self._submit(lambda store: store.finish_run(run_id, done.status, steps=done.steps,
                                                    final_loss=done.final_loss,
                                                    val_accuracy=done.val_accuracy, error=done.error))
        self._stop_writer()

    def abandon(self, status: str, message: str) -> None:
        """The stream ended without a DoneEvent: record what is known and why."""
        if self.run_id is None or self.finished:
            return
        self.finished = True
        self.flush()
        run_id = self.run_id
        self._submit(lambda store: store.finish_run(run_id, status, error=message))
        self._stop_writer()

    def _stop_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.stop()
            if writer.error:
                self.error = self.error or writer.error

    def close(self) -> None:
        self._stop_writer()

    def _warning(self) -> list[Event]:
        if self.error is None and self._writer is not None:
            self.error = self._writer.error
        if self.error is None or self._warned:
            return []
        self._warned = True
        return [LogEvent("warning", f"the run store {self.path} could not record this run: {self.error}")]


def record_run(events: Iterable[Event], config: RunConfig | RunPlan, *, source: str = "cli", name: str | None = None,
               path: str | Path | None = None, flush_s: float = FLUSH_S, world_size: int = 1) -> Iterator[Event]:
    """``events`` passed through, recorded in the run store (see the module docstring)."""
    recorder = RunRecorder(config, source=source, name=name, path=path, flush_s=flush_s, world_size=world_size)
    return recorder.wrap(events)


# ------------------------------------------------------------ other artifacts
def record_artifact(run_id: int, kind: str, path: str | Path, *, store_path: str | Path | None = None,
                    step: int | None = None) -> str | None:
    """Add a file (a pruned model, an ONNX export...) to a recorded run; None, or why it could not."""
    try:
        with RunStore(store_path, recover=False) as store:
            store.add_artifact(run_id, kind, str(Path(path).absolute()), step)
    except (RunStoreError, sqlite3.Error, OSError) as err:
        return str(err)
    return None


def record_output(source: str | Path, path: str | Path, kind: str, *,
                  store_path: str | Path | None = None) -> int | None:
    """Record ``path``, made from ``source``, as an artifact of the run that ``source`` belongs to.

    Returns the run's id; None when recording is off, there is no run store yet, ``source`` is no
    run's file, or the store cannot be written: a file made by hand from some checkpoint is not an
    error, and a compression job never fails for the sake of its record.
    """
    store_file = Path(store_path) if store_path is not None else default_path()
    if not recording_enabled() or not store_file.is_file():
        return None
    try:
        with RunStore(store_file, recover=False) as store:
            run_id = store.run_of_file(source)
            if run_id is not None:
                store.add_artifact(run_id, kind, str(Path(path).absolute()))
    except (RunStoreError, sqlite3.Error, OSError):
        return None
    return run_id


# ----------------------------------------------------------------- importing
_EVENT_TYPES = {cls.kind: cls for cls in (StartEvent, StepEvent, EvalEvent, MemoryEvent, CheckpointEvent,
                                          LogEvent, DoneEvent)}


def _event_from_json(record: Any) -> Event | None:
    """The event a line of events.jsonl records, its fields parsed and checked by the config layer;
    None for a kind of record that the store does not keep (attention maps, compression steps)."""
    if not isinstance(record, Mapping):
        raise ConfigError("event", f"expected a JSON object, got {describe_kind(record)}")
    kind = record.get("event", "")
    if not isinstance(kind, str):
        raise ConfigError("event", f"expected text, got {describe_kind(kind)}")
    cls = _EVENT_TYPES.get(kind)
    if cls is None:
        return None
    return cls(**record_values(cls, record))


def _file_of_run(named: Any, folder: Path, recorded_dir: str | None, field: str, log: Path) -> Path:
    """A file an imported run's event log names, as a file of the run folder ``folder``.

    A path inside the folder the run was recorded in (``recorded_dir``, from the log's start
    event) is the same file in ``folder``, where it was copied to; another relative path is
    relative to ``folder``. Anything that leads elsewhere is refused (ConfigError): an imported
    run's files stay in its folder."""
    if not isinstance(named, str) or not named:
        raise ConfigError(field, f"expected a file name in {log}, got {named!r}")
    path = Path(named)
    if isinstance(recorded_dir, str) and recorded_dir:  # `train --out run1` logs run1/checkpoint...
        try:
            path = path.relative_to(recorded_dir)
        except ValueError:
            pass
    return confine(path, folder, field, log)


def import_run_dir(run_dir: str | Path, *, path: str | Path | None = None, name: str | None = None) -> int:
    """Record a run from its folder (``config.toml`` and ``events.jsonl``), e.g. one trained on a cluster
    with ``--no-record`` and copied home; return its id. Paths are taken as the folder's current place;
    start and end times come from the event log's modification time and the run's duration.

    Both files are read and checked in full before the store is touched: a bad value (a line that is
    not an event object, a field of the wrong type, a line too long or too deeply nested, text that is
    not UTF-8, a symlink loop) is a ConfigError or PathError naming the file, the line and the field,
    and nothing is recorded.
    """
    refuse_symlink_loop(run_dir)
    folder = Path(run_dir).resolve()
    log = folder / "events.jsonl"
    config_file = folder / "config.toml"
    for part in (log, config_file):
        refuse_symlink_loop(part)
    if not log.exists() or not config_file.exists():
        raise RunStoreError(f"{folder} is not a run folder (it needs config.toml and events.jsonl)")
    config = RunPlan.from_toml(config_file)
    config.config.check_paths()  # what the config reads stays in the folder too (or --allow-path)
    recorded_dir: str | None = None  # where the run was when it wrote its log (its start event)
    outputs: list[tuple[str, Path]] = []  # the files of its compression steps
    with RunStore(path) as store:
        if store.resumable_run(str(folder)) is not None:
            raise RunStoreError(f"{folder} is already recorded as run {store.resumable_run(str(folder))}")
    segments: list[list[Event]] = []
    with open_regular_file(log, what="event log") as handle:
        for number, record in json_lines(handle, source=log):
            if record is None:
                continue  # a line cut short by a crash
            try:
                event = _event_from_json(record)
                if record.get("event") == "result" and record.get("path"):
                    method = parse_typed("method", str, record.get("method", ""))
                    outputs.append((artifact_kind(method),
                                    _file_of_run(record["path"], folder, recorded_dir, "result.path", log)))
            except ConfigError as err:
                raise err.in_source(f"{log}:{number}") from None
            if isinstance(event, StartEvent):
                recorded_dir = event.run_dir
                event = StartEvent(str(folder), event.device, event.params, event.total_steps, event.start_step)
                segments.append([])
            elif isinstance(event, CheckpointEvent):
                event = CheckpointEvent(event.step, str(_file_of_run(event.path, folder, recorded_dir,
                                                                     "checkpoint.path", log)))
            elif isinstance(event, DoneEvent) and event.checkpoint:
                checkpoint = _file_of_run(event.checkpoint, folder, recorded_dir, "done.checkpoint", log)
                event = DoneEvent(event.steps, event.final_loss, event.val_accuracy,
                                  str(checkpoint), event.seconds, event.status, event.error)
            if event is not None and segments:
                segments[-1].append(event)
    if not segments:
        raise RunStoreError(f"{log} holds no start event")
    run_id = None
    seconds = 0.0
    for events in segments:
        recorder = RunRecorder(config, source="import", name=name, path=path)
        for _ in recorder.wrap(iter(events)):
            pass
        if recorder.error:
            raise RunStoreError(recorder.error)
        run_id = recorder.run_id if run_id is None else run_id
        seconds += next((e.seconds for e in events if isinstance(e, DoneEvent)), 0.0)
    ended = log.stat().st_mtime
    with RunStore(path) as store:
        run = store.get_run(run_id)
        store.update_run(run_id, started_at=ended - seconds, ended_at=ended if run.status != "running" else None)
        for kind, output in outputs:
            store.add_artifact(run_id, kind, str(output))
    return int(run_id)
