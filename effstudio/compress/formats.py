"""Saving compressed models in the forms :mod:`effstudio.engine.loading` reads back (described there)."""

from __future__ import annotations

import json
from pathlib import Path

import safetensors.torch
import torch
from torch import nn

from effstudio.engine.checkpoint import (
    atomic_write,
    checkpoint_metadata,
    save_checkpoint,
    write_task_files,
)
from effstudio.engine.loading import (
    DTYPE_KEY,
    DTYPES,
    QUANT_KEY,
    QUANTIZED_KEY,
    CompressError,
    is_dynamic_quantized,
)
from effstudio.engine.run_config import RunConfig
from effstudio.models.structure import structure_metadata
from effstudio.tasks.base import Task, saved_data_of


def count_params(model: nn.Module) -> int:
    """Parameters, counting each quantized Linear's weight and bias as well (they are not nn.Parameters)."""
    total = sum(p.numel() for p in model.parameters())
    for module in model.modules():
        if is_dynamic_quantized(module):
            weight, bias = module._packed_params._weight_bias()
            total += weight.numel() + (bias.numel() if bias is not None else 0)
    return total


# ------------------------------------------------------------------- saving
def save_float(path: Path, model: nn.Module, config: RunConfig, step: int = 0,
               extra: dict[str, str] | None = None, task: Task | None = None) -> Path:
    """A float (or half) model, with its structure recorded when it differs from the config, and what
    ``task`` (the source checkpoint's) keeps with its checkpoints (a tokenizer, a label map)."""
    metadata = {**(extra or {}), **structure_metadata(model, config.model)}
    dtype = next(model.parameters()).dtype
    for name, value in DTYPES.items():
        if dtype == value:
            metadata[DTYPE_KEY] = name
    return save_checkpoint(Path(path), model, config, step, extra_metadata=metadata, task_data=saved_data_of(task))


def save_dynamic_int8(path: Path, model: nn.Module, config: RunConfig, step: int = 0,
                      extra: dict[str, str] | None = None, task: Task | None = None) -> Path:
    """A torch.ao dynamic-int8 model as int8 weights, scales and zero points (see the module docstring)."""
    tensors: dict[str, torch.Tensor] = {}
    quantized: list[str] = []
    for name, module in model.named_modules():
        if not is_dynamic_quantized(module):
            continue
        weight, bias = module._packed_params._weight_bias()
        if weight.qscheme() != torch.per_tensor_affine:
            raise CompressError(f"{name}: only per-tensor int8 weights can be stored (got {weight.qscheme()})")
        quantized.append(name)
        tensors[f"{name}.weight"] = weight.int_repr().contiguous()
        tensors[f"{name}.weight_scale"] = torch.tensor([weight.q_scale()], dtype=torch.float32)
        tensors[f"{name}.weight_zero_point"] = torch.tensor([weight.q_zero_point()], dtype=torch.int64)
        if bias is not None:
            tensors[f"{name}.bias"] = bias.detach().contiguous()
    seen: set[int] = set()
    # a dynamic Linear also carries an (unused) output scale and zero point: not stored
    skip = {f"{name}.{attr}" for name in quantized for attr in ("scale", "zero_point")}
    for name, tensor in model.state_dict().items():
        if not isinstance(tensor, torch.Tensor) or "_packed_params" in name or tensor.is_quantized or name in skip:
            continue
        if tensor.data_ptr() in seen:  # a tied weight is stored once
            continue
        seen.add(tensor.data_ptr())
        tensors.setdefault(name, tensor.detach().contiguous())
    metadata = {QUANT_KEY: "dynamic-int8", QUANTIZED_KEY: json.dumps(quantized), **(extra or {}),
                **structure_metadata(model, config.model)}
    task_data = saved_data_of(task)
    if task_data is not None:
        metadata.update(write_task_files(Path(path), task_data, config))
    metadata = checkpoint_metadata(config, step, metadata)
    atomic_write(Path(path), lambda tmp: safetensors.torch.save_file(tensors, str(tmp), metadata=metadata))
    return Path(path)
