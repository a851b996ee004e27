"""What every task gives the engine and the models: a spec and tensor splits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import torch

Objective = Literal["classify", "lm"]
IGNORE_INDEX = -100  # target value that the loss and the accuracy skip


@dataclass(frozen=True)
class TaskSpec:
    """What a model needs to know about a task to size its embedding and head.

    objective "classify": one label per sequence, targets (S,), num_classes labels.
    objective "lm": next-token targets per position, targets (S, N) with
    IGNORE_INDEX where no prediction is scored; the model must be causal.
    """

    name: str
    objective: Objective
    vocab: tuple[str, ...]  # token strings by id; vocab[pad_id] is the padding token
    num_classes: int
    max_length: int
    pad_id: int = 0

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)


@dataclass(frozen=True)
class Split:
    """One split of a task as padded tensors.

    inputs:  (S, N) int64, padded with spec.pad_id to the task's max_length
    targets: (S,) int64 for "classify", (S, N) int64 for "lm"
    """

    inputs: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return self.inputs.shape[0]


class Task(Protocol):
    spec: TaskSpec

    def split(self, name: Literal["train", "val", "test"]) -> Split:
        """The split's tensors, generated on first use and cached."""
        ...

    def decode(self, ids: list[int]) -> list[str]:
        """Token strings for ids, for axis labels of attention maps."""
        ...
