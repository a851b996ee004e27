"""Pruning jobs: unstructured magnitude pruning and structured head/neuron removal.

Prunable weights are the weight matrices inside the Transformer blocks (query,
key, value and output projections, both feed-forward layers, or every expert's
two matrices in a mixture of experts); embeddings, norms, a mixture's router
(a small layer that decides where every token goes) and the task head are kept.

- ``magnitude``: in every prunable layer the ``amount`` fraction of weights
  with the smallest absolute value is set to zero (layer-wise).
- ``global-magnitude``: the ``amount`` fraction of smallest weights over all
  prunable layers together, so layers end with different sparsities.
  Both use ``torch.nn.utils.prune`` while fine-tuning (the masks keep pruned
  weights at zero) and make the zeros permanent before saving.
- ``heads``: in every block the ``amount`` fraction of attention heads with the
  lowest importance is cut out of the q/k/v/out projections.
- ``neurons``: the same for feed-forward neurons (rows of the first layer,
  columns of the second); in a mixture of experts every expert loses the
  same number of its own weakest units.
- ``structured``: heads and neurons together.
  A structured result is a smaller dense model: its per-block widths are
  recorded in the checkpoint (``effstudio.structure``) and it loads without masks.

Importance of a head or neuron: ``magnitude`` is the norm of the weights that
carry its output times the norm of those that feed it (a unit whose output
weights are zero scores 0); ``gradient`` is the first-order Taylor estimate
sum |w * dL/dw| over a few training batches.

With ``finetune_steps`` the amount is reached in ``schedule_steps`` steps on a
cubic schedule, s_k = s (1 - (1 - k/K)^3), fine-tuning with the engine's
trainer between steps; each step reports its sparsity and accuracy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.utils.prune as torch_prune
from torch import nn

from effstudio.compress.events import ProgressEvent, PruneStepEvent, ResultEvent
from effstudio.compress.formats import count_params, save_float
from effstudio.compress.progress import evaluated
from effstudio.engine.data import MicroBatchIndices, make_batch
from effstudio.engine.events import DoneEvent, EvalEvent, Event, JobControl, LogEvent, StepEvent
from effstudio.engine.loading import CompressError, LoadedModel, load_checkpoint
from effstudio.engine.objective import task_loss
from effstudio.engine.run_config import RunConfig
from effstudio.engine.run_plan import IMPORTANCE, PRUNE_METHODS
from effstudio.engine.trainer import train
from effstudio.models.moe import MoEFeedForward
from effstudio.models.structure import StructureError, blocks_of, ff_width

GRADIENT_BATCHES = 4


@dataclasses.dataclass(frozen=True)
class PruneSettings:
    method: str = "magnitude"
    amount: float = 0.5
    importance: str = "magnitude"
    finetune_steps: int = 0
    schedule_steps: int = 0  # 0: one step without fine-tuning, else 4 when fine-tuning
    eval_batch_size: int = 64

    def check(self) -> None:
        if self.method not in PRUNE_METHODS:
            raise CompressError(f"unknown pruning method {self.method!r}; use one of {', '.join(PRUNE_METHODS)}")
        if not 0.0 < self.amount < 1.0:
            raise CompressError(f"the amount must be between 0 and 1 (exclusive), got {self.amount}")
        if self.importance not in IMPORTANCE:
            raise CompressError(f"unknown importance {self.importance!r}; use one of {', '.join(IMPORTANCE)}")
        if self.finetune_steps < 0 or self.schedule_steps < 0:
            raise CompressError("fine-tuning and schedule steps cannot be negative")

    @property
    def steps(self) -> int:
        if self.schedule_steps:
            return self.schedule_steps
        return 4 if self.finetune_steps else 1


def cubic_schedule(amount: float, steps: int) -> list[float]:
    """Target sparsity after each of ``steps`` steps: amount * (1 - (1 - k/steps)^3)."""
    return [amount * (1.0 - (1.0 - k / steps) ** 3) for k in range(1, steps + 1)]


@dataclasses.dataclass(frozen=True)
class PrunableWeight:
    """One prunable matrix: ``getattr(module, attr)``, named as in the state dict."""

    name: str
    module: nn.Module
    attr: str

    @property
    def tensor(self) -> torch.Tensor:
        return getattr(self.module, self.attr)


def prunable_weights(model: nn.Module) -> list[PrunableWeight]:
    found = []
    for index, block in enumerate(blocks_of(model)):
        for name, module in block.named_modules():
            prefix = f"blocks.{index}.{name}"
            if isinstance(module, MoEFeedForward):
                found += [PrunableWeight(f"{prefix}.w1", module, "w1"), PrunableWeight(f"{prefix}.w2", module, "w2")]
            elif isinstance(module, nn.Linear) and not name.endswith("router"):
                found.append(PrunableWeight(f"{prefix}.weight", module, "weight"))
    return found


def sparsity_report(model: nn.Module) -> dict[str, float]:
    """Fraction of exact zeros in each prunable weight."""
    return {w.name: float((w.tensor == 0).float().mean()) for w in prunable_weights(model)}


def overall_sparsity(model: nn.Module) -> float:
    weights = prunable_weights(model)
    zeros = sum(int((w.tensor == 0).sum()) for w in weights)
    return zeros / max(prunable_size(model), 1)


def prunable_size(model: nn.Module) -> int:
    return sum(w.tensor.numel() for w in prunable_weights(model))


# --------------------------------------------------------------- unstructured
def _remove_masks(model: nn.Module) -> None:
    for weight in prunable_weights(model):
        if hasattr(weight.module, f"{weight.attr}_mask"):
            torch_prune.remove(weight.module, weight.attr)


def magnitude_prune(model: nn.Module, amount: float, global_: bool) -> None:
    """Zero the smallest weights (masks stay on until :func:`_remove_masks`), ``amount`` of all prunable ones."""
    _remove_masks(model)  # earlier zeros are the smallest weights, so they stay pruned
    weights = [(w.module, w.attr) for w in prunable_weights(model)]
    if global_:
        torch_prune.global_unstructured(weights, torch_prune.L1Unstructured, amount=amount)
    else:
        for module, attr in weights:
            torch_prune.l1_unstructured(module, attr, amount=amount)


# ----------------------------------------------------------------- structured
def _head_slices(block: nn.Module) -> list[slice]:
    dh = block.q.out_features // block.heads
    return [slice(h * dh, (h + 1) * dh) for h in range(block.heads)]


def head_importance(block: nn.Module, use_grad: bool) -> torch.Tensor:
    """(heads,) importance of each head of a block."""
    scores = []
    for rows in _head_slices(block):
        if use_grad:
            score = sum(_taylor(layer, rows, out_dim=True) for layer in (block.q, block.k, block.v) if layer is not None)
            score = score + _taylor(block.out, rows, out_dim=False)
        else:
            feed = block.v.weight[rows].norm() + block.v.bias[rows].norm()
            score = block.out.weight[:, rows].norm() * feed
        scores.append(float(score))
    return torch.tensor(scores)


def neuron_importance(block: nn.Module, use_grad: bool) -> torch.Tensor:
    """(ff,) importance of each feed-forward neuron of a block; (E, ff) with a mixture of experts."""
    if isinstance(block.mlp, MoEFeedForward):
        return _expert_neuron_importance(block.mlp, use_grad)
    first, second = block.mlp[0], block.mlp[2]
    if use_grad:
        score = (first.weight * first.weight.grad).abs().sum(dim=1) + (first.bias * first.bias.grad).abs()
        return (score + (second.weight * second.weight.grad).abs().sum(dim=0)).detach()
    feed = first.weight.norm(dim=1) + first.bias.abs()
    return (second.weight.norm(dim=0) * feed).detach()


def _expert_neuron_importance(moe: MoEFeedForward, use_grad: bool) -> torch.Tensor:
    """(E, h): the dense scores, for each expert's units (w1 (E, d, h), b1 (E, 1, h), w2 (E, h, d))."""
    if use_grad:
        if moe.w1.grad is None:
            return torch.zeros(moe.experts, moe.hidden)
        score = (moe.w1 * moe.w1.grad).abs().sum(dim=1) + (moe.b1 * moe.b1.grad).abs()[:, 0]
        return (score + (moe.w2 * moe.w2.grad).abs().sum(dim=2)).detach()
    feed = moe.w1.norm(dim=1) + moe.b1.abs()[:, 0]
    return (moe.w2.norm(dim=2) * feed).detach()


