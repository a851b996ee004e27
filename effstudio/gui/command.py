"""The `effstudio train` command line that reproduces a run config headless."""

from __future__ import annotations

import dataclasses
import shlex
from typing import Any

from effstudio.engine.run_config import RunConfig
from effstudio.gui.forms.config_form import format_value
from effstudio.registry import Registry, get_registry


def _changed(current: Any, default: Any) -> dict[str, Any]:
    if not dataclasses.is_dataclass(current):
        return {}
    base = dataclasses.asdict(default) if dataclasses.is_dataclass(default) else {}
    return {k: v for k, v in dataclasses.asdict(current).items() if base.get(k, object()) != v}


def _overrides(config: RunConfig, registry: Registry | None = None) -> dict[str, Any]:
    """``section.key: value`` for every value that differs from the defaults."""
    registry = registry or get_registry()
    defaults = RunConfig.create(config.model_type, config.task_name, registry=registry)
    overrides = {f"model.{k}": v for k, v in _changed(config.model, defaults.model).items()}
    kind = config.attention_kind
    if kind is not None and dataclasses.is_dataclass(config.attention):
        base = registry.get("attention", kind).default_config()
        overrides.update({f"attention.{k}": v for k, v in _changed(config.attention, base).items()})
    overrides.update({f"task.{k}": v for k, v in _changed(config.task, defaults.task).items()})
    overrides.update({f"train.{k}": v for k, v in _changed(config.train, defaults.train).items()})
    return overrides


def _train_words(config: RunConfig, overrides: dict[str, Any]) -> list[str]:
    words = ["train", "--model", config.model_type, "--task", config.task_name]
    for key, value in overrides.items():
        words += ["--set", f"{key}={format_value(value)}"]
    return words


def command_line(config: RunConfig, registry: Registry | None = None) -> str:
    """``effstudio train --model M --task T --set section.key=value ...`` for every non-default value."""
    words = ["effstudio", *_train_words(config, _overrides(config, registry))]
    return " ".join(shlex.quote(w) for w in words)


def torchrun_command_line(config: RunConfig, registry: Registry | None = None, nproc: str = "gpu") -> str:
    """The same run under torchrun on one machine: one process per GPU (``nproc="gpu"``) or N processes.

    ``train.batch_size`` stays the global batch, so the run trains as it would in one process.
    A ``train.device`` of cpu or mps is left out: under torchrun, auto gives each process its GPU.
    """
    overrides = _overrides(config, registry)
    if overrides.get("train.device") in ("cpu", "mps"):
        del overrides["train.device"]
    words = ["torchrun", "--standalone", "--nproc_per_node", nproc, "-m", "effstudio",
             *_train_words(config, overrides)]
    return " ".join(shlex.quote(w) for w in words)
