"""What the compression jobs time: every variant on the same stated length, alternately.

Timing the first validation example measures whatever length it happens to have; two jobs (or
two rows of a table) that time different examples, minutes apart, cannot be compared. Here batch
1 is the longest validation example, batch 32 the 32 longest, each row cut to ``length`` tokens
or repeated up to it (default: the longest example's length), every token real.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import torch

from effstudio.engine.data import Batch, make_batch
from effstudio.engine.loading import CompressError
from effstudio.engine.timing import Timing, time_alternately
from effstudio.tasks.base import Split, Task

BATCH = 32  # the larger timed batch


def _at_length(tokens: torch.Tensor, length: int) -> torch.Tensor:
    """(length,) the real tokens of one example, cut to ``length`` or repeated up to it."""
    return tokens.repeat(math.ceil(length / max(len(tokens), 1)))[:length]


def timing_batches(split: Split, pad_id: int, length: int | None = None) -> tuple[Batch, Batch, int | None]:
    """(batch 1, batch 32, the length in tokens) every variant of a comparison is timed on.

    Batch 1 is the longest validation example, batch 32 the 32 longest, every row at ``length``
    tokens (default: the longest example's), all real (no padding). Images are taken whole (the
    first one and the first 32) and have no length.
    """
    if split.inputs.is_floating_point():
        if length is not None:
            raise CompressError("image models are timed on whole images: a length does not apply")
        return (make_batch(split, torch.arange(1), pad_id),
                make_batch(split, torch.arange(min(BATCH, len(split))), pad_id), None)
    real = split.inputs != pad_id  # (S, N)
    lengths = real.sum(dim=1)
    order = torch.argsort(lengths, descending=True, stable=True)[:BATCH]
    n = int(length or max(int(lengths[order[0]]), 1))
    rows = torch.stack([_at_length(split.inputs[i][real[i]], n) for i in order.tolist()])  # (32, n)
    mask = torch.ones_like(rows, dtype=torch.bool)
    targets = split.targets[order]
    return Batch(rows[:1], mask[:1], targets[:1]), Batch(rows, mask, targets), n


def check_length(length: int | None, task: Task) -> None:
    if length is not None and not 1 <= length <= task.spec.max_length:
        raise CompressError(f"a timing length of {length} tokens is outside what the task's models take "
                            f"(1 to {task.spec.max_length})")



def timed_pair(a: Callable[[], object], b: Callable[[], object], repeats: int = 20) -> tuple[Timing, Timing]:
    """Two runs timed alternately (:func:`effstudio.engine.timing.time_alternately`)."""
    timings: Mapping[str, Timing] = time_alternately({"a": a, "b": b}, repeats=repeats)
    return timings["a"], timings["b"]
