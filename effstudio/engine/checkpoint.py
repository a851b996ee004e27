"""Self-describing checkpoints: safetensors weights plus a weights-only training state.

``NAME.safetensors`` holds the weights; its header metadata names the model type,
the whole run config (JSON), the task, the step and the effstudio version, so
loading never executes code. ``NAME.state.pt`` beside it holds what resuming needs
(optimizer, grad scaler, RNG states, step) as plain tensors and containers that
``torch.load(weights_only=True)`` accepts.

Every write is atomic: a temporary file in the same folder, fsync, then rename,
so a crash or a full disk mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import nn

import effstudio
from effstudio.config import ConfigError, param, with_values
from effstudio.engine.run_config import RunConfig
from effstudio.paths import PathError, open_regular_file

FORMAT_VERSION = "1"
STATE_SUFFIX = ".state.pt"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or written; the message says why and what to do."""


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    config: RunConfig
    step: int
    version: str
    metadata: dict[str, str]


def state_path(weights_path: Path) -> Path:
    return weights_path.with_name(weights_path.stem + STATE_SUFFIX)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, fsync it, rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    path: Path,
    model: nn.Module,
    config: RunConfig,
    step: int,
    train_state: dict[str, Any] | None = None,
    extra_metadata: dict[str, str] | None = None,
) -> Path:
    """Write weights (and the training state, if given) atomically; return the weights path.

    ``extra_metadata`` adds header entries (a pruned structure, a storage dtype).
    """
    metadata = checkpoint_metadata(config, step, extra_metadata)
    model = getattr(model, "_orig_mod", model)  # a torch.compile wrapper saves its original module
    try:
        # save_model drops duplicates of shared tensors (tied embeddings) and restores them on load
        atomic_write(path, lambda tmp: safetensors.torch.save_model(model, str(tmp), metadata=metadata))
        if train_state is not None:
            atomic_write(state_path(path), lambda tmp: torch.save(train_state, tmp))
    except OSError as err:
        raise CheckpointError(f"could not write checkpoint {path}: {err.strerror or err}; "
                              "the previous checkpoint is kept") from err
    return path


def checkpoint_metadata(config: RunConfig, step: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The header entries that make a safetensors file an effstudio checkpoint."""
    return {
        "effstudio.format": FORMAT_VERSION,
        "effstudio.version": effstudio.__version__,
        "model_type": config.model_type,
        "task": config.task_name,
        "step": str(step),
        "config": json.dumps(config.to_dict()),
        **(extra or {}),
    }


@dataclass(frozen=True)
class _HeaderValues:
    """The scalar header entries, parsed and checked like any setting (the header stores text)."""

    step: int = param(0, min=0)


def header_step(metadata: dict[str, str]) -> int:
    """The header's ``step``, parsed and checked like a setting; a bad one is a ConfigError on ``step``."""
    return with_values(_HeaderValues(), {"step": metadata.get("step", "0")}).step


def read_info(path: str | Path) -> CheckpointInfo:
    """Read and check the header of an effstudio checkpoint without loading weights.

    Every value read from the header goes through the config layer's validation; a bad one is a
    CheckpointError naming the file and the field (``step``, ``config: model.d_model``).
    """
    path = Path(path)
    try:
        open_regular_file(path, what="checkpoint").close()
    except PathError as err:
        raise CheckpointError(str(err)) from None
    try:
        with safetensors.safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for bad headers
        raise CheckpointError(f"{path} is not a readable safetensors file ({err})") from None
    if "effstudio.format" not in metadata or "config" not in metadata:
        raise CheckpointError(f"{path} is a safetensors file but not an effstudio checkpoint "
                              "(no effstudio metadata); use `effstudio inspect` to look inside it")
    try:
        config = RunConfig.from_json(metadata["config"], source=path)
        step = header_step(metadata)
    except ConfigError as err:
        raise CheckpointError(f"{path}: header metadata {err.field}: {err.message}") from None
    return CheckpointInfo(path, config, step, metadata.get("effstudio.version", "?"), metadata)


def load_weights(model: nn.Module, path: Path) -> None:
    try:
        missing, unexpected = safetensors.torch.load_model(model, str(path), strict=False)
    except Exception as err:
        raise CheckpointError(f"cannot load weights from {path}: {err}") from None
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match the model: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )


def load_train_state(path: Path) -> dict[str, Any]:
    state_file = state_path(path)
    if not state_file.is_file():
        raise CheckpointError(f"cannot resume from {path}: its training state {state_file.name} is missing")
    try:
        return torch.load(state_file, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"cannot read training state {state_file}: {err}") from None
