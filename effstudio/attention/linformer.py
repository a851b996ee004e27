"""Linformer attention (Wang et al. 2020, "Linformer: Self-Attention with Linear Complexity").

Keys and values are projected along the sequence to a fixed length k before
attention: E K and F V, with E, F learned (k, max_length) matrices. Every
query then attends to k mixtures of tokens instead of N tokens:

    out = softmax(Q (E K)^T / sqrt(d)) (F V)        P = softmax(...): (N, k)

which costs N * k * D instead of N^2 * D. The projections are sized by the
model's maximum length; a shorter sequence uses their first N columns (its
tokens keep their positions' columns), a longer one is refused. One E and F
serve all heads of a layer (the paper's headwise sharing); with ``share_kv``
a single matrix projects both keys and values.

Padded keys and values are set to zero before projecting, so they add
nothing to any mixture. Because each projected key mixes the whole sequence,
Linformer cannot be causal.

Weights. The matrix that really mixes the values is W = P F (N x N), since
out = P (F V) = (P F) V. That is what ``need_weights`` returns: exact, zero in
padded keys' columns, but not a probability distribution (F has signed
entries, and its rows do not sum to 1), so this kind sets
``weights_are_probabilities`` to False. It is the probe path's only N x N
matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from effstudio.attention.base import Attention, AttentionOutput, AttentionSpec
from effstudio.config import ConfigError, param, validate
from effstudio.registry import Entry


@dataclass(frozen=True)
class LinformerAttentionConfig:
    k: int = param(
        256, min=1, label="Projected length",
        help="Length that keys and values are projected to; must be below the model's maximum length",
    )
    share_kv: bool = param(
        False, label="Share key/value projection",
        help="Project keys and values with one matrix (E = F) instead of two",
    )


class LinformerAttention(Attention):
    supports_causal = False
    subquadratic = True
    weights_are_probabilities = False

    def __init__(self, config: LinformerAttentionConfig, spec: AttentionSpec):
        super().__init__(spec)
        validate(config)
        if config.k >= spec.max_length:
            raise ConfigError(
                "k",
                f"a projected length of {config.k} is no shorter than the model's maximum length "
                f"{spec.max_length}: that is no compression; use 'sdpa' or a k below {spec.max_length}",
            )
        self.k, self.max_length = config.k, spec.max_length
        # N(0, 1/k) entries: a Johnson-Lindenstrauss projection, as in the paper's analysis
        std = config.k**-0.5
        self.key_projection = nn.Parameter(std * torch.randn(config.k, spec.max_length))  # (k, L)
        self.value_projection = (
            None if config.share_kv else nn.Parameter(std * torch.randn(config.k, spec.max_length))
        )  # (k, L)

    def projections(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """E and F for a sequence of n tokens: their first n columns, (k, n) each."""
        if n > self.max_length:
            raise ValueError(
                f"Linformer was built for sequences of up to {self.max_length} tokens and got {n}; "
                "its projections have one column per position, so rebuild it with a larger max_length"
            )
        e = self.key_projection[:, :n]  # (k, N)
        f = e if self.value_projection is None else self.value_projection[:, :n]  # (k, N)
        return e, f

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_mask: torch.Tensor | None = None, need_weights: bool = False) -> AttentionOutput:
        e, f = self.projections(k.shape[-2])  # (k, Nk)
        e, f = e.to(k.dtype), f.to(v.dtype)
        if key_mask is not None:
            # masked_fill, not a product: whatever a padded token holds, it adds nothing
            pad = ~key_mask[:, None, :, None]  # (B, 1, Nk, 1)
            k, v = k.masked_fill(pad, 0.0), v.masked_fill(pad, 0.0)  # (B, H, Nk, D)
        keys = e @ k  # (B, H, k, D)
        values = f @ v  # (B, H, k, D)
        if not need_weights:
            # plain attention over the k projected tokens: the fused kernels never store
            # the (N x k) weights, so memory stays O(N * D) on top of the projections
            out = F.scaled_dot_product_attention(q, keys, values)  # (B, H, Nq, D)
            return out, None
        scores = (q * q.shape[-1] ** -0.5) @ keys.transpose(-1, -2)  # (B, H, Nq, k)
        probs = scores.softmax(dim=-1)  # (B, H, Nq, k)
        mixing = f if key_mask is None else f * key_mask[:, None, None, :]  # (k, Nk) or (B, 1, k, Nk)
        return probs @ values, probs @ mixing  # (B, H, Nq, D), (B, H, Nq, Nk)


ENTRY = Entry(
    "linformer", "Linformer: keys and values projected along the sequence to k (linear in length; not causal)",
    LinformerAttentionConfig, LinformerAttention,
)
