"""What every model type returns, and how the engine builds one by name."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from effstudio.tasks.base import TaskSpec


@dataclass
class ModelOutput:
    """logits: (B, C) for "classify" tasks, (B, N, V) for "lm" tasks.

    attentions: one (B, H, N, N) tensor per layer when asked for, else None.
    aux_loss: extra loss terms (e.g. load balancing) already weighted, or None.
    """

    logits: torch.Tensor
    attentions: list[torch.Tensor] | None = None
    aux_loss: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    """Everything a model factory gets besides its own config."""

    task: TaskSpec
    attention_config: Any  # config instance of the attention kind named by the model config
