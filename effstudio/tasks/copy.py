"""Copy / reverse / sort: a tiny causal language-modelling task for quick checks.

Each sequence is ``<bos> x1..xn <sep> y1..yn <eos>`` padded with ``<pad>`` (id 0),
where x is a random string of symbols and y is x itself ("copy"), x reversed
("reverse") or x sorted by symbol ("sort"). Only the answer is scored: the positions that predict y1..yn and
<eos> carry the next token as target, every other position IGNORE_INDEX. A model
that solves it must look back n+1 positions, so it is a fast test that attention
routes information at all.

The same examples have a source/target form for encoder-decoder models
(objective "seq2seq", :meth:`CopyTask.as_seq2seq`): the source is x (padded to
``max_length``), the target y1..yn <eos> (IGNORE_INDEX after it).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from effstudio.config import ConfigError, param
from effstudio.registry import Entry
from effstudio.tasks.base import IGNORE_INDEX, SPLIT_NAMES, GeneratedTask, Split, TaskSpec

TASK_NAME = "copy"
# Bump when the sampling or layout changes, so stale cache files are not reused.
GENERATOR_VERSION = 1

PAD, BOS, SEP, EOS = "<pad>", "<bos>", "<sep>", "<eos>"
SPECIALS = (PAD, BOS, SEP, EOS)  # ids 0..3; symbol s has id len(SPECIALS) + s
PAD_ID, BOS_ID, SEP_ID, EOS_ID = range(len(SPECIALS))


@dataclass
class CopyConfig:
    # what the task offers before it is built (engine/pairing.py checks a model against it)
    objectives: ClassVar[tuple[str, ...]] = ("lm", "seq2seq")  # the forms it can be posed in, the usual first
    images: ClassVar[bool] = False

    mode: str = param(
        "copy",
        label="Mode",
        choices=("copy", "reverse", "sort"),
        help="Answer is the source, the source reversed, or the source sorted",
    )
    vocab_size: int = param(10, label="Symbols", min=2, max=1000, help="Distinct source symbols")
    min_length: int = param(
        4, label="Min length", min=1, max=512, help="Shortest source, in symbols"
    )
    max_length: int = param(
        16, unit="symbols", label="Max length", min=1, max=512, help="Longest source, in symbols"
    )
    train_size: int = param(2000, unit="examples", label="Train examples", min=1, max=1_000_000)
    val_size: int = param(200, unit="examples", label="Validation examples", min=1, max=1_000_000)
    test_size: int = param(200, unit="examples", label="Test examples", min=1, max=1_000_000)
    seed: int = param(0, label="Seed", min=0, max=2**31 - 1)

    def check(self) -> None:
        if self.min_length > self.max_length:
            raise ConfigError(
                "min_length", f"must be <= max length ({self.max_length}), got {self.min_length}"
            )


def sequence_length(max_length: int) -> int:
    """Padded length N of a sequence whose source has up to ``max_length`` symbols."""
    return 2 * max_length + 3  # <bos> + source + <sep> + answer + <eos>


def vocab_for(vocab_size: int) -> tuple[str, ...]:
    return (*SPECIALS, *(str(s) for s in range(vocab_size)))


def generate_split(config: CopyConfig, size: int, stream: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` sequences (S, N) and their next-token targets (S, N), both int64.

    ``stream`` picks an independent random stream per split, so one split's size
    does not change the contents of another.
    """
    rng = np.random.default_rng([config.seed, stream])
    n_max = config.max_length
    width = sequence_length(n_max)
    lengths = rng.integers(config.min_length, n_max + 1, size=size)  # (S,)
    symbols = rng.integers(0, config.vocab_size, size=(size, n_max)) + len(SPECIALS)  # (S, n_max)
    inputs = np.full((size, width), PAD_ID, dtype=np.int64)  # (S, N)
    targets = np.full((size, width), IGNORE_INDEX, dtype=np.int64)  # (S, N)
    for row, n in enumerate(lengths):
        source = symbols[row, :n]
        answer = {"copy": source, "reverse": source[::-1], "sort": np.sort(source)}[config.mode]
        inputs[row, : 2 * n + 3] = np.concatenate(([BOS_ID], source, [SEP_ID], answer, [EOS_ID]))
        # Position t predicts token t+1: <sep> (at n+1) predicts y1, ..., yn (at 2n+1) predicts <eos>.
        targets[row, n + 1 : 2 * n + 2] = inputs[row, n + 2 : 2 * n + 3]
    return torch.from_numpy(inputs), torch.from_numpy(targets)


