"""A model run over a split in inference mode, batched, kept as per-example arrays."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from effstudio.engine.data import eval_batches
from effstudio.evaluate.model_file import Evaluable
from effstudio.tasks.base import IGNORE_INDEX, Split

BATCH = 64


@dataclass
class ClassPredictions:
    logits: np.ndarray  # (S, C) float32
    targets: np.ndarray  # (S,) int64; -1 where the example has no label
    lengths: np.ndarray  # (S,) real tokens (image side for images)
    pooled: np.ndarray | None = None  # (S, D) when asked for


@dataclass
class TokenPredictions:
    """Language modelling, per example: scored tokens, right ones, summed cross-entropy (nats)."""

    scored: np.ndarray  # (S,)
    correct: np.ndarray  # (S,)
    loss: np.ndarray  # (S,)
    lengths: np.ndarray  # (S,)


def example_lengths(split: Split, pad_id: int) -> np.ndarray:
    if split.inputs.is_floating_point():
        return np.full(len(split), split.inputs.shape[-1], dtype=np.int64)
    return (split.inputs != pad_id).sum(dim=1).numpy()


def predict_classes(model: Evaluable, split: Split, *, pooled: bool = False, batch_size: int = BATCH,
                    progress: Callable[[int, int], None] | None = None) -> ClassPredictions:
    logits, vectors = [], []
    done = 0
    for batch in eval_batches(split, model.spec.pad_id, batch_size):
        if pooled:
            out, vector = model.logits_and_pooled(batch)
            vectors.append(vector)
        else:
            out = model.logits(batch)
        logits.append(out)
        done += len(batch.targets)
        if progress is not None:
            progress(done, len(split))
    classes = model.spec.num_classes
    return ClassPredictions(np.concatenate(logits) if logits else np.zeros((0, classes), np.float32),
                            split.targets.numpy().astype(np.int64), example_lengths(split, model.spec.pad_id),
                            np.concatenate(vectors) if vectors else None)


def predict_tokens(model: Evaluable, split: Split, *, batch_size: int = BATCH,
                   progress: Callable[[int, int], None] | None = None) -> TokenPredictions:
    scored, correct, loss = [], [], []
    done = 0
    for batch in eval_batches(split, model.spec.pad_id, batch_size):
        logits = torch.from_numpy(model.logits(batch))  # (B, N, V)
        targets = batch.targets  # (B, N)
        mask = targets != IGNORE_INDEX
        nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX,
                                                reduction="none").view(targets.shape)
        scored.append(mask.sum(dim=1).numpy())
        correct.append(((logits.argmax(dim=-1) == targets) & mask).sum(dim=1).numpy())
        loss.append((nll * mask).sum(dim=1).double().numpy())
        done += len(targets)
        if progress is not None:
            progress(done, len(split))
    return TokenPredictions(np.concatenate(scored), np.concatenate(correct), np.concatenate(loss),
                            example_lengths(split, model.spec.pad_id))


def accuracy_of(model: Evaluable, split: Split) -> tuple[float | None, float | None]:
    """(accuracy, bits per scored token or None) of the model on a split: what curves need."""
    if model.spec.objective == "lm":
        tokens = predict_tokens(model, split)
        count = tokens.scored.sum()
        if not count:
            return None, None
        return float(tokens.correct.sum() / count), float(tokens.loss.sum() / count / np.log(2))
    found = predict_classes(model, split)
    return (float(np.mean(found.logits.argmax(axis=1) == found.targets)) if len(found.targets) else None), None
