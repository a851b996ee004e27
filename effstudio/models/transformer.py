"""A Transformer (pre-LN by default) over any registered attention kind.

One model for both objectives: an encoder with a pooled classification head for
"classify" tasks, a causal decoder with a (tied) LM head for "lm" tasks. Blocks
own the q/k/v/out projections; the attention kind only mixes values, so swapping
kinds changes nothing else. The feed-forward part of a block is a dense MLP or a
mixture of experts (``ffn = "moe"``, see moe.py).

Other model types reuse the embedding, summary-token and head code by
subclassing :class:`Transformer` and overriding ``_make_blocks`` and
``forward`` (the Universal Transformer applies one shared block repeatedly).

What a pretrained model needs to run exactly here (a Hugging Face import, see
effstudio.pretrained) is declared as ordinary fields whose defaults keep the
design above (fields.with_token_fields): post-LN blocks with a LayerNorm on the
embeddings instead of a final one, the activation and LayerNorm epsilon, the
embedding's own row count and width (factorised embeddings projected to the
model width), token-type and offset positions, the first or last token as the
pooled vector with a dense pooler before the head, and a pretrained token head
kept beside the task's (``token_logits``).
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
from effstudio.models.moe import MoEStats, activation_module, make_feed_forward, moe_outputs
from effstudio.registry import Entry, get_registry
from effstudio.tasks.base import TaskSpec

INIT_STD = 0.02


@dataclass(frozen=True)
@fields.with_token_fields
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
    """Pre-LN block: x + attention(LN(x)), then x + MLP(LN(x)); post-LN (``norm_position = "post"``,
    BERT's): LN(x + attention(x)), then LN(x + MLP(x)).

    With ``ffn = "moe"`` the MLP is a mixture of experts; the block then also
    returns the routing statistics (else None) and routes only the tokens of
    ``route_mask`` (default: the real tokens), the others skip the MLP.
    """

    def __init__(self, config: TransformerConfig, attention: Attention):
        super().__init__()
        d = config.d_model
        settings = fields.block_settings(config)
        self.heads = config.heads
        self.post_norm = settings.norm_position == "post"
        self.norm1 = nn.LayerNorm(d, eps=settings.norm_eps)
        self.q, self.v = nn.Linear(d, d), nn.Linear(d, d)
        # a kind with a shared query/key space (Reformer) reads its keys from the queries
        self.k = None if attention.shares_qk else nn.Linear(d, d)
        self.attention = attention
        self.out = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d, eps=settings.norm_eps)
        self.mlp = make_feed_forward(config)
        self.dropout = nn.Dropout(config.dropout)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, -1).transpose(1, 2)  # (B, H, N, D)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None, need_weights: bool,
        route_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, MoEStats | None]:
        h = x if self.post_norm else self.norm1(x)  # (B, N, d)
        q, v = self._split_heads(self.q(h)), self._split_heads(self.v(h))  # (B, H, N, D)
        k = q if self.k is None else self._split_heads(self.k(h))  # (B, H, N, D)
        mixed, weights = self.attention(q, k, v, key_mask=mask, need_weights=need_weights)
        b, _, n, _ = mixed.shape
        mixed = mixed.transpose(1, 2).reshape(b, n, -1)  # (B, N, d)
        x = x + self.dropout(self.out(mixed))
        if self.post_norm:
            x = self.norm1(x)
        h = x if self.post_norm else self.norm2(x)
        stats = None
        if isinstance(self.mlp, nn.Sequential):
            fed = self.mlp(h)
        else:
            fed, stats = self.mlp(h, mask if route_mask is None else route_mask)
        x = x + self.dropout(fed)
        return (self.norm2(x) if self.post_norm else x), weights, stats


class Transformer(nn.Module):
    """Token embedding + positions -> pre-LN blocks -> final LayerNorm -> task head
    (post-LN: embeddings -> LayerNorm -> post-LN blocks -> task head).

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
        require_token_task(task)
        self.config = config
        self.objective = task.objective
        self.causal = resolve_causal(config, task)
        self.max_length = task.max_length
        d = config.d_model
        e = config.embed_dim or d  # factorised embeddings are projected to the model width
        self.position_offset = config.position_offset
        eps = config.norm_eps
        post_norm = config.norm_position == "post"

        self.embed = nn.Embedding(_embedding_rows(config, task), e)
        rows = task.max_length + config.position_offset
        self.positions = nn.Embedding(rows, e) if config.positions == "learned" else None
        self.token_type = nn.Embedding(config.token_types, e) if config.token_types else None
        self.embed_norm = nn.LayerNorm(e, eps=eps) if post_norm else None
        self.embed_project = nn.Linear(e, d) if e != d else None
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
        self.norm = None if post_norm else nn.LayerNorm(d, eps=eps)

        classify = task.objective == "classify"
        self.pooler = None
        if classify and config.pooler != "none":
            self.pooler = nn.Sequential(nn.Linear(d, d), _POOLER_ACTIVATIONS[config.pooler]())
        if classify:
            self.head = nn.Linear(d, task.num_classes)
        else:
            self.head = nn.Linear(d, self.embed.num_embeddings, bias=False)
        self.token_head = MaskedLMHead(d, e, self.embed.num_embeddings, config.activation, eps) \
            if config.token_head == "masked" else None
        _init_weights(self)
        if task.objective == "lm" and config.tie_embeddings:
            if e != d:
                raise ConfigError("embed_dim", f"a language model's output layer reuses the token embedding, so "
                                               f"it needs the model width {d}, not {e}; turn tie_embeddings off")
            self.head.weight = self.embed.weight
        if self.token_head is not None:
            self.token_head.decoder.weight = self.embed.weight
        if config.token_head == "tied" and e != d:
            raise ConfigError("token_head", f"a tied token head needs embeddings of the model width {d}, not {e}")

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor | None = None,
                need_weights: bool = False) -> ModelOutput:
        """inputs (B, N) token ids; mask (B, N) True = real token, None = all real."""
        x, mask, maps, moe = self._encode(inputs, mask, need_weights)
        aux_loss, extras = moe_outputs(moe, getattr(self.config, "balance_weight", 0.0), shared=self.shares_blocks)
        return ModelOutput(logits=self._head(x, mask), attentions=maps, aux_loss=aux_loss, extras=extras)

    shares_blocks = False  # whether the blocks applied are one shared block repeated (moe_outputs averages)

    def _encode(self, inputs: torch.Tensor, mask: torch.Tensor | None, need_weights: bool
                ) -> tuple[torch.Tensor, torch.Tensor | None, list[torch.Tensor] | None, list[MoEStats]]:
        """(final states (B, N', d), mask (B, N'), attention maps or None, MoE statistics)."""
        x = self._embed_tokens(inputs)  # (B, N, d)
        x, mask = self._add_cls(x, mask)  # (B, N', d), (B, N')
        x = self.dropout(x)

        maps: list[torch.Tensor] | None = [] if need_weights else None
        moe: list[MoEStats] = []
        for block in self._applied_blocks():
            x, weights, stats = block(x, mask, need_weights)
            if maps is not None:
                maps.append(self._token_part(weights))  # (B, H, N, N)
            if stats is not None:
                moe.append(stats)
        if self.norm is not None:
            x = self.norm(x)
        return x, mask, maps, moe

    def _applied_blocks(self) -> list[nn.Module]:
        """The blocks in the order the forward pass applies them."""
        return list(self.blocks)

    def _embed_tokens(self, inputs: torch.Tensor) -> torch.Tensor:
        """Token ids (B, N) -> (B, N, d): token + position (+ type 0) vectors, normalised and projected
        when the model has an embedding LayerNorm and factorised embeddings."""
        n = inputs.shape[1]
        self._check_length(n)
        x = self.embed(inputs) + self._position_vectors(n, inputs.device)  # (B, N, e)
        if self.token_type is not None:
            x = x + self.token_type.weight[0]  # every token is of the first segment
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        if self.embed_project is not None:
            x = self.embed_project(x)  # (B, N, d)
        return x

    def hidden_states(self, inputs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The final states of the tokens (B, N, d), summary token left out."""
        x, _, _, _ = self._encode(inputs, mask, False)
        if self.cls is None:
            return x
        return x[:, :-1] if self.causal else x[:, 1:]

    def token_logits(self, inputs: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, N, V) logits of a token head: the language model's, or the pretrained one kept beside
        the task's head (``token_head``: masked, or tied to the embedding)."""
        if self.objective == "lm":
            return self.forward(inputs, mask).logits
        hidden = self.hidden_states(inputs, mask)  # (B, N, d)
        if self.token_head is not None:
            return self.token_head(hidden)
        if self.config.token_head == "tied":
            return hidden @ self.embed.weight.T
        raise ValueError("this model has no token head (its config's token_head is 'none')")

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
            start = self.position_offset
            return self.positions(torch.arange(start, start + n, device=device))  # (N, e)
        # token vectors start at std 0.02 while sinusoids have amplitude 1, so
        # shrink the waves to the embedding scale or they would drown the tokens
        return INIT_STD * sinusoidal_positions(n, self.embed.embedding_dim, device)  # (N, e)

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
        pooling = self.config.pooling
        if self.cls is not None:
            pooled = x[:, -1] if self.causal else x[:, 0]  # (B, d)
        elif pooling == "first":
            pooled = x[:, 0]  # (B, d)
        elif pooling == "last":
            pooled = x[:, -1] if mask is None else x[torch.arange(x.shape[0], device=x.device), _last_real(mask)]
        elif mask is None:
            pooled = x.mean(dim=1)  # (B, d)
        else:
            real = mask.unsqueeze(-1).to(x.dtype)  # (B, N, 1)
            pooled = (x * real).sum(dim=1) / real.sum(dim=1).clamp(min=1.0)  # (B, d)
        if self.pooler is not None:
            pooled = self.pooler(pooled)
        return self.head(pooled)  # (B, C)


def _last_real(mask: torch.Tensor) -> torch.Tensor:
    """(B,) index of each row's last real token in mask (B, N) (0 for a row without one)."""
    positions = torch.arange(mask.shape[1], device=mask.device)  # (N,)
    return (positions * mask.long()).argmax(dim=-1)


_POOLER_ACTIVATIONS = {"tanh": nn.Tanh, "gelu": nn.GELU, "relu": nn.ReLU}


def _embedding_rows(config: TransformerConfig, task: TaskSpec) -> int:
    """The token embedding's rows: the task's vocabulary, or the model's own size when it declares one."""
    if not config.vocab_size:
        return task.vocab_size
    if task.vocab_size > config.vocab_size:
        raise ConfigError("vocab_size", f"the task's tokenizer has {task.vocab_size} tokens, more than the "
                                        f"{config.vocab_size} rows of the model's token embedding")
    return config.vocab_size


class MaskedLMHead(nn.Module):
    """A masked language model's token head: dense -> activation -> LayerNorm -> decoder tied to the
    token embedding, plus a bias. (B, N, d) -> (B, N, V); the transform maps d to the embedding width e."""

    def __init__(self, d: int, e: int, vocab: int, activation: str, eps: float):
        super().__init__()
        self.dense = nn.Linear(d, e)
        self.activation = activation_module(activation)
        self.norm = nn.LayerNorm(e, eps=eps)
        self.decoder = nn.Linear(e, vocab)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.norm(self.activation(self.dense(hidden))))


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
