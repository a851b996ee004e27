"""How much memory a model will need, estimated before it is built, and the refusal of what
the machine cannot hold.

A width of a million (typed, in a TOML, or claimed by a checkpoint header on a tiny file)
would otherwise start allocating terabytes and end minutes later in an allocator error, or
take the machine down with it. The estimate:

- parameters exactly, by building the model on PyTorch's ``meta`` device, which records
  shapes and allocates nothing (milliseconds); a model that cannot be built there
  (one that reads a value during construction) is estimated from its widths instead,
  and so is one whose widths alone put it far beyond the limit (``CLEARLY_TOO_LARGE``);
- 4 bytes per float32 parameter, times 4 when training (the weights, their gradients and
  AdamW's two moments);
- activations of one micro-batch of the config's batch size and the task's length: about
  ``ACTIVATION_FLOATS`` floats per token, per layer and per unit of width (only the terms
  linear in the length: an efficient attention kind never forms the N x N matrix), and the
  output logits.

It is refused when it exceeds the memory available: the free memory of a CUDA device, else
the machine's available RAM (psutil). On a bigger machine, or where the estimate is too
pessimistic, ``EFFSTUDIO_MEMORY_LIMIT_GB`` sets the memory the check assumes instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psutil
import torch
from torch import nn

from effstudio.config import ConfigError

if TYPE_CHECKING:
    from pathlib import Path

    from effstudio.tasks.base import TaskSpec

LIMIT_ENV = "EFFSTUDIO_MEMORY_LIMIT_GB"
FLOAT_BYTES = 4
TRAINING_COPIES = 4  # weights, gradients, AdamW exp_avg and exp_avg_sq
ACTIVATION_FLOATS = 16  # per token, layer and unit of width kept for the backward pass (MLP of 4x width, ...)
CLEARLY_TOO_LARGE = 8  # estimated from the widths at this many times the memory, no exact count is needed


class ModelTooLarge(ConfigError):
    """A model's estimated memory exceeds what the machine has (a usage error, exit 2)."""


@dataclass(frozen=True)
class SizeEstimate:
    params: int
    param_bytes: int  # parameters, with gradients and optimizer state when training
    activation_bytes: int
    exact: bool  # the parameters were counted on the meta device (else estimated from the widths)

    @property
    def total_bytes(self) -> int:
        return self.param_bytes + self.activation_bytes


def format_bytes(count: float) -> str:
    """``4.0 TB``, ``23 GB``, ``512 MB``: decimal units, two significant digits at least."""
    for unit, scale in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            value = count / scale
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{int(count)} B"


def count_params(build: Callable[[], nn.Module]) -> int | None:
    """The parameters (and buffers) of the model ``build()`` makes, counted on the meta device;
    None when it cannot be built there. A ConfigError (a model that cannot take the task) is
    raised as the real build would."""
    try:
        with torch.device("meta"):
            model = build()
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 - a construction that needs real values (.item()) on meta
        return None
    return sum(t.numel() for t in model.parameters()) + sum(t.numel() for t in model.buffers())


def _setting(config: Any, name: str, default: int) -> int:
    value = getattr(config, name, default)
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def analytic_params(model_config: Any, spec: TaskSpec) -> int:
    """Parameters from the widths a model config names: embeddings, positions and head, and per
    layer the attention projections (4 d^2) and the MLP (2 ff_mult d^2, per expert of a mixture)."""
    width = _setting(model_config, "d_model", 0)
    layers = depth(model_config)
    ff_mult = _setting(model_config, "ff_mult", 4)
    experts = _setting(model_config, "experts", 1) if getattr(model_config, "ffn", "moe") == "moe" else 1
    vocab = max(len(spec.vocab), spec.num_classes)
    per_layer = 4 * width * width + 2 * ff_mult * width * width * experts
    return (vocab + spec.max_length) * width + layers * per_layer + width * spec.num_classes


def depth(model_config: Any) -> int:
    """The blocks one token passes through: the layers; the steps of a shared block (universal); token and
    segment blocks (hierarchical); encoder and decoder (seq2seq, whose ``layers`` counts each)."""
    if hasattr(model_config, "max_steps"):
        return _setting(model_config, "max_steps", 1)
    if hasattr(model_config, "token_layers"):
        return _setting(model_config, "token_layers", 1) + _setting(model_config, "segment_layers", 1)
    layers = _setting(model_config, "layers", 1)
    return 2 * layers if hasattr(model_config, "cross_attention") else layers


def context_length(model_config: Any, spec: TaskSpec) -> int:
    """The positions a layer keeps per sequence: the task's length, plus a recurrent model's memory of
    earlier segments (Transformer-XL keeps ``mem_len`` hidden states per layer, ``eval_mem_len`` in
    evaluation), which a batch of long memories can make far larger than the length itself."""
    memory = max(_setting(model_config, "mem_len", 0), _setting(model_config, "eval_mem_len", 0)) \
        if hasattr(model_config, "mem_len") else 0
    return spec.max_length + memory


