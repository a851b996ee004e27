"""Text classification on the user's own table of documents and labels, with a real tokenizer.

The data is a CSV or TSV file, a JSON Lines file or a folder of ``.txt`` files per
class (:mod:`effstudio.tasks.text_table`); ``text_column`` and ``label_column`` name
the columns (``text_pair_column`` adds a second text, encoded as one sequence
``[CLS] a [SEP] b [SEP]``). Splits come from separate files (``val_path``,
``test_path``), a ``split_column`` (train / val / test), or a seeded split that keeps
every class's share; a text found in an earlier split (train, then val) is removed
from the later ones and counted. The label names are sorted (as numbers when they
all are) and kept with every checkpoint.

Building streams the files three times in chunks, holding per row only a label, a
split and a 64-bit hash of the text: once to learn the labels and the splits, once
to train the tokenizer on the training split (skipped when it is cached), once to
encode with the tokenizer's parallel batch encoding. The encoded splits are cached
as flat int32 ids with offsets, keyed by the files' SHA-256, the settings and the
tokenizer's fingerprint, so a second run reads them at once. A task rebuilt from a
checkpoint (:meth:`TextClassTask.from_saved`) takes the tokenizer and label map kept
with it and reads the data only when a split is asked for.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from itertools import chain
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from effstudio.config import ConfigError, param, validate
from effstudio.registry import Entry
from effstudio.tasks import cache
from effstudio.tasks.base import SPLIT_NAMES, SavedTaskData, Split, TaskSpec
from effstudio.tasks.progress import ProgressCallback, bound_report, report
from effstudio.tasks.sample_documents import SAMPLE_DOCUMENTS
from effstudio.tasks.text_splits import (
    SPLIT_ALIASES,
    SPLIT_CODES,
    UNASSIGNED,
    assign_by_shares,
    drop_duplicates,
    label_order,
    row_key,
)
from effstudio.tasks.text_table import KINDS as FORMATS
from effstudio.tasks.text_table import (
    DataError,
    TableFormat,
    TableRows,
    read_rows,
    scan_folder,
    sniff_table,
)
from effstudio.tasks.tokenizer import KINDS as TOKENIZERS
from effstudio.tasks.tokenizer import TRUNCATIONS, TextTokenizer, trained_tokenizer

log = logging.getLogger(__name__)

TASK_NAME = "textclass"
GENERATOR_VERSION = 1
TOKENIZER_FILE = "tokenizer.json"
LABELS_KEY = "effstudio.task.labels"
SOURCE_KEY = "effstudio.task.source"
PADDING_ROWS = 65_536  # rows padded at a time when a split becomes a tensor
# a tokenizer learns its pieces from the first 32 million characters of the training split (~6 million words):
# more changes its vocabulary little and costs time that a large data set (a million documents) would feel
TOKENIZER_SAMPLE_CHARS = 32_000_000
ENCODE_ROWS = 8192  # rows encoded in one call: enough for the tokenizer's threads, few encodings held at once


@dataclass
class TextClassConfig:
    # what the task offers before it is built (engine/pairing.py checks a model against it)
    objectives: ClassVar[tuple[str, ...]] = ("classify",)  # the forms it can be posed in, the usual first
    images: ClassVar[bool] = False
    # a path setting -> the task file every checkpoint keeps its content in (see SavedTaskData): a saved
    # config names the tokenizer file beside its model, not the one it was first read from
    task_files: ClassVar[dict[str, str]] = {"tokenizer_path": TOKENIZER_FILE}

    path: str = param("", label="Data file",
                      help="A CSV, TSV or JSON Lines file, or a folder with one sub-folder of .txt files per class; "
                           "empty = the shipped sample", path="file or folder")
    format: str = param("auto", choices=FORMATS, label="Format", help="The file's kind; auto = from its name and head",
                        advanced=True)
    delimiter: str = param("auto", label="Delimiter", help="CSV delimiter (one character, or tab); auto = detected",
                           advanced=True)
    encoding: str = param("auto", label="Encoding",
                          help="Text encoding (utf-8, utf-16, cp1252, ...); auto = detected", advanced=True)
    text_column: str = param("text", label="Text column", help="The column (or JSON key) holding the documents")
    text_pair_column: str = param("", label="Second text column",
                                  help="A second text (a hypothesis, an answer), joined to the first with a separator")
    label_column: str = param("label", label="Label column", help="The column holding each document's class")
    split_column: str = param("", label="Split column", help="A column saying train, val or test for each row",
                              advanced=True)
    val_path: str = param("", label="Validation file", help="A file of validation rows (same columns)", path=True,
                          advanced=True)
    test_path: str = param("", label="Test file", help="A file of test rows (same columns)", path=True, advanced=True)
    val_fraction: float = param(0.1, label="Validation share", min=0.0, max=0.5,
                                help="Share of each class kept for validation (without a validation file)")
    test_fraction: float = param(0.1, label="Test share", min=0.0, max=0.5,
                                 help="Share of each class kept for testing (without a test file)")
    seed: int = param(0, label="Seed", min=0, max=2**31 - 1, help="Seed of the split")
    tokenizer: str = param("bpe", choices=TOKENIZERS, label="Tokenizer",
                           help="Trained on the training split (bpe = byte-level BPE), char, or file = tokenizer path")
    tokenizer_path: str = param("", label="Tokenizer file",
                                help="tokenizer.json, vocab.txt, or vocab.json + merges.txt (for tokenizer = file)",
                                path="file or folder")
    vocab_size: int = param(8000, label="Vocabulary size", min=64, max=1_000_000,
                            help="Tokens the trained tokenizer learns")
    max_length: int = param(512, unit="tokens", label="Max tokens", min=4, max=65_536,
                            help="Tokens per document, special tokens included; longer ones are cut")
    truncation: str = param("head", choices=TRUNCATIONS, label="Truncation",
                            help="Which part of a long document to keep: its start, its end, or both")
    max_classes: int = param(100, label="Max classes", min=2, max=100_000,
                             help="Refuse a label column with more different values (probably the wrong column)",
                             advanced=True)
    skip_bad_rows: bool = param(False, label="Skip undecodable rows",
                                help="Leave out rows with bytes the encoding cannot decode (and say how many)",
                                advanced=True)

    def check(self) -> None:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ConfigError("val_fraction", "validation and test shares must leave at least 10% for training")
        if self.tokenizer == "file" and not self.tokenizer_path.strip():
            raise ConfigError("tokenizer_path", "tokenizer = file needs a tokenizer file (tokenizer.json, vocab.txt "
                                                "or vocab.json + merges.txt)")

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns read: text, (second text), label, (split)."""
        return tuple(c for c in (self.text_column, self.text_pair_column, self.label_column, self.split_column) if c)


