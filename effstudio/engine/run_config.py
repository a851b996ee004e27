"""A whole run in one object: model, attention, task and training settings.

It round-trips through TOML (``effstudio train --config run.toml``)::

    [model]
    type = "transformer"
    d_model = 128
    attention = "full"

    [attention]       # settings of the attention kind named in [model]
    [task]
    name = "listops"
    [train]
    steps = 300

and takes ``--set key=value`` overrides, where a key is ``section.field`` or a
bare field name found in exactly one section.

A run config file may also list ``[[compress]]`` steps to run after training.
They are not part of a RunConfig (what a checkpoint was trained with, stored in
its header and compared on resume): :class:`effstudio.engine.run_plan.RunPlan`
reads them, and :meth:`RunConfig.from_dict` passes over them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from effstudio.atomic_file import write_text_atomic
from effstudio.bounded_parse import loads_json, read_toml_file
from effstudio.config import (
    ConfigError,
    close_names,
    describe_kind,
    did_you_mean,
    param,
    parse_typed,
    path_settings,
    shorten,
    to_dict,
    validate,
    with_values,
)
from effstudio.paths import confine, user_allowed
from effstudio.registry import Registry, UnknownEntryError, get_registry

SECTIONS = ("model", "attention", "task", "train")
PLAN_SECTIONS = ("compress",)  # read by effstudio.engine.run_plan.RunPlan, not by RunConfig


@dataclass(frozen=True)
class TrainConfig:
    steps: int = param(300, unit="steps", min=1, help="Optimizer steps to run")
    batch_size: int = param(32, unit="sequences", min=1, max=65536, label="Batch size", help="Sequences per optimizer step (global, across all processes)")
    lr: float = param(1e-3, min=0.0, max=10.0, label="Learning rate", help="Peak learning rate of AdamW")
    weight_decay: float = param(0.01, min=0.0, max=1.0, label="Weight decay")
    warmup_steps: int = param(30, unit="steps", min=0, label="Warmup steps", help="Linear warmup before the cosine decay")
    min_lr_ratio: float = param(0.1, min=0.0, max=1.0, label="Final LR ratio", help="Cosine decay ends at lr * this")
    grad_clip: float = param(1.0, min=0.0, label="Gradient clip", help="Max gradient norm; 0 turns clipping off")
    grad_accum: int = param(1, unit="micro-batches", min=1, max=1024, label="Accumulation", help="Micro-batches per optimizer step")
    eval_every: int = param(50, unit="steps", min=1, label="Eval every", help="Steps between evaluations on the validation split")
    seed: int = param(0, min=0, max=2**31 - 1, help="Seed for weights, data order and dropout")  # seeds derived from it stay in 64 bits
    device: str = param("auto", choices=("auto", "cpu", "cuda", "mps"), help="auto picks cuda, then mps, then cpu")
    precision: str = param("fp32", choices=("fp32", "bf16", "fp16"), help="bf16 autocast (CPU/CUDA) or fp16 with a grad scaler (CUDA)")
    compile: bool = param(False, label="torch.compile", help="Compile the model (slow first steps, faster later)")
    num_workers: int = param(0, unit="processes", min=0, max=64, label="Data workers", help="DataLoader worker processes (0 = load in the training thread)")
    checkpoint_every: int = param(0, unit="steps", min=0, label="Checkpoint every", help="Steps between checkpoints; 0 saves only at the end")
    on_save_error: str = param("stop", choices=("stop", "continue"), label="On save error", advanced=True,
                               help="When a checkpoint cannot be written (a full disk): stop ends the run as failed, "
                                    "continue trains on and tries again at the next checkpoint (the run still fails "
                                    "if its final checkpoint cannot be written); the previous checkpoint is kept")
    attention_every: int = param(50, unit="steps", min=0, label="Attention map every", help="Steps between attention-map probes; 0 turns them off")
    log_every: int = param(1, unit="steps", min=1, label="Log every", help="Steps between step events")

    def check(self) -> None:
        if self.batch_size % self.grad_accum:
            raise ConfigError("grad_accum", f"batch size {self.batch_size} is not divisible by {self.grad_accum} accumulation steps")


class _NoAttention:
    """Config of a model type that does not use an attention kind."""

    def __eq__(self, other: object) -> bool:  # one such config equals another (a resume compares them)
        return isinstance(other, _NoAttention)

    def __hash__(self) -> int:
        return hash(_NoAttention)


@dataclass(frozen=True)
class RunConfig:
    model_type: str
    model: Any
    attention: Any
    task_name: str
    task: Any
    train: TrainConfig = field(default_factory=TrainConfig)
    # where a path setting came from: "task.path" -> the file (run config, checkpoint) that named it.
    # Settings typed by the user (--set, a form) have none; see check_paths.
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)
    # the file the whole config was read from (a run config, a checkpoint), named in the messages of the
    # errors found only when the model is built from it
    origin: str | None = field(default=None, compare=False, hash=False, repr=False)

    @property
    def attention_kind(self) -> str | None:
        return getattr(self.model, "attention", None)

    # ----------------------------------------------------------- construction
    @classmethod
    def create(
        cls,
        model_type: str,
        task_name: str,
        overrides: Mapping[str, Any] | Iterable[str] = (),
        registry: Registry | None = None,
    ) -> RunConfig:
        """Defaults for a model type and task, then ``overrides`` (``{"key": value}`` or ``["key=value"]``)."""
        registry = registry or get_registry()
        model_entry = registry.get("models", model_type)
        task_entry = registry.get("tasks", task_name)
        model_cfg = model_entry.default_config()
        config = cls(
            model_type=model_type,
            model=model_cfg,
            attention=_default_attention(registry, model_cfg),
            task_name=task_name,
            task=task_entry.default_config(),
        )
        return config.with_overrides(overrides, registry)

    def with_overrides(
        self, overrides: Mapping[str, Any] | Iterable[str], registry: Registry | None = None
    ) -> RunConfig:
        registry = registry or get_registry()
        by_section: dict[str, dict[str, Any]] = {s: {} for s in SECTIONS}
        for key, raw in _pairs(overrides):
            section, name = self._resolve_key(key, registry)
            by_section[section][name] = raw
        config = self
        if by_section["model"]:
            model = with_values(self.model, by_section["model"], section="model")
            attention = self.attention
            if getattr(model, "attention", None) != self.attention_kind:
                attention = _default_attention(registry, model)
            config = dataclasses.replace(config, model=model, attention=attention)
        if by_section["attention"]:
            if config.attention_kind is None:
                raise ConfigError("attention", f"model type {self.model_type!r} has no attention settings")
            config = dataclasses.replace(
                config, attention=with_values(config.attention, by_section["attention"], section="attention")
            )
        if by_section["task"]:
            config = dataclasses.replace(config, task=with_values(config.task, by_section["task"], section="task"))
        if by_section["train"]:
            config = dataclasses.replace(config, train=with_values(config.train, by_section["train"], section="train"))
        given = {f"{section}.{name}" for section, values in by_section.items() for name in values}
        if config.sources and given:  # a value given here replaces the one a file named
            config = dataclasses.replace(config, sources={k: v for k, v in config.sources.items() if k not in given})
        return config

    def _resolve_key(self, key: str, registry: Registry) -> tuple[str, str]:
        key = key.strip()
        if "." in key:
            section, name = key.split(".", 1)
            if section not in SECTIONS:
                raise ConfigError(shorten(key), f"unknown section {describe_kind(section)}{did_you_mean(section, SECTIONS)}; "
                                                f"use one of {', '.join(SECTIONS)}")
            return section, name
        found = [s for s in SECTIONS if _has_field(self._section_obj(s), key)]
        if not found:
            # a bare name is compared with the bare names, and suggested with its section ('model.d_model')
            qualified = {f"{s}.{f.name}": f.name for s in SECTIONS if dataclasses.is_dataclass(self._section_obj(s))
                         for f in dataclasses.fields(self._section_obj(s))}
            close = [q for name in close_names(key, sorted(set(qualified.values())), most=3)
                     for q in sorted(qualified) if qualified[q] == name]
            hint = f" (did you mean {' or '.join(map(repr, close[:3]))}?)" if close else ""
            raise ConfigError(shorten(key), f"unknown setting{hint}; prefix it with a section (model., attention., task., train.) "
                                   "and see `effstudio models` / `effstudio tasks` for the names")
        if len(found) > 1:
            options = ", ".join(f"{s}.{key}" for s in found)
            raise ConfigError(key, f"ambiguous setting; say which one: {options}")
        return found[0], key

    def _section_obj(self, section: str) -> Any:
        return {"model": self.model, "attention": self.attention, "task": self.task, "train": self.train}[section]

    def input_paths(self) -> dict[str, str]:
        """The files and folders the config reads ("task.path" -> its value), empty values left out."""
        found = {}
        for section in SECTIONS:
            obj = self._section_obj(section)
            for name in path_settings(obj):
                value = getattr(obj, name)
                if value:
                    found[f"{section}.{name}"] = value
        return found

    def with_absolute_paths(self) -> RunConfig:
        """The user's relative path settings made absolute (from the current folder), so that a
        checkpoint header names the same file wherever it is read later."""
        relative = {key: os.path.abspath(Path(value).expanduser()) for key, value in self.input_paths().items()
                    if key not in self.sources and not Path(value).expanduser().is_absolute()}
        return self.with_overrides(relative) if relative else self

    def check_paths(self) -> None:
        """Refuse a path setting that a file named and that leads outside that file's folder,
        unless the user gave that path themselves (effstudio.paths.allow_path)."""
        current = self.input_paths()
        for key, source in self.sources.items():
            value = current.get(key)
            if not value or user_allowed(value):
                continue
            try:
                confine(value, Path(source).parent, key, source)
            except ConfigError as err:
                if "\x00" in value:  # no file has such a name: nothing to trust
                    raise ConfigError(key, err.message) from None
                raise ConfigError(key, f"{err.message}. If you trust it, give it on the command line: "
                                       f"--set {key}={value} (train) or --allow-path {value}") from None

    def validate(self) -> None:
        for section in SECTIONS:
            obj = self._section_obj(section)
            if isinstance(obj, _NoAttention):
                continue
            try:
                validate(obj)
            except ConfigError as err:
                raise ConfigError(f"{section}.{err.field}", err.message) from None

    # ------------------------------------------------------------ persistence
    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "model": {"type": self.model_type, **to_dict(self.model)},
            "task": {"name": self.task_name, **to_dict(self.task)},
            "train": to_dict(self.train),
        }
        if not isinstance(self.attention, _NoAttention):
            data["attention"] = to_dict(self.attention)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], registry: Registry | None = None,
                  named_by: str | Path | None = None) -> RunConfig:
        """A config from its tables. ``named_by`` is the file they come from (a TOML, a checkpoint):
        its path settings are then relative to that file's folder, and remembered as named by it."""
        registry = registry or get_registry()
        tables = config_tables(data)
        model_type, task_name = tables["model"]["type"], tables["task"]["name"]
        overrides = [(f"model.{k}", v) for k, v in tables["model"].items() if k != "type"]
        overrides += [(f"attention.{k}", v) for k, v in tables["attention"].items()]
        overrides += [(f"task.{k}", v) for k, v in tables["task"].items() if k != "name"]
        overrides += [(f"train.{k}", v) for k, v in tables["train"].items()]
        # model first so that the attention kind is known before its settings apply
        try:
            config = cls.create(model_type, task_name, registry=registry)
        except UnknownEntryError as err:  # a name read from a file: said of the file's field
            raise ConfigError("model.type" if err.kind == "models" else "task.name", str(err)) from None
        config = config.with_overrides(dict(o for o in overrides if o[0].startswith("model.")), registry)
        config = config.with_overrides(dict(o for o in overrides if not o[0].startswith("model.")), registry)
        if named_by is None:
            return config
        return dataclasses.replace(config._named_by(Path(named_by), registry), origin=str(named_by))

    def _named_by(self, source: Path, registry: Registry) -> RunConfig:
        """Path settings as the file ``source`` means them: relative to its folder."""
        named = self.input_paths()
        if not named:
            return self
        folder = Path(os.path.abspath(source)).parent
        absolute = {key: os.path.normpath(folder / Path(value).expanduser()) for key, value in named.items()}
        config = self.with_overrides(absolute, registry)
        return dataclasses.replace(config, sources={key: str(source) for key in named})

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    @classmethod
    def from_toml(cls, path: str | Path, registry: Registry | None = None) -> RunConfig:
        data = read_toml(path)
        try:
            return cls.from_dict(data, registry, named_by=path)
        except ConfigError as err:
            raise err.in_source(path) from None

    @classmethod
    def from_json(cls, text: str, *, source: str | Path, registry: Registry | None = None) -> RunConfig:
        """The run config stored as JSON in a file's metadata (a checkpoint's header, an ONNX property)."""
        data = loads_json(text, source=source, field="config")
        try:
            return cls.from_dict(data, registry, named_by=source)
        except ConfigError as err:
            field = err.field if err.field == "config" else f"config: {err.field}"
            raise ConfigError(field, err.message, str(source)) from None


