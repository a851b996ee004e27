"""Build the task and the model a run config names, through the registry."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from effstudio.config import ConfigError
from effstudio.engine.checkpoint import CheckpointError, CheckpointInfo, saved_task_data
from effstudio.engine.model_size import ModelTooLarge, check_fits
from effstudio.engine.run_config import RunConfig
from effstudio.models.base import ModelSpec
from effstudio.models.structure import METADATA_KEY as STRUCTURE_KEY
from effstudio.models.structure import Structure, StructureError, apply_structure
from effstudio.registry import Registry, get_registry
from effstudio.tasks.base import SavedTaskData, Task, TaskSpec


def build_task(config: RunConfig, registry: Registry | None = None, saved: SavedTaskData | None = None) -> Task:
    """The task, in the form the model type reads: an encoder-decoder model (whose config
    class sets ``task_form = "seq2seq"``) gets the task's source -> target form.

    ``saved``: what a checkpoint's task kept with it (its tokenizer, its label map): a task
    that can be rebuilt from it (its factory's ``from_saved``) is, so that a model meets the
    tokens and labels it was trained on."""
    registry = registry or get_registry()
    config.check_paths()  # a file a config or checkpoint names is read only if it may be
    factory = registry.get("tasks", config.task_name).factory
    from_saved = getattr(factory, "from_saved", None) if saved is not None else None
    try:
        task = from_saved(config.task, saved) if from_saved is not None else factory(config.task)
    except ConfigError as err:  # a task reading its data: said of its setting, and of the file that named it
        key = err.field if err.field.startswith("task.") else f"task.{err.field}"
        raise ConfigError(key, err.message, err.source or config.sources.get(key)) from None
    if getattr(type(config.model), "task_form", None) == "seq2seq" and task.spec.objective != "seq2seq":
        as_seq2seq = getattr(task, "as_seq2seq", None)
        if as_seq2seq is None:
            raise ConfigError("task", f"model type {config.model_type!r} maps a source sequence to a target "
                                      f"sequence; task {config.task_name!r} has no such form (use copy)")
        task = as_seq2seq()
    return task


def build_model(config: RunConfig, task_spec: TaskSpec, registry: Registry | None = None, *,
                training: bool = True, device: torch.device | None = None, named_by: Path | None = None
                ) -> nn.Module:
    """The model a config names, for ``task_spec``; refused (ConfigError) before anything is
    allocated when its estimated memory (for training, or for inference only) exceeds what
    ``device`` (default: this machine's RAM) has: see effstudio.engine.model_size."""
    registry = registry or get_registry()
    entry = registry.get("models", config.model_type)
    spec = ModelSpec(task=task_spec, attention_config=config.attention)
    batch = config.train.batch_size // config.train.grad_accum if training else 1
    named_by = named_by if named_by is not None else config.origin
    try:
        check_fits(config.model_type, config.model, task_spec, lambda: entry.factory(config.model, spec),
                   batch=batch, training=training, device=device, named_by=named_by, attention=config.attention)
        return entry.factory(config.model, spec)
    except ModelTooLarge:  # names the file in its message already
        raise
    except ConfigError as err:  # settings that do not fit together (a kind the model cannot use): said of the file
        if err.source is not None or named_by is None:
            raise
        raise ConfigError(err.field, err.message, str(named_by)) from None


def task_of_checkpoint(info: CheckpointInfo) -> Task:
    """The task of a checkpoint, rebuilt with what it kept beside it (see :func:`build_task`)."""
    return build_task(info.config, saved=saved_task_data(info))


def model_of_checkpoint(info: CheckpointInfo, task_spec: TaskSpec, *, training: bool = False,
                        device: torch.device | None = None) -> nn.Module:
    """The model a checkpoint header describes, weights not loaded: its config's model with
    the per-block widths of a structurally pruned checkpoint (``effstudio.structure``)."""
    model = build_model(info.config, task_spec, training=training, device=device, named_by=info.path)
    text = info.metadata.get(STRUCTURE_KEY)
    if text:
        try:
            apply_structure(model, Structure.from_json(text))
        except StructureError as err:
            raise CheckpointError(f"{info.path}: {err}") from None
    return model
