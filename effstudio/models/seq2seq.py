"""Encoder-decoder Transformer ("Attention Is All You Need") over the registered attention kinds.

The encoder is a stack of the Transformer's pre-LN blocks over the source
(bidirectional, padding masked). Each decoder block adds a cross-attention
sub-layer between its causal self-attention and its MLP: queries come from the
decoder, keys and values from the encoder's output, and the source padding is
masked. Source and target share one token embedding, which the output layer
reuses; each side has its own learned positions.

- training (``targets`` given): teacher forcing. The decoder reads the start
  token (the task's pad id, as in T5) followed by the target shifted right, and
  every position predicts the next target token in one pass.
- evaluation and prediction (no ``targets``): greedy decoding. The decoder
  starts from the start token alone and appends its own argmax, one position
  at a time, for the task's target length; it never sees the target. The
  logits returned are those of that decoded sequence.

The self-attention kind is any registered kind (``attention``); the
cross-attention kind must mix Nq queries with Nk != Nq keys by content alone
(``full``, ``sdpa``, or a plugin kind that sets ``supports_cross_attention``):
the sliding-window, block-sparse and hashing kinds assume queries and keys are
the same positions and are refused.

With ``need_weights`` the output carries the encoder's self-attention maps as
``attentions`` (aligned with the source tokens) and, in ``extras``,
``cross_attention`` (B, L, H, T, S) and ``decoder_attention`` (B, L, H, T, T)
of the probe, plus ``decoded`` (B, T), the token ids each decoder position
produced, so a view can label the rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from effstudio.attention.base import Attention, AttentionSpec
from effstudio.config import ConfigError, param, validate
from effstudio.models import fields
from effstudio.models.base import ModelOutput, ModelSpec, check_heads_divide_width
from effstudio.models.transformer import Block, _init_weights, build_attention
from effstudio.registry import Entry, get_registry
from effstudio.tasks.base import TaskSpec

CROSS_ATTENTION_KINDS = ("full", "sdpa")  # built-in kinds that mix by content alone


@dataclass(frozen=True)
class Seq2SeqConfig:
    task_form: ClassVar[str] = "seq2seq"  # build_task hands this model the task's source -> target form

    d_model: int = fields.width_param(64)
    layers: int = fields.layers_param(help="Blocks in the encoder, and again in the decoder")
    heads: int = fields.heads_param()
    ff_mult: int = fields.ff_mult_param()
    dropout: float = fields.dropout_param()
    attention: str = fields.attention_param("Self-attention of the encoder and the (causal) decoder; its settings are "
                                     "in the attention section")
    cross_attention: str = param("full", choices_from="attention", label="Cross-attention",
                                 help="Decoder-to-encoder attention: a kind that mixes by content (full, sdpa)")

    def check(self) -> None:
        check_heads_divide_width(self)

    def check_task(self, task: TaskSpec) -> None:
        """Refuse a task this model cannot take (ConfigError); engine/pairing.py asks it before a run starts."""
        if task.objective != "seq2seq":
            raise ConfigError("model", f"seq2seq maps a source sequence to a target sequence; task "
                                       f"{task.name!r} is posed as {task.objective!r} (use copy, e.g. mode=reverse)")


def _merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, n, d = x.shape  # (B, H, N, D)
    return x.transpose(1, 2).reshape(b, n, h * d)  # (B, N, H*D)


class DecoderBlock(Block):
    """Pre-LN decoder block: x + self(LN x) (causal), x + cross(LN x, memory), x + MLP(LN x).

    The self-attention and MLP parts are the Transformer block's own layers.
    """

    def __init__(self, config: Seq2SeqConfig, attention: Attention, cross: Attention):
        super().__init__(config, attention)
        d = config.d_model
        self.cross_norm = nn.LayerNorm(d)
        self.cross_q, self.cross_k, self.cross_v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.cross = cross
        self.cross_out = nn.Linear(d, d)

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None, need_weights: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        h = self.norm1(x)  # (B, T, d)
        q, v = self._split_heads(self.q(h)), self._split_heads(self.v(h))  # (B, H, T, D)
        k = q if self.k is None else self._split_heads(self.k(h))  # (B, H, T, D)
        mixed, self_weights = self.attention(q, k, v, key_mask=None, need_weights=need_weights)
        x = x + self.dropout(self.out(_merge_heads(mixed)))  # (B, T, d)

        h = self.cross_norm(x)
        q = self._split_heads(self.cross_q(h))  # (B, H, T, D)
        k, v = self._split_heads(self.cross_k(memory)), self._split_heads(self.cross_v(memory))  # (B, H, S, D)
        mixed, cross_weights = self.cross(q, k, v, key_mask=memory_mask, need_weights=need_weights)
        x = x + self.dropout(self.cross_out(_merge_heads(mixed)))  # (B, T, d)

        x = x + self.dropout(self.mlp(self.norm2(x)))
        return x, self_weights, cross_weights  # weights: (B, H, T, T), (B, H, T, S)


def _cross_attention(name: str, config: object, spec: AttentionSpec) -> Attention:
    entry = get_registry().get("attention", name)
    if name in CROSS_ATTENTION_KINDS:
        return build_attention(entry, config, spec)
    try:
        module: Attention | None = build_attention(entry, config, spec)
    except ConfigError:
        module = None  # its own settings do not fit this use either; say what does
    if module is None or module.shares_qk or not getattr(module, "supports_cross_attention", False):
        raise ConfigError(
            "model.cross_attention",
            f"{name} attention cannot attend from the decoder to the encoder: its pattern assumes queries "
            f"and keys are the same positions; use {' or '.join(CROSS_ATTENTION_KINDS)}",
        )
    return module


class Seq2SeqTransformer(nn.Module):
    def __init__(self, config: Seq2SeqConfig, spec: ModelSpec):
        super().__init__()
        validate(config)
        task = spec.task
        config.check_task(task)
        self.config = config
        self.source_length, self.target_length = task.source_length, task.max_length
        self.start_id = task.pad_id
        d = config.d_model

        self.embed = nn.Embedding(task.vocab_size, d)
        self.source_positions = nn.Embedding(task.source_length, d)
        self.target_positions = nn.Embedding(task.max_length, d)
        self.dropout = nn.Dropout(config.dropout)

        registry = get_registry()
        entry = registry.get("attention", config.attention)
        own_config = spec.attention_config if spec.attention_config is not None else entry.default_config()

        def attention(causal: bool, length: int) -> Attention:
            return build_attention(entry, own_config, AttentionSpec(d, config.heads, causal, length))

        cross_config = (own_config if config.cross_attention == config.attention
                        else registry.get("attention", config.cross_attention).default_config())
        cross_spec = AttentionSpec(d, config.heads, causal=False, max_length=max(task.source_length, task.max_length))
        self.encoder = nn.ModuleList(Block(config, attention(False, task.source_length))
                                     for _ in range(config.layers))
        self.decoder = nn.ModuleList(
            DecoderBlock(config, attention(True, task.max_length),
                         _cross_attention(config.cross_attention, cross_config, cross_spec))
            for _ in range(config.layers)
        )
        self.encoder_norm, self.decoder_norm = nn.LayerNorm(d), nn.LayerNorm(d)
        self.head = nn.Linear(d, task.vocab_size, bias=False)
        _init_weights(self)
        self.head.weight = self.embed.weight

    # ---------------------------------------------------------------- parts
    def encode(self, inputs: torch.Tensor, mask: torch.Tensor | None,
               maps: list[torch.Tensor] | None = None) -> torch.Tensor:
        """Source ids (B, S) -> memory (B, S, d)."""
        s = inputs.shape[1]
        if s > self.source_length:
            raise ValueError(f"source of {s} tokens is longer than the {self.source_length} positions "
                             "this model learned")
        x = self.dropout(self.embed(inputs) + self.source_positions(torch.arange(s, device=inputs.device)))
        for block in self.encoder:
            out = block(x, mask, maps is not None)
            x = out[0]
            if maps is not None:
                maps.append(out[1])  # (B, H, S, S)
        return self.encoder_norm(x)

    def decode(self, decoder_inputs: torch.Tensor, memory: torch.Tensor, mask: torch.Tensor | None,
               maps: tuple[list, list] | None = None) -> torch.Tensor:
        """Decoder ids (B, T) read against memory (B, S, d) -> logits (B, T, V)."""
        t = decoder_inputs.shape[1]
        positions = self.target_positions(torch.arange(t, device=decoder_inputs.device))  # (T, d)
        x = self.dropout(self.embed(decoder_inputs) + positions)  # (B, T, d)
        for block in self.decoder:
            x, self_weights, cross_weights = block(x, memory, mask, maps is not None)
            if maps is not None:
                maps[0].append(self_weights)  # (B, H, T, T)
                maps[1].append(cross_weights)  # (B, H, T, S)
        return self.head(self.decoder_norm(x))  # (B, T, V)

    def shift_right(self, targets: torch.Tensor) -> torch.Tensor:
        """Teacher-forcing decoder inputs: the start token, then the targets but the last one."""
        start = torch.full_like(targets[:, :1], self.start_id)  # (B, 1)
        previous = targets[:, :-1].clamp(min=0)  # IGNORE_INDEX (after <eos>) becomes pad; never scored
        previous = previous.masked_fill(targets[:, :-1] < 0, self.start_id)
        return torch.cat([start, previous], dim=1)  # (B, T)

    @torch.no_grad()
    def generate(self, inputs: torch.Tensor, mask: torch.Tensor | None = None,
                 length: int | None = None) -> torch.Tensor:
        """Greedy decoding from the source alone: (B, length) token ids, length = the target length."""
        memory = self.encode(inputs, mask)
        return self._greedy(memory, mask, length or self.target_length)

    def _greedy(self, memory: torch.Tensor, mask: torch.Tensor | None, length: int) -> torch.Tensor:
        b = memory.shape[0]
        decoder_inputs = torch.full((b, 1), self.start_id, dtype=torch.long, device=memory.device)
        produced = []
        for _ in range(length):
            logits = self.decode(decoder_inputs, memory, mask)  # (B, t, V)
            token = logits[:, -1].argmax(dim=-1, keepdim=True)  # (B, 1)
            produced.append(token)
            decoder_inputs = torch.cat([decoder_inputs, token], dim=1)
        return torch.cat(produced, dim=1)  # (B, length)

    # -------------------------------------------------------------- forward
    def forward(self, inputs: torch.Tensor, mask: torch.Tensor | None = None, need_weights: bool = False,
                targets: torch.Tensor | None = None) -> ModelOutput:
        """inputs (B, S) source ids, mask (B, S) True = real; targets (B, T) for teacher forcing.

        Returns logits (B, T, V): of the targets' next tokens (teacher forcing) or of the
        greedily decoded sequence (no targets).
        """
        encoder_maps: list[torch.Tensor] | None = [] if need_weights else None
        memory = self.encode(inputs, mask, encoder_maps)  # (B, S, d)
        if targets is not None:
            decoder_inputs = self.shift_right(targets)
        else:
            with torch.no_grad():
                decoded = self._greedy(memory, mask, self.target_length)  # (B, T)
            decoder_inputs = torch.cat([torch.full_like(decoded[:, :1], self.start_id), decoded[:, :-1]], dim=1)
        decoder_maps: tuple[list, list] | None = ([], []) if need_weights else None
        logits = self.decode(decoder_inputs, memory, mask, decoder_maps)
        extras: dict[str, torch.Tensor] = {}
        if decoder_maps is not None:
            extras["cross_attention"] = torch.stack(decoder_maps[1], dim=1).detach()  # (B, L, H, T, S)
            extras["decoder_attention"] = torch.stack(decoder_maps[0], dim=1).detach()  # (B, L, H, T, T)
            extras["decoded"] = logits.argmax(dim=-1).detach()  # (B, T)
        return ModelOutput(logits=logits, attentions=encoder_maps, extras=extras)


ENTRY = Entry(
    "seq2seq", "Encoder-decoder Transformer with cross-attention: teacher forcing, greedy decoding",
    Seq2SeqConfig, Seq2SeqTransformer,
)
