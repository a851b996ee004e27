"""The window's job function: one training run, recorded in the run store.

It is all the window runs when Start is pressed, kept apart so that the one
training pipeline can take its place without touching the window: the window
only reads the events it yields (see ``MainWindow._on_event``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from effstudio.compress.plan import RunPlan
from effstudio.engine.events import Event, JobControl
from effstudio.engine.trainer import train
from effstudio.runs.recorder import record_run, recording_enabled

TrainFn = Callable[..., Iterator[Event]]  # train()'s signature: (config, *, control, out_dir, resume, init)


@dataclass(frozen=True)
class TrainingRun:
    """The window's job function: ``train_fn`` (a child process by default) on the plan's config, its
    events recorded in the run store on their way (here, in the window's process, never in the child
    that trains, so once), with the plan's compression steps when it has some."""

    plan: RunPlan
    train_fn: TrainFn = train
    out_dir: Path | None = None
    resume: Path | None = None
    init: Path | None = None

    def __call__(self, control: JobControl) -> Iterator[Event]:
        events = self.train_fn(self.plan.config, control=control, out_dir=self.out_dir, resume=self.resume,
                               init=self.init)
        if recording_enabled():
            events = record_run(events, self.plan if self.plan.compress else self.plan.config, source="gui")
        return events
