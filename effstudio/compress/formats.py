"""How compressed models are stored, and how any model file becomes a model again.

Every variant is an ordinary effstudio checkpoint (safetensors, run config in
the header, atomic write); a few header entries say how to rebuild it, so loading
never executes code:

- ``effstudio.structure``: per-block heads and feed-forward widths of a
  structurally pruned model (see :mod:`effstudio.models.structure`).
- ``effstudio.dtype``: ``float16`` or ``bfloat16`` when the weights are stored
  in half precision; the model is rebuilt in that dtype.
- ``effstudio.quantization``: ``dynamic-int8``. Each quantized Linear is stored
  as three tensors that an inspector shows as they are: ``NAME.weight`` (I8,
  the integer weights), ``NAME.weight_scale`` (F32, one value) and
  ``NAME.weight_zero_point`` (I64, one value), so ``float = scale * (int8 -
  zero_point)``; its bias stays ``NAME.bias`` (F32). ``effstudio.quantized``
  lists the quantized Linear layers (JSON). Loading builds the float model,
  quantizes the same layers with ``torch.ao`` dynamic int8 and puts the stored
  integers back, so the reloaded model computes exactly what was saved.

ONNX files (``.onnx``) carry the same run config in their metadata properties,
so ``compare`` can evaluate them on their task.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import nn

from effstudio.bounded_parse import loads_json
from effstudio.config import ConfigError, parse_typed
from effstudio.engine.build import build_task, model_of_checkpoint
from effstudio.engine.checkpoint import (
    CheckpointError,
    CheckpointInfo,
    atomic_write,
    checkpoint_metadata,
    read_info,
    save_checkpoint,
)
from effstudio.engine.run_config import RunConfig
from effstudio.models.structure import METADATA_KEY as STRUCTURE_KEY
from effstudio.models.structure import (
    Structure,
    structure_metadata,
)
from effstudio.tasks.base import Task

DTYPE_KEY = "effstudio.dtype"
QUANT_KEY = "effstudio.quantization"
QUANTIZED_KEY = "effstudio.quantized"
SOURCE_KEY = "effstudio.source"
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


class CompressError(ValueError):
    """Bad input to a compression job (a wrong kind of file, an amount out of range): nothing is written."""


@dataclass
class LoadedModel:
    """A model rebuilt from a checkpoint, with what describes it."""

    model: nn.Module
    config: RunConfig
    task: Task
    info: CheckpointInfo
    kind: str  # "float32", "float16", "bfloat16", "dynamic-int8"

    @property
    def structure(self) -> Structure | None:
        text = self.info.metadata.get(STRUCTURE_KEY)
        return Structure.from_json(text) if text else None


def quantize_dynamic_int8(model: nn.Module, names: list[str] | None = None) -> nn.Module:
    """torch.ao dynamic int8 on the named Linear layers (default: all but a head tied to the embedding)."""
    import torch.ao.quantization as tq

    if names is None:
        names = quantizable_linears(model)
    spec = dict.fromkeys(names, tq.default_dynamic_qconfig)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao eager quantization announces its move to torchao
        return tq.quantize_dynamic(model, spec, dtype=torch.qint8, inplace=False)


def quantizable_linears(model: nn.Module) -> list[str]:
    """Names of the Linear layers whose weight is their own (a tied LM head shares the embedding's)."""
    shared = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear) and id(m.weight) not in shared]


def is_dynamic_quantized(module: nn.Module) -> bool:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return isinstance(module, DynamicLinear)


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
               extra: dict[str, str] | None = None) -> Path:
    """A float (or half) model, with its structure recorded when it differs from the config."""
    metadata = {**(extra or {}), **structure_metadata(model, config.model)}
    dtype = next(model.parameters()).dtype
    for name, value in DTYPES.items():
        if dtype == value:
            metadata[DTYPE_KEY] = name
    return save_checkpoint(Path(path), model, config, step, extra_metadata=metadata)


def save_dynamic_int8(path: Path, model: nn.Module, config: RunConfig, step: int = 0,
                      extra: dict[str, str] | None = None) -> Path:
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
    metadata = checkpoint_metadata(config, step, metadata)
    atomic_write(Path(path), lambda tmp: safetensors.torch.save_file(tensors, str(tmp), metadata=metadata))
    return Path(path)


