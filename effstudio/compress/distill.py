"""Knowledge distillation: a student of any registered model type learns from a teacher checkpoint.

The student trains with the engine's own trainer; a loss hook replaces the task
loss L_task by

    L = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * L_task
        + hidden_weight * MSE(student hidden, teacher hidden)

KL is averaged over sequences (classification) or over scored tokens (language
modelling); the T^2 factor keeps its gradients on the scale of L_task. The
hidden-state term compares the final normalised hidden states and applies only
when teacher and student have the same width and sequence layout.

The student takes the teacher's task with the teacher's task settings; a
student that cannot (its logits do not match the teacher's) is refused before
anything runs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from effstudio.compress.events import DistillEvalEvent, DistillStepEvent, ResultEvent
from effstudio.compress.formats import count_params, save_float
from effstudio.compress.progress import evaluated
from effstudio.config import ConfigError
from effstudio.engine.build import build_model
from effstudio.engine.data import Batch, make_batch
from effstudio.engine.events import DoneEvent, EvalEvent, Event, JobControl, LogEvent, StepEvent
from effstudio.engine.loading import CompressError, LoadedModel, load_checkpoint
from effstudio.engine.model_size import ModelTooLarge
from effstudio.engine.run_config import RunConfig
from effstudio.engine.trainer import train
from effstudio.models.base import ModelOutput
from effstudio.tasks.base import IGNORE_INDEX


@dataclasses.dataclass(frozen=True)
class DistillSettings:
    student_model: str = "transformer"
    overrides: tuple[str, ...] = ()  # key=value, as `--set` takes them (model., attention., train.)
    steps: int = 300
    temperature: float = 2.0
    alpha: float = 0.5
    hidden_weight: float = 0.0

    def check(self) -> None:
        if self.steps < 1:
            raise CompressError(f"distillation needs at least one step, got {self.steps}")
        # written so that nan fails each test (every comparison with nan is false): it would train to a nan loss
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise CompressError(f"the temperature must be a positive number, got {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise CompressError(f"alpha must be between 0 and 1, got {self.alpha}")
        if not (math.isfinite(self.hidden_weight) and self.hidden_weight >= 0):
            raise CompressError(f"the hidden-state weight must be a number of 0 or more, got {self.hidden_weight}")


def kl_term(student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(teacher || student) on temperature-softened logits, averaged over scored predictions."""
    if student.dim() == 3:  # (B, N, V): only the scored tokens
        scored = targets != IGNORE_INDEX
        student, teacher = student[scored], teacher[scored]
    log_s = F.log_softmax(student.float() / temperature, dim=-1)
    log_t = F.log_softmax(teacher.float() / temperature, dim=-1)
    return F.kl_div(log_s, log_t, log_target=True, reduction="batchmean") * temperature**2


class _Capture:
    """Keeps the output of a module (the final LayerNorm) from the last forward pass."""

    def __init__(self, module: nn.Module):
        self.value: torch.Tensor | None = None
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module: nn.Module, args: Any, output: torch.Tensor) -> None:
        self.value = output

    def remove(self) -> None:
        self.handle.remove()


