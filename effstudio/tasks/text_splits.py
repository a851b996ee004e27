"""Splitting rows of labelled texts: by a split column's names, by seeded shares per class, without duplicates.

Rows are numbered in file order and described by numpy arrays only (a label index and
a split code per row, and a 64-bit hash of the text), so a million rows take a few
megabytes and no Python object per row outlives its chunk.
"""

from __future__ import annotations

import hashlib

import numpy as np

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
# what a split column may say (compared in lower case)
SPLIT_ALIASES = {"train": 0, "training": 0, "val": 1, "valid": 1, "validation": 1, "dev": 1, "test": 2,
                 "testing": 2}
UNASSIGNED = -1  # a row with no split yet, or one left out (a duplicate)


def label_order(names: set[str] | list[str]) -> list[str]:
    """Label names sorted: as numbers when every one is a whole number, else as text."""
    names = list(names)
    try:
        return sorted(names, key=lambda name: (int(name), name))
    except ValueError:
        return sorted(names)


def row_key(text: str, pair: str | None) -> int:
    """A 64-bit hash of a row's text (and second text), the same in every process, to find duplicates."""
    whole = text if pair is None else f"{text}\0{pair}"
    return int.from_bytes(hashlib.blake2b(whole.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def assign_by_shares(labels: np.ndarray, splits: np.ndarray, classes: int, val_share: float, test_share: float,
                     seed: int) -> None:
    """Give the rows without a split (UNASSIGNED) one, in place: each class shuffled (seeded) and cut by the
    shares; training keeps at least one row of every class, validation one of every class of two rows or more."""
    rng = np.random.default_rng(seed)
    open_rows = splits == UNASSIGNED
    for label in range(classes):
        rows = rng.permutation(np.flatnonzero(open_rows & (labels == label)))
        count = len(rows)
        n_val = round(count * val_share)
        if val_share > 0 and count > 1:
            n_val = max(n_val, 1)
        n_val = min(n_val, max(count - 1, 0))
        n_test = min(round(count * test_share), max(count - 1 - n_val, 0))
        splits[rows[:n_val]] = SPLIT_CODES["val"]
        splits[rows[n_val:n_val + n_test]] = SPLIT_CODES["test"]
        splits[rows[n_val + n_test:]] = SPLIT_CODES["train"]


def drop_duplicates(splits: np.ndarray, keys: np.ndarray) -> int:
    """Leave out (UNASSIGNED, in place) each validation row whose text is in training, and each test row whose
    text is in training or validation; return how many."""
    removed = 0
    seen = keys[splits == SPLIT_CODES["train"]]
    for name in ("val", "test"):
        rows = splits == SPLIT_CODES[name]
        duplicate = rows & np.isin(keys, seen)
        removed += int(duplicate.sum())
        splits[duplicate] = UNASSIGNED
        seen = np.concatenate([seen, keys[splits == SPLIT_CODES[name]]])
    return removed
