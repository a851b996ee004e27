"""Progress of the long steps of the compression jobs: evaluation over a split, reported as it goes.

A job writes ``accuracy = yield from evaluated(...)``: the evaluation's ProgressEvents pass
through to whoever drives the job (the window shows them with an ETA), the accuracy comes back.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import TypeVar

import torch
from torch import nn

from effstudio.compress.events import ProgressEvent
from effstudio.engine.objective import evaluation
from effstudio.tasks.base import Split, TaskSpec

CPU = torch.device("cpu")
T = TypeVar("T")


def reported(stage: str, steps: Generator[int, None, T], total: int) -> Generator[ProgressEvent, None, T]:
    """Pass ``steps`` (yielding units done so far, returning a result) on as ProgressEvents; return its result."""
    started = time.perf_counter()
    yield ProgressEvent(stage, 0, total, 0.0)
    while True:
        try:
            done = next(steps)
        except StopIteration as finished:
            return finished.value
        yield ProgressEvent(stage, done, total, time.perf_counter() - started)


def evaluated(stage: str, model: nn.Module, split: Split, spec: TaskSpec,
              batch_size: int) -> Generator[ProgressEvent, None, float]:
    """The accuracy of ``model`` on ``split`` (on the CPU, as ``evaluate`` gives it), reporting progress."""
    steps = evaluation(model, split, spec.pad_id, spec.objective, batch_size, CPU)
    return (yield from reported(stage, steps, len(split)))[1]
