"""The plain-operations floor of a kind: the same math in plain autograd, for ``bench attention``.

``performer-floor`` is Performer's bidirectional FAVOR+ with nothing but its
necessary operations: the two feature maps (one logits product, a largest
value and an exponential each) and the two (N x F)(F x D) products, with the
denominator as a matrix-vector product. PyTorch's autograd keeps whatever it
needs, so its memory is not a floor; its time is what a kernel kind should
come near. It takes the same random projection as the kind.
"""

from __future__ import annotations

import torch
from torch import nn

from effstudio.attention.base import AttentionSpec
from effstudio.registry import get_registry

FLOORS = {"performer-floor": "performer"}  # floor case -> the kind it is the floor of


class PerformerFloor(nn.Module):
    shares_qk = False

    def __init__(self, spec: AttentionSpec):
        super().__init__()
        entry = get_registry().get("attention", "performer")
        kind = entry.factory(entry.default_config(), spec)
        self.register_buffer("w", kind.projection.T * spec.head_dim**-0.25)  # (D, F)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, None]:
        query_logits = q @ self.w  # (B, H, N, F)
        phi_q = torch.exp(query_logits - query_logits.amax(dim=-1, keepdim=True).detach())
        key_logits = k @ self.w - k.square().sum(dim=-1, keepdim=True) * (0.5 * k.shape[-1] ** -0.5)
        phi_k = torch.exp(key_logits - key_logits.amax(dim=(-2, -1), keepdim=True).detach())  # (B, H, N, F)
        state = phi_k.transpose(-1, -2) @ v  # (B, H, F, D)
        total = phi_q @ phi_k.sum(dim=-2).unsqueeze(-1)  # (B, H, N, 1)
        return (phi_q @ state) / total, None


def build_floor(name: str, spec: AttentionSpec) -> nn.Module:
    return {"performer-floor": PerformerFloor}[name](spec)
