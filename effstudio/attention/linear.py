"""Linear attention (Katharopoulos et al. 2020, "Transformers are RNNs").

The softmax kernel exp(q.k / sqrt(d)) is replaced by phi(q).phi(k) with
phi(x) = elu(x) + 1: positive, so the weights stay a distribution over the
keys, smooth, and as wide as the head (F = D). The sums over keys then
factor through one (D x D) state (see :mod:`effstudio.attention.kernelized`):
linear in length, causal by chunked prefix sums. It approximates nothing; it
is a different, cheaper similarity that a model learns to use.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from effstudio.attention.base import AttentionSpec
from effstudio.attention.kernelized import FeatureMap, KernelizedAttention, chunk_param, zero_padded
from effstudio.config import validate
from effstudio.registry import Entry


@dataclass(frozen=True)
class LinearAttentionConfig:
    chunk: int = chunk_param()


class EluFeatures(FeatureMap):
    """elu(x) + 1 (> 0): (B, H, N, D) -> (B, H, N, D); padded keys (given a mask) 0."""

    def __call__(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        return zero_padded(F.elu(x).add_(1.0), key_mask)  # (B, H, N, D)

    def backward(
        self, x: torch.Tensor, phi: torch.Tensor, g_phi: torch.Tensor, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        # elu(x) + 1 is x + 1 above 0 (phi > 1, slope 1) and exp(x) at or below it (phi <= 1, slope
        # exp(x) = phi): the slope is min(phi, 1), one vectorised pass instead of a compare and a select
        return zero_padded(g_phi.mul_(phi.clamp(max=1.0)), key_mask)  # (B, H, N, D)


class LinearAttention(KernelizedAttention):
    def __init__(self, config: LinearAttentionConfig, spec: AttentionSpec):
        validate(config)
        super().__init__(spec, config.chunk, spec.head_dim)

    def feature_maps(self) -> tuple[FeatureMap, FeatureMap]:
        return EluFeatures(), EluFeatures()


ENTRY = Entry(
    "linear", "Linear attention with elu(x)+1 features (linear in length; causal by chunked prefix sums)",
    LinearAttentionConfig, LinearAttention,
)