class DistillationLoss:
    """The trainer's loss hook: the documented mix of KL, task loss and (optionally) hidden states."""

    def __init__(self, teacher: nn.Module, student: nn.Module, temperature: float, alpha: float,
                 hidden_weight: float = 0.0):
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.temperature, self.alpha, self.hidden_weight = temperature, alpha, hidden_weight
        self.captures: tuple[_Capture, _Capture] | None = None
        if hidden_weight > 0:
            t_norm, s_norm = getattr(teacher, "norm", None), getattr(student, "norm", None)
            if isinstance(t_norm, nn.LayerNorm) and isinstance(s_norm, nn.LayerNorm) and \
                    t_norm.normalized_shape == s_norm.normalized_shape:
                self.captures = (_Capture(s_norm), _Capture(t_norm))
        self.last: dict[str, float] = {}

    @property
    def matches_hidden(self) -> bool:
        return self.captures is not None

    def __call__(self, output: ModelOutput, batch: Batch, task_loss: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            teacher_logits = self.teacher(batch.inputs, batch.mask).logits
        kl = kl_term(output.logits, teacher_logits, batch.targets, self.temperature)
        loss = self.alpha * kl + (1.0 - self.alpha) * task_loss
        hidden = None
        if self.captures is not None:
            student_h, teacher_h = (c.value for c in self.captures)
            if student_h is not None and teacher_h is not None and student_h.shape == teacher_h.shape:
                hidden = F.mse_loss(student_h.float(), teacher_h.float())
                loss = loss + self.hidden_weight * hidden
        self.last = {"kl": float(kl.detach()), "task_loss": float(task_loss.detach())}
        if hidden is not None:
            self.last["hidden_loss"] = float(hidden.detach())
        return loss

    def close(self) -> None:
        if self.captures is not None:
            for capture in self.captures:
                capture.remove()


def student_config(teacher: RunConfig, settings: DistillSettings) -> RunConfig:
    """The student's run config: its own model type and settings, the teacher's task and training settings."""
    config = RunConfig.create(settings.student_model, teacher.task_name)
    config = dataclasses.replace(config, task=teacher.task, train=teacher.train)
    overrides = [*settings.overrides, f"train.steps={settings.steps}"]
    config = config.with_overrides(overrides)
    train_cfg = dataclasses.replace(config.train, attention_every=0, checkpoint_every=0,
                                    eval_every=max(1, min(config.train.eval_every, settings.steps // 10)))
    config = dataclasses.replace(config, train=train_cfg)
    config.validate()
    return config


def build_student(teacher: LoadedModel, config: RunConfig) -> nn.Module:
    """The student model; refused when it cannot take the teacher's task."""
    torch.manual_seed(config.train.seed)
    try:
        student = build_model(config, teacher.task.spec)
    except ModelTooLarge:
        raise  # its own message says what it would need
    except ConfigError as err:
        raise CompressError(f"student {config.model_type!r} cannot take the teacher's task "
                            f"{teacher.config.task_name!r}: {err}") from None
    split = teacher.task.split("val")
    probe = make_batch(split, torch.arange(min(2, len(split))), teacher.task.spec.pad_id)
    with torch.no_grad():
        try:
            got = student.eval()(probe.inputs, probe.mask).logits
        except Exception as err:
            raise CompressError(f"student {config.model_type!r} cannot take the teacher's task "
                                f"{teacher.config.task_name!r}: {type(err).__name__}: {err}") from None
        expected = teacher.model(probe.inputs, probe.mask).logits
    if got.shape != expected.shape:
        raise CompressError(f"student {config.model_type!r} gives logits of shape {tuple(got.shape)} where the "
                            f"teacher gives {tuple(expected.shape)}: it cannot take the task "
                            f"{teacher.config.task_name!r}")
    return student.train()


def distill_job(teacher_path: Path | LoadedModel, settings: DistillSettings, out: Path,
                control: JobControl | None = None, eval_batch_size: int = 64,
                teacher_accuracy: float | None = None) -> Iterator[Event]:
    """Distill a teacher into a new student; yields distill_step / distill_eval events and a ResultEvent last.

    ``teacher_accuracy``: the teacher's validation accuracy when it is already measured, so it is not
    evaluated again."""
    settings.check()
    control = control or JobControl()
    teacher = teacher_path if isinstance(teacher_path, LoadedModel) else load_checkpoint(teacher_path)
    if teacher.kind != "float32":
        raise CompressError(f"the teacher is a {teacher.kind} checkpoint; use its float32 original")
    config = student_config(teacher.config, settings)
    student = build_student(teacher, config)
    spec = teacher.task.spec
    val = teacher.task.split("val")
    if teacher_accuracy is None:
        teacher_accuracy = yield from evaluated("evaluating the teacher", teacher.model, val, spec, eval_batch_size)
    teacher_params, student_params = count_params(teacher.model), count_params(student)
    yield LogEvent("info", f"teacher: {teacher_params:,} parameters, accuracy {teacher_accuracy:.3f}; student "
                           f"{config.model_type} ({config.attention_kind}): {student_params:,} parameters")
    hook = DistillationLoss(teacher.model, student, settings.temperature, settings.alpha, settings.hidden_weight)
    if settings.hidden_weight > 0 and not hook.matches_hidden:
        yield LogEvent("warning", "hidden-state matching needs the same width in teacher and student; skipped")
    kl_first: float | None = None
    student_accuracy: float | None = None
    try:
        # the student is trained in memory and saved once, below: no checkpoints to write and throw away
        for event in train(config, control=control, model=student, loss_hook=hook, keep_checkpoints=False,
                           task=teacher.task):
            if isinstance(event, StepEvent):
                kl_first = hook.last.get("kl") if kl_first is None else kl_first
                yield DistillStepEvent(event.step, event.total_steps, event.loss, hook.last.get("kl", 0.0),
                                       hook.last.get("task_loss", 0.0), hook.last.get("hidden_loss"))
            elif isinstance(event, EvalEvent):
                student_accuracy = event.val_accuracy
                yield DistillEvalEvent(event.step, event.val_accuracy, teacher_accuracy)
            elif isinstance(event, LogEvent):
                yield event
            elif isinstance(event, DoneEvent) and event.status == "failed":
                raise CompressError(f"distillation failed: {event.error}")
    finally:
        hook.close()
    student.eval()
    if control.stop_requested:
        raise CompressError("distillation was stopped; nothing was written")
    student_accuracy = yield from evaluated("evaluating the student", student, val, spec, eval_batch_size)
    save_float(Path(out), student, config, settings.steps, extra={"effstudio.distilled_from": str(teacher.info.path)},
               task=teacher.task)
    details = {"student_model": config.model_type, "attention": config.attention_kind,
               "param_ratio": student_params / teacher_params,
               "accuracy_ratio": student_accuracy / teacher_accuracy if teacher_accuracy else None,
               "kl_first": kl_first, "kl_last": hook.last.get("kl"), "temperature": settings.temperature,
               "alpha": settings.alpha, "hidden_matching": hook.matches_hidden}
    yield ResultEvent("distill", str(out), student_params, teacher_params, Path(out).stat().st_size,
                      student_accuracy, teacher_accuracy, details)
