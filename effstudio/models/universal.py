"""Universal Transformer with Adaptive Computation Time (Dehghani et al. 2019; Graves 2016).

One block, shared by every step, is applied to the sequence again and again;
each position decides for itself when to stop:

- before every step the position and the step's own (timestep) embeddings are
  added to the state, so the shared block knows where and when it is;
- after the step a halting unit reads each position's new state and gives a
  probability ``p = sigmoid(W LayerNorm(h) + b)`` (b starts at 1, so a fresh
  model takes about two steps);
- a position halts at the first step n where its accumulated probability
  reaches ``1 - halt_epsilon``, or at ``max_steps``. Its output is the
  weighted mean of its states, with weights p_1 .. p_{n-1} and the remainder
  ``R = 1 - (p_1 + ... + p_{n-1})`` for the last one, so the weights sum to 1;
- a halted position's state is copied forward unchanged: the others still
  attend to it, but it is no longer updated. The loop ends when every real
  position has halted (checking costs one device sync per step); an ONNX
  export runs all ``max_steps`` steps instead, which gives the same output;
- the ponder cost, the mean over real tokens of N + R (N: steps used), is
  added to the loss weighted by ``ponder_weight`` (tau); only R carries a
  gradient, and it pushes the halting probabilities up, towards fewer steps.

Attention maps come one per step (the "layer" selector of the attention view
picks the step); rows of positions that had halted before that step are 0.
With ``ffn = "moe"`` the shared block's feed-forward is a mixture of experts
that routes only the positions still running. Extras: "ponder_steps" (B, N)
steps used per token, "ponder_mean" the mean ponder time N + R over real tokens
(the cost that tau weighs), and the MoE ones with one expert_load row per step.

With ``halting = "off"`` the shared block is applied exactly ``max_steps`` times to
every position, positions are added once to the embeddings and there are no step
embeddings and no halting unit: ALBERT's cross-layer parameter sharing, which a
Hugging Face ALBERT import maps onto (with its post-LN block and factorised embeddings).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from effstudio.attention.base import Attention, exporting
from effstudio.config import ConfigError, param
from effstudio.models import fields
from effstudio.models.base import ModelOutput, ModelSpec, check_heads_divide_width
from effstudio.models.moe import MoEStats, moe_outputs
from effstudio.models.transformer import INIT_STD, Block, Transformer, sinusoidal_positions
from effstudio.registry import Entry

HALT_BIAS = 1.0


@dataclass(frozen=True)
@fields.with_token_fields
@fields.with_moe_fields
class UniversalConfig:
    d_model: int = fields.width_param()
    max_steps: int = param(
        6, min=1, max=64, label="Maximum steps",
        help="The most times the shared block is applied to a position (adaptive computation stops earlier)",
    )
    ponder_weight: float = param(
        0.01, min=0.0, max=10.0, label="Ponder cost (\u03c4)",
        help="Weight of the ponder cost (mean steps + remainder) in the loss: higher means fewer steps",
    )
    heads: int = fields.heads_param("Attention heads of the shared block; must divide the model width")
    ff_mult: int = fields.ff_mult_param()
    halting: str = param(
        "act", choices=("act", "off"), label="Halting",
        help="act: each position stops by adaptive computation time; off: every position takes max_steps "
             "steps, positions added once, no step embeddings (ALBERT)", advanced=True,
    )
    halt_epsilon: float = param(
        0.01, min=1e-4, max=0.5, label="Halting \u03b5",
        help="A position halts once its accumulated halting probability reaches 1 - \u03b5", advanced=True,
    )
    dropout: float = fields.dropout_param()
    positions: str = fields.positions_param(
        "Position and step embeddings, added before every step: a trained table or fixed sine/cosine waves"
    )
    mode: str = fields.mode_param()
    pooling: str = fields.pooling_param()
    attention: str = fields.attention_param(
        "How tokens mix in the shared block; the kind's own settings are in the attention section"
    )
    tie_embeddings: bool = fields.tie_embeddings_param()

    def check(self) -> None:
        check_heads_divide_width(self)
        fields.check_moe_fields(self)
        if self.halting == "act":
            for name in ("embed_dim", "token_types", "position_offset"):
                if getattr(self, name):
                    raise ConfigError(name, "adaptive computation adds positions at every step to the plain "
                                            "token embedding; this embedding setting needs halting = off")


@dataclass
class PonderResult:
    """What the adaptive loop computed for (B, N') positions (summary token included).

    output: (B, N', d) halting-weighted mean of the states (the input itself at padding)
    state: (B, N', d) each position's last state (frozen from the step it halted)
    steps: (B, N') steps used, N (0 at padding); remainders: (B, N') R, with gradient
    weights: (S, B, N') weight of each step's state in the output (0 once halted)
    maps: one (B, H, N', N') attention map per step, or None
    """

    output: torch.Tensor
    state: torch.Tensor
    steps: torch.Tensor
    remainders: torch.Tensor
    weights: torch.Tensor
    maps: list[torch.Tensor] | None
    moe: list[MoEStats]


class UniversalTransformer(Transformer):
    """The Transformer's embeddings and heads around one block applied with ACT."""

    def __init__(self, config: UniversalConfig, spec: ModelSpec):
        super().__init__(config, spec)
        self.shares_blocks = True
        d = config.d_model
        if config.halting == "off":
            return
        self.steps_table = nn.Embedding(config.max_steps, d) if config.positions == "learned" else None
        if self.steps_table is not None:
            nn.init.normal_(self.steps_table.weight, std=INIT_STD)
        self.halt_norm = nn.LayerNorm(d)
        self.halt = nn.Linear(d, 1)
        nn.init.normal_(self.halt.weight, std=INIT_STD)
        nn.init.constant_(self.halt.bias, HALT_BIAS)

    def _make_blocks(self, config: UniversalConfig, attention: Callable[[], Attention]) -> nn.ModuleList:
        return nn.ModuleList([Block(config, attention())])

    @property
    def block(self) -> Block:
        return self.blocks[0]

    def hidden_states(self, inputs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The final states of the tokens (B, N, d), summary token left out."""
        if self.config.halting == "off":
            return super().hidden_states(inputs, mask)
        x, full_mask = self._add_cls(self.embed(inputs), mask)  # (B, N', d)
        output = self.ponder(x, full_mask, inputs.shape[1]).output
        output = output if self.norm is None else self.norm(output)
        if self.cls is None:
            return output
        return output[:, :-1] if self.causal else output[:, 1:]

    def _applied_blocks(self) -> list[nn.Module]:
        """Halting off: the shared block, max_steps times (with ACT the forward runs :meth:`ponder`)."""
        return [self.block] * self.config.max_steps

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor | None = None,
                need_weights: bool = False) -> ModelOutput:
        """inputs (B, N) token ids; mask (B, N) True = real token, None = all real."""
        if self.config.halting == "off":
            return super().forward(inputs, mask, need_weights)
        n = inputs.shape[1]
        self._check_length(n)
        x, mask = self._add_cls(self.embed(inputs), mask)  # (B, N', d), (B, N')
        result = self.ponder(self.dropout(x), mask, n, need_weights)
        output = result.output if self.norm is None else self.norm(result.output)
        logits = self._head(output, mask)

        real = self._real(mask, result.steps)  # (B, N')
        count = real.sum().clamp(min=1.0)
        cost = ((result.steps + result.remainders) * real).sum() / count  # mean N + R
        aux_loss, extras = moe_outputs(result.moe, self.config.balance_weight, shared=True)
        if self.config.ponder_weight > 0:
            ponder = self.config.ponder_weight * cost
            aux_loss = ponder if aux_loss is None else aux_loss + ponder
        extras["ponder_steps"] = self._token_columns(result.steps.detach())  # (B, N)
        extras["ponder_mean"] = cost.detach()
        maps = None if result.maps is None else [self._token_part(m) for m in result.maps]
        return ModelOutput(logits=logits, attentions=maps, aux_loss=aux_loss, extras=extras)

    def ponder(self, x: torch.Tensor, mask: torch.Tensor | None, n_tokens: int,
               need_weights: bool = False) -> PonderResult:
        """The adaptive loop over x (B, N', d), of which the first or last n_tokens are the tokens."""
        b, n, _ = x.shape
        threshold = 1.0 - self.config.halt_epsilon
        real = torch.ones(b, n, dtype=torch.bool, device=x.device) if mask is None else mask  # (B, N')
        positions = self._step_positions(n_tokens, n, x.device)  # (N', d)
        halting = x.new_zeros(b, n, dtype=torch.float32)  # sum of the p of the steps before
        remainders = x.new_zeros(b, n, dtype=torch.float32)
        steps = x.new_zeros(b, n, dtype=torch.float32)
        output = torch.zeros_like(x, dtype=torch.float32)
        running = real.clone()  # (B, N')
        state = x
        weights: list[torch.Tensor] = []
        maps: list[torch.Tensor] | None = [] if need_weights else None
        moe: list[MoEStats] = []
        # A traced graph cannot stop when every position has halted (it would freeze the example's step
        # count), so while exporting all max_steps steps run. That computes the same output: once no
        # position runs, a step gives every position weight 0, adds 0 to the output and keeps every state.
        early_exit = not exporting()
        for step in range(self.config.max_steps):
            h = state + positions + self._step_vector(step, x.device)  # (B, N', d)
            new, attn, stats = self.block(h, mask, need_weights, route_mask=running)
            if stats is not None:
                moe.append(stats)
            p = self._halting_probability(new)  # (B, N') float32
            # the last step halts every running position (a Python branch: the tracer takes no tensor | bool)
            halts = running if step == self.config.max_steps - 1 else running & (halting + p >= threshold)
            goes_on = running & ~halts
            weight = torch.where(halts, 1.0 - halting, torch.where(goes_on, p, torch.zeros_like(p)))
            remainders = torch.where(halts, 1.0 - halting, remainders)
            halting = halting + torch.where(goes_on, p, torch.zeros_like(p))
            steps = steps + running.float()
            output = output + weight.unsqueeze(-1) * new.float()
            state = torch.where(running.unsqueeze(-1), new, state)  # halted positions are copied forward
            weights.append(weight)
            if maps is not None:
                maps.append(attn * running[:, None, :, None].to(attn.dtype))  # (B, H, N', N')
            running = goes_on
            if early_exit and not bool(running.any()):
                break
        output = torch.where(real.unsqueeze(-1), output, x.float()).to(x.dtype)
        return PonderResult(output, state, steps, remainders, torch.stack(weights), maps, moe)

    def _halting_probability(self, state: torch.Tensor) -> torch.Tensor:
        """(B, N') float32 p of halting after this step, from state (B, N', d).

        Computed in float32 whatever the weights are stored in (autocast, or a half-precision
        checkpoint): p accumulates towards 1 - epsilon, and low-precision sums would flip halts.
        """
        norm, halt = self.halt_norm, self.halt
        with torch.autocast(device_type=state.device.type, enabled=False):
            normed = F.layer_norm(state.float(), norm.normalized_shape, norm.weight.float(), norm.bias.float(),
                                  norm.eps)
            return torch.sigmoid(F.linear(normed, halt.weight.float(), halt.bias.float())).squeeze(-1)

    def _step_positions(self, n_tokens: int, n: int, device: torch.device) -> torch.Tensor:
        """Position vectors for the N' positions; the summary token has none."""
        table = self._position_vectors(n_tokens, device)  # (N, d)
        if n == n_tokens:
            return table
        zero = table.new_zeros(n - n_tokens, table.shape[1])
        return torch.cat([table, zero] if self.causal else [zero, table])  # (N', d)

    def _step_vector(self, step: int, device: torch.device) -> torch.Tensor:
        if self.steps_table is not None:
            return self.steps_table.weight[step]  # (d,)
        table = sinusoidal_positions(self.config.max_steps, self.config.d_model, device)
        return INIT_STD * table[step]  # (d,)

    def _real(self, mask: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(like) if mask is None else mask.to(like.dtype)

    def _token_columns(self, values: torch.Tensor) -> torch.Tensor:
        """(B, N') -> (B, N): drop the summary token's column."""
        if self.cls is None:
            return values
        return values[:, :-1] if self.causal else values[:, 1:]


ENTRY = Entry(
    "universal", "Universal Transformer: one shared block repeated, with per-token adaptive computation time",
    UniversalConfig, UniversalTransformer,
)