def _taylor(layer: nn.Linear, rows: slice, out_dim: bool) -> torch.Tensor:
    if layer.weight.grad is None:
        return torch.zeros(())
    if out_dim:
        score = (layer.weight[rows] * layer.weight.grad[rows]).abs().sum()
        if layer.bias is not None and layer.bias.grad is not None:
            score = score + (layer.bias[rows] * layer.bias.grad[rows]).abs().sum()
        return score
    return (layer.weight[:, rows] * layer.weight.grad[:, rows]).abs().sum()


def accumulate_gradients(model: nn.Module, loaded: LoadedModel, batches: int = GRADIENT_BATCHES) -> None:
    """Sum the task loss's gradients over a few training batches into ``.grad``."""
    spec = loaded.task.spec
    split = loaded.task.split("train")
    indices = iter(MicroBatchIndices(len(split), min(32, len(split)), 1, seed=0))
    model.zero_grad(set_to_none=True)
    was_training = model.training
    model.eval()  # no dropout: the estimate is of the model as it is used
    try:
        for _ in range(batches):
            batch = make_batch(split, next(indices), spec.pad_id)
            loss = task_loss(model(batch.inputs, batch.mask), batch.targets, spec.objective)
            loss.backward()
    finally:
        model.train(was_training)


def _keep(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Indices of the ``count`` highest scores (along the last dimension), in their original order."""
    return torch.sort(torch.topk(scores, count, dim=-1).indices, dim=-1).values


def _cut(layer: nn.Linear, index: torch.Tensor, out_dim: bool) -> nn.Linear:
    weight = layer.weight.detach()
    if out_dim:
        new = nn.Linear(layer.in_features, len(index), bias=layer.bias is not None)
        new.weight.data.copy_(weight[index])
        if layer.bias is not None:
            new.bias.data.copy_(layer.bias.detach()[index])
    else:
        new = nn.Linear(len(index), layer.out_features, bias=layer.bias is not None)
        new.weight.data.copy_(weight[:, index])
        if layer.bias is not None:
            new.bias.data.copy_(layer.bias.detach())
    return new.to(weight.dtype)


def remove_heads(block: nn.Module, keep: torch.Tensor) -> None:
    slices = _head_slices(block)
    rows = torch.cat([torch.arange(slices[h].start, slices[h].stop) for h in keep.tolist()])
    block.q = _cut(block.q, rows, True)
    block.v = _cut(block.v, rows, True)
    if block.k is not None:
        block.k = _cut(block.k, rows, True)
    block.out = _cut(block.out, rows, False)
    block.heads = len(keep)


def remove_neurons(block: nn.Module, keep: torch.Tensor) -> None:
    """Keep the units ``keep``: (ff',) indices, or (E, ff') for a mixture of experts."""
    if isinstance(block.mlp, MoEFeedForward):
        block.mlp.keep_hidden(keep)
        return
    block.mlp[0] = _cut(block.mlp[0], keep, True)
    block.mlp[2] = _cut(block.mlp[2], keep, False)


def structured_prune(model: nn.Module, loaded: LoadedModel, fraction: float, heads: bool, neurons: bool,
                     importance: str, original: list[tuple[int, int]]) -> None:
    """Cut every block down to ``1 - fraction`` of its original heads and/or neurons (at least one of each)."""
    use_grad = importance == "gradient"
    if use_grad:
        accumulate_gradients(model, loaded)
    with torch.no_grad():
        for block, (heads0, ff0) in zip(blocks_of(model), original, strict=True):
            if heads:
                target = max(1, heads0 - round(fraction * heads0))
                if target < block.heads:
                    remove_heads(block, _keep(head_importance(block, use_grad), target))
            if neurons:
                target = max(1, ff0 - round(fraction * ff0))
                if target < ff_width(block.mlp):
                    remove_neurons(block, _keep(neuron_importance(block, use_grad), target))
    model.zero_grad(set_to_none=True)


def removed_fraction(model: nn.Module, original_weights: int) -> float:
    return 1.0 - prunable_size(model) / original_weights


# ------------------------------------------------------------------------ job
def _accuracy(stage: str, model: nn.Module, loaded: LoadedModel, batch_size: int) -> Generator[Event, None, float]:
    return (yield from evaluated(stage, model, loaded.task.split("val"), loaded.task.spec, batch_size))


def finetune_config(config: RunConfig, steps: int) -> RunConfig:
    train_cfg = dataclasses.replace(
        config.train, steps=steps, eval_every=steps, attention_every=0, checkpoint_every=0,
        warmup_steps=min(config.train.warmup_steps, steps // 5), device="cpu", compile=False, num_workers=0,
        log_every=1)
    return dataclasses.replace(config, train=train_cfg)


def _finetune(model: nn.Module, loaded: LoadedModel, steps: int, control: JobControl,
              stage: str = "fine-tuning") -> Iterator[Event]:
    # the fine-tuned model is the one in memory: its checkpoints would be files to write and throw away
    yield ProgressEvent(stage, 0, steps, 0.0)
    for event in train(finetune_config(loaded.config, steps), control=control, model=model, keep_checkpoints=False,
                       task=loaded.task):
        if isinstance(event, DoneEvent) and event.status == "failed":
            raise CompressError(f"fine-tuning failed: {event.error}")
        if isinstance(event, StepEvent):
            yield ProgressEvent(stage, event.step, event.total_steps, event.elapsed_s)
        elif isinstance(event, (EvalEvent, LogEvent)):
            yield event
    model.eval()


def check_prunable(loaded: LoadedModel, method: str) -> None:
    if loaded.kind != "float32":
        raise CompressError(f"{loaded.info.path} is a {loaded.kind} checkpoint; prune the float32 one")
    try:
        blocks_of(loaded.model)
    except StructureError as err:
        raise CompressError(f"{loaded.info.path}: cannot prune this model: {err}") from None


def prune_job(checkpoint: Path, settings: PruneSettings, out: Path, control: JobControl | None = None,
              baseline_accuracy: float | None = None) -> Iterator[Event]:
    """Prune a checkpoint; yields PruneStepEvents (step 0 is the original), progress, and a ResultEvent last.

    ``baseline_accuracy``: the checkpoint's validation accuracy when it is already measured (the
    window's comparison has it), so the original is not evaluated again.
    """
    settings.check()
    control = control or JobControl()
    loaded = load_checkpoint(checkpoint)
    check_prunable(loaded, settings.method)
    model = loaded.model
    baseline = baseline_accuracy
    if baseline is None:
        baseline = yield from _accuracy("evaluating the original", model, loaded, settings.eval_batch_size)
    params0 = count_params(model)
    original = [(int(b.heads), ff_width(b.mlp)) for b in blocks_of(model)]
    weights0 = prunable_size(model)
    structured = settings.method in ("heads", "neurons", "structured")
    schedule = cubic_schedule(settings.amount, settings.steps)
    per_step = settings.finetune_steps // len(schedule) if settings.finetune_steps else 0
    yield PruneStepEvent(0, len(schedule), 0.0, baseline, params0)
    for index, target in enumerate(schedule, start=1):
        if control.stop_requested:
            raise CompressError("stopped before the pruning schedule ended; nothing was written")
        yield ProgressEvent(f"step {index}/{len(schedule)}: pruning to {target:.2f}", 0, 1, 0.0)
        if structured:
            structured_prune(model, loaded, target, settings.method in ("heads", "structured"),
                             settings.method in ("neurons", "structured"), settings.importance, original)
            _check_runs(model, loaded)
        else:
            magnitude_prune(model, target, settings.method == "global-magnitude")
        if per_step:
            yield LogEvent("info", f"step {index}/{len(schedule)}: fine-tuning {per_step} steps at sparsity "
                                   f"{target:.2f}")
            yield from _finetune(model, loaded, per_step, control, f"step {index}/{len(schedule)}: fine-tuning")
        sparsity = removed_fraction(model, weights0) if structured else overall_sparsity(model)
        accuracy = yield from _accuracy(f"step {index}/{len(schedule)}: evaluating", model, loaded,
                                        settings.eval_batch_size)
        yield PruneStepEvent(index, len(schedule), sparsity, accuracy, count_params(model))
    _remove_masks(model)  # the zeros stay: removing the masks leaves the pruned weights as they were
    details: dict[str, Any] = {"amount": settings.amount, "importance": settings.importance,
                               "schedule": schedule, "finetune_steps": per_step * len(schedule)}
    if structured:
        details["heads"] = [int(b.heads) for b in blocks_of(model)]
        details["ff"] = [ff_width(b.mlp) for b in blocks_of(model)]
        details["sparsity"] = removed_fraction(model, weights0)
    else:
        details["layers"] = sparsity_report(model)
        details["sparsity"] = overall_sparsity(model)
    save_float(Path(out), model, loaded.config, loaded.info.step, extra={"effstudio.pruned": settings.method},
               task=loaded.task)
    yield ResultEvent(settings.method, str(out), count_params(model), params0, Path(out).stat().st_size,
                      accuracy, baseline, details)


def _check_runs(model: nn.Module, loaded: LoadedModel) -> None:
    split = loaded.task.split("val")
    batch = make_batch(split, torch.arange(min(2, len(split))), loaded.task.spec.pad_id)
    try:
        with torch.no_grad():
            model(batch.inputs, batch.mask)
    except Exception as err:
        raise CompressError(f"attention kind {loaded.config.attention_kind!r} does not run with heads removed "
                            f"({type(err).__name__}: {err}); prune neurons or use magnitude pruning") from None
