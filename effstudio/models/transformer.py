"""A pre-LN Transformer over any registered attention kind.

One model for both objectives: an encoder with a pooled classification head for
"classify" tasks, a causal decoder with a (tied) LM head for "lm" tasks. Blocks
own the q/k/v/out projections; the attention kind only mixes values, so swapping
kinds changes nothing else. The feed-forward part of a block is a dense MLP or a
mixture of experts (``ffn = "moe"``, see moe.py).

Other model types reuse the embedding, summary-token and head code by
subclassing :class:`Transformer` and overriding ``_make_blocks`` and
``forward`` (the Universal Transformer applies one shared block repeatedly).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from effstudio.attention.base import Attention, AttentionSpec
from effstudio.config import ConfigError, fields_of, validate
from effstudio.models import fields
from effstudio.models.base import ModelOutput, ModelSpec, check_heads_divide_width
from effstudio.models.moe import MoEStats, make_feed_forward, moe_outputs
from effstudio.registry import Entry, get_registry
from effstudio.tasks.base import TaskSpec

INIT_STD = 0.02


@dataclass(frozen=True)
@fields.with_moe_fields
class TransformerConfig:
    d_model: int = fields.width_param()
    layers: int = fields.layers_param()
    heads: int = fields.heads_param()
    ff_mult: int = fields.ff_mult_param()
    dropout: float = fields.dropout_param()
    positions: str = fields.positions_param()
    mode: str = fields.mode_param()
    pooling: str = fields.pooling_param()
    attention: str = fields.attention_param()
    tie_embeddings: bool = fields.tie_embeddings_param()

    def check(self) -> None:
        check_heads_divide_width(self)
        fields.check_moe_fields(self)

    def check_task(self, task: TaskSpec) -> None:
        """Refuse a task this model cannot take (ConfigError); engine/pairing.py asks it before a run starts."""
        require_token_task(task)
        resolve_causal(self, task)


def require_token_task(task: TaskSpec, objective: str | None = None, refusal: str = "") -> None:
    """Refuse the tasks a token classifier / language model cannot read; with ``objective``, also
    the tasks of another objective, saying ``refusal`` (which may name the task as {task!r})."""
    if task.is_image:
        raise ConfigError("model", f"this model reads token sequences; task {task.name!r} has images "
                                   "(use the vit model type)")
    if task.objective == "seq2seq":
        raise ConfigError("model", f"this model has no separate target sequence; task {task.name!r} is posed "
                                   "as source -> target (use the seq2seq model type)")
    if objective is not None and task.objective != objective:
        raise ConfigError("model", refusal.format(task=task.name))


def resolve_causal(config: TransformerConfig, task: TaskSpec) -> bool:
    """Whether the model runs as a causal decoder for this task."""
    if config.mode == "encoder" and task.objective == "lm":
        raise ConfigError(
            "mode",
            "an encoder sees future tokens, so it cannot learn to predict them; "
            "use mode 'decoder' or 'auto' for language-modelling tasks",
        )
    return config.mode == "decoder" or (config.mode == "auto" and task.objective == "lm")


def sinusoidal_positions(n: int, dim: int, device: torch.device) -> torch.Tensor:
    """The fixed sine/cosine position table of "Attention Is All You Need": (N, dim)."""
    pos = torch.arange(n, device=device, dtype=torch.float32)[:, None]  # (N, 1)
    freq = torch.exp(
        torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim)
    )  # (ceil(dim/2),)
    angles = pos * freq  # (N, ceil(dim/2))
    table = torch.zeros(n, dim, device=device)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles)[:, : dim // 2]  # odd widths have one cosine fewer
    return table


def build_attention(entry: Entry, config: object, spec: AttentionSpec) -> Attention:
    """The kind's module; its ConfigErrors name the section of the field they are about."""
    try:
        return entry.factory(config, spec)
    except ConfigError as err:
        if "." in err.field:
            raise
        own_fields = {f.name for f in fields_of(type(config))}
        section = "attention" if err.field in own_fields else "model"
        raise ConfigError(f"{section}.{err.field}", err.message) from None


class Block(nn.Module):
    """Pre-LN block: x + attention(LN(x)), then x + MLP(LN(x)).

    With ``ffn = "moe"`` the MLP is a mixture of experts; the block then also
    returns the routing statistics (else None) and routes only the tokens of
    ``route_mask`` (default: the real tokens), the others skip the MLP.
    """

    def __init__(self, config: TransformerConfig, attention: Attention):
        super().__init__()
        d = config.d_model
        self.heads = config.heads
        self.norm1 = nn.LayerNorm(d)
        self.q, self.v = nn.Linear(d, d), nn.Linear(d, d)
        # a kind with a shared query/key space (Reformer) reads its keys from the queries
        self.k = None if attention.shares_qk else nn.Linear(d, d)
        self.attention = attention
        self.out = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = make_feed_forward(config)
        self.dropout = nn.Dropout(config.dropout)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, -1).transpose(1, 2)  # (B, H, N, D)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, need_weights: bool,
        route_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, MoEStats | None]:
        h = self.norm1(x)  # (B, N, d)
        q, v = self._split_heads(self.q(h)), self._split_heads(self.v(h))  # (B, H, N, D)
        k = q if self.k is None else self._split_heads(self.k(h))  # (B, H, N, D)
        mixed, weights = self.attention(q, k, v, key_mask=mask, need_weights=need_weights)
        b, _, n, _ = mixed.shape
        mixed = mixed.transpose(1, 2).reshape(b, n, -1)  # (B, N, d)
        x = x + self.dropout(self.out(mixed))
        if isinstance(self.mlp, nn.Sequential):
            return x + self.dropout(self.mlp(self.norm2(x))), weights, None
        fed, stats = self.mlp(self.norm2(x), mask if route_mask is None else route_mask)
        return x + self.dropout(fed), weights, stats


