"""Bounded parsing of JSON and TOML that comes from files: every reader in the core goes through here.

A file can claim anything: a config nested 100,000 levels deep (the parsers recurse and
end in RecursionError), a 100 MB line, bytes that are not UTF-8. Each function checks the
size, then the nesting depth, before the text reaches ``json.loads`` or ``tomllib.loads``,
and says what was wrong as a :class:`~effstudio.config.ConfigError` naming the file (its
``source``) and the field, which the CLI prints as one line (exit code 2).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from effstudio.config import ConfigError, describe_kind
from effstudio.paths import PathError, open_regular_file
from effstudio.read_limits import MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_LINE_BYTES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


BOM = "\ufeff"  # editors on Windows start UTF-8 files with it; neither parser takes it, so it is dropped

# the JSON depth check sees brackets only: escapes go first (a JSON backslash is always inside a string),
# then the strings, which without escapes are simple and matched in linear time whatever the input
_ESCAPES = re.compile(r"\\.", re.DOTALL)
_JSON_STRINGS = re.compile(r'"[^"]*"')
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_LONE_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")  # an escaped surrogate, paired or not: then checked


def loads_json(text: str | bytes, *, source: str | Path, field: str, max_depth: int = MAX_DEPTH,
               max_bytes: int = MAX_DOCUMENT_BYTES) -> Any:
    """``json.loads`` of ``text`` (the value of ``field`` in ``source``) after a size and depth check."""
    if isinstance(text, bytes):
        text = decode_utf8(text, source=source, field=field)
    text = text.removeprefix(BOM)
    _check_size(len(text), max_bytes, source, field)
    if _json_too_deep(text, max_depth):
        raise ConfigError(field, f"nested deeper than {max_depth} levels", str(source))
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(field, f"not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})",
                          str(source)) from None
    except ValueError as err:  # a number of more digits than Python converts
        raise ConfigError(field, f"not valid JSON: {err}", str(source)) from None
    except RecursionError:  # the depth check keeps this out of reach; a last guard all the same
        raise ConfigError(field, f"nested deeper than {max_depth} levels", str(source)) from None
    if _LONE_SURROGATE.search(text):
        _refuse_lone_surrogates(value, source, field)
    return value


def loads_toml(text: str | bytes, *, source: str | Path, field: str = "config", max_depth: int = MAX_DEPTH,
               max_bytes: int = MAX_DOCUMENT_BYTES) -> dict[str, Any]:
    """``tomllib.loads`` of ``text`` after a size check, measured for depth around the parse.

    TOML's strings (four kinds, escapes in two) make a bracket count before parsing either slow or
    wrong, so the parser's own recursion is the first guard (its RecursionError is caught: a document
    nested that deep is refused), and the tree it built is measured without recursion, which also
    catches nesting by dotted keys and table headers ([a.b.c...]) that use no brackets at all.
    """
    if isinstance(text, bytes):
        text = decode_utf8(text, source=source, field=field)
    text = text.removeprefix(BOM)
    _check_size(len(text), max_bytes, source, field)
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, ValueError) as err:  # ValueError: a number of too many digits
        raise ConfigError(field, f"not valid TOML: {err}", str(source)) from None
    except RecursionError:
        data = None
    if data is None or _depth_of(data, max_depth) > max_depth:
        raise ConfigError(field, f"nested deeper than {max_depth} levels", str(source))
    return data


def read_toml_file(path: str | Path, *, max_bytes: int = MAX_DOCUMENT_BYTES) -> dict[str, Any]:
    """A TOML file's tables: a regular file, at most ``max_bytes``, UTF-8, bounded in depth."""
    try:
        with open_regular_file(path, what="config") as handle:
            data = handle.read(max_bytes + 1)
    except PathError as err:
        raise ConfigError("config", err.reason, str(path)) from None
    return loads_toml(data, source=path, max_bytes=max_bytes)


def json_lines(handle: BinaryIO, *, source: str | Path, max_line_bytes: int = MAX_LINE_BYTES
               ) -> Iterator[tuple[int, Any | None]]:
    """``(line number, value)`` for each line of a JSON-lines file opened in binary mode.

    A line longer than ``max_line_bytes``, not UTF-8, or nested too deeply is a ConfigError naming
    ``source`` and the line. A line that is not JSON at all gives ``None``: a write cut short by a
    crash leaves such a line, and the lines around it still count.
    """
    number = 0
    while True:
        line = handle.readline(max_line_bytes + 1)
        if not line:
            return
        number += 1
        where = f"{source}:{number}"
        if len(line) > max_line_bytes:
            raise ConfigError("event", f"line longer than {max_line_bytes:,} bytes", where)
        text = decode_utf8(line.rstrip(b"\r\n"), source=where, field="event")
        if not text.strip():
            continue
        try:
            yield number, loads_json(text, source=where, field="event", max_bytes=max_line_bytes)
        except ConfigError as err:
            if not err.message.startswith("not valid JSON"):
                raise
            yield number, None


def decode_utf8(data: bytes, *, source: str | Path, field: str) -> str:
    """``data`` as UTF-8 text; otherwise a ConfigError that says which byte, on which line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(field, f"not UTF-8 text: byte 0x{data[err.start]:02x} at {_position(data, err.start)}",
                          str(source)) from None


def _refuse_lone_surrogates(value: Any, source: str | Path, field: str) -> None:
    """JSON may escape half of a UTF-16 pair ("\\ud800"); Python keeps it as a character that no file,
    terminal or database can encode, so the first print or write of it would fail far from here."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as err:
                raise ConfigError(field, f"not valid text: a lone surrogate \\u{ord(item[err.start]):04x} "
                                         f"(half of a UTF-16 pair) in {describe_kind(item)}", str(source)) from None


def _check_size(size: int, max_bytes: int, source: str | Path, field: str) -> None:
    if size > max_bytes:
        raise ConfigError(field, f"larger than the limit of {max_bytes:,} bytes", str(source))


def _json_too_deep(text: str, max_depth: int) -> bool:
    """Whether the brackets of JSON ``text`` nest deeper than ``max_depth`` (none inside strings count)."""
    if text.count("[") + text.count("{") <= max_depth:
        return False  # too few brackets to nest that deep: nothing to scan
    brackets = _NOT_BRACKETS.sub("", _JSON_STRINGS.sub("", _ESCAPES.sub("", text)))
    depth = 0
    for char in brackets:
        depth += 1 if char in "[{" else -1
        if depth > max_depth:
            return True
    return False


def _position(text: str | bytes, offset: int) -> str:
    """Where ``offset`` is, as a person finds it in an editor: "line 3, column 7" (just the column in
    text of one line)."""
    newline = "\n" if isinstance(text, str) else b"\n"
    column = offset - (text.rfind(newline, 0, offset) + 1) + 1
    if newline not in text:
        return f"column {column}"
    return f"line {text.count(newline, 0, offset) + 1}, column {column}"


def _depth_of(value: Any, limit: int) -> int:
    """The nesting depth of parsed tables and lists, measured without recursion (stops past ``limit``)."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth) for child in children)
    return deepest
