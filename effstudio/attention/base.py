"""The call shape every attention kind shares.

An attention kind is an nn.Module built by its registry entry's factory as
``factory(config, dim, heads, causal)`` and called as::

    out, weights = attn(q, k, v, key_mask=None, need_weights=False)

    q: (B, H, Nq, D)   k, v: (B, H, Nk, D)   key_mask: (B, Nk) bool, True = real token
    out: (B, H, Nq, D)  weights: (B, H, Nq, Nk) normalised attention, or None

Projections and head splitting live in the model block, so kinds only differ
in how they mix values. A kind that cannot be causal sets ``supports_causal``
to False and the factory refuses causal=True with a clear message.
"""

from __future__ import annotations

import torch
from torch import nn

from effstudio.config import ConfigError


class Attention(nn.Module):
    supports_causal: bool = True

    def __init__(self, dim: int, heads: int, causal: bool):
        super().__init__()
        if dim % heads:
            raise ConfigError("heads", f"model width {dim} is not divisible by {heads} heads")
        if causal and not self.supports_causal:
            raise ConfigError("attention", f"{type(self).__name__} does not support causal (decoder) use")
        self.dim, self.heads, self.causal = dim, heads, causal
        self.head_dim = dim // heads

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError
