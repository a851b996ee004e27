"""What the evaluation and drift jobs yield, and the error they raise on bad input."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from effstudio.engine.events import Event
from effstudio.evaluate.results import DriftReport, Evaluation


class EvaluateError(ValueError):
    """Bad input to an evaluation or drift check (a file that does not fit its task, an empty split):
    one line that names the file and says what differs; nothing is written."""


@dataclass(frozen=True)
class EvaluateProgress(Event):
    """``stage`` of ``file`` ("predicting", "calibrating", "length x4", "robustness substitution"...)
    is at ``done`` of ``total`` steps."""

    kind: ClassVar[str] = "evaluate_progress"
    file: str
    stage: str
    done: int
    total: int


@dataclass(frozen=True)
class Evaluated(Event):
    """One file's evaluation, complete; ``warnings`` are one line each (labels the model never saw...)."""

    kind: ClassVar[str] = "evaluated"
    file: str
    evaluation: Evaluation
    warnings: tuple[str, ...] = ()

    def to_json(self) -> dict:
        return {"event": self.kind, "file": self.file, **self.evaluation.to_json()}


@dataclass(frozen=True)
class DriftProgress(Event):
    kind: ClassVar[str] = "drift_progress"
    stage: str
    done: int
    total: int


@dataclass(frozen=True)
class Drifted(Event):
    kind: ClassVar[str] = "drifted"
    report: DriftReport

    def to_json(self) -> dict:
        return {"event": self.kind, **self.report.to_json()}
