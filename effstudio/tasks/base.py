"""What every task gives the engine and the models: a spec and tensor splits."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch

from effstudio.config import validate
from effstudio.tasks import cache

Objective = Literal["classify", "lm", "seq2seq"]
IGNORE_INDEX = -100  # target value that the loss and the accuracy skip


@dataclass(frozen=True)
class TaskSpec:
    """What a model needs to know about a task to size its embedding and head.

    objective "classify": one label per sequence, targets (S,), num_classes labels.
    objective "lm": next-token targets per position, targets (S, N) with
    IGNORE_INDEX where no prediction is scored; the model must be causal.
    objective "seq2seq": a source sequence (S, source_length) of token ids and a
    target sequence of its own (S, max_length), IGNORE_INDEX after its end; the
    model reads the source and writes the target (teacher forcing in training,
    greedy decoding in evaluation). The decoder's start token is ``pad_id``.

    Image tasks (``channels`` > 0) have inputs (S, C, H, W) float32 in [0, 1]
    instead of token ids, an empty vocab and objective "classify"; ``max_length``
    is the image side (``image_size``).
    """

    name: str
    objective: Objective
    vocab: tuple[str, ...]  # token strings by id; vocab[pad_id] is the padding token
    num_classes: int
    max_length: int
    pad_id: int = 0
    channels: int = 0  # image tasks: colour channels (1 grey, 3 RGB); 0 for token tasks
    image_size: int = 0  # image tasks: height = width in pixels
    source_length: int = 0  # seq2seq tasks: padded source length
    class_names: tuple[str, ...] = ()  # classify tasks: names of the labels, when they have any

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def is_image(self) -> bool:
        return self.channels > 0

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one input image."""
        return (self.channels, self.image_size, self.image_size)


@dataclass(frozen=True)
class Split:
    """One split of a task as padded tensors.

    inputs:  (S, N) int64, padded with spec.pad_id to the task's max_length (or, N < max_length, to
             the split's longest example),
             or (S, C, H, W) float32 for image tasks
    targets: (S,) int64 for "classify", (S, N) int64 for "lm",
             (S, T) int64 for "seq2seq" (a sequence of its own: ``aligned`` is False)
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    aligned: bool = True  # 2-d targets follow the inputs position by position (lm)
    # rows are consecutive segments of one stream (row r + 1 continues row r, e.g. charlm):
    # the engine reads them in order as parallel streams, so a recurrent model keeps its memory
    contiguous: bool = False

    def __len__(self) -> int:
        return self.inputs.shape[0]


@dataclass(frozen=True)
class SavedTaskData:
    """What a task keeps with every checkpoint so that it is rebuilt as it was trained (a tokenizer, a label map).

    ``metadata``: header entries, each key starting with ``effstudio.task.``; ``files``: name -> bytes, written
    beside the checkpoint as ``<checkpoint stem>.<name>`` and bound to it by their SHA-256 in its header.
    A task offers it with a ``saved_data()`` method; its registered factory rebuilds the task from it with a
    ``from_saved(config, saved)`` class method (the engine uses both when present). A path setting that reads
    what a file keeps (a tokenizer file) is declared in the task config's ``task_files`` ClassVar (setting ->
    file name): a model file's config then names the file beside it, so that model and files move together.
    """

    metadata: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, bytes] = field(default_factory=dict)


def saved_data_of(task: object) -> SavedTaskData | None:
    """What ``task`` keeps with a checkpoint; None for a task that needs nothing (generated data)."""
    saved_data = getattr(task, "saved_data", None)
    return saved_data() if callable(saved_data) else None


def data_notes(task: object) -> list[str]:
    """What building a task's data did that a person should know (rows left out, duplicates), one line each."""
    notes = getattr(task, "notes", None)
    return list(notes()) if callable(notes) else []


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

    Subclasses set ``name``, ``generator_version`` (bump it whenever the
    generator's output changes, so stale caches are not reused) and ``config_cls``
    (the config taken when none is given; every config is validated), build
    ``self.spec`` and implement ``generate()`` -> {"<split>/inputs", "<split>/targets"}.
    """

    name: str
    generator_version: int
    config_cls: type
    spec: TaskSpec

    def __init__(self, config: Any = None):
        self.config = config if config is not None else self.config_cls()
        validate(self.config)
        self._tensors: dict[str, torch.Tensor] | None = None

    def generate(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def cache_identity(self) -> dict[str, object]:
        """What the cached data depend on besides the generator version: the config
        (a task that reads files adds a fingerprint of them)."""
        return dataclasses.asdict(self.config)

    def split(self, name: str) -> Split:
        if name not in SPLIT_NAMES:
            raise ValueError(f"unknown split {name!r}; {self.name} has {', '.join(SPLIT_NAMES)}")
        if self._tensors is None:
            self._tensors = cache.load_or_create(
                self.name,
                self.cache_identity(),
                self.generator_version,
                self.generate,
                expected_keys=[f"{s}/{part}" for s in SPLIT_NAMES for part in ("inputs", "targets")],
            )
        return Split(self._tensors[f"{name}/inputs"], self._tensors[f"{name}/targets"])

    def decode(self, ids: Sequence[int]) -> list[str]:
        vocab = self.spec.vocab
        return [vocab[i] if 0 <= i < len(vocab) else f"<unk:{i}>" for i in map(int, ids)]
