"""What every task gives the engine and the models: a spec and tensor splits."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
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


SPLIT_NAMES = ("train", "val", "test")


class GeneratedTask:
    """A task whose splits are generated from its config, cached, and decoded by its vocab.

    Subclasses set ``name`` and ``generator_version`` (bump it whenever the
    generator's output changes, so stale caches are not reused), build
    ``self.spec`` and implement ``generate()`` -> {"<split>/inputs", "<split>/targets"}.
    """

    name: str
    generator_version: int
    spec: TaskSpec

    def __init__(self, config: object):
        self.config = config
        self._tensors: dict[str, torch.Tensor] | None = None

    def generate(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def split(self, name: str) -> Split:
        if name not in SPLIT_NAMES:
            raise ValueError(f"unknown split {name!r}; {self.name} has {', '.join(SPLIT_NAMES)}")
        if self._tensors is None:
            from effstudio.tasks import cache

            self._tensors = cache.load_or_create(
                self.name,
                dataclasses.asdict(self.config),
                self.generator_version,
                self.generate,
                expected_keys=[f"{s}/{part}" for s in SPLIT_NAMES for part in ("inputs", "targets")],
            )
        return Split(self._tensors[f"{name}/inputs"], self._tensors[f"{name}/targets"])

    def decode(self, ids: Sequence[int]) -> list[str]:
        vocab = self.spec.vocab
        return [vocab[i] if 0 <= i < len(vocab) else f"<unk:{i}>" for i in map(int, ids)]
