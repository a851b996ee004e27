"""Training as a generator of events.

``train(config)`` yields a StartEvent, then step, eval, attention, memory,
checkpoint and log events, and a DoneEvent last. Between optimizer steps it
honours the JobControl: pause blocks, stop saves a checkpoint and ends with
status "stopped". The GUI worker, the CLI and the tests all drive this same
generator. A bad config raises ConfigError on the first ``next()``; failures
during training (a NaN loss, out of memory) end with status "failed" and the
last good checkpoint kept.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from effstudio.config import ConfigError
from effstudio.engine import checkpoint as ckpt
from effstudio.engine.build import build_model, build_task, model_of_checkpoint
from effstudio.engine.data import Batch, MicroBatchIndices, StreamIndices, make_batch, train_batches
from effstudio.engine.device import describe_device, pick_device
from effstudio.engine.distributed import (
    DistContext,
    context_from_env,
    init_process_group,
    local_device,
)
from effstudio.engine.events import (
    AttentionEvent,
    CheckpointEvent,
    DoneEvent,
    EvalEvent,
    Event,
    JobControl,
    LogEvent,
    MemoryEvent,
    StartEvent,
    StepEvent,
)
from effstudio.engine.loading import trainable_model
from effstudio.engine.memory import cuda_memory_mb, rss_mb
from effstudio.engine.objective import evaluate, forward_batch, scored_count, task_loss
from effstudio.engine.run_config import RunConfig, TrainConfig, write_toml
from effstudio.engine.run_lock import RunFolderLock
from effstudio.models.base import ModelOutput
from effstudio.models.structure import structure_metadata
from effstudio.paths import runs_dir
from effstudio.tasks.base import Split, Task, data_notes, saved_data_of

CHECKPOINT_NAME = "checkpoint.safetensors"
EVENT_LOG_NAME = "events.jsonl"  # written by the CLI beside the checkpoint
LossHook = Callable[[ModelOutput, Batch, torch.Tensor], torch.Tensor]
MEMORY_EVERY = 10
PROBE_MAX_TOKENS = 64
FINAL_LOSS_WINDOW = 20


def lr_at(step: int, train: TrainConfig) -> float:
    """Linear warmup to ``lr``, then cosine decay to ``lr * min_lr_ratio`` at ``steps``."""
    if train.warmup_steps and step < train.warmup_steps:
        return train.lr * (step + 1) / train.warmup_steps
    span = max(train.steps - train.warmup_steps, 1)
    progress = min((step - train.warmup_steps) / span, 1.0)
    floor = train.lr * train.min_lr_ratio
    return floor + (train.lr - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def default_run_dir(config: RunConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return runs_dir() / f"{stamp}-{config.model_type}-{config.task_name}"


def make_optimizer(model: nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only (not on biases, norms or 1-d parameters)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=train.lr, betas=(0.9, 0.98), eps=1e-8)


def autocast_for(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("train.precision", f"fp16 needs a CUDA device (this run uses {device.type}); use bf16")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _add_scalar_extras(sums: dict[str, torch.Tensor], extras: dict[str, torch.Tensor], weight: float) -> None:
    """Accumulate a forward pass's 0-dim extras (step metrics), times the pass's weight in the
    step's loss, as tensors: no device sync here."""
    for key, value in extras.items():
        if isinstance(value, torch.Tensor) and value.dim() == 0:
            value = value.detach().float() * weight
            sums[key] = sums[key] + value if key in sums else value


