"""Running a run plan's compression steps in a chain: each step's job on the output of the last model step.

The plan itself (the steps, their outputs, the checks) is :mod:`effstudio.engine.run_plan`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from effstudio.compress.distill import DistillSettings, distill_job
from effstudio.compress.events import ResultEvent
from effstudio.compress.export import export_job
from effstudio.compress.prune import PruneSettings, prune_job
from effstudio.compress.quantize import quantize_job
from effstudio.config import ConfigError
from effstudio.engine.checkpoint import CheckpointError
from effstudio.engine.events import Event, JobControl, LogEvent
from effstudio.engine.loading import CompressError
from effstudio.engine.run_plan import (
    CompressStep,
    ExportStep,
    PlannedStep,
    PruneStep,
    QuantizeStep,
    chain,
    check_outputs,
    describe_step,
)


@dataclass(frozen=True)
class CompressStepEvent(Event):
    """A compression step starts: which one, what it reads and writes, and its run-store artifact kind."""

    kind: ClassVar[str] = "compress_step"
    index: int  # from 1
    total: int
    method: str
    description: str
    source: str
    out: str
    artifact: str


@dataclass(frozen=True)
class CompressDoneEvent(Event):
    """The steps are over: ``status`` is finished, failed, stopped or skipped (training did not finish);
    ``outputs`` lists the files written."""

    kind: ClassVar[str] = "compress_done"
    status: str
    completed: int
    total: int
    outputs: list[str]
    error: str | None = None


def _job(planned: PlannedStep, control: JobControl) -> Iterator[Event]:
    step, source, out = planned.step, planned.source, planned.out
    if isinstance(step, PruneStep):
        settings = PruneSettings(method=step.prune, amount=step.amount, importance=step.importance,
                                 finetune_steps=step.finetune_steps, schedule_steps=step.schedule_steps)
        return prune_job(source, settings, out, control=control)
    if isinstance(step, QuantizeStep):
        return quantize_job(source, step.quantize, out, control=control,
                            calibration_batches=step.calibration_batches)
    if isinstance(step, ExportStep):
        return export_job(source, out, check=step.check, control=control)
    settings = DistillSettings(student_model=step.student_model, overrides=step.set, steps=step.steps,
                               temperature=step.temperature, alpha=step.alpha, hidden_weight=step.hidden_weight)
    return distill_job(source, settings, out, control=control)


def run_steps(steps: Sequence[CompressStep], checkpoint: str | Path, run_dir: str | Path | None = None,
              control: JobControl | None = None) -> Iterator[Event]:
    """Run the chain on a trained checkpoint: per step a CompressStepEvent, the job's events and its
    ResultEvent; a CompressDoneEvent last. A step that fails (or a failed ONNX parity check) ends the
    chain with status ``failed``; later steps are skipped, since they may read its output."""
    control = control or JobControl()
    planned = chain(steps, checkpoint, run_dir)
    outputs: list[str] = []
    try:  # checked before training too; again here, as the folder may have changed since
        check_outputs(planned, checkpoint, run_dir)
    except ConfigError as err:
        yield CompressDoneEvent("failed", 0, len(planned), outputs, str(err))
        return
    for item in planned:
        if control.stop_requested:
            yield CompressDoneEvent("stopped", len(outputs), len(planned), outputs,
                                    f"stopped before compress[{item.index}]")
            return
        yield CompressStepEvent(item.index, len(planned), item.step.method, describe_step(item.step),
                                str(item.source), str(item.out), item.step.artifact)
        result: ResultEvent | None = None
        try:
            item.out.parent.mkdir(parents=True, exist_ok=True)
            for event in _job(item, control):
                if isinstance(event, ResultEvent):
                    result = event
                yield event
        except (CompressError, CheckpointError, ConfigError, OSError, RuntimeError, ValueError) as err:
            if control.stop_requested:
                yield CompressDoneEvent("stopped", len(outputs), len(planned), outputs, str(err))
                return
            message = f"compress[{item.index}] ({describe_step(item.step)}) failed: {err}"
            yield LogEvent("error", message)
            yield CompressDoneEvent("failed", len(outputs), len(planned), outputs, message)
            return
        if result is None:
            message = f"compress[{item.index}] ({describe_step(item.step)}) wrote nothing"
            yield CompressDoneEvent("failed", len(outputs), len(planned), outputs, message)
            return
        outputs.append(result.path)
        if result.details.get("parity_ok") is False:
            message = f"compress[{item.index}]: the ONNX graph differs from PyTorch (see the warning above)"
            yield CompressDoneEvent("failed", len(outputs), len(planned), outputs, message)
            return
    yield CompressDoneEvent("finished", len(outputs), len(planned), outputs)
