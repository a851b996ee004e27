"""What a checkpoint of a task on the user's data keeps with it, said in the inspector's notes.

A ``textclass`` checkpoint names its label map and its data source in the header
and keeps its tokenizer beside it (``NAME.tokenizer.json``, bound by its SHA-256;
see :mod:`effstudio.engine.checkpoint`). The inspector shows them as words, not
ids: the labels, the data file, and the tokenizer with some of its word pieces.
A missing or replaced tokenizer file is a note, never a failure of the inspection.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from effstudio.config import ConfigError
from effstudio.engine.checkpoint import (
    TASK_FILES_KEY,
    TASK_KEY_PREFIX,
    CheckpointError,
    task_data_beside,
)
from effstudio.tasks.tokenizer import TextTokenizer

SHOWN_PIECES = 12  # word pieces named in the tokenizer's note: the longest, most telling ones
SHOWN_LABELS = 20


def task_notes(weights: Path, metadata: Mapping[str, str]) -> list[str]:
    """Notes on the labels, data source and tokenizer that the model file ``weights`` keeps; [] for none."""
    if TASK_FILES_KEY not in metadata and not any(key.startswith(TASK_KEY_PREFIX) for key in metadata):
        return []
    try:
        saved = task_data_beside(weights, dict(metadata))
    except CheckpointError as err:
        return [f"task data: {err}"]
    if saved is None:
        return []
    notes = []
    labels = _json(saved.metadata.get(f"{TASK_KEY_PREFIX}labels"))
    if isinstance(labels, list) and labels:
        shown = ", ".join(map(str, labels[:SHOWN_LABELS])) + (", ..." if len(labels) > SHOWN_LABELS else "")
        notes.append(f"labels ({len(labels)}): {shown}")
    source = _json(saved.metadata.get(f"{TASK_KEY_PREFIX}source"))
    if isinstance(source, dict) and source.get("path"):
        size = source.get("bytes")
        digest = str(source.get("sha256", ""))[:12]
        notes.append(f"trained on {Path(str(source['path'])).name}"
                     + (f", {size:,} bytes" if isinstance(size, int) else "") + (f", sha256 {digest}..." if digest else ""))
    for name, content in saved.files.items():
        if name == "tokenizer.json":
            notes.append(_tokenizer_note(weights, content))
    return notes


def _tokenizer_note(weights: Path, content: bytes) -> str:
    beside = f"{weights.stem}.tokenizer.json"
    try:
        tokenizer = TextTokenizer.from_json(content.decode("utf-8"))
    except (ConfigError, UnicodeDecodeError) as err:
        return f"tokenizer {beside}: cannot be read ({err})"
    pieces = sorted(tokenizer.tokens(), key=len, reverse=True)[:SHOWN_PIECES]
    return f"tokenizer {beside}: {tokenizer.vocab_size:,} word pieces, e.g. {' '.join(pieces)}"


def _json(text: str | None) -> object:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None
