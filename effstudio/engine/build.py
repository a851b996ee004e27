"""Build the task and the model a run config names, through the registry."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from effstudio.engine.checkpoint import load_weights, read_info
from effstudio.engine.run_config import RunConfig
from effstudio.models.base import ModelSpec
from effstudio.registry import Registry, get_registry
from effstudio.tasks.base import Task, TaskSpec


def build_task(config: RunConfig, registry: Registry | None = None) -> Task:
    registry = registry or get_registry()
    return registry.get("tasks", config.task_name).factory(config.task)


def build_model(config: RunConfig, task_spec: TaskSpec, registry: Registry | None = None) -> nn.Module:
    registry = registry or get_registry()
    entry = registry.get("models", config.model_type)
    return entry.factory(config.model, ModelSpec(task=task_spec, attention_config=config.attention))


def load_model(path: str | Path) -> tuple[nn.Module, RunConfig, Task]:
    """An effstudio checkpoint's model (weights loaded, eval mode), run config and task."""
    info = read_info(path)
    task = build_task(info.config)
    model = build_model(info.config, task.spec)
    load_weights(model, info.path)
    return model.eval(), info.config, task