def write_toml(path: str | Path, config: RunConfig) -> None:
    """Write ``config`` to a run folder's config file, keeping the plan's tables already in it
    (``[[compress]]`` steps), so that a resumed run's file still reproduces the whole run.

    A file there that cannot be read as a run config (edited by hand into a broken one) is not
    replaced, since its plan could not be kept: a ConfigError says so. A failed write is an OSError
    and leaves the file there as it was."""
    path = Path(path)
    data = config.to_dict()
    if path.is_file():
        try:
            existing = read_toml(path)
        except ConfigError as err:
            raise ConfigError(err.field, f"{err.message}; the file is left as it is, not rewritten",
                              err.source or str(path)) from None
        data.update({key: existing[key] for key in PLAN_SECTIONS if key in existing})
    write_text_atomic(path, tomli_w.dumps(data))


def read_toml(path: str | Path) -> dict[str, Any]:
    """A run config file's tables; a missing, unreadable, oversized, non-UTF-8, too deeply nested or
    invalid file is a ConfigError naming the file."""
    return read_toml_file(path)


def config_tables(data: Any) -> dict[str, Mapping[str, Any]]:
    """The sections of a run config read from a file, checked in shape before any setting is: a table
    of tables, each setting a number, a flag or text, ``model.type`` and ``task.name`` named. Needs no
    registry, so an inspector can check a header whose model comes from a plugin that is not installed."""
    if not isinstance(data, Mapping):
        raise ConfigError("config", f"expected a table of sections ({', '.join(SECTIONS)}), "
                                    f"got {describe_kind(data)}")
    unknown = set(data) - set(SECTIONS) - set(PLAN_SECTIONS)
    if unknown:
        expected = ", ".join((*SECTIONS, *PLAN_SECTIONS))
        name = str(sorted(unknown, key=str)[0])
        raise ConfigError(shorten(name), f"unknown section{did_you_mean(name, (*SECTIONS, *PLAN_SECTIONS))}; "
                                         f"expected {expected}")
    tables = {section: _table(data, section) for section in SECTIONS}
    for section, table in tables.items():
        for key, value in table.items():
            if isinstance(value, (Mapping, list)):
                raise ConfigError(f"{section}.{key}", f"expected a value, got {describe_kind(value)}")
    for section, key, what in (("model", "type", "the model type"), ("task", "name", "the task")):
        if not parse_typed(f"{section}.{key}", str, tables[section].get(key, "")):
            raise ConfigError(f"{section}.{key}", f"missing: name {what}")
    return tables


def _table(data: Mapping[str, Any], section: str) -> Mapping[str, Any]:
    """A section of a run config: a table (``model = 5`` or ``[[model]]`` is a ConfigError naming it)."""
    table = data.get(section, {})
    if not isinstance(table, Mapping):
        raise ConfigError(section, f"expected a table [{section}], got {describe_kind(table)}")
    return table


def _default_attention(registry: Registry, model_cfg: Any) -> Any:
    kind = getattr(model_cfg, "attention", None)
    if kind is None:
        return _NoAttention()
    return registry.get("attention", kind).default_config()


def _has_field(obj: Any, name: str) -> bool:
    return dataclasses.is_dataclass(obj) and any(f.name == name for f in dataclasses.fields(obj))


def _pairs(overrides: Mapping[str, Any] | Iterable[str]) -> list[tuple[str, Any]]:
    if isinstance(overrides, Mapping):
        return list(overrides.items())
    pairs = []
    for item in overrides:
        if isinstance(item, tuple):
            pairs.append(item)
            continue
        if "=" not in item:
            raise ConfigError(item, "expected key=value")
        key, value = item.split("=", 1)
        pairs.append((key, value))
    return pairs
