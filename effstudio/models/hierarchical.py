"""A hierarchical encoder for long documents (Hierarchical Attention Network style).

The document is read in two levels:

1. it is cut into segments: fixed spans of ``segment_length`` tokens, or
   (``split = "separator"``) sentences that end at the ``separator`` token, a
   sentence longer than ``segment_length`` going on in further segments;
2. a token-level encoder (pre-LN blocks over any attention kind) reads each
   segment alone, with positions inside the segment, and pools it into one
   vector by attention pooling: a learned query scores every real token
   (``w^T tanh(W x)``) and the softmax of the scores weights the tokens;
3. a segment-level encoder (pre-LN blocks with full attention, positions of the
   segments) lets the segment vectors attend to each other, and attention
   pooling again gives the document vector that the classifier reads.

Attention costs sum(L^2) over segments plus S^2 over the S segments, instead
of N^2. Padding never counts: padded tokens get no pooling weight, and a
segment with no real token gets no weight in the document (nor any attention
from the other segments). Token-level attention maps come back as (B, H, N, N)
tensors aligned with the input tokens (block diagonal: a token only sees its
own segment). While exporting to ONNX the segments are found with plain
tensor operations and every segment of the (B, S) grid is encoded, so the
graph follows the segment count of each input. Extras: "segment_attention" (B, S) the document pooling weights
of the segments, "token_segments" (B, N) the segment of each token (-1 for
padding), for the segment view.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from effstudio.attention.base import Attention, AttentionSpec, exporting
from effstudio.config import ConfigError, param, validate
from effstudio.models import fields
from effstudio.models.base import ModelOutput, ModelSpec, check_heads_divide_width
from effstudio.models.transformer import (
    INIT_STD,
    Block,
    _init_weights,
    build_attention,
    require_token_task,
)
from effstudio.registry import Entry, get_registry
from effstudio.tasks.base import TaskSpec


@dataclass(frozen=True)
class HierarchicalConfig:
    d_model: int = fields.width_param(help="Width of every token and segment vector")
    heads: int = fields.heads_param()
    token_layers: int = param(
        2, min=1, max=48, label="Token layers", help="Blocks that read each segment's tokens"
    )
    segment_layers: int = param(
        1, min=0, max=48, label="Segment layers", help="Blocks in which the segment vectors attend to each other"
    )
    segment_length: int = param(
        16, min=1, max=4096, label="Segment length",
        help="Tokens per segment (the longest sentence piece, when segments are sentences)",
    )
    split: str = param(
        "fixed", choices=("fixed", "separator"),
        help="fixed: consecutive spans of the segment length; separator: sentences ending at the separator token",
    )
    separator: str = param(
        ".", help="The token that ends a sentence when split = separator (a token string of the task's vocabulary)",
    )
    attention: str = fields.attention_param(
        "How tokens mix inside a segment; the kind's own settings are in the attention section"
    )
    ff_mult: int = fields.ff_mult_param()
    dropout: float = fields.dropout_param()

    def check(self) -> None:
        check_heads_divide_width(self)

    def check_task(self, task: TaskSpec) -> None:
        """Refuse a task this model cannot take (ConfigError); engine/pairing.py asks it before a run starts."""
        require_token_task(task, "classify", "the hierarchical encoder classifies documents; task {task!r} "
                                             "is a language-modelling task")


@dataclass
class Segments:
    """Where the tokens of a batch go in the (B, S, L) grid of segments.

    index: (B, S, L) token position filling each slot, -1 for an empty slot
    real: (B, S, L) the slot holds a real token; segment: (B, N) each token's segment, -1 for padding
    """

    index: torch.Tensor
    real: torch.Tensor
    segment: torch.Tensor

    @property
    def segment_real(self) -> torch.Tensor:
        return self.real.any(dim=-1)  # (B, S)


def split_segments(mask: torch.Tensor, length: int, separators: torch.Tensor | None = None) -> Segments:
    """Cut each row of ``mask`` (B, N) into segments of at most ``length`` real tokens.

    With ``separators`` (B, N) bool, a segment also ends after every separator token.
    Padding tokens are left out (right padding assumed nowhere: any position may be padding).
    """
    b, n = mask.shape
    device = mask.device
    ends = torch.zeros_like(mask) if separators is None else separators & mask
    # a sentence starts after each separator: number the sentences and count tokens within each
    sentence = torch.cumsum(ends.long(), dim=1) - ends.long()  # (B, N) sentence of each token
    order = torch.cumsum(mask.long(), dim=1) - 1  # (B, N) rank among the real tokens
    first = torch.zeros(b, n + 1, dtype=torch.long, device=device)  # rank of each sentence's first token
    sentence_start = first.scatter_reduce(1, sentence, order.masked_fill(~mask, n), "amin",
                                          include_self=False)[:, :n]
    in_sentence = order - sentence_start.gather(1, sentence)  # (B, N) position within the sentence
    starts = mask & (in_sentence % length == 0)  # a real token that opens a segment
    segment = (torch.cumsum(starts.long(), dim=1) - 1).masked_fill(~mask, -1)  # (B, N)
    position = (in_sentence % length).masked_fill(~mask, 0)
    count = max(int(segment.max()) + 1, 1)
    slot = (segment * length + position).masked_fill(~mask, count * length)  # padding: a spare slot
    index = torch.full((b, count * length + 1), -1, dtype=torch.long, device=device)
    tokens = torch.arange(n, device=device).expand(b, n)
    index = index.scatter(1, slot, tokens.masked_fill(~mask, -1))[:, :-1].reshape(b, count, length)
    return Segments(index=index, real=index >= 0, segment=segment)


def split_segments_traceable(mask: torch.Tensor, length: int, separators: torch.Tensor | None = None) -> Segments:
    """``split_segments`` in operations an ONNX graph keeps dynamic, for the export.

    The same segments, slots and count; but the sentence starts come from a plain scatter with distinct
    indices (the tracer cannot take scatter_reduce without its own values), and the segment count stays
    a tensor, so the (B, S, L) grid grows with the input instead of keeping the traced example's S.
    """
    b, n = mask.shape
    device = mask.device
    real = mask.long()  # (B, N)
    ends = torch.zeros_like(real) if separators is None else (separators & mask).long()
    sentence = torch.cumsum(ends, dim=1) - ends  # (B, N) sentence of each token
    order = torch.cumsum(real, dim=1) - 1  # (B, N) rank among the real tokens
    tokens = torch.arange(n, device=device).expand(b, n)  # (B, N)
    # the real tokens before sentence j are those up to its opening separator (a real token, of rank
    # order): each separator writes order + 1 at j = its sentence + 1; other tokens write to spare cells
    target = torch.where(ends.bool(), sentence + 1, tokens + n + 1)  # (B, N), distinct within a row
    before = torch.zeros_like(torch.cat([real, real, real[:, :1]], dim=1))  # (B, 2N + 1)
    before = before.scatter(1, target, order + 1)[:, : n + 1]  # (B, N + 1); sentence 0 starts at rank 0
    in_sentence = order - before.gather(1, sentence)  # (B, N) position within the sentence
    starts = mask & (in_sentence % length == 0)
    segment = (torch.cumsum(starts.long(), dim=1) - 1).masked_fill(~mask, -1)  # (B, N)
    position = (in_sentence % length).masked_fill(~mask, 0)
    count = (segment.max() + 1).clamp(min=1)  # () tensor: S
    # padding token i goes to spare cell i, a real token to N + its slot: distinct cells, no write order
    slot = torch.where(mask, n + segment * length + position, tokens)  # (B, N)
    grid = torch.full_like(torch.arange(n + count * length, device=device), -1).expand(b, -1)  # (B, N + S*L)
    index = grid.scatter(1, slot, tokens.masked_fill(~mask, -1))[:, n:].reshape(b, -1, length)  # (B, S, L)
    return Segments(index=index, real=index >= 0, segment=segment)


class AttentionPool(nn.Module):
    """A learned query weighs the real positions: softmax(w^T tanh(W x)) (Yang et al. 2016)."""

    def __init__(self, d: int):
        super().__init__()
        self.proj = nn.Linear(d, d)
        self.query = nn.Parameter(INIT_STD * torch.randn(d))

    def forward(self, x: torch.Tensor, real: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (..., L, d), real (..., L) -> pooled (..., d) and weights (..., L); no real position: zeros."""
        scores = torch.tanh(self.proj(x)) @ self.query.to(x.dtype) / math.sqrt(x.shape[-1])  # (..., L)
        scores = scores.float().masked_fill(~real, float("-inf"))
        weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # an empty row: all -inf -> zeros
        pooled = (weights.to(x.dtype).unsqueeze(-1) * x).sum(dim=-2)  # (..., d)
        return pooled, weights


