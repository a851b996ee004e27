"""Deterministic, resumable batching of a task split.

The order of examples is a function of (seed, epoch) only, and the batch for
micro-step ``i`` is a function of ``i`` only, so a resumed run sees exactly the
batches the uninterrupted run would have seen. Under torchrun each rank takes
its share of every global batch (``indices[rank::world_size]``), which keeps the
global batch size what the config says.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset

from effstudio.tasks.base import IGNORE_INDEX, Split


@dataclass(frozen=True)
class Batch:
    inputs: torch.Tensor  # (B, N) int64, or (B, C, H, W) float32 for image tasks
    mask: torch.Tensor  # (B, N) bool, True = real token; (B,) all True for images
    targets: torch.Tensor  # (B,), (B, N) or (B, T) for seq2seq, int64

    @property
    def tokens(self) -> int:
        """Real tokens in the batch (images for an image task): the unit of throughput."""
        return int(self.mask.sum())

    def to(self, device: torch.device) -> Batch:
        non_blocking = device.type == "cuda"
        return Batch(*(t.to(device, non_blocking=non_blocking) for t in (self.inputs, self.mask, self.targets)))


def make_batch(split: Split, index: torch.Tensor, pad_id: int) -> Batch:
    """Rows ``index`` of a split, trimmed to their longest real sequence.

    Images are taken whole. A seq2seq target (not aligned with the inputs) is
    trimmed to its own longest scored length.
    """
    inputs = split.inputs[index]  # (B, N_max) or (B, C, H, W)
    targets = split.targets[index]
    if inputs.is_floating_point():
        return Batch(inputs, torch.ones(inputs.shape[0], dtype=torch.bool), targets)
    mask = inputs != pad_id
    length = max(int(mask.sum(dim=1).max()), 1)
    if targets.dim() == 2 and split.aligned:
        targets = targets[:, :length]
    elif targets.dim() == 2:
        scored = (targets != IGNORE_INDEX).sum(dim=1)  # (B,) targets are left-aligned
        targets = targets[:, :max(int(scored.max()), 1)]
    return Batch(inputs[:, :length], mask[:, :length], targets)


class MicroBatchIndices:
    """Index tensors of successive micro-batches, starting at micro-step ``start``."""

    def __init__(self, size: int, global_batch: int, micro_batches: int, seed: int,
                 start: int = 0, rank: int = 0, world_size: int = 1):
        if global_batch > size:
            global_batch = size  # tiny data sets: a step uses every example once
        self.size, self.global_batch = size, global_batch
        self.micro_batches, self.seed = micro_batches, seed
        self.start, self.rank, self.world_size = start, rank, world_size
        self.steps_per_epoch = size // global_batch  # drop the last partial batch

    def permutation(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.size, generator=generator)

    def __iter__(self) -> Iterator[torch.Tensor]:
        micro = self.start
        epoch, order = -1, None
        while True:
            step, part = divmod(micro, self.micro_batches)
            step_epoch, step_in_epoch = divmod(step, self.steps_per_epoch)
            if step_epoch != epoch:
                epoch, order = step_epoch, self.permutation(step_epoch)
            begin = step_in_epoch * self.global_batch
            global_indices = order[begin:begin + self.global_batch]
            rank_indices = global_indices[self.rank::self.world_size]
            yield rank_indices.tensor_split(self.micro_batches)[part]
            micro += 1


class StreamIndices:
    """Index tensors for a contiguous split (rows continue each other): parallel streams in order.

    The rows are cut into ``lanes = global_batch // micro_batches`` contiguous lanes
    of ``lane_length`` rows; micro-step ``m`` takes row ``m mod lane_length`` of every
    lane, so consecutive micro-batches (and the micro-batches of one optimizer step)
    are consecutive segments of the same streams and a recurrent model can carry its
    memory from one to the next. Under torchrun each rank takes ``lanes[rank::world_size]``.
    A lane starts again from its first row after ``lane_length`` micro-steps
    (:meth:`restarts`), where a recurrent model's memory is dropped.
    """

    def __init__(self, size: int, global_batch: int, micro_batches: int, seed: int,
                 start: int = 0, rank: int = 0, world_size: int = 1):
        lanes = min(max(global_batch // micro_batches, world_size), size)
        self.size, self.seed, self.start = size, seed, start
        self.lane_length = size // lanes
        self.lane_starts = (torch.arange(lanes) * self.lane_length)[rank::world_size]  # (lanes per rank,)

    def restarts(self, micro: int) -> bool:
        """Whether micro-step ``micro`` begins the streams again (no memory to carry into it)."""
        return micro % self.lane_length == 0

    def __iter__(self) -> Iterator[torch.Tensor]:
        micro = self.start
        while True:
            yield self.lane_starts + micro % self.lane_length
            micro += 1


def stream_eval_batches(split: Split, pad_id: int, batch_size: int,
                        segments_per_lane: int = 16) -> Iterator[Batch]:
    """Every row of a contiguous split, as parallel streams in order (for a recurrent model).

    The rows are cut into at most ``batch_size`` contiguous lanes of about
    ``segments_per_lane`` rows or more; batch ``t`` holds row ``t`` of each lane. Lanes
    differ in length by at most one row and the longer ones come first, so a late
    batch holds the first lanes only (a model keeps the first rows of its memory).
    """
    size = len(split)
    if size == 0:
        return
    lanes = torch.arange(size).tensor_split(min(max(size // segments_per_lane, 1), batch_size))
    for t in range(len(lanes[0])):
        yield make_batch(split, torch.stack([lane[t] for lane in lanes if len(lane) > t]), pad_id)


class _SplitBatches(Dataset):
    """A map-style data set whose items are whole batches, so DataLoader workers can build them."""

    def __init__(self, split: Split, pad_id: int):
        self.split, self.pad_id = split, pad_id

    def __getitem__(self, index: torch.Tensor) -> Batch:
        return make_batch(self.split, index, self.pad_id)

    def __len__(self) -> int:
        return len(self.split)


def _already_a_batch(batch: Batch) -> Batch:
    return batch


def train_batches(split: Split, pad_id: int, indices: MicroBatchIndices, num_workers: int,
                  pin_memory: bool) -> Iterator[Batch]:
    if num_workers == 0:
        return (make_batch(split, index, pad_id) for index in indices)
    loader = DataLoader(
        _SplitBatches(split, pad_id),
        sampler=indices,
        batch_size=None,  # items are already batches
        collate_fn=_already_a_batch,
        num_workers=num_workers,
        pin_memory=pin_memory,
        prefetch_factor=4,
        persistent_workers=False,
        # the loader draws worker seeds from this generator, not from the global
        # one, so dropout masks are the same with and without workers
        generator=torch.Generator().manual_seed(indices.seed),
    )
    return iter(loader)


def eval_batches(split: Split, pad_id: int, batch_size: int) -> Iterator[Batch]:
    for begin in range(0, len(split), batch_size):
        yield make_batch(split, torch.arange(begin, min(begin + batch_size, len(split))), pad_id)
