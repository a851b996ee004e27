"""How any model file effstudio writes becomes a model again, and how compressed models are stored.

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

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import safetensors
import safetensors.torch
import torch
import torch.ao.quantization as tq
from torch import nn
from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

from effstudio.bounded_parse import loads_json
from effstudio.config import ConfigError, parse_typed
from effstudio.engine.build import model_of_checkpoint, task_of_checkpoint
from effstudio.engine.checkpoint import CheckpointError, CheckpointInfo, load_weights, read_info
from effstudio.engine.onnx_model import OnnxFileError, load_checked, metadata_json
from effstudio.engine.run_config import RunConfig
from effstudio.models.structure import METADATA_KEY as STRUCTURE_KEY
from effstudio.models.structure import Structure
from effstudio.tasks.base import Task

if TYPE_CHECKING:
    from onnx import ModelProto

DTYPE_KEY = "effstudio.dtype"
QUANT_KEY = "effstudio.quantization"
QUANTIZED_KEY = "effstudio.quantized"
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
    return isinstance(module, DynamicLinear)


# ------------------------------------------------------------------ loading
def load_checkpoint(path: str | Path) -> LoadedModel:
    """Any effstudio checkpoint (plain, pruned, half precision or dynamic int8), in eval mode."""
    info = read_info(path)
    task = task_of_checkpoint(info)
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


def trainable_model(path: str | Path) -> tuple[nn.Module, CheckpointInfo]:
    """A checkpoint's weights as a float32 model that trains, whatever it was saved as.

    Pruned widths are kept, half-precision weights widened and dynamic-int8 layers
    dequantized (their float weights are exactly scale * (int8 - zero point)), so a
    compressed model can be fine-tuned like any other.
    """
    info = read_info(path)
    model, _, _ = load_model(info.path, training=True)
    return dequantized(model).float().train(), info


def load_model(path: str | Path, *, training: bool = False) -> tuple[nn.Module, RunConfig, Task]:
    """An effstudio checkpoint's model (weights loaded, eval mode), run config and task.

    A pruned, half-precision or quantized checkpoint (see the module docstring)
    is rebuilt from the records in its header.
    """
    info = read_info(path)
    if any(key in info.metadata for key in ("effstudio.quantization", "effstudio.dtype")):
        loaded = load_checkpoint(info.path)
        return loaded.model, loaded.config, loaded.task
    task = task_of_checkpoint(info)
    model = model_of_checkpoint(info, task.spec, training=training)
    load_weights(model, info.path)
    return model.eval(), info.config, task


# --------------------------------------------------------------------- ONNX
def checked_onnx(path: Path) -> ModelProto:
    """The model without its external data, once every external data reference is checked."""
    try:
        return load_checked(path)
    except OnnxFileError as err:
        raise CompressError(str(err)) from None
    except OSError as err:
        raise CompressError(f"{path} is not a readable ONNX file ({err.strerror or err})") from None


def read_onnx_metadata(path: Path) -> dict[str, str]:
    proto = checked_onnx(Path(path))
    metadata = {prop.key: prop.value for prop in proto.metadata_props}
    if "config" not in metadata:
        raise CompressError(f"{path} is an ONNX file without an effstudio run config; export it with "
                            "`effstudio export onnx` to compare it")
    return metadata


def onnx_config(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    """(the run config as a dict, all metadata) of an exported ONNX file; CompressError naming a bad field."""
    metadata = read_onnx_metadata(path)
    try:
        return metadata_json(Path(path), metadata, "config"), metadata
    except OnnxFileError as err:
        raise CompressError(str(err)) from None


def config_of_file(path: str | Path) -> tuple[RunConfig, dict[str, Any]]:
    """The run config stored in an effstudio checkpoint or ONNX file, and its metadata."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        config, metadata = onnx_config(path)
        try:
            return RunConfig.from_dict(config, named_by=path), metadata
        except ConfigError as err:
            raise CompressError(f"{path}: metadata config: {err.field}: {err.message}") from None
    info = read_info(path)
    return info.config, info.metadata
