"""What every model type returns, and how the engine builds one by name.

Diagnostics and views: the ``extras`` contract
----------------------------------------------
A model may report what happened inside one forward pass in
``ModelOutput.extras``, a ``dict[str, torch.Tensor]`` keyed by stable names:

- a 0-dim tensor is a per-step scalar (``"ponder_mean"``, ``"moe_dropped"``).
  The trainer averages it over the micro-batches of each optimizer step (on all
  processes), each weighted like its loss by its share of the step's targets, and
  reports it in ``StepEvent.metrics`` (a ``dict[str, float]``, also in the
  ``effstudio train --json`` step records); the Monitor plots one curve per key.
- any other tensor is an array about the batch (``"ponder_steps"`` (B, N),
  ``"expert_load"`` (L, E)). The trainer reads the arrays of the attention-probe
  forward (one validation example, B = 1) into ``AttentionEvent.views``
  (``dict[str, numpy.ndarray]``, floats as float32); the GUI shows the keys it
  has a view for (``effstudio.gui.views``) and ignores the others.

Put detached tensors there and do not call ``.item()``: the engine converts
scalars together with the loss, once per step, and arrays only for the probe.
A model without extras leaves the dict empty and costs nothing. Keys in use:

==================  ==========  =============================================================
key                 shape       meaning
==================  ==========  =============================================================
ponder_steps        (B, N)      ACT: steps a token used (0 for padding)
ponder_mean         ()          ACT: mean ponder time N + R over real tokens (steps + remainder)
expert_load         (L, E)      MoE: share of routed tokens each expert was chosen for,
                                per layer (or per step of a shared block); rows sum to 1
moe_dropped         ()          MoE: share of token-to-expert assignments over capacity
moe_balance_loss    ()          MoE: balancing loss before its weight (1.0 = even load)
==================  ==========  =============================================================

``aux_loss`` holds extra loss terms, already weighted, that the trainer adds
to the task loss (the ponder cost, the load-balancing loss).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from effstudio.config import ConfigError
from effstudio.tasks.base import TaskSpec


@dataclass
class ModelOutput:
    """logits: (B, C) for "classify" tasks, (B, N, V) for "lm" tasks.

    attentions: one (B, H, N, N) tensor per layer when asked for, else None.
    aux_loss: extra loss terms (e.g. load balancing) already weighted, or None.
    extras: diagnostics of this pass, see the module docstring (0-dim = step
    metric, other shapes = arrays for the model's view).
    memory: a recurrent model's state for the next segment (Transformer-XL: one
    detached (B, M, d) tensor per layer), passed back as ``memory=``; else None.
    """

    logits: torch.Tensor
    attentions: list[torch.Tensor] | None = None
    aux_loss: torch.Tensor | None = None
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    memory: Any = None


@dataclass(frozen=True)
class ModelSpec:
    """Everything a model factory gets besides its own config."""

    task: TaskSpec
    attention_config: Any  # config instance of the attention kind named by the model config


def check_heads_divide_width(config: Any) -> None:
    """Every head gets d_model / heads features: refuse a width the heads do not divide."""
    if config.d_model % config.heads:
        raise ConfigError("heads", f"model width {config.d_model} is not divisible by {config.heads} heads")
