"""Tables of texts and labels from the user's files: CSV, TSV, JSON Lines, or a folder of .txt files per class.

A file is sniffed from a bounded head (:func:`sniff_table`): its kind, its encoding
(a byte-order mark says UTF-8 or UTF-16; otherwise UTF-8 when the head decodes as
UTF-8 or holds UTF-8 sequences, else cp1252), the CSV delimiter (the most frequent of
``, TAB ; |`` in the header line) and the column names. :func:`read_rows` then streams
the rows in chunks with their line numbers, so a file of millions of rows is never
held whole. The csv module parses quoted fields with embedded newlines and
delimiters; a record that spans lines is numbered by its first line.

Bytes that the encoding cannot decode are found without slowing clean files down:
the decoder's error handler notes that one was met, and from then on the rows'
values are searched for the stand-in characters it left. Every problem is a
:class:`DataError` naming the file, the line and the column.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from effstudio.config import ConfigError, did_you_mean
from effstudio.paths import PathError, open_regular_file
from effstudio.read_limits import (
    MAX_FIELD_BYTES,
    MAX_TABLE_BYTES,
    MAX_TABLE_ROWS,
    MAX_TEXT_FILES,
    TABLE_HEAD_BYTES,
)

KINDS = ("auto", "csv", "tsv", "jsonl", "folder")
DELIMITERS = (",", "\t", ";", "|")
FOLDER_COLUMNS = ("text", "label")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
MAX_REPORTED_LINES = 10  # undecodable rows named in one message


class DataError(ConfigError):
    """A data file that cannot be used; the message names the file, the line and the column."""

    def __init__(self, message: str, field: str = "path"):
        super().__init__(field, message)


@dataclass(frozen=True)
class TableFormat:
    kind: str  # "csv" | "tsv" | "jsonl" | "folder"
    delimiter: str | None  # csv and tsv only
    encoding: str
    columns: tuple[str, ...]  # the header's names (a folder: FOLDER_COLUMNS)


# ---------------------------------------------------------------- undecodable bytes
_BAD_BYTES_HANDLER = "effstudio-text-table"
_SURROGATE_ESCAPE = codecs.lookup_error("surrogateescape")
_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")  # what surrogateescape puts in place of a byte it cannot decode
_bad_bytes_seen = [0]  # how many undecodable stretches any reader has met (only ever grows)


def _note_bad_bytes(err: UnicodeError) -> tuple[str, int]:
    _bad_bytes_seen[0] += 1
    return _SURROGATE_ESCAPE(err)


codecs.register_error(_BAD_BYTES_HANDLER, _note_bad_bytes)


# ---------------------------------------------------------------- sniffing
def sniff_table(path: str | Path, *, kind: str = "auto", delimiter: str = "auto",
                encoding: str = "auto") -> TableFormat:
    """The format of ``path`` from a bounded head (a folder from its listing); DataError when unusable."""
    path = Path(path).expanduser()
    if kind not in KINDS:
        raise DataError(f"unknown format {kind!r}; one of {', '.join(KINDS)}", "format")
    if kind == "folder" or (kind == "auto" and path.is_dir()):
        scan_folder(path)
        return TableFormat("folder", None, _checked_encoding(encoding, "utf-8-sig"), FOLDER_COLUMNS)
    head, size = _head(path)
    chosen = _checked_encoding(encoding, None) or _detect_encoding(path, head)
    text = _decode_head(head, chosen, size)
    if kind == "auto":
        suffix = path.suffix.lower()
        if suffix in JSONL_SUFFIXES or text.lstrip().startswith("{"):
            kind = "jsonl"
        else:
            kind = "tsv" if suffix == ".tsv" else "csv"
    if kind == "jsonl":
        return TableFormat("jsonl", None, chosen, _jsonl_keys(path, text))
    sep = _delimiter(delimiter, text, kind)
    return TableFormat(kind, sep, chosen, _csv_header(path, text, sep, size))


def _head(path: Path) -> tuple[bytes, int]:
    try:
        with open_regular_file(path, what="data file") as handle:
            size = os.fstat(handle.fileno()).st_size
            head = handle.read(TABLE_HEAD_BYTES)
    except PathError as err:
        if not path.exists() and not path.is_symlink():
            raise DataError(f"no such file: {path}") from None
        raise DataError(f"{path}: {err.reason}") from None
    except OSError as err:
        raise DataError(f"cannot read {path}: {err.strerror or err}") from None
    if size > MAX_TABLE_BYTES:
        raise DataError(f"{path} is {size / 2**30:.1f} GiB, above the limit of {MAX_TABLE_BYTES / 2**30:.0f} GiB "
                        "for a data table")
    if not head.strip(b" \t\r\n\xef\xbb\xbf\xff\xfe\x00"):
        raise DataError(f"{path} is empty")
    return head, size


def _checked_encoding(encoding: str, auto: str | None) -> str | None:
    if encoding == "auto":
        return auto
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise DataError(f"unknown encoding {encoding!r} (e.g. utf-8, utf-16, cp1252, latin-1)",
                        "encoding") from None


def _detect_encoding(path: Path, head: bytes) -> str:
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" in head:
        raise DataError(f"{path} looks like a binary file (it holds NUL bytes), not a text table")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    # a few bad bytes in a UTF-8 file are reported by line; a file with no UTF-8 sequence at all is cp1252
    decoded = head.decode("utf-8", errors="replace")
    if any(ord(c) > 127 and c != "\ufffd" for c in decoded):
        return "utf-8"
    return "cp1252"


def _decode_head(head: bytes, encoding: str, size: int) -> str:
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    text = decoder.decode(head, final=len(head) >= size)
    return text.removeprefix("\ufeff")


def _delimiter(delimiter: str, text: str, kind: str) -> str:
    if delimiter != "auto":
        named = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
        sep = named.get(delimiter.lower(), delimiter)
        if len(sep) != 1 or sep in "\"\r\n":
            raise DataError(f"a delimiter is one character (or tab), got {delimiter!r}", "delimiter")
        return sep
    if kind == "tsv":
        return "\t"
    first_line = text.split("\n", 1)[0]
    counts = {sep: first_line.count(sep) for sep in DELIMITERS}
    best = max(DELIMITERS, key=lambda sep: counts[sep])  # ties: the earlier in DELIMITERS (comma first)
    return best if counts[best] else ","


def _csv_header(path: Path, text: str, sep: str, size: int) -> tuple[str, ...]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep)
    try:
        header = next(reader, None)
        complete = len(text.encode("utf-8", "surrogatepass")) < TABLE_HEAD_BYTES or next(reader, None) is not None
    except csv.Error as err:
        raise DataError(f"{path}: line 1: the header cannot be read ({err})") from None
    if not complete and size > TABLE_HEAD_BYTES:
        raise DataError(f"{path}: line 1: the header is longer than {TABLE_HEAD_BYTES // 1024} KiB; is this a table?")
    if not header or not any(name.strip() for name in header):
        raise DataError(f"{path}: line 1: no header with column names (e.g. text,label)")
    return tuple(name.strip() for name in header)


def _jsonl_keys(path: Path, text: str) -> tuple[str, ...]:
    first = next((line for line in text.splitlines() if line.strip()), "")
    try:
        record = json.loads(first)
    except ValueError as err:
        raise DataError(f"{path}: line 1: not a JSON object ({err})") from None
    if not isinstance(record, dict):
        raise DataError(f"{path}: line 1: a JSON Lines table holds one object per line, got {type(record).__name__}")
    return tuple(str(key) for key in record)


# ---------------------------------------------------------------- folders
def scan_folder(root: Path) -> dict[str, list[Path]]:
    """Class name -> its .txt files (sorted); DataError for loose files, fewer than two classes or too many files."""
    if not root.is_dir():
        raise DataError(f"{root} is not a folder")
    classes: dict[str, list[Path]] = {}
    loose: list[str] = []
    counted = 0
    try:
        for entry in sorted(os.scandir(root), key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            if not entry.is_dir():
                loose.append(entry.name)
                continue
            files = sorted(Path(e.path) for e in os.scandir(entry.path)
                           if e.name.lower().endswith(".txt") and e.is_file())
            counted += len(files)
            if counted > MAX_TEXT_FILES:
                raise DataError(f"{root} holds more than {MAX_TEXT_FILES:,} text files, the most a folder task reads")
            if files:
                classes[entry.name] = files
    except OSError as err:
        where = err.filename or root
        raise DataError(f"cannot read {where}: {err.strerror or err}") from None
    if loose:
        shown = ", ".join(loose[:3]) + (f" and {len(loose) - 3} more" if len(loose) > 3 else "")
        raise DataError(f"{root} holds loose files ({shown}); put every .txt file in one sub-folder per class")
    if len(classes) < 2:
        found = f"one class ({next(iter(classes))!r})" if classes else "no sub-folder with .txt files"
        raise DataError(f"{root} has {found}; a text folder needs one sub-folder of .txt files per class, "
                        "at least two")
    return classes


# ---------------------------------------------------------------- reading
Row = tuple[int, tuple[str, ...]]


class TableRows:
    """Chunks of rows of a table: (line number, the values of the chosen columns).

    Iterate once. ``skipped`` counts the rows left out for undecodable bytes (with
    ``skip_bad_rows``), ``bytes_read`` how far into the file the reader is (for a
    progress bar), ``size`` the file's size. ``where(line)`` says where a row is, for
    a message ("data.csv: line 7"; a folder's row is its file).
    """

    def __init__(self, path: str | Path, fmt: TableFormat, columns: Sequence[str], *, skip_bad_rows: bool = False,
                 chunk_rows: int = 50_000):
        self.path = Path(path).expanduser()
        self.fmt, self.columns = fmt, tuple(columns)
        self.skip_bad_rows, self.chunk_rows = skip_bad_rows, chunk_rows
        self.skipped = 0
        self.bytes_read = 0
        self._files: list[Path] = []
        self.size = 0 if fmt.kind == "folder" else self.path.stat().st_size
        missing = [c for c in self.columns if c not in fmt.columns]
        if missing:
            where = "its keys" if fmt.kind == "jsonl" else "its header"
            raise DataError(f"{self.path}: line 1: no column {missing[0]!r}{did_you_mean(missing[0], fmt.columns)}; "
                            f"{where}: {', '.join(map(repr, fmt.columns))}")

    def where(self, line: int) -> str:
        if self.fmt.kind == "folder":
            return str(self._files[line]) if 0 <= line < len(self._files) else str(self.path)
        return f"{self.path}: line {line}"

    def __iter__(self) -> Iterator[list[Row]]:
        rows = {"folder": self._folder_rows, "jsonl": self._jsonl_rows}.get(self.fmt.kind, self._csv_rows)()
        bad: list[tuple[int, str]] = []
        chunk: list[Row] = []
        count = 0
        for line, values, bad_column in rows:
            if bad_column is not None:
                if self.skip_bad_rows:
                    self.skipped += 1
                    continue
                bad.append((line, bad_column))
                continue
            count += 1
            if count > MAX_TABLE_ROWS:
                raise DataError(f"{self.path} has more than {MAX_TABLE_ROWS:,} rows, the most a table may have")
            chunk.append((line, values))
            if len(chunk) >= self.chunk_rows:
                self._refuse_bad(bad)
                yield chunk
                chunk = []
        self._refuse_bad(bad)
        if chunk:
            yield chunk

    def _refuse_bad(self, bad: list[tuple[int, str]]) -> None:
        if not bad:
            return
        line, column = bad[0]
        more = [str(other) for other, _ in bad[1:MAX_REPORTED_LINES]]
        also = f" (also line {', '.join(more)}{' and more' if len(bad) > MAX_REPORTED_LINES else ''})" if more else ""
        raise DataError(f"{self.where(line)}, column {column!r}: bytes that are not {self.fmt.encoding}{also}; "
                        "set task.encoding, fix the file, or set task.skip_bad_rows=true to leave such rows out")

    def _open(self, path: Path) -> io.BufferedReader:
        try:
            return open_regular_file(path, what="data file")
        except PathError as err:
            raise DataError(f"{path}: {err.reason}") from None
        except OSError as err:
            raise DataError(f"cannot read {path}: {err.strerror or err}") from None

    def _bad_column(self, values: tuple[str, ...], seen_before: int) -> str | None:
        """The first chosen column holding an undecodable byte, once any has been met since ``seen_before``."""
        if _bad_bytes_seen[0] == seen_before:
            return None
        for name, value in zip(self.columns, values, strict=True):
            if _ESCAPED_BYTE.search(value):
                return name
        return None

    def _csv_rows(self) -> Iterator[tuple[int, tuple[str, ...], str | None]]:
        csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD_BYTES))
        header = self.fmt.columns
        indices = [header.index(c) for c in self.columns]
        seen_before = _bad_bytes_seen[0]
        with self._open(self.path) as raw:
            text = io.TextIOWrapper(raw, encoding=self.fmt.encoding, errors=_BAD_BYTES_HANDLER, newline="")
            reader = csv.reader(text, delimiter=self.fmt.delimiter or ",")
            previous_end = 0
            try:
                next(reader, None)  # the header
                previous_end = reader.line_num
                for row in reader:
                    line, previous_end = previous_end + 1, reader.line_num
                    if not row:
                        continue  # a blank line
                    if len(row) != len(header):
                        raise DataError(f"{self.path}: line {line}: {len(row)} fields where the header names "
                                        f"{len(header)}; a field holding the delimiter {self.fmt.delimiter!r}, a "
                                        "quote or a line break must be quoted")
                    values = tuple(row[i] for i in indices)
                    self.bytes_read = raw.tell()
                    yield line, values, self._bad_column(values, seen_before)
            except csv.Error as err:
                raise DataError(f"{self.path}: line {previous_end + 1}: {err}") from None
            except UnicodeDecodeError:  # a codec whose errors cannot be escaped byte by byte (UTF-16)
                raise DataError(f"{self.path}: line {previous_end + 1}: bytes that are not "
                                f"{self.fmt.encoding}; set task.encoding or fix the file") from None
            finally:
                text.detach()

    def _jsonl_rows(self) -> Iterator[tuple[int, tuple[str, ...], str | None]]:
        with self._open(self.path) as raw:
            line = 0
            while record := raw.readline(MAX_FIELD_BYTES + 1):
                line += 1
                self.bytes_read += len(record)
                if len(record) > MAX_FIELD_BYTES:
                    raise DataError(f"{self.path}: line {line}: longer than {MAX_FIELD_BYTES // 2**20} MiB")
                if line == 1:
                    record = record.removeprefix(codecs.BOM_UTF8)
                if not record.strip():
                    continue
                try:
                    text = record.decode(self.fmt.encoding)
                except UnicodeDecodeError:
                    yield line, ("",) * len(self.columns), self.columns[0]
                    continue
                yield line, self._json_values(line, text), None

    def _json_values(self, line: int, text: str) -> tuple[str, ...]:
        try:
            record = json.loads(text)
        except (ValueError, RecursionError) as err:
            raise DataError(f"{self.path}: line {line}: not a JSON object ({str(err)[:80]})") from None
        if not isinstance(record, dict):
            raise DataError(f"{self.path}: line {line}: a JSON Lines table holds one object per line, "
                            f"got {type(record).__name__}")
        values = []
        for column in self.columns:
            if column not in record:
                keys = ", ".join(map(repr, list(record)[:20]))
                raise DataError(f"{self.path}: line {line}: no key {column!r}; the keys there: {keys}")
            value = record[column]
            if value is None:
                value = ""
            elif isinstance(value, (int, float, bool)):
                value = json.dumps(value)
            elif not isinstance(value, str):
                raise DataError(f"{self.path}: line {line}, column {column!r}: a {type(value).__name__}, "
                                "expected text or a number")
            values.append(value)
        return tuple(values)

    def _folder_rows(self) -> Iterator[tuple[int, tuple[str, ...], str | None]]:
        classes = scan_folder(self.path)
        self._files = [file for files in classes.values() for file in files]
        self.size = len(self._files)
        order = {"text": 0, "label": 1}
        index = 0
        for label, files in classes.items():
            for file in files:
                with self._open(file) as handle:
                    data = handle.read(MAX_FIELD_BYTES + 1)
                if len(data) > MAX_FIELD_BYTES:
                    raise DataError(f"{file}: longer than {MAX_FIELD_BYTES // 2**20} MiB")
                bad = None
                try:
                    text = data.decode(self.fmt.encoding)
                except UnicodeDecodeError:
                    text, bad = "", "text"
                if "\x00" in text:
                    raise DataError(f"{file} looks like a binary file (it holds NUL bytes)")
                both = (text, label)
                self.bytes_read = index + 1
                yield index, tuple(both[order[c]] for c in self.columns), bad
                index += 1


def read_rows(path: str | Path, fmt: TableFormat, columns: Sequence[str], *, skip_bad_rows: bool = False,
              chunk_rows: int = 50_000) -> TableRows:
    """The rows of ``path`` in chunks of (line number, values of ``columns``); see :class:`TableRows`."""
    return TableRows(path, fmt, columns, skip_bad_rows=skip_bad_rows, chunk_rows=chunk_rows)
