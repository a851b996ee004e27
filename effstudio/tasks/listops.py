"""ListOps (Long Range Arena), generated locally: evaluate nested list operations.

An example is a bracketed prefix expression such as ``[MAX 4 3 [MIN 2 3 ] 1 0 ]``
over the digits 0-9; its class is the expression's value (0-9). The sampling rules
follow the LRA generator:

- the root is at depth 1; a node shallower than ``max_depth`` is an operator with
  probability 0.25, otherwise (and always at ``max_depth``) a uniform digit;
- an operator is uniform over MIN, MAX, MED, SM and takes 2..10 arguments (uniform);
- MED of an even count is ``int(np.median(args))``, the LRA convention: the floor of
  the mean of the two middle values (``[MED 1 5 ]`` is 3), not the lower middle one;
- SM is the sum modulo 10;
- expressions outside [min_length, max_length] tokens are rejected, and no expression
  appears twice in or across splits.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from effstudio.config import ConfigError, param
from effstudio.registry import Entry
from effstudio.tasks.base import SPLIT_NAMES, GeneratedTask, TaskSpec

TASK_NAME = "listops"
# Bump when the sampling or encoding changes, so stale cache files are not reused.
GENERATOR_VERSION = 1

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
CLOSE = "]"
DIGITS = tuple(str(d) for d in range(10))
PAD = "<pad>"
VOCAB = (PAD, *OPERATORS, CLOSE, *DIGITS)  # pad must be id 0
TOKEN_ID = {token: i for i, token in enumerate(VOCAB)}
NUM_CLASSES = 10

OPERATOR_PROB = 0.25  # LRA's VALUE_P: below max depth, a node is an operator this often
MIN_ARGS, MAX_ARGS = 2, 10
# Draws in a row without a new example before we call the config infeasible
# (too few distinct expressions of the requested lengths).
MAX_FRUITLESS_DRAWS = 100_000


def longest_expression(max_depth: int) -> int:
    """Token count of the largest expression of this depth (every operator with MAX_ARGS)."""
    length = 1
    for _ in range(max_depth - 1):
        length = 2 + MAX_ARGS * length
    return length


@dataclass
class ListOpsConfig:
    # what the task offers before it is built (engine/pairing.py checks a model against it)
    objectives: ClassVar[tuple[str, ...]] = ("classify",)  # the forms it can be posed in, the usual first
    images: ClassVar[bool] = False

    train_size: int = param(2000, unit="examples", label="Train examples", min=10, max=1_000_000)
    val_size: int = param(500, unit="examples", label="Validation examples", min=1, max=1_000_000)
    test_size: int = param(500, unit="examples", label="Test examples", min=1, max=1_000_000)
    min_length: int = param(32, label="Min length", min=1, max=4096,
                            help="Shortest expression kept, in tokens (LRA: 500)")
    max_length: int = param(256, unit="tokens", label="Max length", min=4, max=4096,
                            help="Longest expression kept, in tokens; also the padded sequence length (LRA: 2000)")
    max_depth: int = param(
        10, label="Max depth", min=1, max=20, help="Nesting levels, root included"
    )
    seed: int = param(0, label="Seed", min=0, max=2**31 - 1)

    def check(self) -> None:
        if self.min_length > self.max_length:
            raise ConfigError(
                "min_length", f"must be <= max length ({self.max_length}), got {self.min_length}"
            )
        longest = longest_expression(self.max_depth)
        if self.min_length > longest:
            raise ConfigError(
                "min_length",
                f"expressions of depth {self.max_depth} have at most {longest} tokens, got {self.min_length}",
            )


def _median(values: list[int]) -> int:
    """int(np.median(values)): for an even count, the floor of the mean of the middle two."""
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) // 2  # digits are >= 0, so // equals int() truncation


def _apply(op: str, args: list[int]) -> int:
    if op == "[MIN":
        return min(args)
    if op == "[MAX":
        return max(args)
    if op == "[MED":
        return _median(args)
    return sum(args) % 10  # "[SM"


def evaluate_listops(tokens: Sequence[str]) -> int:
    """The value of a tokenised ListOps expression; ValueError if it is malformed."""
    # Operators still awaiting their "]", innermost last, with the argument values so far.
    open_ops: list[tuple[str, list[int]]] = []
    result: int | None = None
    for token in tokens:
        if token in OPERATORS:
            open_ops.append((token, []))
            continue
        if token == CLOSE:
            if not open_ops:
                raise ValueError("']' without an open operator")
            op, args = open_ops.pop()
            if not args:
                raise ValueError(f"{op} has no arguments")
            value = _apply(op, args)
        elif token in DIGITS:
            value = int(token)
        else:
            raise ValueError(f"unknown ListOps token {token!r}")
        if open_ops:
            open_ops[-1][1].append(value)
        elif result is None:
            result = value
        else:
            raise ValueError("more than one top-level expression")
    if open_ops:
        raise ValueError(f"{len(open_ops)} operator(s) not closed")
    if result is None:
        raise ValueError("empty expression")
    return result


def sample_expression(rng: random.Random, max_depth: int, max_tokens: int) -> list[str] | None:
    """One expression drawn by the LRA rules, or None as soon as it must exceed ``max_tokens``.

    Giving up early changes nothing about which expressions are kept (a longer one
    would be rejected anyway); it spares building the huge trees that the
    supercritical branching (0.25 * 6 = 1.5 children per node on average) often
    grows, which is most of the cost of rejection sampling. Built iteratively in
    prefix order because Python recursion is the other big cost.
    """
    draw = rng.random  # int(draw() * k) is uniform on 0..k-1 and much cheaper than randrange
    tokens: list[str] = []
    args_left: list[int] = []  # per open operator, innermost last: arguments still to draw
    min_total = 1  # the fewest tokens the finished expression can have, given what is drawn
    while True:
        depth = len(args_left) + 1  # of the node drawn now; the root is at depth 1
        if depth < max_depth and draw() < OPERATOR_PROB:
            tokens.append(OPERATORS[int(draw() * len(OPERATORS))])
            count = MIN_ARGS + int(draw() * (MAX_ARGS - MIN_ARGS + 1))
            args_left.append(count)
            min_total += count + 1  # this node now needs its arguments and a "]" beyond itself
            if min_total > max_tokens:
                return None
            continue  # the next node drawn is its first argument
        tokens.append(DIGITS[int(draw() * len(DIGITS))])
        # A finished node may complete its parent, which may complete its own parent...
        while args_left:
            args_left[-1] -= 1
            if args_left[-1]:
                break
            args_left.pop()
            tokens.append(CLOSE)
        else:
            return tokens  # no open operator left: the root is complete


def generate_expressions(config: ListOpsConfig) -> list[list[str]]:
    """train_size + val_size + test_size distinct expressions within the length bounds, in draw order."""
    wanted = config.train_size + config.val_size + config.test_size
    rng = random.Random(config.seed)  # a private stream: never the global random state
    seen: set[str] = set()
    kept: list[list[str]] = []
    fruitless = 0
    while len(kept) < wanted:
        tokens = sample_expression(rng, config.max_depth, config.max_length)
        if tokens is not None and config.min_length <= len(tokens) <= config.max_length:
            text = " ".join(tokens)
            if text not in seen:
                seen.add(text)
                kept.append(tokens)
                fruitless = 0
                continue
        fruitless += 1
        if fruitless >= MAX_FRUITLESS_DRAWS:
            field = "train_size" if kept else "min_length"
            raise ConfigError(
                field,
                f"found only {len(kept)} distinct expressions of {config.min_length}..{config.max_length} "
                f"tokens at depth <= {config.max_depth}, need {wanted}; widen the lengths or shrink the splits",
            )
    return kept


def encode(expressions: list[list[str]], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded token ids (S, max_length) and labels (S,), both int64."""
    inputs = np.zeros((len(expressions), max_length), dtype=np.int64)  # (S, N), 0 = <pad>
    labels = np.empty(len(expressions), dtype=np.int64)  # (S,)
    for row, tokens in enumerate(expressions):
        inputs[row, : len(tokens)] = [TOKEN_ID[t] for t in tokens]
        labels[row] = evaluate_listops(tokens)
    return torch.from_numpy(inputs), torch.from_numpy(labels)


