"""Copy / reverse: a tiny causal language-modelling task for quick checks.

Each sequence is ``<bos> x1..xn <sep> y1..yn <eos>`` padded with ``<pad>`` (id 0),
where x is a random string of symbols and y is x itself ("copy") or x reversed
("reverse"). Only the answer is scored: the positions that predict y1..yn and
<eos> carry the next token as target, every other position IGNORE_INDEX. A model
that solves it must look back n+1 positions, so it is a fast test that attention
routes information at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from effstudio.config import ConfigError, param, validate
from effstudio.registry import Entry
from effstudio.tasks.base import IGNORE_INDEX, SPLIT_NAMES, GeneratedTask, TaskSpec

TASK_NAME = "copy"
# Bump when the sampling or layout changes, so stale cache files are not reused.
GENERATOR_VERSION = 1

PAD, BOS, SEP, EOS = "<pad>", "<bos>", "<sep>", "<eos>"
SPECIALS = (PAD, BOS, SEP, EOS)  # ids 0..3; symbol s has id len(SPECIALS) + s
PAD_ID, BOS_ID, SEP_ID, EOS_ID = range(len(SPECIALS))


@dataclass
class CopyConfig:
    mode: str = param(
        "copy",
        label="Mode",
        choices=("copy", "reverse"),
        help="Answer is the source, or the source reversed",
    )
    vocab_size: int = param(10, label="Symbols", min=2, max=1000, help="Distinct source symbols")
    min_length: int = param(
        4, label="Min length", min=1, max=512, help="Shortest source, in symbols"
    )
    max_length: int = param(
        16, label="Max length", min=1, max=512, help="Longest source, in symbols"
    )
    train_size: int = param(2000, label="Train examples", min=1, max=1_000_000)
    val_size: int = param(200, label="Validation examples", min=1, max=1_000_000)
    test_size: int = param(200, label="Test examples", min=1, max=1_000_000)
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
        answer = source if config.mode == "copy" else source[::-1]
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

    name = TASK_NAME
    generator_version = GENERATOR_VERSION

    def __init__(self, config: CopyConfig | None = None):
        super().__init__(config if config is not None else CopyConfig())
        validate(self.config)
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


ENTRY = Entry(
    TASK_NAME,
    "Copy or reverse a random symbol string (causal LM; only the answer is scored)",
    CopyConfig,
    CopyTask,
)
