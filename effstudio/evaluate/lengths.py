"""Accuracy by input length, and data longer than the model was trained on (length generalisation).

Tasks that generate their data can make longer inputs: ListOps expressions, copy sources, and charlm
segments. For factor f > 1 the examples are those longer than (f / 2) x and at most f x the training
maximum, so each factor measures a new range of lengths; factor 1 is the evaluated split itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from effstudio.engine.build import build_task
from effstudio.engine.run_config import RunConfig
from effstudio.evaluate.results import LengthBucket
from effstudio.tasks.base import Task

LONG_EXAMPLES = 200  # examples generated per factor
BUCKETS = 6


def _listops(task: object, factor: int) -> dict:
    longest = task.max_length * factor
    return {"max_length": longest, "min_length": min(longest, max(task.min_length, longest // 2 + 1)),
            "train_size": 10, "val_size": 1, "test_size": LONG_EXAMPLES, "seed": task.seed + 7919 * factor}


def _copy(task: object, factor: int) -> dict:
    longest = task.max_length * factor
    return {"max_length": longest, "min_length": max(task.min_length, longest // 2 + 1),
            "train_size": 1, "val_size": 1, "test_size": LONG_EXAMPLES, "seed": task.seed + 7919 * factor}


def _charlm(task: object, factor: int) -> dict:
    return {"segment_length": task.segment_length * factor}


# task name -> the task settings that make inputs ``factor`` times longer (their test split is used)
LONGER: dict[str, Callable[[object, int], dict]] = {"listops": _listops, "copy": _copy, "charlm": _charlm}


def can_lengthen(task_name: str) -> bool:
    return task_name in LONGER


def longer_task(config: RunConfig, factor: int, saved: object = None) -> Task:
    """The config's task with inputs up to ``factor`` times its maximum length (same vocabulary)."""
    changes = LONGER[config.task_name](config.task, factor)
    longer = dataclasses.replace(config, task=dataclasses.replace(config.task, **changes))
    return build_task(longer, saved=saved)


def bucket_edges(lengths: np.ndarray, buckets: int = BUCKETS) -> list[tuple[int, int]]:
    """(low, high) length ranges holding about equal numbers of examples, covering every length."""
    lengths = np.asarray(lengths)
    if not len(lengths):
        return []
    cuts = np.unique(np.quantile(lengths, np.linspace(0, 1, buckets + 1)).round().astype(int))
    ranges, low = [], int(lengths.min())
    for high in cuts[1:]:
        if high >= low:
            ranges.append((low, int(high)))
            low = int(high) + 1
    if not ranges or ranges[-1][1] < lengths.max():
        ranges.append((low, int(lengths.max())))
    return ranges


def by_length(lengths: np.ndarray, correct: np.ndarray, loss: np.ndarray | None = None,
              scored: np.ndarray | None = None) -> list[LengthBucket]:
    """Accuracy (and, for language modelling, bits per scored token) per length bucket.

    Classification: ``correct`` is 0/1 per example. Language modelling: ``correct`` and ``scored`` are the
    right and scored tokens per example, ``loss`` the summed cross-entropy in nats per example."""
    lengths = np.asarray(lengths)
    buckets = []
    for low, high in bucket_edges(lengths):
        inside = (lengths >= low) & (lengths <= high)
        count = int(inside.sum())
        if not count:
            continue
        if scored is None:
            accuracy, bits = float(np.mean(correct[inside])), None
        else:
            tokens = float(scored[inside].sum())
            accuracy = float(correct[inside].sum() / tokens) if tokens else None
            bits = float(loss[inside].sum() / tokens / np.log(2)) if tokens else None
        buckets.append(LengthBucket(f"{low}-{high}", low, high, count, accuracy, bits))
    return buckets
