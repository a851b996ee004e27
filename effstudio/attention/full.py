"""Full attention written out: softmax(Q K^T / sqrt(d)) V with an explicit weight matrix.

It is the reference the other kinds are compared against, and its helpers give
any kind exact weights for an attention-map probe.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from effstudio.attention.base import Attention, AttentionOutput, AttentionSpec
from effstudio.config import param
from effstudio.registry import Entry


@dataclass(frozen=True)
class FullAttentionConfig:
    dropout: float = param(
        0.0, min=0.0, max=0.9, help="Dropout on the attention weights while training"
    )


def allowed_keys(
    key_mask: torch.Tensor | None, nq: int, nk: int, causal: bool, device: torch.device
) -> torch.Tensor | None:
    """Which keys each query may attend to, as a bool tensor broadcastable to (B, H, Nq, Nk).

    None means every key is allowed. With causal=True the queries are taken to be
    the last Nq positions of the keys' sequence, so query i sees keys j <= i + Nk - Nq.
    """
    allowed = None
    if key_mask is not None:
        allowed = key_mask[:, None, None, :]  # (B, 1, 1, Nk)
    if causal:
        past = torch.ones(nq, nk, dtype=torch.bool, device=device).tril(nk - nq)  # (Nq, Nk)
        allowed = past if allowed is None else allowed & past  # (B, 1, Nq, Nk)
    return allowed


def masked_softmax(scores: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
    """Softmax over the last axis among allowed entries only; a row with none is all zeros.

    scores (..., K) and allowed (bool, broadcastable to scores) give weights (..., K).
    """
    if allowed is None:
        return scores.softmax(dim=-1)
    # a finite fill (not -inf) keeps a row with no allowed key from becoming NaN
    weights = scores.masked_fill(~allowed, torch.finfo(scores.dtype).min).softmax(dim=-1)
    # such a row came out uniform over masked keys; it must attend to nothing
    return weights.masked_fill(~allowed, 0.0)


def explicit_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    allowed: torch.Tensor | None,
    dropout_p: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention with the weights materialised: (out (B, H, Nq, D), weights (B, H, Nq, Nk)).

    A query with no allowed key gets all-zero weights and a zero output, not NaN.
    """
    scores = q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5  # (B, H, Nq, Nk)
    weights = masked_softmax(scores, allowed)  # (B, H, Nq, Nk)
    mixing = F.dropout(weights, dropout_p) if dropout_p > 0 else weights
    return mixing @ v, weights  # (B, H, Nq, D), (B, H, Nq, Nk)


class FullAttention(Attention):
    def __init__(self, config: FullAttentionConfig, spec: AttentionSpec):
        super().__init__(spec)
        self.dropout = config.dropout

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_mask: torch.Tensor | None = None, need_weights: bool = False) -> AttentionOutput:
        allowed = allowed_keys(key_mask, q.shape[-2], k.shape[-2], self.causal, q.device)
        dropout_p = self.dropout if self.training else 0.0
        out, weights = explicit_attention(q, k, v, allowed, dropout_p)
        return out, (weights if need_weights else None)


ENTRY = Entry("full", "Exact softmax attention written out in PyTorch (quadratic time and memory)",
              FullAttentionConfig, FullAttention)