# ------------------------------------------------------------------ loading
def load_checkpoint(path: str | Path) -> LoadedModel:
    """Any effstudio checkpoint (plain, pruned, half precision or dynamic int8), in eval mode."""
    info = read_info(path)
    task = build_task(info.config)
    model = model_of_checkpoint(info, task.spec)
    kind = "float32"
    dtype_name = info.metadata.get(DTYPE_KEY)
    if dtype_name in DTYPES:
        model = model.to(DTYPES[dtype_name])
        kind = dtype_name
    quantization = info.metadata.get(QUANT_KEY)
    if quantization is None:
        _load_state(model, info.path, allow_missing=())
    elif quantization == "dynamic-int8":
        model = _load_dynamic_int8(model, info)
        kind = quantization
    else:
        raise CheckpointError(f"{info.path} uses quantization {quantization!r}, which this version cannot load")
    return LoadedModel(model.eval(), info.config, task, info, kind)


def _load_state(model: nn.Module, path: Path, allow_missing: tuple[str, ...]) -> None:
    try:
        missing, unexpected = safetensors.torch.load_model(model, str(path), strict=False)
    except Exception as err:
        raise CheckpointError(f"cannot load weights from {path}: {err}") from None
    missing = [m for m in missing if m not in allow_missing]
    if missing or unexpected:
        raise CheckpointError(f"{path} does not match the model: missing {sorted(missing)[:5]}, "
                              f"unexpected {sorted(unexpected)[:5]}")


def _load_dynamic_int8(model: nn.Module, info: CheckpointInfo) -> nn.Module:
    try:
        names = parse_typed(QUANTIZED_KEY, tuple[str, ...], loads_json(info.metadata.get(QUANTIZED_KEY, "[]"),
                                                                        source=info.path, field=QUANTIZED_KEY))
    except ConfigError as err:
        raise CheckpointError(f"{info.path}: header metadata {err.field}: {err.message}") from None
    with safetensors.safe_open(str(info.path), framework="pt") as handle:
        stored = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - not a dict
    integers: dict[str, tuple[torch.Tensor, float, int]] = {}
    floats: dict[str, torch.Tensor] = {}
    for name in names:
        try:
            q = stored.pop(f"{name}.weight")
            scale = float(stored.pop(f"{name}.weight_scale")[0])
            zero = int(stored.pop(f"{name}.weight_zero_point")[0])
        except KeyError as err:
            raise CheckpointError(f"{info.path}: quantized layer {name} is missing {err}") from None
        integers[name] = (q, scale, zero)
        floats[f"{name}.weight"] = (q.float() - zero) * scale  # placeholder, replaced by the exact integers below
    floats.update(stored)
    missing, unexpected = model.load_state_dict(floats, strict=False)
    tied = {name for name, p in model.named_parameters(remove_duplicate=False)} - {
        name for name, p in model.named_parameters()}
    missing = [m for m in missing if m not in tied]
    if missing or unexpected:
        raise CheckpointError(f"{info.path} does not match the model: missing {sorted(missing)[:5]}, "
                              f"unexpected {sorted(unexpected)[:5]}")
    model = quantize_dynamic_int8(model.eval(), names)
    modules = dict(model.named_modules())
    for name, (q, scale, zero) in integers.items():
        module = modules.get(name)
        if module is None or not is_dynamic_quantized(module):
            raise CheckpointError(f"{info.path}: {name} is not a Linear layer of this model")
        weight = torch._make_per_tensor_quantized_tensor(q, scale, zero)
        module.set_weight_bias(weight, module._packed_params._weight_bias()[1])
    return model


def dequantized(model: nn.Module) -> nn.Module:
    """``model`` with every dynamic-int8 Linear replaced by a float Linear of the same (dequantized) weights."""
    for name, module in list(model.named_modules()):
        if not is_dynamic_quantized(module):
            continue
        weight, bias = module._packed_params._weight_bias()
        layer = nn.Linear(module.in_features, module.out_features, bias=bias is not None)
        with torch.no_grad():
            layer.weight.copy_(weight.dequantize())
            if bias is not None:
                layer.bias.copy_(bias)
        model.set_submodule(name, layer)
    return model


def config_of_file(path: str | Path) -> tuple[RunConfig, dict[str, Any]]:
    """The run config stored in an effstudio checkpoint or ONNX file, and its metadata."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        from effstudio.compress.export import onnx_config

        config, metadata = onnx_config(path)
        try:
            return RunConfig.from_dict(config, named_by=path), metadata
        except ConfigError as err:
            raise CompressError(f"{path}: metadata config: {err.field}: {err.message}") from None
    info = read_info(path)
    return info.config, info.metadata