def array_extras(extras: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """A forward pass's array extras as numpy (floats as float32), for the model views."""
    views: dict[str, np.ndarray] = {}
    for key, value in extras.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            value = value.detach()
            views[key] = (value.float() if value.is_floating_point() else value).cpu().numpy()
    return views


def choose_probe(split: Split, pad_id: int) -> int:
    """The fixed probe example for attention maps: the first short one, else the shortest."""
    if split.inputs.is_floating_point():
        return 0  # images are all the same size
    lengths = (split.inputs != pad_id).sum(dim=1)
    short = torch.nonzero(lengths <= PROBE_MAX_TOKENS).flatten()
    return int(short[0]) if len(short) else int(lengths.argmin())


@dataclass
class _RunState:
    """What changes as a run goes on; summarised in the DoneEvent."""

    step: int
    recent_losses: deque[float] = field(default_factory=lambda: deque(maxlen=FINAL_LOSS_WINDOW))
    val_accuracy: float | None = None
    checkpoint: str | None = None
    saved_step: int | None = None
    tokens: int = 0

    @property
    def final_loss(self) -> float | None:
        """The mean training loss of the last steps: one batch's loss is too noisy to report."""
        return sum(self.recent_losses) / len(self.recent_losses) if self.recent_losses else None


class _Run:
    """One training run: set-up in ``__init__``, the loop in ``events()``."""

    def __init__(self, config: RunConfig, control: JobControl, out_dir: Path | None, resume: Path | None,
                 model: nn.Module | None = None, loss_hook: LossHook | None = None, init: Path | None = None,
                 keep_checkpoints: bool = True, task: Task | None = None):
        config.validate()
        if not keep_checkpoints and (out_dir is not None or resume is not None):
            raise ConfigError("out", "a run that keeps no checkpoint has no run folder to write or resume")
        self.loss_hook = loss_hook
        self.config, self.train_cfg, self.control = config, config.train, control
        self.dist: DistContext = context_from_env()
        self.device = local_device(self.dist, pick_device(self.train_cfg.device))
        self.autocast = autocast_for(self.train_cfg.precision, self.device)
        self.dist.check_batch(self.train_cfg.batch_size, self.train_cfg.grad_accum)
        init_process_group(self.dist, self.device)

        torch.manual_seed(self.train_cfg.seed)
        start = resume if resume is not None else init
        # a run that goes on from a checkpoint keeps the tokenizer and label map its task saved there
        saved = ckpt.saved_task_data(ckpt.read_info(start)) if start is not None and task is None else None
        self.task: Task = task if task is not None else build_task(config, saved=saved)
        self.task_data = saved_data_of(self.task)
        self.spec = self.task.spec
        self.train_split, self.val_split = self.task.split("train"), self.task.split("val")
        if resume is not None and init is not None:
            raise ConfigError("init", "resume continues a run, init starts one from a checkpoint's weights: not both")
        self.run_dir = Path(out_dir) if out_dir is not None else default_run_dir(config)
        self.checkpoint_path = self.run_dir / CHECKPOINT_NAME
        self.save_error: str | None = None  # why the last save failed; None after a good one
        if model is None:  # a bad checkpoint or a model too big is refused before the folder is touched
            model = self._initial_model(resume, init)
        self.model = model.to(self.device)
        self.keeps_checkpoints = keep_checkpoints
        # one writer per folder (rank 0 writes for a torchrun job): the clean-up below would remove a
        # save that another run is making there
        created = not self.run_dir.exists()
        self.lock = RunFolderLock.acquire(self.run_dir) if self.dist.is_main and keep_checkpoints else None
        try:
            self._set_up(resume)
        except BaseException:
            self.close()
            if created:  # a run refused before it began leaves no empty folder (rmdir removes only that)
                with contextlib.suppress(OSError):
                    self.run_dir.rmdir()
            raise

    def close(self) -> None:
        """Let the run folder go: the run is over (or never started)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def _set_up(self, resume: Path | None) -> None:
        if self.dist.is_main and self.keeps_checkpoints:
            self._refuse_another_runs_checkpoint(resume)
        # what a killed or failed save left in this run's folder is finished or removed before anything else
        self.notes: list[LogEvent] = []
        if self.dist.is_main and self.keeps_checkpoints:
            self.notes = ckpt.recover(self.checkpoint_path)
            ckpt.clean_stale_temporaries(self.run_dir, ("config.toml",))
        if self.dist.is_main:
            self.notes.extend(LogEvent("info", line) for line in data_notes(self.task))
        self.dist.any(False, self.device)  # a barrier: the other ranks read a checkpoint rank 0 has completed
        self.optimizer = make_optimizer(self.model, self.train_cfg)
        self.scaler = torch.amp.GradScaler("cuda") if self.train_cfg.precision == "fp16" else None
        self.state = _RunState(step=0)
        self.memory: Any = None  # a recurrent model's memory of the last training segment
        if resume is not None:
            self._restore(Path(resume))

        self.step_model: nn.Module = self.model
        if self.dist.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.step_model = DistributedDataParallel(self.model, device_ids=device_ids)
        if self.train_cfg.compile:
            self.step_model = torch.compile(self.step_model)
        self.probe_index = choose_probe(self.val_split, self.spec.pad_id)
        # a recurrent model (Transformer-XL) on a contiguous split carries its memory across segments
        self.streams = self.train_split.contiguous and getattr(self.model, "recurrent", False)
        if self.val_split.contiguous and len(self.val_split) > 1:
            self.probe_index = max(self.probe_index, 1)  # the row before it gives the probe its memory

    def _refuse_another_runs_checkpoint(self, resume: Path | None) -> None:
        """A run's first save would replace the checkpoint already in its folder: only the run that
        checkpoint belongs to (a resume of it) may continue there."""
        there = self.checkpoint_path
        if resume is not None and Path(resume).resolve() == there.resolve():
            return
        if there.exists():
            raise ConfigError("out", f"{self.run_dir} already holds the checkpoint of another run ({there.name}); "
                                     f"continue that run with --resume {there}, or train into another folder")
        if (self.run_dir / EVENT_LOG_NAME).exists():  # a run that ended before its first save: its log stays its own
            raise ConfigError("out", f"{self.run_dir} already holds the event log of another run "
                                     f"({EVENT_LOG_NAME}); train into another folder, or remove that run's files")

    # ------------------------------------------------------------- resuming
    def _initial_model(self, resume: Path | None, init: Path | None) -> nn.Module:
        """The config's model; a resumed checkpoint's (pruned widths too); or ``init``'s weights, trainable."""
        if init is not None:
            model, info = trainable_model(init)
            self._check_same_run(info, "init")
            return model
        if resume is not None:
            info = ckpt.read_info(resume)
            self._check_same_run(info, "resume")
            return model_of_checkpoint(info, self.spec, training=True, device=self.device)
        return build_model(self.config, self.spec, device=self.device)

    def _check_same_run(self, info: ckpt.CheckpointInfo, field_name: str) -> None:
        saved, current = info.config, self.config
        if (saved.model_type, saved.model, saved.attention, saved.task_name, saved.task) != (
            current.model_type, current.model, current.attention, current.task_name, current.task
        ):
            raise ConfigError(field_name, f"{info.path} was trained with a different model or task config; "
                                          f"use the checkpoint's own config (only train.* may change)")

    def _restore(self, path: Path) -> None:
        self._check_same_run(ckpt.read_info(path), "resume")
        if not ckpt.has_training_state(path):
            raise ConfigError("resume", f"{path} has no training state ({ckpt.state_path(path).name}) to continue "
                                        f"from, as a compressed or exported checkpoint; start a new run from its "
                                        f"weights instead (effstudio train --init {path})")
        point = ckpt.resume_point(path)  # both halves checked: same step, same save, the state's hash
        if point.note is not None:
            self.notes.append(point.note)
        state = point.state
        ckpt.load_weights(self.model, path)
        try:  # what torch says of a state that does not fit this model (another version's, edited)
            self.optimizer.load_state_dict(state["optimizer"])
            if self.scaler is not None and "scaler" in state:
                self.scaler.load_state_dict(state["scaler"])
            torch.set_rng_state(state["rng_cpu"])
            if "memory" in state:
                self.memory = [m.to(self.device) for m in state["memory"]]
            if self.device.type == "cuda" and "rng_cuda" in state:
                torch.cuda.set_rng_state(state["rng_cuda"], self.device)
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
            raise ckpt.CheckpointError(f"cannot resume from {path}: its training state {point.state_file.name} "
                                       f"does not fit this model ({first}); start a new run from the weights "
                                       f"with `effstudio train --init {path}`") from None
        self.state.step = int(state["step"])
        if self.state.step >= self.train_cfg.steps:
            raise ConfigError("train.steps", f"the checkpoint is at step {self.state.step}; ask for more steps "
                                             f"than that to continue (got {self.train_cfg.steps})")

    def _train_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "step": self.state.step,
            "optimizer": self.optimizer.state_dict(),
            "rng_cpu": torch.get_rng_state(),
        }
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        if self.memory is not None:
            state["memory"] = self.memory
        if self.device.type == "cuda":
            state["rng_cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _save(self) -> Iterator[Event]:
        """Save a checkpoint (rank 0). Every rank learns whether it was written (``saved_step``) and
        why a save failed (``save_error``), for the caller to apply ``train.on_save_error``."""
        written, error = True, None
        if self.dist.is_main:
            try:
                ckpt.save_checkpoint(self.checkpoint_path, self.model, self.config, self.state.step,
                                     self._train_state(),
                                     extra_metadata=structure_metadata(self.model, self.config.model),
                                     task_data=self.task_data)
            except ckpt.CheckpointError as err:
                written, error = False, str(err)
            else:
                yield CheckpointEvent(self.state.step, str(self.checkpoint_path))
                error = yield from self._write_config()
        # every rank saves at the same steps, so these collectives pair up
        if not self.dist.any(not written, self.device):
            self.state.checkpoint, self.state.saved_step = str(self.checkpoint_path), self.state.step
        failed = self.dist.any(error is not None, self.device)
        self.save_error = (error or "rank 0 could not save a checkpoint") if failed else None
        if error is not None:
            yield LogEvent("error", error)

    def _write_config(self) -> Iterator[Event]:
        """Write config.toml; return (as the generator's value) why it failed, None if written.
        A file there that was broken by hand is kept with a warning: the checkpoint is what counts."""
        path = self.run_dir / "config.toml"
        # beside the checkpoint, the file names the tokenizer the checkpoint keeps as the header does
        config = self.config if self.task_data is None else ckpt.naming_task_files(
            self.config, self.checkpoint_path, self.task_data)
        try:
            write_toml(path, config)
        except OSError as err:
            return f"could not write {path}: {err.strerror or err}"
        except ConfigError as err:
            yield LogEvent("warning", f"config.toml not updated: {err}")
        return None

    # ----------------------------------------------------------------- loop
    def events(self) -> Iterator[Event]:
        cfg, state = self.train_cfg, self.state
        started = time.perf_counter()
        params = sum(p.numel() for p in self.model.parameters())
        run_dir = str(self.run_dir) if self.keeps_checkpoints else ""
        yield StartEvent(run_dir, describe_device(self.device), params, cfg.steps, state.step)
        yield from self.notes
        micro_batches = cfg.grad_accum
        order = StreamIndices if self.train_split.contiguous else MicroBatchIndices
        indices = order(len(self.train_split), cfg.batch_size, micro_batches, cfg.seed,
                        start=state.step * micro_batches, rank=self.dist.rank, world_size=self.dist.world_size)
        self.restarts = indices.restarts if isinstance(indices, StreamIndices) else None
        batches = train_batches(self.train_split, self.spec.pad_id, indices, cfg.num_workers,
                                pin_memory=self.device.type == "cuda")
        self.model.train()
        while state.step < cfg.steps:
            if self.control.paused:
                yield LogEvent("info", f"paused at step {state.step}")
                self.control.wait_while_paused()
            if self.dist.any(self.control.stop_requested, self.device):  # all ranks stop at the same step
                break
            try:
                loss, grad_norm, tokens, seconds, metrics = self._step(batches)
            except torch.OutOfMemoryError as err:
                yield from self._fail(f"out of memory at step {state.step + 1}: lower the batch size or "
                                      f"the sequence length ({err})", started)
                return
            if not math.isfinite(loss):
                yield from self._fail(f"the loss became {loss} at step {state.step + 1}; lower the learning "
                                      "rate or enable gradient clipping", started)
                return
            task_metrics = getattr(self.task, "loss_metrics", None)
            if task_metrics is not None:
                metrics = {**metrics, **task_metrics(loss)}
            state.step += 1
            state.recent_losses.append(loss)
            state.tokens += tokens
            if state.step % cfg.log_every == 0 or state.step == cfg.steps:
                yield StepEvent(state.step, cfg.steps, loss, lr_at(state.step - 1, cfg), tokens / seconds,
                                rss_mb(), grad_norm, time.perf_counter() - started, metrics)
            yield from self._periodic()
            if self.save_error is not None and cfg.on_save_error == "stop":
                yield from self._fail(self.save_error, started, logged=True)
                return
        stopped = state.step < cfg.steps
        if state.saved_step != state.step and self.keeps_checkpoints:
            yield from self._save()
            if self.save_error is not None:  # the run's result is not saved, whatever the setting
                yield from self._fail(self.save_error, started, logged=True)
                return
        status = "stopped" if stopped else "finished"
        yield DoneEvent(state.step, state.final_loss, state.val_accuracy, state.checkpoint,
                        time.perf_counter() - started, status)

    def _step(self, batches: Iterator) -> tuple[float, float, int, float, dict[str, float]]:
        """One optimizer step over ``grad_accum`` micro-batches on each process.

        The step minimises the mean loss over every target of the global batch, as one
        process holding the whole batch would: each micro-batch's mean loss is weighted
        by its share of the targets of all micro-batches of all ranks, counted before the
        first backward. Returns (loss, grad norm, tokens, seconds, metrics): the loss is
        that global mean, the metrics the model's scalar extras weighted the same way,
        read with the loss in one transfer; tokens are the real tokens of all ranks.
        """
        cfg, world_size = self.train_cfg, self.dist.world_size
        begin = time.perf_counter()
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.state.step, cfg)
        micro_batches = [next(batches) for _ in range(cfg.grad_accum)]
        counts = [scored_count(batch.targets) for batch in micro_batches]  # on the host: no device sync
        step_targets, step_tokens = self.dist.sum([sum(counts), sum(b.tokens for b in micro_batches)], self.device)
        loss_sum = torch.zeros((), device=self.device)
        metric_sums: dict[str, torch.Tensor] = {}
        for micro, (batch, count) in enumerate(zip(micro_batches, counts, strict=True)):
            batch, share = batch.to(self.device), count / max(step_targets, 1)
            last = micro == cfg.grad_accum - 1
            # under DDP, gradients are all-reduced only on the last micro-batch
            sync = contextlib.nullcontext() if last or not self.dist.enabled else self.step_model.no_sync()
            with sync:
                with self.autocast:
                    output = forward_batch(self.step_model, batch, self.spec.objective,
                                           memory=self._memory_for(self.state.step * cfg.grad_accum + micro))
                    # a sum over the targets divided by their count: 0, not nan, where none is scored
                    loss = task_loss(output, batch.targets, self.spec.objective, reduction="sum") / max(count, 1)
                    # The auxiliary losses (MoE balance, ACT ponder cost) are means over one forward pass;
                    # added to the pass's mean task loss they get its weight, the pass's share of the
                    # step's targets. One pass over the whole batch keeps its own auxiliary loss; micro-batches
                    # on 1 or N processes give the target-weighted mean of theirs (the same rule for any
                    # split; a batch statistic such as the MoE balance is not the whole batch's exactly).
                    if output.aux_loss is not None:
                        loss = loss + output.aux_loss
                    if self.loss_hook is not None:
                        loss = self.loss_hook(output, batch, loss)
                weighted = loss * share
                # DDP divides the sum of the ranks' gradients by world_size: scaling up keeps their sum
                scaled = weighted * world_size
                (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
            self._keep_memory(output)
            loss_sum += weighted.detach()
            _add_scalar_extras(metric_sums, output.extras, share)
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
        loss_value, *metric_values = self.dist.sum(torch.stack([loss_sum, *metric_sums.values()]).tolist(),
                                                   self.device)
        metrics = dict(zip(metric_sums, metric_values, strict=True))
        if math.isfinite(loss_value):
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss_value, grad_norm, int(step_tokens), time.perf_counter() - begin, metrics

    def _memory_for(self, micro: int) -> Any:
        """The memory a recurrent model gets for micro-step ``micro``: none where the streams (re)start."""
        if not self.streams or self.restarts is None or self.restarts(micro):
            self.memory = None
        return self.memory

    def _keep_memory(self, output: ModelOutput) -> None:
        if self.streams:
            self.memory = output.memory

    def _periodic(self) -> Iterator[Event]:
        cfg, step = self.train_cfg, self.state.step
        if step % cfg.eval_every == 0 or step == cfg.steps:
            val_loss, val_accuracy = evaluate(self.model, self.val_split, self.spec.pad_id, self.spec.objective,
                                              cfg.batch_size, self.device, self.autocast)
            self.state.val_accuracy = val_accuracy
            task_metrics = getattr(self.task, "loss_metrics", None)
            metrics = {f"val_{k}": v for k, v in task_metrics(val_loss).items()} if task_metrics else {}
            yield EvalEvent(step, val_loss, val_accuracy, metrics)
        if cfg.attention_every and (step % cfg.attention_every == 0 or step == 1):
            yield from self._attention_probe()
        if step % MEMORY_EVERY == 0 or step == 1:
            cuda = cuda_memory_mb(self.device)
            yield MemoryEvent(step, rss_mb(), self.device.type, *(cuda or (None, None, None)))
        if self.keeps_checkpoints and cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step != cfg.steps:
            yield from self._save()

    @torch.no_grad()
    def _attention_probe(self) -> Iterator[Event]:
        batch = make_batch(self.val_split, torch.tensor([self.probe_index]), self.spec.pad_id).to(self.device)
        self.model.eval()
        try:
            memory = None
            if self.streams and self.probe_index > 0:  # the row before the probe gives it its memory
                context = make_batch(self.val_split, torch.tensor([self.probe_index - 1]), self.spec.pad_id)
                memory = self.model(*(t.to(self.device) for t in (context.inputs, context.mask))).memory
            if getattr(self.model, "recurrent", False):
                output = self.model(batch.inputs, batch.mask, need_weights=True, memory=memory)
            else:
                output = self.model(batch.inputs, batch.mask, need_weights=True)
        finally:
            self.model.train()
        views = array_extras(output.extras)
        if not output.attentions and not views:
            return
        n = batch.inputs.shape[1]
        if output.attentions:
            maps = torch.stack([a[0].float() for a in output.attentions]).cpu().numpy()  # (L, H, N, N)
        else:
            maps = np.zeros((0, 0, n, n), dtype=np.float32)
        tokens = tuple(self.task.decode(batch.inputs[0].tolist()))
        if "decoded" in views:  # seq2seq: the decoder's output tokens follow the source tokens
            tokens += tuple(self.task.decode(views["decoded"][0].tolist()))
        yield AttentionEvent(self.state.step, maps.astype(np.float32), tokens, views)

    def _fail(self, message: str, started: float, logged: bool = False) -> Iterator[Event]:
        if not logged:
            yield LogEvent("error", message)
        yield DoneEvent(self.state.step, self.state.final_loss, self.state.val_accuracy, self.state.checkpoint,
                        time.perf_counter() - started, "failed", message)


def train(
    config: RunConfig,
    *,
    control: JobControl | None = None,
    out_dir: Path | None = None,
    resume: Path | None = None,
    model: nn.Module | None = None,
    loss_hook: LossHook | None = None,
    init: Path | None = None,
    keep_checkpoints: bool = True,
    task: Task | None = None,
) -> Iterator[Event]:
    """Train ``config`` and yield events; see the module docstring.

    ``model`` trains a given module (a pruned or distilled one) instead of one
    built from the config; ``loss_hook(output, batch, loss)`` returns the loss
    to minimise in place of the task loss (distillation mixes in its own terms).
    ``init`` starts a new run (step 0, fresh optimizer) from a checkpoint's
    weights: a pruned, half-precision or quantized one trains as float32 with its
    pruned widths, and the run's checkpoints keep those widths.
    ``keep_checkpoints=False`` trains ``model`` in memory only (a fine-tune whose caller saves the
    result): no run folder, no file written, nothing that a full disk or a kill could leave behind.
    """
    run = _Run(config, control or JobControl(), out_dir, resume, model, loss_hook, init, keep_checkpoints)
    try:
        yield from run.events()
    finally:
        run.close()
