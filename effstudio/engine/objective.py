"""Loss and accuracy for the task objectives, and evaluation over a split.

"seq2seq" models read the targets in training (teacher forcing: the decoder
sees the previous target tokens) but never in evaluation: their accuracy is the
share of examples whose greedily decoded target is exactly right, <eos>
included; their loss is the teacher-forced per-token loss.
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import AbstractContextManager, nullcontext
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from effstudio.engine.data import Batch, eval_batches, stream_eval_batches
from effstudio.models.base import ModelOutput
from effstudio.tasks.base import IGNORE_INDEX, Objective, Split


def forward_batch(model: nn.Module, batch: Batch, objective: Objective, need_weights: bool = False,
                  memory: object = None) -> ModelOutput:
    """The model's output for a batch; a seq2seq model also gets the targets (teacher forcing),
    a recurrent model (``recurrent = True``, Transformer-XL) the memory of the previous segment."""
    if getattr(getattr(model, "module", model), "recurrent", False):  # DDP keeps the model in .module
        return model(batch.inputs, batch.mask, need_weights=need_weights, memory=memory)
    if objective == "seq2seq":
        return model(batch.inputs, batch.mask, need_weights=need_weights, targets=batch.targets)
    return model(batch.inputs, batch.mask, need_weights=need_weights)


def exact_matches(predicted: torch.Tensor, targets: torch.Tensor) -> int:
    """Rows of ``predicted`` (B, >= T) equal to ``targets`` (B, T) at every scored position."""
    predicted = predicted[:, : targets.shape[1]]
    right = (predicted == targets) | (targets == IGNORE_INDEX)
    return int(right.all(dim=1).sum())


def task_loss(output: ModelOutput, targets: torch.Tensor, objective: Objective,
              reduction: Literal["mean", "sum"] = "mean") -> torch.Tensor:
    """Cross-entropy per scored target, averaged or summed: logits (B, C) vs (B,) or (B, N, V)
    vs (B, N) with IGNORE_INDEX (seq2seq: (B, T, V) vs (B, T))."""
    logits = output.logits.float()  # the loss in float32 even under autocast
    if objective == "classify":
        return F.cross_entropy(logits, targets, reduction=reduction)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX,
                           reduction=reduction)


def correct_and_count(output: ModelOutput, targets: torch.Tensor) -> tuple[int, int]:
    """Correct predictions and scored predictions (sequences, or scored tokens)."""
    predicted = output.logits.argmax(dim=-1)
    scored = targets != IGNORE_INDEX
    return int((predicted == targets)[scored].sum()), int(scored.sum())


def scored_count(targets: torch.Tensor) -> int:
    return int((targets != IGNORE_INDEX).sum())


@torch.no_grad()
def evaluation(model: nn.Module, split: Split, pad_id: int, objective: Objective, batch_size: int,
               device: torch.device, autocast: AbstractContextManager | None = None
               ) -> Generator[int, None, tuple[float, float]]:
    """:func:`evaluate` batch by batch: yields the examples evaluated so far (of ``len(split)``) after each
    batch, so that a long evaluation can report its progress; returns (mean loss, accuracy).

    A recurrent model reads a contiguous split as parallel streams in order and
    carries its memory from one segment to the next."""
    was_training = model.training
    model.eval()
    total_loss, correct, count, tokens, done = 0.0, 0, 0, 0, 0
    streams = split.contiguous and getattr(model, "recurrent", False)
    batches = stream_eval_batches(split, pad_id, batch_size) if streams else eval_batches(split, pad_id, batch_size)
    memory = None
    try:
        for batch in batches:
            batch: Batch = batch.to(device)
            with autocast or nullcontext():
                output = forward_batch(model, batch, objective, memory=memory)
            memory = output.memory if streams else None
            total_loss += float(task_loss(output, batch.targets, objective, reduction="sum"))
            tokens += scored_count(batch.targets)
            if objective == "seq2seq":
                with autocast or nullcontext():
                    decoded = model(batch.inputs, batch.mask)  # greedy: the targets are not passed
                right, scored = exact_matches(decoded.logits.argmax(dim=-1), batch.targets), len(batch.targets)
            else:
                right, scored = correct_and_count(output, batch.targets)
            correct += right
            count += scored
            done += batch.targets.shape[0]
            yield done
    finally:
        model.train(was_training)
    if count == 0:
        return float("nan"), float("nan")
    return total_loss / max(tokens, 1), correct / count


def evaluate(model: nn.Module, split: Split, pad_id: int, objective: Objective, batch_size: int,
             device: torch.device, autocast: AbstractContextManager | None = None) -> tuple[float, float]:
    """(mean loss per scored prediction, accuracy) over a whole split.

    A recurrent model reads a contiguous split as parallel streams in order and
    carries its memory from one segment to the next."""
    steps = evaluation(model, split, pad_id, objective, batch_size, device, autocast)
    while True:
        try:
            next(steps)
        except StopIteration as finished:
            return finished.value