def generate_splits(config: ListOpsConfig) -> dict[str, torch.Tensor]:
    """All splits as named tensors ("train/inputs", "train/targets", ...), for the cache."""
    expressions = generate_expressions(config)
    sizes = {"train": config.train_size, "val": config.val_size, "test": config.test_size}
    tensors: dict[str, torch.Tensor] = {}
    start = 0
    for name in SPLIT_NAMES:
        inputs, targets = encode(expressions[start : start + sizes[name]], config.max_length)
        tensors[f"{name}/inputs"], tensors[f"{name}/targets"] = inputs, targets
        start += sizes[name]
    return tensors


class ListOpsTask(GeneratedTask):
    """The ListOps task: spec, cached splits and token decoding."""

    name, generator_version, config_cls = TASK_NAME, GENERATOR_VERSION, ListOpsConfig

    def __init__(self, config: ListOpsConfig | None = None):
        super().__init__(config)
        self.spec = TaskSpec(
            name=TASK_NAME,
            objective="classify",
            vocab=VOCAB,
            num_classes=NUM_CLASSES,
            max_length=self.config.max_length,
            pad_id=TOKEN_ID[PAD],
        )

    def generate(self) -> dict[str, torch.Tensor]:
        return generate_splits(self.config)  # looked up at call time, so tests can patch it


ENTRY = Entry(
    TASK_NAME,
    "Long Range Arena ListOps: evaluate nested MIN/MAX/MED/SUM-mod-10 expressions",
    ListOpsConfig,
    ListOpsTask,
)
