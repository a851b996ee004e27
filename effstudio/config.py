"""Typed configs: dataclasses whose field metadata drives GUI forms, `--set` and TOML.

A config class is a plain dataclass whose fields are declared with :func:`param`.
The metadata (label, help, range, choices) is all a form or a command line needs,
so every registered entry gets a GUI form and CLI overrides without extra code.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCALAR_TYPES = (bool, int, float, str)
# what a path setting names, so a form offers the right picker; ``param(path=True)`` means "file"
PATH_KINDS = ("file", "folder", "file or folder")


class ConfigError(ValueError):
    """A config value is wrong; ``field`` names it so a form can highlight it.

    ``source`` names where the value came from when it was read from a file
    ("run.toml", "events.jsonl:12", a checkpoint's header), so the one-line
    message says which file to fix.
    """

    def __init__(self, field: str, message: str, source: str | None = None):
        self.field = field
        self.message = message
        self.source = source
        super().__init__(f"{source}: {field}: {message}" if source else f"{field}: {message}")

    def in_source(self, source: str | Path) -> ConfigError:
        """The same error, said of ``source`` (kept when the error already names its file)."""
        return self if self.source else ConfigError(self.field, self.message, str(source))


def param(
    default: Any,
    *,
    label: str | None = None,
    help: str = "",
    min: float | None = None,
    max: float | None = None,
    choices: Sequence[Any] | None = None,
    choices_from: str | None = None,
    advanced: bool = False,
    path: bool | str = False,
    unit: str = "",
    only_if: tuple[str, Any] | None = None,
    zero: str = "",
) -> Any:
    """Declare a config field with the metadata a form needs.

    ``choices_from`` names a registry kind ("attention", ...) whose entry names are
    the allowed values; it is resolved lazily so plugins can add choices.
    ``path`` marks a file the run reads (True or "file"), a folder ("folder"), or either ("file or folder").
    ``unit`` is what the value counts ("tokens", "steps"), shown beside the field.
    ``only_if`` = (other field, value): the setting matters only while that field has that value
    (the experts of a mixture-of-experts feed-forward); a form disables it otherwise.
    ``zero`` names what a value of 0 means ("auto"); a form shows that word instead of the 0.
    """
    if path is True:
        path = "file"
    if path and path not in PATH_KINDS:
        raise TypeError(f"param(path={path!r}): expected True or one of {', '.join(PATH_KINDS)}")
    meta = {
        "label": label,
        "help": help,
        "min": min,
        "max": max,
        "choices": tuple(choices) if choices is not None else None,
        "choices_from": choices_from,
        "advanced": advanced,
        "path": path,
        "unit": unit,
        "only_if": only_if,
        "zero": zero,
    }
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class FieldSpec:
    """What a form or the CLI knows about one config field."""

    name: str
    type: type
    default: Any
    label: str
    help: str
    min: float | None
    max: float | None
    choices: tuple[Any, ...] | None
    choices_from: str | None
    advanced: bool
    path: str | None = None  # one of PATH_KINDS for a file or folder the run reads
    unit: str = ""  # what the value counts, shown beside the field ("tokens", "steps")
    only_if: tuple[str, Any] | None = None  # (field, value) under which this setting matters
    zero: str = ""  # what 0 means ("auto"), shown in its place

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type.__name__,
            "default": self.default,
            "label": self.label,
            "help": self.help,
            "min": self.min,
            "max": self.max,
            "choices": list(self.choices) if self.choices is not None else None,
        }


def _scalar_type(annotation: Any, field_name: str) -> type:
    """Reduce an annotation to one of bool/int/float/str (Optional is not supported)."""
    if annotation in SCALAR_TYPES:
        return annotation
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        values = typing.get_args(annotation)
        return type(values[0])
    if origin in (typing.Union, types.UnionType):
        raise TypeError(f"config field {field_name!r}: optional/union types are not supported")
    raise TypeError(f"config field {field_name!r}: unsupported type {annotation!r}")


def fields_of(config_cls: type) -> list[FieldSpec]:
    """The form-ready description of every field of a config dataclass.

    A field declared with ``metadata={"setting": False}`` is not a setting (a list
    the caller fills itself) and is left out.
    """
    hints = typing.get_type_hints(config_cls)
    specs = []
    for f in dataclasses.fields(config_cls):
        meta = f.metadata
        if meta.get("setting", True) is False:
            continue
        kind = _scalar_type(hints[f.name], f.name)
        choices = meta.get("choices")
        if choices is None and typing.get_origin(hints[f.name]) is typing.Literal:
            choices = typing.get_args(hints[f.name])
        specs.append(
            FieldSpec(
                name=f.name,
                type=kind,
                default=f.default,
                label=meta.get("label") or f.name.replace("_", " ").capitalize(),
                help=meta.get("help", ""),
                min=meta.get("min"),
                max=meta.get("max"),
                choices=choices,
                choices_from=meta.get("choices_from"),
                advanced=meta.get("advanced", False),
                path=meta.get("path") or None,
                unit=meta.get("unit", ""),
                only_if=meta.get("only_if"),
                zero=meta.get("zero", ""),
            )
        )
    return specs


def path_settings(config: Any) -> list[str]:
    """The names of a config's settings declared with ``param(..., path=True)``."""
    if not dataclasses.is_dataclass(config):
        return []
    return [f.name for f in dataclasses.fields(config) if f.metadata.get("path")]


# the names a ``choices_from`` kind offers ("attention" -> its entry names): the registry, which sits above
# this module, sets it when it is imported (every config class that names a kind is registered through it)
_choice_names: Callable[[str], Sequence[str]] | None = None


def set_choice_names(names: Callable[[str], Sequence[str]]) -> None:
    """Say where the choices of a ``param(..., choices_from=KIND)`` come from."""
    global _choice_names
    _choice_names = names


def _allowed_choices(spec: FieldSpec) -> tuple[Any, ...] | None:
    if spec.choices is not None:
        return spec.choices
    if spec.choices_from is not None:
        if _choice_names is None:
            raise RuntimeError(f"{spec.name} takes the names of registry kind {spec.choices_from!r}, "
                               "but effstudio.registry is not imported")
        return tuple(_choice_names(spec.choices_from))
    return None


_INT_TEXT = re.compile(r"[+-]?[0-9]+")
_FLOAT_TEXT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?|[+-]?(inf|infinity|nan)", re.IGNORECASE)
INT_RANGE = (-(2**63), 2**63 - 1)  # what a whole number from a file may be: it must fit SQLite and torch


def parse_value(spec: FieldSpec, raw: Any) -> Any:
    """Turn a raw value (text from a command line, or a TOML/JSON value) into the field's type."""
    value = _parse_raw(spec, raw)
    if spec.type is int and not INT_RANGE[0] <= value <= INT_RANGE[1]:
        raise ConfigError(spec.name, f"must fit in 64 bits, got {describe_kind(value)}")
    return value


def _parse_raw(spec: FieldSpec, raw: Any) -> Any:
    kind = spec.type
    got = describe_kind(raw)
    if isinstance(raw, str) and kind is not str:
        text = raw.strip()
        if kind is bool:
            lowered = text.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ConfigError(spec.name, f"expected true or false, got {got}")
        # Python's int() and float() also take "1_000" and digits of other scripts ("\u0663" is 3):
        # a value in a file is a plain decimal number or it is refused
        if not (_INT_TEXT if kind is int else _FLOAT_TEXT).fullmatch(text):
            raise ConfigError(spec.name, f"expected {kind.__name__}, got {got}")
        return int(text) if kind is int else float(text)
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        raise ConfigError(spec.name, f"expected true or false, got {got}")
    if kind is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            if isinstance(raw, float) and raw.is_integer():
                return int(raw)
            raise ConfigError(spec.name, f"expected int, got {got}")
        return raw
    if kind is float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise ConfigError(spec.name, f"expected float, got {got}")
        try:
            return float(raw)
        except OverflowError:  # a whole number past a float's range
            raise ConfigError(spec.name, f"must be a finite number, got {got}") from None
    if not isinstance(raw, str):
        raise ConfigError(spec.name, f"expected text, got {got}")
    return raw


def check_value(spec: FieldSpec, value: Any) -> None:
    """Raise ConfigError when ``value`` is outside the field's range or choices."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(spec.name, f"must be a finite number, got {value!r}")
    if spec.min is not None and value < spec.min:
        raise ConfigError(spec.name, f"must be >= {spec.min}, got {describe_kind(value)}")
    if spec.max is not None and value > spec.max:
        raise ConfigError(spec.name, f"must be <= {spec.max}, got {describe_kind(value)}")
    allowed = _allowed_choices(spec)
    if allowed is not None and value not in allowed:
        options = ", ".join(str(c) for c in allowed)
        hint = did_you_mean(value, allowed)
        if not hint and spec.choices_from is not None:  # the names of a registry: plugins add to them
            hint = f" (a plugin that provides it may not be installed: see `effstudio {spec.choices_from}`)"
        raise ConfigError(spec.name, f"must be one of {options}; got {describe_kind(value)}{hint}")


def validate(config: Any) -> None:
    """Check every field of a config instance, then its own cross-field ``check()``."""
    for spec in fields_of(type(config)):
        value = getattr(config, spec.name)
        check_value(spec, parse_value(spec, value))
    check = getattr(config, "check", None)
    if callable(check):
        check()


def with_values(config: Any, values: Mapping[str, Any], *, section: str = "") -> Any:
    """A copy of ``config`` with ``values`` (raw or typed) parsed, checked and applied.

    Unknown keys are refused with the list of known ones; ``section`` prefixes field
    names in messages ("model.d_model").
    """
    specs = {s.name: s for s in fields_of(type(config))}
    prefix = f"{section}." if section else ""
    changes = {}
    for key, raw in values.items():
        spec = specs.get(key)
        if spec is None:
            known = ", ".join(sorted(specs))
            raise ConfigError(f"{prefix}{shorten(str(key))}",
                              f"unknown setting{did_you_mean(f'{prefix}{key}', [prefix + n for n in sorted(specs)], most=3)}; "
                              f"known settings: {known}")
        try:
            value = parse_value(spec, raw)
            check_value(spec, value)
        except ConfigError as err:
            raise ConfigError(f"{prefix}{err.field}", err.message) from None
        changes[key] = value
    updated = dataclasses.replace(config, **changes)
    check = getattr(updated, "check", None)
    if callable(check):
        try:
            check()
        except ConfigError as err:
            raise ConfigError(f"{prefix}{err.field}", err.message) from None
    return updated


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def _spec(name: str, kind: type) -> FieldSpec:
    return FieldSpec(name, kind, None, name, "", None, None, None, None, False)


def parse_typed(name: str, annotation: Any, raw: Any) -> Any:
    """A value read from a file, as a field annotated ``annotation``: a scalar, ``X | None``,
    ``dict[str, X]`` or ``tuple[X, ...]`` of scalars; anything else is a ConfigError naming ``name``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if raw is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return parse_typed(name, inner[0], raw)
    elif origin in (dict, Mapping) and len(args) == 2 and args[0] is str:
        if not isinstance(raw, Mapping):
            raise ConfigError(name, f"expected a table of {args[1].__name__} values, got {describe_kind(raw)}")
        return {str(key): parse_typed(f"{name}.{key}", args[1], value) for key, value in raw.items()}
    elif origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if not isinstance(raw, (list, tuple)):
            raise ConfigError(name, f"expected a list, got {describe_kind(raw)}")
        return tuple(parse_typed(f"{name}[{i}]", args[0], item) for i, item in enumerate(raw))
    elif annotation in SCALAR_TYPES:
        if not isinstance(raw, SCALAR_TYPES):  # a table or list where a number or text belongs
            raise ConfigError(name, f"expected {annotation.__name__}, got {describe_kind(raw)}")
        return parse_value(_spec(name, annotation), raw)
    raise ConfigError(name, f"unsupported field type {annotation!r}")


def record_values(cls: type, record: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of dataclass ``cls`` found in ``record`` (a JSON object from a file), each parsed by
    :func:`parse_typed`; a required field that is missing is a ConfigError, extra keys are passed over."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in record:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f.name, "missing")
            continue
        if f.metadata.get("json", True):
            values[f.name] = parse_typed(f.name, hints[f.name], record[f.name])
    return values


def shorten(text: str, limit: int = 60) -> str:
    """A name read from a file (a key, a section) cut to ``limit`` characters for a message."""
    return text if len(text) <= limit else text[:limit - 3] + "..."


def did_you_mean(name: Any, options: Sequence[Any], *, most: int = 1) -> str:
    """" (did you mean 'cpu'?)" when ``name`` is one of ``options`` in another case or close to one;
    else "". Up to ``most`` close options are named (" (did you mean 'a' or 'b'?)"). A value read
    from a file may be of any kind and any length: only short text is compared."""
    close = close_names(name, options, most=most)
    return f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""


def close_names(name: Any, options: Sequence[Any], *, most: int = 1) -> list[str]:
    """The options ``name`` is a case variant of, else up to ``most`` options close to it, closest first."""
    if not isinstance(name, str) or len(name) > 100:
        return []
    texts = [str(option) for option in options]
    folded = [text for text in texts if text.casefold() == name.strip().casefold()]
    return folded[:most] or difflib.get_close_matches(name, texts, n=most, cutoff=0.75)


def describe_kind(value: Any) -> str:
    """A wrong value as a message shows it: "a table", "a list", or its repr cut to 40 characters."""
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, int) and value.bit_length() > 128:  # repr of a huge number is slow, or refused
        return f"a whole number of {value.bit_length()} bits"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
