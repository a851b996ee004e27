"""Events of the compression jobs (prune, quantize, distill, export, compare).

Like the engine's events they hold Python numbers and strings only; the
``result`` event is the last one of every job that writes a file, and its
``to_json()`` is the CLI's final ``--json`` record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from effstudio.engine.events import Event


@dataclass(frozen=True)
class PruneStepEvent(Event):
    """One step of a pruning schedule: the sparsity reached and the accuracy there.

    ``sparsity`` is the fraction of prunable weights removed (zeroed, or cut
    away with their heads and neurons); ``accuracy`` is measured after the
    step's fine-tuning (or right after pruning when there is none).
    """

    kind: ClassVar[str] = "prune_step"
    step: int
    total_steps: int
    sparsity: float
    accuracy: float
    params: int


@dataclass(frozen=True)
class DistillStepEvent(Event):
    """A distillation step: the mixed loss and its two parts."""

    kind: ClassVar[str] = "distill_step"
    step: int
    total_steps: int
    loss: float
    kl: float
    task_loss: float
    hidden_loss: float | None = None


@dataclass(frozen=True)
class DistillEvalEvent(Event):
    kind: ClassVar[str] = "distill_eval"
    step: int
    student_accuracy: float
    teacher_accuracy: float


@dataclass(frozen=True)
class CompareRowEvent(Event):
    """One variant measured by ``compare``; ``to_json()`` gives exactly the contract fields."""

    kind: ClassVar[str] = "compare_row"
    name: str
    params: int
    file_bytes: int
    accuracy: float | None
    latency_ms_b1: float | None
    latency_ms_b32: float | None
    peak_mb: float | None
    latency_p95_ms_b1: float | None = None
    latency_p95_ms_b32: float | None = None
    path: str = ""
    error: str | None = None
    length: int | None = None  # tokens of every timed sequence (None: images, taken whole)
    peak_mb_note: str = ""  # what Peak MB measured, or why it is missing
    params_note: str = ""  # what differs in the parameter count (an ONNX graph's extra constants)
    max_abs_diff: float | None = None  # an ONNX file's largest logit difference against PyTorch, when checked
    reused: tuple[str, ...] = ()  # figures taken from an earlier measurement of the same file ("accuracy", ...)

    CONTRACT: ClassVar[tuple[str, ...]] = ("name", "params", "file_bytes", "accuracy", "latency_ms_b1",
                                           "latency_ms_b32", "peak_mb")

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.CONTRACT}


@dataclass(frozen=True)
class CompareVerdictEvent(Event):
    """After the rows of one comparison: the length every variant was timed at, and whether the
    timings hold (``holds`` false: the machine was too busy, ``text`` says by how much)."""

    kind: ClassVar[str] = "compare_verdict"
    length: int | None
    holds: bool
    text: str


@dataclass(frozen=True)
class ProgressEvent(Event):
    """A long step's progress: ``done`` of ``total`` units (examples, steps, rounds) after ``elapsed_s``."""

    kind: ClassVar[str] = "progress"
    stage: str  # what runs: "evaluating the original", "fine-tuning", "timing"...
    done: int
    total: int
    elapsed_s: float

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the rate so far; None before the first unit is done."""
        if self.done <= 0 or self.total <= 0:
            return None
        return self.elapsed_s * (self.total - self.done) / self.done


@dataclass(frozen=True)
class ResultEvent(Event):
    """What a job wrote and what it measured.

    ``accuracy`` is the new model's eval accuracy and ``baseline_accuracy`` the
    input's, on the same split; ``details`` holds the job's own figures (a
    sparsity report, a parity difference, a latency).
    """

    kind: ClassVar[str] = "result"
    method: str
    path: str
    params: int
    baseline_params: int
    file_bytes: int
    accuracy: float | None
    baseline_accuracy: float | None
    details: dict[str, Any] = field(default_factory=dict)
