"""Mixture of Experts feed-forward layer (Switch Transformer / GShard style).

The dense MLP of a block can be replaced by E expert MLPs and a router that
sends each token to its top-k experts (k = 1: Switch, k = 2: GShard):

- the router runs in float32, also under autocast: its softmax decides where
  tokens go, and bf16 logits would flip close decisions;
- each expert takes at most ``capacity = ceil(capacity_factor * k * T / E)``
  assignments, T being the routed (real) tokens of the batch; the buffers are
  sized for every position, so no count has to be read back from the device.
  Assignments are served by priority:
  all first choices before any second choice, earlier positions before later
  ones, so a decoder's token never loses its place to a later token. A token
  over capacity gets nothing from that expert: with no expert left it passes
  through the block's residual connection unchanged;
- padding (and, in the Universal Transformer, tokens that have halted) is not
  routed at all and takes no capacity;
- dispatch is a gather into an (E, capacity, d) buffer, the experts run as two
  batched matrix products, and the results are gathered back: no loop over
  tokens or experts.

The load-balancing loss of the Switch Transformer, ``E * sum_i f_i * P_i``
(f_i: share of assignments that chose expert i, P_i: mean router probability
of expert i, both over routed tokens), is 1.0 when the load is even and grows
as it concentrates; the model adds it, weighted by ``balance_weight``, to its
auxiliary loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from effstudio.attention.base import exporting
from effstudio.config import ConfigError
from effstudio.models.fields import block_settings, ff_hidden

INIT_STD = 0.02


# -------------------------------------------------------------------- layer
@dataclass
class MoEStats:
    """What one application of a MoE layer reports.

    balance: the load-balancing loss, unweighted (1.0 = even), with gradient to the router
    load: (E,) share of routed assignments that chose each expert (before capacity), detached
    dropped: () share of assignments over capacity, detached
    """

    balance: torch.Tensor
    load: torch.Tensor
    dropped: torch.Tensor


class MoEFeedForward(nn.Module):
    """E expert MLPs (d -> hidden -> d, GELU) behind a top-k router with capacity."""

    def __init__(self, dim: int, hidden: int, experts: int, top_k: int = 1, capacity_factor: float = 1.25):
        super().__init__()
        if not 1 <= top_k <= experts:
            raise ConfigError("top_k", f"cannot route each token to {top_k} of {experts} experts")
        self.experts, self.top_k, self.capacity_factor = experts, top_k, capacity_factor
        self.router = nn.Linear(dim, experts, bias=False)
        self.w1 = nn.Parameter(INIT_STD * torch.randn(experts, dim, hidden))  # (E, d, h)
        self.b1 = nn.Parameter(torch.zeros(experts, 1, hidden))  # (E, 1, h)
        self.w2 = nn.Parameter(INIT_STD * torch.randn(experts, hidden, dim))  # (E, h, d)
        self.b2 = nn.Parameter(torch.zeros(experts, 1, dim))  # (E, 1, d)

    @property
    def hidden(self) -> int:
        """Hidden units per expert."""
        return self.w1.shape[-1]

    def keep_hidden(self, keep: torch.Tensor) -> None:
        """Keep only the hidden units ``keep`` ((E, h') indices, per expert) of every expert.

        Structured pruning removes each expert's weakest units; every expert keeps
        the same count so that the experts still run as one batched matmul.
        """
        w1, b1, w2 = self.w1.detach(), self.b1.detach(), self.w2.detach()
        self.w1 = nn.Parameter(w1.gather(2, keep[:, None, :].expand(-1, w1.shape[1], -1)).clone())  # (E, d, h')
        self.b1 = nn.Parameter(b1.gather(2, keep[:, None, :]).clone())  # (E, 1, h')
        self.w2 = nn.Parameter(w2.gather(1, keep[:, :, None].expand(-1, -1, w2.shape[2])).clone())  # (E, h', d)

    def capacity(self, tokens: int) -> int:
        """The most assignments an expert takes when ``tokens`` tokens are routed."""
        return max(1, math.ceil(self.capacity_factor * self.top_k * tokens / self.experts))

    def forward(self, x: torch.Tensor, route_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, MoEStats]:
        """x (B, N, d); route_mask (B, N) True = route this token. Returns (B, N, d) and the stats."""
        b, n, d = x.shape
        e, k = self.experts, self.top_k
        # position-major order (t = j * B + i): earlier positions are served first
        tokens = x.transpose(0, 1).reshape(n * b, d)  # (T, d)
        t = tokens.shape[0]
        if route_mask is None:
            routed = torch.ones(t, dtype=torch.bool, device=x.device)
        else:
            routed = route_mask.transpose(0, 1).reshape(t)  # (T,)
        capacity = self.capacity(t)  # buffer rows per expert: the capacity if every position were routed

        with torch.autocast(device_type=x.device.type, enabled=False):
            logits = self.router(tokens.float())  # (T, E) float32
            probs = logits.softmax(dim=-1)  # (T, E)
            gate, choice = probs.topk(k, dim=-1)  # (T, k)
            if k > 1:
                gate = gate / gate.sum(dim=-1, keepdim=True)

        # assignments in priority order: every token's first choice, then every second choice
        expert = choice.t().reshape(k * t)  # (kT,)
        live = routed.repeat(k)  # (kT,)
        onehot = F.one_hot(expert, e) * live[:, None]  # (kT, E)
        position = (onehot.cumsum(dim=0) * onehot).sum(dim=-1) - 1  # (kT,) place in its expert's queue
        limit = torch.ceil(self.capacity_factor * k * routed.sum() / e).clamp(min=1)  # () capacity, on device
        kept = live & (position < limit)  # (kT,)
        # combine: each token sums its kept experts' outputs, weighted by the gate
        weight = gate.t().reshape(k * t) * kept  # (kT,) float32
        if exporting():
            combined = self._dense_experts(tokens, expert) * weight[:, None]  # (kT, d)
        else:
            combined = self._dispatched_experts(tokens, expert, kept, position, capacity) * weight[:, None]
        out = combined.view(k, t, d).sum(dim=0).to(x.dtype)  # (T, d)
        out = out.view(n, b, d).transpose(0, 1)  # (B, N, d)

        with torch.autocast(device_type=x.device.type, enabled=False):
            routed_f = routed.float()
            n_routed = routed_f.sum().clamp(min=1.0)
            assigned = onehot.float().sum(dim=0)  # (E,) assignments per expert
            load = assigned / (n_routed * k)  # (E,) f_i
            mean_prob = (probs * routed_f[:, None]).sum(dim=0) / n_routed  # (E,) P_i
            balance = e * (load.detach() * mean_prob).sum()
            dropped = (live & ~kept).float().sum() / (n_routed * k)
        return out, MoEStats(balance, load.detach(), dropped.detach())

    def _dispatched_experts(self, tokens: torch.Tensor, expert: torch.Tensor, kept: torch.Tensor,
                            position: torch.Tensor, capacity: int) -> torch.Tensor:
        """(kT, d) float32 output of each assignment's expert; a dropped assignment gets a zero row.

        tokens (T, d); expert, kept, position (kT,).
        """
        t, d = tokens.shape
        e, k = self.experts, self.top_k
        trash = e * capacity  # one extra slot that dropped and unrouted assignments point at
        slot = torch.where(kept, expert * capacity + position, torch.full_like(position, trash))  # (kT,)

        # dispatch: which token fills each slot (index t is a zero row)
        source = torch.full((trash + 1,), t, dtype=torch.long, device=tokens.device)
        source.scatter_(0, slot, torch.arange(k * t, device=tokens.device) % t)
        padded = torch.cat([tokens, tokens.new_zeros(1, d)])  # (T + 1, d)
        buffer = padded[source[:trash]].view(e, capacity, d)  # (E, C, d)
        hidden = F.gelu(torch.baddbmm(self.b1, buffer, self.w1))  # (E, C, h)
        result = torch.baddbmm(self.b2, hidden, self.w2).reshape(trash, d)  # (E*C, d)
        result = torch.cat([result, result.new_zeros(1, d)])  # (E*C + 1, d)
        return result[slot].float()

    def _dense_experts(self, tokens: torch.Tensor, expert: torch.Tensor) -> torch.Tensor:
        """(kT, d) float32: every expert on every token, then each assignment's row (dropped ones are
        zeroed by their weight). E times the work, but no buffer sized by a count: the ONNX export's
        path, whose token count varies (a traced capacity would be frozen at the example's)."""
        hidden = F.gelu(torch.baddbmm(self.b1, tokens.unsqueeze(0).expand(self.experts, -1, -1), self.w1))
        result = torch.baddbmm(self.b2, hidden, self.w2)  # (E, T, d)
        token = torch.arange(tokens.shape[0], device=tokens.device).repeat(self.top_k)  # (kT,)
        return result[expert, token].float()


def make_feed_forward(config: Any) -> nn.Module:
    """The feed-forward part of a block: the dense MLP or, with ``ffn = "moe"``, experts."""
    d = config.d_model
    hidden = ff_hidden(config)
    if getattr(config, "ffn", "dense") == "moe":
        return MoEFeedForward(d, hidden, config.experts, config.top_k, config.capacity_factor)
    return nn.Sequential(nn.Linear(d, hidden), activation_module(block_settings(config).activation),
                         nn.Linear(hidden, d))


def activation_module(name: str) -> nn.Module:
    """The module of a declared activation (fields.block_settings): gelu, gelu_tanh or relu."""
    if name == "relu":
        return nn.ReLU()
    return nn.GELU(approximate="tanh" if name == "gelu_tanh" else "none")


def moe_outputs(stats: Sequence[MoEStats], weight: float, *, shared: bool = False
                ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
    """The auxiliary loss and extras of a forward pass's MoE applications.

    Each router's balancing loss gets ``weight``: summed over distinct layers,
    averaged over the repeated applications of one ``shared`` block.
    """
    if not stats:
        return None, {}
    balances = torch.stack([s.balance for s in stats])  # (L,)
    total = balances.mean() if shared else balances.sum()
    extras = {
        "expert_load": torch.stack([s.load for s in stats]),  # (L, E)
        "moe_dropped": torch.stack([s.dropped for s in stats]).mean(),
        "moe_balance_loss": balances.detach().mean(),
    }
    return (weight * total if weight > 0 else None), extras