@dataclass(frozen=True)
class TextExample:
    text: str  # the example as the model reads it (decoded from its ids)
    label: str
    ids: tuple[int, ...]
    tokens: tuple[str, ...]


@dataclass(frozen=True)
class _Source:
    """One file of the data and the split it holds (None: the main file, split by column or by shares)."""

    path: Path
    fmt: TableFormat
    split: int | None


@dataclass
class _Plan:
    """What the first pass learnt, per row in file order: its label (index into ``names``), its split
    (-1 for a row left out as a duplicate) and the counts to report."""

    names: list[str]
    labels: np.ndarray  # (R,) int32
    splits: np.ndarray  # (R,) int8
    duplicates: int
    skipped: int


def data_path(config: TextClassConfig) -> Path:
    if config.path.strip():
        return Path(config.path).expanduser()
    if SAMPLE_DOCUMENTS.is_file():
        return SAMPLE_DOCUMENTS
    raise ConfigError("path", "set task.path to a CSV, TSV or JSON Lines file, or a folder of .txt files per class")


def file_sha256(path: Path) -> tuple[str, int]:
    """(SHA-256 of the file's bytes, its size); a folder's from its files' names and bytes, in order."""
    digest, size = hashlib.sha256(), 0
    total = None if path.is_dir() else path.stat().st_size
    files = [path] if not path.is_dir() else [f for fs in scan_folder(path).values() for f in fs]
    for file in files:
        if file is not path:
            digest.update(f"{file.parent.name}/{file.name}\0".encode())
        try:
            with open(file, "rb") as handle:
                while block := handle.read(1 << 22):
                    digest.update(block)
                    size += len(block)
                    if file is path:
                        report(f"hashing {path.name}", size, total)
        except OSError as err:
            raise DataError(f"cannot read {file}: {err.strerror or err}") from None
    return digest.hexdigest(), size


