"""Events that long jobs yield.

They hold Python numbers, strings and numpy arrays only, never live tensors, so a
GUI thread, a JSON-lines log or a test can consume them without touching torch.
``to_json()`` gives the CLI's ``--json`` record; its field names are a contract.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"event": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray) or not f.metadata.get("json", True):
                continue  # arrays are for views, not for logs
            record[f.name] = value
        return record


@dataclass(frozen=True)
class StepEvent(Event):
    kind: ClassVar[str] = "step"
    step: int
    total_steps: int
    loss: float
    lr: float
    tokens_per_s: float
    rss_mb: float
    grad_norm: float
    elapsed_s: float
    # the model's scalar extras (ModelOutput.extras), averaged over the step's micro-batches
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class EvalEvent(Event):
    kind: ClassVar[str] = "eval"
    step: int
    val_loss: float
    val_accuracy: float
    # metrics the task derives from the validation loss, e.g. "val_bits_per_char"
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class AttentionEvent(Event):
    """Attention of the fixed probe sample: maps (L, H, N, N), tokens N labels.

    ``views`` holds the model's array extras for the same forward pass (e.g.
    "ponder_steps" (1, N)), for the GUI's model views; they are not logged.
    A model that returns no attention maps but has views sends maps of shape
    (0, 0, N, N).
    """

    kind: ClassVar[str] = "attention"
    step: int
    maps: np.ndarray
    tokens: tuple[str, ...]
    views: dict[str, np.ndarray] = field(default_factory=dict, metadata={"json": False})


@dataclass(frozen=True)
class MemoryEvent(Event):
    kind: ClassVar[str] = "memory"
    step: int
    rss_mb: float
    device: str
    cuda_allocated_mb: float | None = None
    cuda_reserved_mb: float | None = None
    cuda_peak_mb: float | None = None


@dataclass(frozen=True)
class CheckpointEvent(Event):
    kind: ClassVar[str] = "checkpoint"
    step: int
    path: str


@dataclass(frozen=True)
class LogEvent(Event):
    kind: ClassVar[str] = "log"
    level: str  # "info" | "warning" | "error"
    message: str


@dataclass(frozen=True)
class StartEvent(Event):
    kind: ClassVar[str] = "start"
    run_dir: str
    device: str
    params: int
    total_steps: int
    start_step: int


@dataclass(frozen=True)
class DoneEvent(Event):
    """The last event of a run; ``status`` is "finished", "stopped" or "failed".

    ``final_loss`` is the mean training loss over the last 20 steps.
    """

    kind: ClassVar[str] = "done"
    steps: int
    final_loss: float | None
    val_accuracy: float | None
    checkpoint: str | None
    seconds: float
    status: str = "finished"
    error: str | None = None


class JobControl:
    """Stop and pause requests, set from any thread and honoured between steps; and a way to send an
    event from within a step (a long read's progress) along the job's own stream of events."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        # set by whoever drives the job; it must be callable from any thread (helper threads report too)
        self.on_report: Callable[[Any], None] | None = None

    def report(self, event: Any) -> None:
        """Send ``event`` now, the way yielded events go; dropped where the driver takes none (the CLI
        shows a step's progress by other means)."""
        on_report = self.on_report
        if on_report is not None:
            on_report(event)

    def stop(self) -> None:
        self._stop.set()
        self._running.set()  # a paused job must wake up to see the stop

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def wait_while_paused(self) -> None:
        self._running.wait()
