"""A file of examples to evaluate on or to check for drift, read in the model's own terms.

The file is a table (CSV, TSV or JSON Lines, as textclass reads them) with a text column and, for
evaluation, a label column: the names the task uses (textclass: its ``text_column`` / ``label_column``;
other token tasks: ``text`` and ``label``). Text is tokenized as the model was trained: with the
tokenizer kept beside the checkpoint, or, for a task with a fixed vocabulary (ListOps), split on
white space and looked up token by token. Tokens the model does not know and labels it never saw are
counted: evaluation refuses unknown tokens of a fixed vocabulary (the data is of another task), leaves
out unknown labels with a warning, and drift reports the unknown-token rate as a signal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from effstudio.config import ConfigError
from effstudio.evaluate.events import EvaluateError
from effstudio.tasks.base import Split, Task
from effstudio.tasks.text_table import read_rows, sniff_table

MAX_EXAMPLE_SHOWN = 40  # characters of a token or label quoted in a message


@dataclass
class DataFile:
    split: Split
    tokens: int  # tokens read (before truncation)
    unknown_tokens: int  # of them, not in the model's vocabulary (or its tokenizer's unknown piece)
    unseen_labels: dict[str, int] = field(default_factory=dict)  # label -> rows left out
    first_unknown: str | None = None

    @property
    def unknown_rate(self) -> float:
        return self.unknown_tokens / self.tokens if self.tokens else 0.0

    def warnings(self, path: Path) -> list[str]:
        if not self.unseen_labels:
            return []
        rows = sum(self.unseen_labels.values())
        names = ", ".join(repr(name[:MAX_EXAMPLE_SHOWN]) for name in list(self.unseen_labels)[:5])
        return [f"{path}: {rows} row(s) with labels the model never saw ({names}) were left out; "
                f"the other {len(self.split)} were evaluated"]


def _columns(task: Task) -> tuple[str, str]:
    config = getattr(task, "config", None)
    return getattr(config, "text_column", "text"), getattr(config, "label_column", "label")


def label_names(task: Task) -> list[str]:
    spec = task.spec
    return list(spec.class_names) if spec.class_names else [str(i) for i in range(spec.num_classes)]


def read_data_file(path: Path, task: Task, *, labelled: bool = True) -> DataFile:
    """The file's examples as a padded split of the task (targets -1 where unlabelled); EvaluateError
    with one line for an unreadable, empty or foreign file."""
    spec = task.spec
    if spec.is_image or spec.objective != "classify":
        raise EvaluateError(f"{path}: a data file is read for token classification tasks; task {spec.name!r} "
                            "is evaluated on its own splits (val or test)")
    text_column, label_column = _columns(task)
    try:
        fmt = sniff_table(path)
        wanted = [text_column] + ([label_column] if labelled else [])
        rows = [values for chunk in read_rows(path, fmt, wanted) for _, values in chunk]
    except ConfigError as err:
        raise EvaluateError(err.message if err.message.startswith(str(path)) else f"{path}: {err.message}") from None
    except OSError as err:
        raise EvaluateError(f"{path}: cannot be read ({err.strerror or err})") from None
    if not rows:
        raise EvaluateError(f"{path}: the file has no examples (an empty split); nothing to evaluate")
    names = {name: i for i, name in enumerate(label_names(task))}
    unseen: dict[str, int] = {}
    texts, targets = [], []
    for values in rows:
        label = values[1].strip() if labelled else None
        if label is not None and label not in names:
            unseen[label] = unseen.get(label, 0) + 1
            continue
        texts.append(values[0])
        targets.append(-1 if label is None else names[label])
    if not texts:
        shown = ", ".join(repr(name[:MAX_EXAMPLE_SHOWN]) for name in list(unseen)[:5])
        raise EvaluateError(f"{path}: none of the file's labels ({shown}) is one the model was trained on "
                            f"({', '.join(list(names)[:8])}): the label set differs")
    ids, tokens, unknown, first = _encode(task, texts)
    return DataFile(_padded(ids, targets, spec.pad_id, spec.max_length), tokens, unknown, unseen, first)


def _encode(task: Task, texts: list[str]) -> tuple[list[list[int]], int, int, str | None]:
    """Ids per text, tokens read, unknown tokens, the first unknown token."""
    spec = task.spec
    tokenizer = getattr(task, "tokenizer", None)
    if tokenizer is not None:  # the tokenizer kept with the checkpoint: unknown text is its [UNK] piece
        config = task.config
        ids, _ = tokenizer.encode_batch(texts, max_length=spec.max_length, truncation=config.truncation)
        total = sum(len(row) for row in ids)
        unknown = sum(row.count(tokenizer.unk_id) for row in ids)
        return ids, total, unknown, "[UNK]" if unknown else None
    lookup = {token: i for i, token in enumerate(spec.vocab)}
    ids, total, unknown, first = [], 0, 0, None
    for text in texts:
        row = []
        for token in text.split():
            total += 1
            if token in lookup and lookup[token] != spec.pad_id:
                row.append(lookup[token])
            else:
                unknown += 1
                first = first or token
        ids.append(row[: spec.max_length])
    return ids, total, unknown, first


def _padded(ids: list[list[int]], targets: list[int], pad_id: int, max_length: int) -> Split:
    width = max(1, min(max_length, max((len(row) for row in ids), default=1)))
    inputs = np.full((len(ids), width), pad_id, dtype=np.int64)  # (S, N)
    for r, row in enumerate(ids):
        inputs[r, : len(row)] = row[:width]
    return Split(torch.from_numpy(inputs), torch.tensor(targets, dtype=torch.int64))


def refuse_unknown_tokens(path: Path, data: DataFile, task: Task) -> None:
    """Evaluation of a fixed-vocabulary task stops at tokens the model has no id for: the data is another task's."""
    if data.unknown_tokens and getattr(task, "tokenizer", None) is None:
        raise EvaluateError(
            f"{path}: {data.unknown_tokens} of {data.tokens} tokens ({100 * data.unknown_rate:.1f}%) are not in the "
            f"vocabulary of task {task.spec.name!r} (e.g. {(data.first_unknown or '')[:MAX_EXAMPLE_SHOWN]!r}): "
            "the file was made for another task")