class TextClassTask:
    """The user's documents and labels as padded token ids (objective "classify")."""

    name = TASK_NAME

    def __init__(self, config: TextClassConfig | None = None, saved: SavedTaskData | None = None):
        self.config = config if config is not None else TextClassConfig()
        validate(self.config)
        self._saved = saved
        self._source_info: list[tuple[str, int]] | None = None
        self._plan_value: _Plan | None = None
        self._arrays: dict[str, torch.Tensor] | None = None
        self._splits: dict[str, Split] = {}
        if saved is not None:
            self.tokenizer, self.label_names = self._from_saved(saved)
        else:
            self.tokenizer = self._tokenizer()
            self.label_names = self._meta()["labels"]
        self.spec = TaskSpec(name=TASK_NAME, objective="classify", vocab=self.tokenizer.tokens(),
                             num_classes=len(self.label_names), max_length=self.config.max_length,
                             pad_id=self.tokenizer.pad_id, class_names=tuple(self.label_names))

    @classmethod
    def from_saved(cls, config: TextClassConfig, saved: SavedTaskData) -> TextClassTask:
        """The task a checkpoint was trained on: its tokenizer and label map, the data read when needed."""
        return cls(config, saved)

    # ------------------------------------------------------------ sources
    @cached_property
    def sources(self) -> list[_Source]:
        """The data files, sniffed when first needed (a task rebuilt from a checkpoint has its spec without
        them: a model can be inspected or exported where its data is not)."""
        config = self.config
        main = data_path(config)
        sources = [_Source(main, self._sniff(main, "path"), None)]
        for name, field in (("val", "val_path"), ("test", "test_path")):
            value = getattr(config, field).strip()
            if value:
                path = Path(value).expanduser()
                sources.append(_Source(path, self._sniff(path, field), SPLIT_CODES[name]))
        return sources

    def _sniff(self, path: Path, field: str) -> TableFormat:
        config = self.config
        try:
            fmt = sniff_table(path, kind=config.format, delimiter=config.delimiter, encoding=config.encoding)
        except DataError as err:
            raise DataError(err.message, field if err.field == "path" else err.field) from None
        if fmt.kind == "folder" and (config.text_pair_column or config.split_column):
            raise DataError(f"{path} is a folder of .txt files: it has no second text or split column", field)
        return fmt

    def _rows(self, source: _Source) -> TableRows:
        columns = ("text", "label") if source.fmt.kind == "folder" else self._rows_columns(source)
        return read_rows(source.path, source.fmt, columns, skip_bad_rows=self.config.skip_bad_rows)

    def source(self) -> dict[str, object]:
        """The main data file: its path, size in bytes and SHA-256."""
        sha, size = self._hashes()[0]
        return {"path": str(self.sources[0].path), "bytes": size, "sha256": sha}

    def _hashes(self) -> list[tuple[str, int]]:
        if self._source_info is None:
            self._source_info = [file_sha256(source.path) for source in self.sources]
        return self._source_info

    def _identity(self) -> dict[str, object]:
        identity = asdict(self.config)
        identity["sources"] = [sha for sha, _ in self._hashes()]
        return identity

    # ------------------------------------------------------------ first pass: labels, splits, duplicates
    def _plan(self) -> _Plan:
        if self._plan_value is None:
            self._plan_value = self._scan()
        return self._plan_value

    def _scan(self) -> _Plan:
        config = self.config
        index: dict[str, int] = {}
        labels, splits, keys = [], [], []
        skipped = 0
        for source in self.sources:
            rows = self._rows(source)
            roles = self._roles(source)
            at = {role: roles.index(role) for role in roles}
            checked = [(at[role], self._column(source, role), "label" if role == "label" else "text")
                       for role in ("text", "pair", "label") if role in at]
            text_at, pair_at, label_at = at["text"], at.get("pair"), at["label"]
            split_at = at.get("split")
            for chunk in rows:
                report(f"reading {source.path.name}", rows.bytes_read, rows.size)
                chunk_labels = np.empty(len(chunk), dtype=np.int32)
                chunk_splits = np.full(len(chunk), UNASSIGNED if source.split is None else source.split, np.int8)
                chunk_keys = np.empty(len(chunk), dtype=np.uint64)
                for i, (line, values) in enumerate(chunk):
                    for position, column, what in checked:
                        if not values[position].strip():
                            raise DataError(f"{rows.where(line)}, column {column!r}: empty {what}")
                    label = values[label_at].strip()
                    chunk_labels[i] = index.setdefault(label, len(index))
                    if len(index) > config.max_classes:  # the wrong column, most likely: stop at once
                        raise DataError(f"{rows.where(line)}, column {self._column(source, 'label')!r}: "
                                        f"{label[:40]!r} is label number {len(index)}, more than "
                                        f"task.max_classes={config.max_classes} (is it the label column?)",
                                        "max_classes")
                    if split_at is not None:
                        code = SPLIT_ALIASES.get(values[split_at].strip().lower())
                        if code is None:
                            raise DataError(f"{rows.where(line)}, column {config.split_column!r}: "
                                            f"{values[split_at][:40]!r} is not train, val or test")
                        chunk_splits[i] = code
                    chunk_keys[i] = row_key(values[text_at], None if pair_at is None else values[pair_at])
                labels.append(chunk_labels)
                splits.append(chunk_splits)
                keys.append(chunk_keys)
            skipped += rows.skipped
        main = self.sources[0]
        if not labels:
            raise DataError(f"{main.path} has no rows (only a header?)")
        names = label_order(index)
        if len(names) < 2:
            raise DataError(f"{main.path}, column {self._column(main, 'label')!r}: every row has the label "
                            f"{names[0]!r}; classification needs at least two classes")
        position = {name: i for i, name in enumerate(names)}
        remap = np.empty(len(index), dtype=np.int32)
        for name, first_seen in index.items():
            remap[first_seen] = position[name]
        all_labels = remap[np.concatenate(labels)]
        all_splits = np.concatenate(splits)
        all_keys = np.concatenate(keys)
        self._assign(all_labels, all_splits, len(names))
        duplicates = drop_duplicates(all_splits, all_keys)
        self._check_splits(all_labels, all_splits)
        return _Plan(names, all_labels, all_splits, duplicates, skipped)

    def _roles(self, source: _Source) -> tuple[str, ...]:
        if source.fmt.kind == "folder":
            return ("text", "label")
        config = self.config
        roles = {config.text_column: "text", config.text_pair_column: "pair", config.label_column: "label",
                 config.split_column: "split"}
        return tuple(roles[c] for c in self._rows_columns(source))

    def _rows_columns(self, source: _Source) -> tuple[str, ...]:
        config = self.config
        columns = config.columns
        return columns if source.split is None else tuple(c for c in columns if c != config.split_column)

    def _column(self, source: _Source, role: str) -> str:
        if source.fmt.kind == "folder":
            return role
        config = self.config
        return {"text": config.text_column, "pair": config.text_pair_column, "label": config.label_column}[role]

    def _assign(self, labels: np.ndarray, splits: np.ndarray, classes: int) -> None:
        """Give the rows without a split one, by the shares of the splits that no file provides."""
        config = self.config
        has_file = {source.split for source in self.sources}
        val_share = 0.0 if SPLIT_CODES["val"] in has_file else config.val_fraction
        test_share = 0.0 if SPLIT_CODES["test"] in has_file else config.test_fraction
        assign_by_shares(labels, splits, classes, val_share, test_share, config.seed)

    def _check_splits(self, labels: np.ndarray, splits: np.ndarray) -> None:
        main = self.sources[0].path
        for name in ("train", "val"):
            if not (splits == SPLIT_CODES[name]).any():
                why = ("no row says 'val' in the split column" if self.config.split_column and name == "val"
                       else "too few rows, or every one a duplicate of a training row")
                raise DataError(f"{main}: no rows left for the {name} split ({why})")
        if len(np.unique(labels[splits == SPLIT_CODES["train"]])) < 2:
            raise DataError(f"{main}: the training split holds a single class; classification needs two")

    # ------------------------------------------------------------ second pass: the tokenizer
    def _train_texts(self) -> Iterator[str]:
        """The training split's texts (and second texts) up to TOKENIZER_SAMPLE_CHARS characters, in file order.
        Called where the work starts: the tokenizer library reads the iterator from a thread of its own."""
        chunks = self._kept_chunks(self._plan(), "training the tokenizer on", SPLIT_CODES["train"], bound_report())

        def texts() -> Iterator[str]:
            characters = 0
            for chunk in chunks:
                for _, text, pair in chunk:
                    yield text
                    characters += len(text)
                    if pair is not None:
                        yield pair
                        characters += len(pair)
                if characters >= TOKENIZER_SAMPLE_CHARS:
                    return

        return texts()

    def _kept_chunks(self, plan: _Plan, doing: str, only: int | None = None, notify: ProgressCallback = report
                     ) -> Iterator[list[tuple[int, str, str | None]]]:
        """Chunks of (row number, text, second text or None) of the rows kept in a split (``only``: in that one)."""
        row = 0
        for source in self.sources:
            roles = self._roles(source)
            text_at = roles.index("text")
            pair_at = roles.index("pair") if "pair" in roles else None
            rows = self._rows(source)
            for chunk in rows:
                notify(f"{doing} {source.path.name}", rows.bytes_read, rows.size)
                splits = plan.splits[row:row + len(chunk)]
                wanted = splits != UNASSIGNED if only is None else splits == only
                yield [(row + i, chunk[i][1][text_at], None if pair_at is None else chunk[i][1][pair_at])
                       for i in np.flatnonzero(wanted).tolist()]
                row += len(chunk)

    def _tokenizer(self) -> TextTokenizer:
        config = self.config
        if config.tokenizer == "file":
            return TextTokenizer.load(Path(config.tokenizer_path).expanduser())
        identity = json.dumps({key: value for key, value in self._identity().items()
                               if key not in ("tokenizer", "tokenizer_path", "vocab_size", "max_length",
                                              "truncation")}, sort_keys=True)
        content_hash = hashlib.sha256(identity.encode()).hexdigest()
        return trained_tokenizer(config.tokenizer, config.vocab_size, self._train_texts, content_hash)

    def _from_saved(self, saved: SavedTaskData) -> tuple[TextTokenizer, list[str]]:
        text = saved.files.get(TOKENIZER_FILE)
        names = saved.metadata.get(LABELS_KEY)
        if text is None or names is None:
            raise ConfigError("tokenizer", f"the checkpoint keeps no {TOKENIZER_FILE if text is None else 'label map'}"
                                           " for its textclass task")
        try:
            labels = json.loads(names)
        except ValueError:
            labels = None
        if not (isinstance(labels, list) and len(labels) >= 2 and all(isinstance(n, str) for n in labels)):
            raise ConfigError("labels", f"the checkpoint's {LABELS_KEY} is not a list of label names")
        return TextTokenizer.from_json(text.decode("utf-8")), labels

    # ------------------------------------------------------------ third pass: encoding, cached
    def _data(self) -> dict[str, torch.Tensor]:
        if self._arrays is None:
            identity = {**self._identity(), "tokenizer_sha256": self.tokenizer.fingerprint()}
            keys = ["meta"] + [f"{s}/{part}" for s in SPLIT_NAMES for part in ("ids", "offsets", "labels", "lengths")]
            self._arrays = cache.load_or_create(TASK_NAME, identity, GENERATOR_VERSION, self._encode,
                                                expected_keys=keys)
        return self._arrays

    def _meta(self) -> dict:
        return json.loads(bytes(self._data()["meta"].numpy()).decode("utf-8"))

    def _encode(self) -> dict[str, torch.Tensor]:
        plan = self._plan()
        config = self.config
        parts: dict[int, dict[str, list[np.ndarray]]] = {
            code: {"ids": [], "lengths_cut": [], "labels": [], "lengths": []} for code in SPLIT_CODES.values()}
        batches = (chunk[begin:begin + ENCODE_ROWS] for chunk in self._kept_chunks(plan, "tokenizing")
                   for begin in range(0, len(chunk), ENCODE_ROWS))
        for batch in batches:
            rows_of, texts, pairs = zip(*batch, strict=True)
            ids, full = self.tokenizer.encode_batch(texts, pairs if config.text_pair_column else None,
                                                    max_length=config.max_length, truncation=config.truncation)
            rows = np.asarray(rows_of, dtype=np.int64)
            cut = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
            flat = np.fromiter(chain.from_iterable(ids), dtype=np.int32, count=int(cut.sum()))
            del ids
            splits = plan.splits[rows]
            for code, part in parts.items():
                chosen = np.flatnonzero(splits == code)
                if not len(chosen):
                    continue
                part["ids"].append(flat[np.repeat(splits == code, cut)])
                part["lengths_cut"].append(cut[chosen])
                part["labels"].append(plan.labels[rows[chosen]])
                part["lengths"].append(np.asarray(full, dtype=np.int32)[chosen])
        tensors: dict[str, torch.Tensor] = {}
        for name, code in SPLIT_CODES.items():
            part = parts[code]
            cut = np.concatenate(part["lengths_cut"]) if part["lengths_cut"] else np.zeros(0, np.int64)
            tensors[f"{name}/ids"] = torch.from_numpy(_joined(part["ids"], np.int32))
            tensors[f"{name}/offsets"] = torch.from_numpy(np.concatenate([[0], np.cumsum(cut)]).astype(np.int64))
            tensors[f"{name}/labels"] = torch.from_numpy(_joined(part["labels"], np.int32).astype(np.int64))
            tensors[f"{name}/lengths"] = torch.from_numpy(_joined(part["lengths"], np.int32))
        meta = {"labels": plan.names, "duplicates_removed": plan.duplicates, "skipped_rows": plan.skipped}
        tensors["meta"] = torch.frombuffer(bytearray(json.dumps(meta).encode("utf-8")), dtype=torch.uint8)
        return tensors

    def _labels_of(self, name: str) -> torch.Tensor:
        """The split's labels as indices into ``label_names`` (a checkpoint's map may differ from the data's)."""
        labels = self._data()[f"{name}/labels"]
        data_names = self._meta()["labels"]
        if data_names == self.label_names:
            return labels
        position = {label: i for i, label in enumerate(self.label_names)}
        unknown = [label for label in data_names if label not in position]
        if unknown:
            raise DataError(f"{self.sources[0].path}, column {self.config.label_column!r}: label {unknown[0]!r} is "
                            f"not one the model was trained on ({', '.join(self.label_names[:10])})")
        return torch.tensor([position[label] for label in data_names], dtype=torch.int64)[labels]

    # ------------------------------------------------------------ the task
    def split(self, name: str) -> Split:
        if name not in SPLIT_NAMES:
            raise ValueError(f"unknown split {name!r}; {TASK_NAME} has {', '.join(SPLIT_NAMES)}")
        if name not in self._splits:
            data = self._data()
            ids, offsets = data[f"{name}/ids"].numpy(), data[f"{name}/offsets"].numpy()
            self._splits[name] = Split(torch.from_numpy(_padded(ids, offsets, self.spec.pad_id)),
                                       self._labels_of(name))
        return self._splits[name]

    def decode(self, ids: Sequence[int]) -> list[str]:
        """The word pieces of ``ids`` (for attention maps and previews)."""
        return self.tokenizer.id_to_tokens([int(i) for i in ids])

    def lengths(self, name: str) -> np.ndarray:
        """Each example's full token length before truncation (special tokens included)."""
        return self._data()[f"{name}/lengths"].numpy()

    def class_counts(self, name: str) -> dict[str, int]:
        counts = np.bincount(self._labels_of(name).numpy(), minlength=len(self.label_names))
        return {label: int(count) for label, count in zip(self.label_names, counts, strict=True)}

    def examples(self, name: str, n: int) -> list[TextExample]:
        data = self._data()
        ids, offsets = data[f"{name}/ids"], data[f"{name}/offsets"]
        labels = self._labels_of(name)
        found = []
        for row in range(min(n, len(labels))):
            seq = [int(i) for i in ids[offsets[row]:offsets[row + 1]]]
            found.append(TextExample(self.tokenizer.decode(seq), self.label_names[int(labels[row])], tuple(seq),
                                     tuple(self.tokenizer.id_to_tokens(seq))))
        return found

    @property
    def duplicates_removed(self) -> int:
        return int(self._meta()["duplicates_removed"])

    @property
    def skipped_rows(self) -> int:
        return int(self._meta()["skipped_rows"])

    def notes(self) -> list[str]:
        """What building the data did that a person should know, one line each."""
        sizes = {name: len(self._data()[f"{name}/labels"]) for name in SPLIT_NAMES}
        lines = [f"{self.sources[0].path.name}: {sizes['train']:,} training, {sizes['val']:,} validation and "
                 f"{sizes['test']:,} test examples of {len(self.label_names)} classes"]
        if self.duplicates_removed:
            lines.append(f"{self.duplicates_removed:,} validation/test rows left out: their text is in an "
                         "earlier split")
        if self.skipped_rows:
            lines.append(f"{self.skipped_rows:,} rows with undecodable bytes skipped")
        return lines

    def saved_data(self) -> SavedTaskData:
        """The tokenizer and the label map, and where the data came from, for every checkpoint (a task rebuilt
        from a checkpoint passes on the source that checkpoint was trained on)."""
        if self._saved is not None and SOURCE_KEY in self._saved.metadata:
            source = self._saved.metadata[SOURCE_KEY]
        else:
            source = json.dumps(self.source())
        metadata = {LABELS_KEY: json.dumps(self.label_names), SOURCE_KEY: source}
        return SavedTaskData(metadata, {TOKENIZER_FILE: self.tokenizer.to_json().encode("utf-8")})


def _joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(0, dtype=dtype)


def _padded(ids: np.ndarray, offsets: np.ndarray, pad_id: int) -> np.ndarray:
    """(S, L) int64 rows of ``ids`` cut at ``offsets``, padded with ``pad_id`` to the longest (L >= 1): not to
    max_length, which a million short documents would pay for in gigabytes of padding."""
    counts = np.diff(offsets)
    rows = len(counts)
    width = max(int(counts.max()) if rows else 1, 1)
    out = np.full((rows, width), pad_id, dtype=np.int64)
    for begin in range(0, rows, PADDING_ROWS):
        end = min(begin + PADDING_ROWS, rows)
        part = counts[begin:end]
        row_of = np.repeat(np.arange(begin, end), part)
        column = np.arange(len(row_of)) - np.repeat(offsets[begin:end] - offsets[begin], part)
        out[row_of, column] = ids[offsets[begin]:offsets[end]]
    return out


ENTRY = Entry(
    TASK_NAME,
    "Your own documents and labels (CSV, TSV, JSON Lines or a folder per class), with a trained tokenizer",
    TextClassConfig,
    TextClassTask,
)
