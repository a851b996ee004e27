"""The Evaluate section's jobs: the core's evaluation, drift check and example look-up as JobHost job
functions (the core honours the job's stop request between its steps)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effstudio.engine.events import JobControl
from effstudio.evaluate.drift import drift
from effstudio.evaluate.events import EvaluateError
from effstudio.evaluate.results import Evaluation
from effstudio.evaluate.run import ExampleDetail, evaluate, examples_of

JobFn = Callable[[JobControl], Iterator[Any]]


@dataclass(frozen=True)
class ExampleFetched:
    """An example of an evaluated file, decoded (and its attention map), for the window's lists."""

    file: str
    index: int
    detail: ExampleDetail


def bad_input_line(message: str) -> str:
    """A job's failure as the user reads it: bad input is its own one line, without the error's class name."""
    return message.removeprefix(f"{EvaluateError.__name__}: ")


def evaluate_job(files: list[Path], **options: Any) -> JobFn:
    """``options`` are evaluate()'s keywords (task, split, factors, extend_positions, robustness, calibrate)."""
    return lambda control: evaluate(files, control=control, **options)


def drift_job(checkpoint: Path, reference: str, current: Path) -> JobFn:
    return lambda control: drift(checkpoint, reference=reference, current=current, control=control)


def examples_job(file: Path, evaluation: Evaluation, indices: list[int]) -> JobFn:
    """Decode ``indices`` of the evaluated split one after the other (the first is shown first)."""

    def job(control: JobControl) -> Iterator[ExampleFetched]:
        for index in indices:
            if control.stop_requested:
                return
            yield ExampleFetched(str(file), index, examples_of(file, evaluation, index))

    return job