def generate_splits(config: CopyConfig) -> dict[str, torch.Tensor]:
    """All splits as named tensors ("train/inputs", "train/targets", ...), for the cache."""
    sizes = {"train": config.train_size, "val": config.val_size, "test": config.test_size}
    tensors: dict[str, torch.Tensor] = {}
    for stream, name in enumerate(SPLIT_NAMES):
        tensors[f"{name}/inputs"], tensors[f"{name}/targets"] = generate_split(
            config, sizes[name], stream
        )
    return tensors


class CopyTask(GeneratedTask):
    """The copy / reverse task: spec, cached splits and token decoding."""

    name, generator_version, config_cls = TASK_NAME, GENERATOR_VERSION, CopyConfig

    def __init__(self, config: CopyConfig | None = None):
        super().__init__(config)
        vocab = vocab_for(self.config.vocab_size)
        self.spec = TaskSpec(
            name=TASK_NAME,
            objective="lm",
            vocab=vocab,
            num_classes=len(vocab),  # an LM head predicts any token id
            max_length=sequence_length(self.config.max_length),
            pad_id=PAD_ID,
        )

    def generate(self) -> dict[str, torch.Tensor]:
        return generate_splits(self.config)  # looked up at call time, so tests can patch it

    def as_seq2seq(self) -> CopySeq2SeqTask:
        """The same examples as source -> target pairs, for encoder-decoder models."""
        return CopySeq2SeqTask(self)


def to_source_target(inputs: torch.Tensor, max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """LM rows ``<bos> x <sep> y <eos>`` (S, N) -> sources x (S, max_length), padded with <pad>,
    and targets ``y <eos>`` (S, max_length + 1), IGNORE_INDEX after <eos>."""
    n = (inputs == SEP_ID).int().argmax(dim=1, keepdim=True) - 1  # (S, 1) source lengths
    width = inputs.shape[1]
    j = torch.arange(max_length + 1)[None, :]  # (1, max_length + 1)
    first = (j[:, :max_length] + 1).clamp(max=width - 1).expand(inputs.shape[0], -1)
    source = inputs.gather(1, first)  # x_j at position 1 + j
    source = source.masked_fill(j[:, :max_length] >= n, PAD_ID)
    target = inputs.gather(1, (j + n + 2).clamp(max=width - 1))  # y_j at position n + 2 + j
    target = target.masked_fill(j > n, IGNORE_INDEX)
    return source, target


class CopySeq2SeqTask:
    """The copy task posed as source -> target, for encoder-decoder models (objective "seq2seq")."""

    def __init__(self, task: CopyTask):
        self.lm_task = task
        self.name = task.name
        self.config = task.config
        lm = task.spec
        self.spec = TaskSpec(
            name=lm.name,
            objective="seq2seq",
            vocab=lm.vocab,
            num_classes=lm.num_classes,
            max_length=task.config.max_length + 1,  # the answer and <eos>
            pad_id=PAD_ID,
            source_length=task.config.max_length,
        )

    def split(self, name: str) -> Split:
        lm = self.lm_task.split(name)
        source, target = to_source_target(lm.inputs, self.config.max_length)
        return Split(source, target, aligned=False)

    def decode(self, ids: Sequence[int]) -> list[str]:
        return self.lm_task.decode(ids)


ENTRY = Entry(
    TASK_NAME,
    "Copy, reverse or sort a random symbol string (causal LM, or source -> target for seq2seq)",
    CopyConfig,
    CopyTask,
)
