"""What follows training: a run plan's compression steps, run in the locked run folder and recorded in the run store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from effstudio.compress.events import ResultEvent
from effstudio.compress.steps import CompressDoneEvent, CompressStepEvent, run_steps
from effstudio.engine.events import DoneEvent, Event, JobControl, LogEvent
from effstudio.engine.run_config import write_text_atomic
from effstudio.engine.run_lock import RunFolderBusy, RunFolderLock
from effstudio.engine.run_plan import RunPlan
from effstudio.runs.recorder import record_artifact


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


def _steps_in_locked_folder(plan: RunPlan, done: DoneEvent, folder: Path, control: JobControl | None,
                            run_id: int | None, store_path: str | Path | None) -> Iterator[Event]:
    steps = plan.compress
    try:
        write_text_atomic(folder / "config.toml", plan.to_toml())  # a full disk keeps the training's file
    except OSError as err:
        yield LogEvent("warning", f"cannot write {folder / 'config.toml'}: {err.strerror or err}")
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
