"""Loss and accuracy for the two task objectives, and evaluation over a split."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from effstudio.engine.data import Batch, eval_batches
from effstudio.models.base import ModelOutput
from effstudio.tasks.base import IGNORE_INDEX, Objective, Split


def task_loss(output: ModelOutput, targets: torch.Tensor, objective: Objective) -> torch.Tensor:
    """Mean cross-entropy: logits (B, C) vs (B,) or (B, N, V) vs (B, N) with IGNORE_INDEX."""
    logits = output.logits.float()  # the loss in float32 even under autocast
    if objective == "classify":
        return F.cross_entropy(logits, targets)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)


def correct_and_count(output: ModelOutput, targets: torch.Tensor) -> tuple[int, int]:
    """Correct predictions and scored predictions (sequences, or scored tokens)."""
    predicted = output.logits.argmax(dim=-1)
    scored = targets != IGNORE_INDEX
    return int((predicted == targets)[scored].sum()), int(scored.sum())


def scored_count(targets: torch.Tensor) -> int:
    return int((targets != IGNORE_INDEX).sum())


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, pad_id: int, objective: Objective, batch_size: int,
             device: torch.device, autocast: AbstractContextManager | None = None) -> tuple[float, float]:
    """(mean loss per scored prediction, accuracy) over a whole split."""
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    try:
        for batch in eval_batches(split, pad_id, batch_size):
            batch: Batch = batch.to(device)
            with autocast or nullcontext():
                output = model(batch.inputs, batch.mask)
            n = scored_count(batch.targets)
            total_loss += float(task_loss(output, batch.targets, objective)) * n
            right, scored = correct_and_count(output, batch.targets)
            correct += right
            count += scored
    finally:
        model.train(was_training)
    if count == 0:
        return float("nan"), float("nan")
    return total_loss / count, correct / count
