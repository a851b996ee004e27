"""Exact attention through torch's fused scaled_dot_product_attention kernels.

Same result as "full", but PyTorch picks a flash / memory-efficient kernel where
it can, so the weight matrix is never stored. A probe call (need_weights=True)
takes the explicit path instead, since the fused kernels cannot return weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from effstudio.attention.base import AttentionOutput
from effstudio.attention.full import (
    FullAttention,
    FullAttentionConfig,
    allowed_keys,
    explicit_attention,
)
from effstudio.registry import Entry


@dataclass(frozen=True)
class SdpaAttentionConfig(FullAttentionConfig):
    """The settings of full attention (the attention-weight dropout)."""


class SdpaAttention(FullAttention):
    """Full attention's result and settings; the forward takes the fused kernels where it can."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_mask: torch.Tensor | None = None, need_weights: bool = False) -> AttentionOutput:
        nq, nk = q.shape[-2], k.shape[-2]
        dropout_p = self.dropout if self.training else 0.0
        allowed = allowed_keys(key_mask, nq, nk, self.causal, q.device)
        if need_weights:
            return explicit_attention(q, k, v, allowed, dropout_p)
        if key_mask is None and (not self.causal or nq == nk):
            # is_causal lets the fused kernels skip the mask; it is top-left aligned,
            # which matches allowed_keys only when Nq == Nk
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=self.causal)
            return out, None  # (B, H, Nq, D)
        has_key = allowed.any(dim=-1, keepdim=True)  # (B, 1, Nq, 1)
        # a row with no allowed key makes the kernels return NaN: let it see every
        # key, then zero its output so it matches "full"
        mask = allowed | ~has_key  # (B, 1, Nq, Nk)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
        return out.masked_fill(~has_key, 0.0), None  # (B, H, Nq, D)


ENTRY = Entry(
    "sdpa", "Exact softmax attention via torch's fused kernels (flash / memory-efficient)",
    SdpaAttentionConfig, SdpaAttention,
)