class Transformer(nn.Module):
    """Token embedding + positions -> pre-LN blocks -> final LayerNorm -> task head.

    With cls pooling a learned summary token joins the sequence: first for an
    encoder, last for a causal decoder (the only position that sees every token).
    It has no position of its own, and it is cut from returned attention maps so
    they align with the input tokens; in encoder mode a map's rows then sum to
    less than 1 by the weight the tokens gave the summary token.
    """

    def __init__(self, config: TransformerConfig, spec: ModelSpec):
        super().__init__()
        validate(config)
        task = spec.task
        config.check_task(task)
        self.config = config
        self.objective = task.objective
        self.causal = resolve_causal(config, task)
        self.max_length = task.max_length
        d = config.d_model

        self.embed = nn.Embedding(task.vocab_size, d)
        self.positions = nn.Embedding(task.max_length, d) if config.positions == "learned" else None
        wants_cls = task.objective == "classify" and config.pooling == "cls"
        self.cls = nn.Parameter(INIT_STD * torch.randn(d)) if wants_cls else None
        self.dropout = nn.Dropout(config.dropout)

        entry = get_registry().get("attention", config.attention)
        attention_config = spec.attention_config
        if attention_config is None:
            attention_config = entry.default_config()
        attention_spec = AttentionSpec(
            dim=d, heads=config.heads, causal=self.causal,
            max_length=task.max_length + (1 if wants_cls else 0),
        )
        self.blocks = self._make_blocks(config, lambda: build_attention(entry, attention_config, attention_spec))
        self.norm = nn.LayerNorm(d)

        if task.objective == "classify":
            self.head = nn.Linear(d, task.num_classes)
        else:
            self.head = nn.Linear(d, task.vocab_size, bias=False)
        _init_weights(self)
        if task.objective == "lm" and config.tie_embeddings:
            self.head.weight = self.embed.weight

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor | None = None,
                need_weights: bool = False) -> ModelOutput:
        """inputs (B, N) token ids; mask (B, N) True = real token, None = all real."""
        n = inputs.shape[1]
        self._check_length(n)
        x = self.embed(inputs) + self._position_vectors(n, inputs.device)  # (B, N, d)
        x, mask = self._add_cls(x, mask)  # (B, N', d), (B, N')
        x = self.dropout(x)

        maps: list[torch.Tensor] | None = [] if need_weights else None
        moe: list[MoEStats] = []
        for block in self.blocks:
            x, weights, stats = block(x, mask, need_weights)
            if maps is not None:
                maps.append(self._token_part(weights))  # (B, H, N, N)
            if stats is not None:
                moe.append(stats)
        x = self.norm(x)
        aux_loss, extras = moe_outputs(moe, getattr(self.config, "balance_weight", 0.0))
        return ModelOutput(logits=self._head(x, mask), attentions=maps, aux_loss=aux_loss, extras=extras)

    def _make_blocks(self, config: TransformerConfig, attention: Callable[[], Attention]) -> nn.ModuleList:
        """The blocks; ``attention()`` builds one attention module of the configured kind."""
        return nn.ModuleList(Block(config, attention()) for _ in range(config.layers))

    def _check_length(self, n: int) -> None:
        if self.positions is not None and n > self.max_length:
            raise ValueError(
                f"sequence of {n} tokens is longer than the {self.max_length} positions this model learned"
            )

    def _position_vectors(self, n: int, device: torch.device) -> torch.Tensor:
        if self.positions is not None:
            return self.positions(torch.arange(n, device=device))  # (N, d)
        # token vectors start at std 0.02 while sinusoids have amplitude 1, so
        # shrink the waves to the embedding scale or they would drown the tokens
        return INIT_STD * sinusoidal_positions(n, self.config.d_model, device)  # (N, d)

    def _add_cls(
        self, x: torch.Tensor, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.cls is None:
            return x, mask
        b = x.shape[0]
        cls = self.cls.expand(b, 1, -1).to(x.dtype)  # (B, 1, d)
        real = None if mask is None else mask.new_ones(b, 1)  # (B, 1)
        if self.causal:
            x = torch.cat([x, cls], dim=1)
            mask = None if mask is None else torch.cat([mask, real], dim=1)
        else:
            x = torch.cat([cls, x], dim=1)
            mask = None if mask is None else torch.cat([real, mask], dim=1)
        return x, mask

    def _token_part(self, weights: torch.Tensor) -> torch.Tensor:
        """Cut the summary token's row and column so maps align with the inputs."""
        if self.cls is None:
            return weights
        if self.causal:
            return weights[:, :, :-1, :-1]
        return weights[:, :, 1:, 1:]

    def _head(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self.objective == "lm":
            return self.head(x)  # (B, N, V)
        if self.cls is not None:
            pooled = x[:, -1] if self.causal else x[:, 0]  # (B, d)
        elif mask is None:
            pooled = x.mean(dim=1)  # (B, d)
        else:
            real = mask.unsqueeze(-1).to(x.dtype)  # (B, N, 1)
            pooled = (x * real).sum(dim=1) / real.sum(dim=1).clamp(min=1.0)  # (B, d)
        return self.head(pooled)  # (B, C)


def _init_weights(module: nn.Module) -> None:
    """Normal(0, 0.02) weights and zero biases; attention kinds keep their own init."""
    if isinstance(module, Attention):
        return
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=INIT_STD)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    for child in module.children():
        _init_weights(child)


ENTRY = Entry(
    "transformer", "Pre-LN Transformer: encoder for classification, causal decoder for language modelling",
    TransformerConfig, Transformer,
)