def attention_floats(attention: Any, model_config: Any) -> int:
    """Floats per token and layer that an attention kind keeps beyond the width: Performer's random
    features (queries and keys, per head), Reformer's rounds of hashing (a sorted copy of queries, keys
    and values per round)."""
    width = _setting(model_config, "d_model", 0)
    heads = _setting(model_config, "heads", 1)
    floats = 0
    if attention is not None and hasattr(attention, "features"):
        floats += 2 * heads * _setting(attention, "features", 0)
    if attention is not None and hasattr(attention, "n_hashes"):
        floats += 3 * width * _setting(attention, "n_hashes", 1)
    return floats


def estimate(model_config: Any, spec: TaskSpec, build: Callable[[], nn.Module] | None, *, batch: int,
             training: bool, attention: Any = None) -> SizeEstimate:
    """The memory the model ``build()`` makes for ``model_config`` and the task ``spec`` needs
    (parameters counted on the meta device; from the widths without ``build`` or where that fails)."""
    counted = count_params(build) if build is not None else None
    params = counted if counted is not None else analytic_params(model_config, spec)
    copies = TRAINING_COPIES if training else 1
    width = _setting(model_config, "d_model", 0)
    per_layer = ACTIVATION_FLOATS * width + attention_floats(attention, model_config)
    tokens = batch * context_length(model_config, spec)
    activations = tokens * per_layer * depth(model_config) + batch * spec.max_length * max(len(spec.vocab),
                                                                                          spec.num_classes)
    return SizeEstimate(params, params * FLOAT_BYTES * copies, activations * FLOAT_BYTES, counted is not None)


def available_bytes(device: torch.device | None) -> tuple[int, str]:
    """The memory a model may take and where it comes from, for the message."""
    override = os.environ.get(LIMIT_ENV, "").strip()
    if override:
        try:
            return int(float(override) * 1e9), f"allowed by {LIMIT_ENV}={override}"
        except ValueError:
            raise ConfigError(LIMIT_ENV, f"expected a number of GB, got {override!r}") from None
    if device is not None and device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free), f"free on {device}"
    return int(psutil.virtual_memory().available), "available"


def _describe(model_type: str, model_config: Any, spec: TaskSpec, attention: Any) -> tuple[str, str]:
    """The field a form highlights and the settings the message names: the width and depth, and a
    recurrent memory or an attention kind's per-token state where it outweighs the width."""
    if not hasattr(model_config, "d_model"):
        return "model", f"model type {model_type}"
    depth = f" with model.layers={model_config.layers}" if hasattr(model_config, "layers") else ""
    if attention_floats(attention, model_config) > ACTIVATION_FLOATS * _setting(model_config, "d_model", 0):
        name = "features" if hasattr(attention, "features") else "n_hashes"
        return f"attention.{name}", (f"{getattr(attention, name)} with model.d_model={model_config.d_model}"
                                     f"{depth.replace(' with', ',')}")
    if context_length(model_config, spec) > 2 * spec.max_length:
        return "model.mem_len", (f"{model_config.mem_len} (eval_mem_len {model_config.eval_mem_len}) with "
                                 f"model.d_model={model_config.d_model}{depth.replace(' with', ',')}")
    return "model.d_model", f"{model_config.d_model}{depth}"


def check_fits(model_type: str, model_config: Any, spec: TaskSpec, build: Callable[[], nn.Module], *, batch: int = 1,
               training: bool = False, device: torch.device | None = None, named_by: str | Path | None = None,
               attention: Any = None) -> SizeEstimate:
    """Refuse (ModelTooLarge) a model whose estimate exceeds the memory available; return the estimate.

    ``named_by`` (a checkpoint) is named in the message when the settings come from its header."""
    limit, where = available_bytes(device)
    size = estimate(model_config, spec, None, batch=batch, training=training, attention=attention)
    if size.total_bytes <= CLEARLY_TOO_LARGE * limit:  # else refused at once: a deep stack takes a while on meta
        size = estimate(model_config, spec, build, batch=batch, training=training, attention=attention)
        if size.total_bytes <= limit:
            return size
    what = "parameters and optimizer state" if training else "parameters"
    source = f" (in {named_by})" if named_by is not None else ""
    field, settings = _describe(model_type, model_config, spec, attention)
    raise ModelTooLarge(field, f"{settings}{source} would need about "
                             f"{format_bytes(size.param_bytes)} of {what} ({size.params:,} parameters) and "
                             f"{format_bytes(size.activation_bytes)} of activations for a batch of {batch} x "
                             f"{context_length(model_config, spec)} positions; this machine has "
                             f"{format_bytes(limit)} {where}. If the estimate is too pessimistic, set {LIMIT_ENV} to the memory in GB to allow")