class HierarchicalEncoder(nn.Module):
    """Segments -> token blocks -> attention pooling -> segment blocks -> attention pooling -> classes."""

    objective = "classify"

    def __init__(self, config: HierarchicalConfig, spec: ModelSpec):
        super().__init__()
        validate(config)
        task = spec.task
        config.check_task(task)
        self.config = config
        self.separator_id: int | None = None
        if config.split == "separator":
            if config.separator not in task.vocab:
                raise ConfigError("separator", f"task {task.name!r} has no token {config.separator!r} to end "
                                               "sentences at; pick one of its tokens or split = fixed")
            self.separator_id = task.vocab.index(config.separator)
        d = config.d_model
        self.embed = nn.Embedding(task.vocab_size, d)
        self.token_positions = nn.Embedding(config.segment_length, d)
        self.segment_positions = nn.Embedding(max(task.max_length, 1), d)  # at most one segment per token
        self.dropout = nn.Dropout(config.dropout)

        entry = get_registry().get("attention", config.attention)
        attention_config = spec.attention_config if spec.attention_config is not None else entry.default_config()
        token_spec = AttentionSpec(dim=d, heads=config.heads, causal=False, max_length=config.segment_length)
        self.token_blocks = self._blocks(config.token_layers, lambda: build_attention(entry, attention_config,
                                                                                       token_spec))
        full = get_registry().get("attention", "full")
        segment_spec = AttentionSpec(dim=d, heads=config.heads, causal=False, max_length=max(task.max_length, 1))
        self.segment_blocks = self._blocks(config.segment_layers,
                                           lambda: build_attention(full, full.default_config(), segment_spec))
        self.token_norm = nn.LayerNorm(d)
        self.token_pool = AttentionPool(d)
        self.segment_norm = nn.LayerNorm(d)
        self.segment_pool = AttentionPool(d)
        self.head = nn.Linear(d, task.num_classes)
        _init_weights(self)

    def _blocks(self, count: int, attention: Callable[[], Attention]) -> nn.ModuleList:
        return nn.ModuleList(Block(self.config, attention()) for _ in range(count))

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor | None = None,
                need_weights: bool = False) -> ModelOutput:
        """inputs (B, N) token ids; mask (B, N) True = real token, None = all real."""
        b, n = inputs.shape
        mask = torch.ones_like(inputs, dtype=torch.bool) if mask is None else mask
        separators = None if self.separator_id is None else inputs == self.separator_id
        if exporting():
            return self._export_forward(inputs, mask, separators)
        seg = split_segments(mask, self.config.segment_length, separators)
        s, length = seg.index.shape[1], seg.index.shape[2]
        if s > self.segment_positions.num_embeddings:
            raise ValueError(f"{s} segments; this model has positions for {self.segment_positions.num_embeddings}")
        d = self.config.d_model

        # token level: only the segments that hold a real token are encoded
        filled = seg.segment_real.flatten()  # (B * S,)
        rows = seg.index.reshape(b * s, length)[filled]  # (R, L) token positions
        row_real = seg.real.reshape(b * s, length)[filled]  # (R, L)
        batch_of_row = torch.arange(b, device=inputs.device).repeat_interleave(s)[filled]  # (R,)
        ids = inputs[batch_of_row[:, None], rows.clamp(min=0)]  # (R, L)
        x = self.embed(ids) + self.token_positions.weight[:length]  # (R, L, d)
        x = self.dropout(x)
        token_maps: list[torch.Tensor] = []
        for block in self.token_blocks:
            x, weights, _ = block(x, row_real, need_weights)
            if need_weights:
                token_maps.append(weights)  # (R, H, L, L)
        pooled, _ = self.token_pool(self.token_norm(x), row_real)  # (R, d)
        vectors = pooled.new_zeros(b * s, d)
        vectors[filled] = pooled
        vectors = vectors.view(b, s, d)  # (B, S, d); empty segments stay 0

        # segment level
        real_segments = seg.segment_real  # (B, S)
        h = self.dropout(vectors + self.segment_positions.weight[:s])
        for block in self.segment_blocks:
            h, _, _ = block(h, real_segments, False)
        document, segment_weights = self.segment_pool(self.segment_norm(h), real_segments)  # (B, d), (B, S)
        logits = self.head(document)  # (B, C)

        maps = None
        if need_weights:
            maps = [self._token_map(w, seg, filled, n) for w in token_maps]
        extras = {"segment_attention": segment_weights.detach(), "token_segments": seg.segment}
        return ModelOutput(logits=logits, attentions=maps, extras=extras)

    def _export_forward(self, inputs: torch.Tensor, mask: torch.Tensor,
                        separators: torch.Tensor | None) -> ModelOutput:
        """The forward for the ONNX export: every (B, S) segment is encoded, empty ones then zeroed.

        Selecting the filled segments sizes a batch by the data, which a traced graph would freeze;
        segments are encoded independently, so encoding the empty ones too changes no other vector.
        """
        b = inputs.shape[0]
        seg = split_segments_traceable(mask, self.config.segment_length, separators)
        length, d = self.config.segment_length, self.config.d_model
        s = seg.index.shape[1]
        ids = inputs.gather(1, seg.index.clamp(min=0).reshape(b, -1)).reshape(-1, length)  # (B*S, L)
        row_real = seg.real.reshape(-1, length)  # (B*S, L)
        # an empty segment's row gets its first slot as a key, so no row of the encoder is all masked
        keys = torch.cat([torch.ones_like(row_real[:, :1]), row_real[:, 1:]], dim=1)  # (B*S, L)
        x = self.dropout(self.embed(ids) + self.token_positions.weight[:length])  # (B*S, L, d)
        for block in self.token_blocks:
            x, _, _ = block(x, keys, False)
        pooled, _ = self.token_pool(self.token_norm(x), row_real)  # (B*S, d)
        real_segments = seg.segment_real  # (B, S)
        vectors = torch.where(real_segments.reshape(-1, 1), pooled, torch.zeros_like(pooled)).reshape(b, -1, d)
        h = self.dropout(vectors + self.segment_positions(torch.arange(s, device=inputs.device)))  # (B, S, d)
        for block in self.segment_blocks:
            h, _, _ = block(h, real_segments, False)
        document, segment_weights = self.segment_pool(self.segment_norm(h), real_segments)  # (B, d), (B, S)
        extras = {"segment_attention": segment_weights, "token_segments": seg.segment}
        return ModelOutput(logits=self.head(document), extras=extras)

    def _token_map(self, weights: torch.Tensor, seg: Segments, filled: torch.Tensor, n: int) -> torch.Tensor:
        """Per-segment maps (R, H, L, L) -> block-diagonal (B, H, N, N) maps over the input tokens."""
        b, s, length = seg.index.shape
        heads = weights.shape[1]
        full = weights.new_zeros(b * s, heads, length, length)
        full[filled] = weights
        full = full.view(b, s, heads, length, length).permute(0, 2, 1, 3, 4)  # (B, H, S, L, L)
        index = seg.index  # (B, S, L)
        pairs = index[..., :, None] * n + index[..., None, :]  # (B, S, L, L) flat (query, key) cell
        valid = (index[..., :, None] >= 0) & (index[..., None, :] >= 0)
        pairs = pairs.masked_fill(~valid, 0).view(b, 1, -1).expand(b, heads, -1)  # (B, H, S*L*L)
        values = (full * valid[:, None].to(full.dtype)).reshape(b, heads, -1)
        out = weights.new_zeros(b, heads, n * n).scatter_add(2, pairs, values)
        return out.view(b, heads, n, n)


ENTRY = Entry(
    "hierarchical", "Hierarchical encoder: tokens pooled per segment, segments pooled per document (HAN style)",
    HierarchicalConfig, HierarchicalEncoder,
)
