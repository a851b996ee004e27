"""Cosine attention: softmax over ``scale * cos(q, k)``, a block of queries at a time.

Dot-product scores grow with the length of the vectors, so one long key can take
every query's attention; a cosine lies in [-1, 1], and a scale per head (learned
by default) sets how sharp the softmax may become. The result is exact: each
block of queries sees every key it may see, so only the peak memory changes,
block x Nk scores instead of Nq x Nk (time still grows as Nq x Nk).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from effstudio.attention.base import Attention, AttentionOutput, AttentionSpec, exporting
from effstudio.attention.full import masked_softmax
from effstudio.config import param, validate
from effstudio.registry import Entry


@dataclass(frozen=True)
class CosineAttentionConfig:
    scale: float = param(10.0, min=0.1, max=100.0, help="Starting sharpness: scores are scale x cos(q, k)")
    learn_scale: bool = param(True, label="Learn the scale", help="Train the scale of each head with the model")
    block: int = param(128, min=1, max=65536, label="Query block",
                       help="Queries computed together: memory grows as block x keys", advanced=True)


def block_allowed(key_mask: torch.Tensor | None, start: int, stop: int, nk: int, nq: int, causal: bool,
                  device: torch.device) -> torch.Tensor | None:
    """Which keys queries start..stop-1 may see, broadcastable to (B, H, stop - start, Nk); None: all.

    Causal queries are the last Nq positions of the keys' sequence: query i sees keys j <= i + Nk - Nq.
    """
    allowed = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, Nk)
    if causal:
        last_key = torch.arange(start, stop, device=device)[:, None] + (nk - nq)  # (block, 1)
        past = torch.arange(nk, device=device)[None, :] <= last_key  # (block, Nk)
        allowed = past if allowed is None else allowed & past
    return allowed


class CosineAttention(Attention):
    def __init__(self, config: CosineAttentionConfig, spec: AttentionSpec):
        super().__init__(spec)
        validate(config)
        log_scale = torch.full((spec.heads, 1, 1), math.log(config.scale))  # (H, 1, 1)
        if config.learn_scale:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)
        self.block = config.block

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_mask: torch.Tensor | None = None, need_weights: bool = False) -> AttentionOutput:
        # q: (B, H, Nq, D), k and v: (B, H, Nk, D), key_mask: (B, Nk) True = real token
        nq, nk = q.shape[-2], k.shape[-2]
        q = F.normalize(q, dim=-1) * self.log_scale.exp()  # (B, H, Nq, D): unit rows times the head's scale
        k = F.normalize(k, dim=-1)  # (B, H, Nk, D)
        block = nq if exporting() else self.block  # an export traces one block: no loop over a traced length
        outs, weights = [], []
        for start in range(0, nq, block):
            stop = min(start + block, nq)
            scores = q[..., start:stop, :] @ k.transpose(-2, -1)  # (B, H, block, Nk)
            w = masked_softmax(scores, block_allowed(key_mask, start, stop, nk, nq, self.causal, q.device))
            outs.append(w @ v)  # (B, H, block, D)
            if need_weights:
                weights.append(w)
        return torch.cat(outs, dim=-2), (torch.cat(weights, dim=-2) if need_weights else None)


ENTRY = Entry(
    name="cosine",
    description="Softmax over a learned scale times the cosine of query and key (exact; blocks of queries)",
    config_cls=CosineAttentionConfig,
    factory=CosineAttention,
)
