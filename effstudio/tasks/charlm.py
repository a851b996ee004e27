"""Character-level language modelling on a text file the user picks.

The text is read as UTF-8 and cut into three contiguous parts, train, then
validation, then test (the last ``val_fraction`` and ``test_fraction`` of the
characters). Each part is cut into consecutive segments of ``segment_length``
characters: row r holds characters ``[r L, (r + 1) L)`` and its targets are the
characters one further on, so the last position of a row predicts the first
character of the next row. Rows are marked ``contiguous``: the engine reads them
as parallel streams in order, so a recurrent model (Transformer-XL) carries its
memory from one segment to the next; other models read each segment alone.

The vocabulary is the characters of the whole file, sorted, after ``<pad>``
(id 0, never used: every position is a real character). Training and evaluation
report bits per character, the loss divided by ln 2.

Without a ``path`` the task reads the sample text shipped in
``effstudio/tasks/texts/`` (original prose, public domain under CC0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch

from effstudio.config import ConfigError, param, validate
from effstudio.paths import PathError, open_regular_file
from effstudio.read_limits import MAX_TEXT_BYTES
from effstudio.registry import Entry
from effstudio.tasks.base import SPLIT_NAMES, Split, TaskSpec

TASK_NAME = "charlm"
PAD = "<pad>"
SAMPLE_TEXT = Path(__file__).with_name("texts") / "lighthouse.txt"
MAX_CHARACTERS = 1000  # a larger alphabet is more likely a binary file than a text


@dataclass
class CharLMConfig:
    # what the task offers before it is built (engine/pairing.py checks a model against it)
    objectives: ClassVar[tuple[str, ...]] = ("lm",)  # the forms it can be posed in, the usual first
    images: ClassVar[bool] = False

    path: str = param(
        "", label="Text file",
        help="A UTF-8 text file to model character by character; empty = the bundled sample text", path=True,
    )
    segment_length: int = param(
        64, label="Segment length", min=2, max=8192,
        help="Characters per training row; consecutive rows continue each other",
    )
    val_fraction: float = param(
        0.1, label="Validation share", min=0.01, max=0.5,
        help="Share of the text, taken from its end (before the test part), used for validation",
    )
    test_fraction: float = param(
        0.05, label="Test share", min=0.0, max=0.5,
        help="Share of the text, taken from its very end, held out for testing", advanced=True,
    )

    def check(self) -> None:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ConfigError("val_fraction", "validation and test together must leave at least 10% for training")


def read_text(path: Path) -> str:
    """The file's text; a ConfigError naming ``path`` for a missing, empty, binary or oversized file, or
    one that is not a regular file (a device such as /dev/zero or a pipe would be read without end)."""
    try:
        with open_regular_file(path, what="text") as handle:
            data = handle.read(MAX_TEXT_BYTES + 1)
    except PathError as err:
        if not path.exists() and not path.is_symlink():
            raise ConfigError("path", f"no such file: {path}") from None
        raise ConfigError("path", f"{path}: {err.reason}") from None
    except OSError as err:
        raise ConfigError("path", f"cannot read {path}: {err.strerror or err}") from None
    if len(data) > MAX_TEXT_BYTES:
        raise ConfigError("path", f"{path} is larger than the limit of {MAX_TEXT_BYTES:,} bytes for a text "
                                  "to model character by character")
    if not data.strip():
        raise ConfigError("path", f"{path} is empty")
    if b"\x00" in data:
        raise ConfigError("path", f"{path} looks like a binary file (it holds NUL bytes); pick a text file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError("path", f"{path} is not UTF-8 text (byte {err.start} cannot be decoded); "
                                  "pick a text file or convert it to UTF-8") from None
    text = text.replace("\r\n", "\n")
    if len(set(text)) > MAX_CHARACTERS:
        raise ConfigError("path", f"{path} uses {len(set(text))} different characters; "
                                  f"a text for character modelling has at most {MAX_CHARACTERS}")
    return text


def segments(ids: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Consecutive rows of ``length`` ids (S, L) and their next-id targets (S, L)."""
    rows = max(len(ids) - 1, 0) // length
    inputs = ids[: rows * length].view(rows, length)
    targets = ids[1 : rows * length + 1].view(rows, length)
    return inputs.clone(), targets.clone()


class CharLMTask:
    """A text file as consecutive segments of characters (objective "lm")."""

    name = TASK_NAME

    def __init__(self, config: CharLMConfig | None = None):
        self.config = config if config is not None else CharLMConfig()
        validate(self.config)
        self.path = Path(self.config.path).expanduser() if self.config.path else SAMPLE_TEXT
        text = read_text(self.path)
        chars = sorted(set(text))
        self.vocab = (PAD, *chars)
        index = {c: i + 1 for i, c in enumerate(chars)}
        self.ids = torch.tensor([index[c] for c in text], dtype=torch.long)
        self.bounds = self._split_bounds(len(text))
        self.spec = TaskSpec(
            name=TASK_NAME, objective="lm", vocab=self.vocab, num_classes=len(self.vocab),
            max_length=self.config.segment_length, pad_id=0,
        )
        self._splits: dict[str, Split] = {}

    def _split_bounds(self, n: int) -> dict[str, tuple[int, int]]:
        length = self.config.segment_length
        test = round(n * self.config.test_fraction)
        val = round(n * self.config.val_fraction)
        train = n - val - test
        bounds = {"train": (0, train), "val": (train, train + val), "test": (train + val, n)}
        for name, (begin, end) in bounds.items():
            if name == "test" and self.config.test_fraction == 0:
                continue
            if end - begin < length + 1:
                raise ConfigError(
                    "segment_length", f"the {name} part of {self.path.name} has {end - begin} characters, "
                    f"fewer than one segment of {length} (+1); pick a longer text or shorter segments")
        return bounds

    def split(self, name: str) -> Split:
        if name not in SPLIT_NAMES:
            raise ValueError(f"unknown split {name!r}; {TASK_NAME} has {', '.join(SPLIT_NAMES)}")
        if name not in self._splits:
            begin, end = self.bounds[name]
            inputs, targets = segments(self.ids[begin:end], self.config.segment_length)
            self._splits[name] = Split(inputs, targets, contiguous=True)
        return self._splits[name]

    def decode(self, ids: Sequence[int]) -> list[str]:
        vocab = self.vocab
        return [vocab[i] if 0 <= i < len(vocab) else f"<unk:{i}>" for i in map(int, ids)]

    def text(self, ids: Sequence[int]) -> str:
        """The characters of ``ids`` as a string (padding dropped)."""
        return "".join(self.vocab[i] for i in map(int, ids) if 0 < i < len(self.vocab))

    def loss_metrics(self, loss: float) -> dict[str, float]:
        """Metrics derived from a mean loss per character: bits per character."""
        return {"bits_per_char": loss / math.log(2)}


ENTRY = Entry(
    TASK_NAME,
    "Character-level language modelling on a text file, in consecutive segments (bits per character)",
    CharLMConfig,
    CharLMTask,
)
