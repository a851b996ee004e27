"""Transformer-XL (Dai et al. 2019): segment-level recurrence with relative positions.

A long text is read segment by segment. Every layer keeps a memory of the
last ``mem_len`` hidden states it received (its inputs of the previous
segments) and attends over ``[memory; segment]``: the keys and values of the
memory come from the cache, the queries from the segment only. The memory is
detached, so no gradient flows into earlier segments, and it only grows the
context the model sees: its effective context reaches ``layers * mem_len``
tokens back. Evaluation may keep a longer memory (``eval_mem_len``) than
training, because nothing in the model depends on absolute positions.

Positions are relative. With query i, key j, their distance i - j and
``R`` a sinusoid of that distance, the score of key j for query i is::

    (W_q x_i)^T W_k x_j        content
  + (W_q x_i)^T W_r R_{i-j}    content-dependent position
  + u^T W_k x_j                global content bias
  + v^T W_r R_{i-j}            global position bias

computed as ``(q + u) k^T + (q + v) (W_r R)^T``. The second product is formed
once per distance (one row per distance, not one per query-key pair) and put in
place by the relative shift: pad a zero column, reshape, drop a row.

The model is a causal language model (objective "lm"). The engine passes the
memory back in (``memory=``, ``recurrent = True``) when the task's rows are
consecutive segments of one text (charlm); on any other task every segment is
read alone. Extras (a forward that has memory, with ``compare_memory`` on):
"loss_memory" and "loss_no_memory", the next-character loss inside the segment
with the memory and without it (a second, gradient-free pass over the same
segment); for the attention probe, "memory_loss" (2, N - 1): the same per
position, which shows where memory helps (the first positions of a segment,
whose only context without memory is the few tokens before them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from effstudio.attention.full import allowed_keys, masked_softmax
from effstudio.config import param, validate
from effstudio.models import fields
from effstudio.models.base import ModelOutput, ModelSpec, check_heads_divide_width
from effstudio.models.transformer import _init_weights, require_token_task, sinusoidal_positions
from effstudio.registry import Entry
from effstudio.tasks.base import IGNORE_INDEX, TaskSpec

Memory = list[torch.Tensor]  # one (B, M, d) tensor per layer


@dataclass(frozen=True)
class TransformerXLConfig:
    d_model: int = fields.width_param()
    layers: int = fields.layers_param(help="Number of Transformer-XL blocks")
    heads: int = fields.heads_param()
    mem_len: int = param(64, min=0, max=8192, label="Memory length",
                         help="Hidden states of earlier segments each layer keeps and attends to in training "
                              "(0 = no memory)")
    eval_mem_len: int = param(128, min=0, max=65536, label="Evaluation memory",
                              help="Memory length in evaluation; may be longer than in training, as positions "
                                   "are relative")
    compare_memory: bool = param(
        True, label="Compare without memory",
        help="Also run each segment without memory (no gradient) and report both losses",
    )
    ff_mult: int = fields.ff_mult_param()
    dropout: float = fields.dropout_param()
    tie_embeddings: bool = fields.tie_embeddings_param("The output layer reuses the token embedding matrix")

    def check(self) -> None:
        check_heads_divide_width(self)

    def check_task(self, task: TaskSpec) -> None:
        """Refuse a task this model cannot take (ConfigError); engine/pairing.py asks it before a run starts."""
        require_token_task(task, "lm", "Transformer-XL is a causal language model; task {task!r} "
                                       "is a classification task")


def relative_shift(x: torch.Tensor) -> torch.Tensor:
    """Scores by distance -> scores by key.

    x (B, H, N, K): column c holds the score for distance K - 1 - c (the last N
    queries of K positions). Returns (B, H, N, K) with entry (i, j) = x[i, j + N - 1 - i],
    the score of query i for key j at distance (K - N + i) - j; entries of future
    keys (j > K - N + i) are left-over values that the causal mask removes.
    """
    b, h, n, k = x.shape
    padded = F.pad(x, (1, 0))  # (B, H, N, K + 1)
    return padded.view(b, h, k + 1, n)[:, :, 1:].reshape(b, h, n, k)  # (B, H, N, K)


class RelativeAttention(nn.Module):
    """Multi-head attention over [memory; segment] with relative positions and the u, v biases."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, d // heads
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.r = nn.Linear(d, d, bias=False)  # W_r: projects the sinusoid of a distance
        self.out = nn.Linear(d, d)
        self.u = nn.Parameter(torch.zeros(heads, self.head_dim))  # global content bias
        self.v = nn.Parameter(torch.zeros(heads, self.head_dim))  # global position bias

    def forward(self, h: torch.Tensor, context: torch.Tensor, distances: torch.Tensor,
                allowed: torch.Tensor, need_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """h (B, N, d) the segment, context (B, K, d) memory and segment (both normalised),
        distances (K, d) sinusoids of distances K-1 .. 0, allowed (B, 1, N, K)."""
        b, n, d = h.shape
        k_len = context.shape[1]
        q = self.q(h).view(b, n, self.heads, -1).transpose(1, 2)  # (B, H, N, D)
        k, v = self.kv(context).view(b, k_len, 2, self.heads, -1).permute(2, 0, 3, 1, 4)  # (B, H, K, D) each
        r = self.r(distances).view(k_len, self.heads, -1).transpose(0, 1)  # (H, K, D)
        content = (q + self.u[:, None]) @ k.transpose(-1, -2)  # (B, H, N, K)
        position = relative_shift((q + self.v[:, None]) @ r.transpose(-1, -2))  # (B, H, N, K)
        scores = (content + position) / math.sqrt(self.head_dim)
        weights = masked_softmax(scores.float(), allowed).to(v.dtype)  # (B, H, N, K)
        mixed = (weights @ v).transpose(1, 2).reshape(b, n, d)  # (B, N, d)
        return self.out(mixed), weights if need_weights else None


class XLBlock(nn.Module):
    """Pre-LN block whose attention also reads the layer's memory."""

    def __init__(self, config: TransformerXLConfig):
        super().__init__()
        d = config.d_model
        self.norm1 = nn.LayerNorm(d)
        self.attention = RelativeAttention(d, config.heads)
        self.norm2 = nn.LayerNorm(d)
        hidden = config.ff_mult * d
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d))
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, distances: torch.Tensor, allowed: torch.Tensor,
                need_weights: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, N, d), memory (B, M, d) -> (B, N, d) and weights (B, H, N, M + N)."""
        context = self.norm1(torch.cat([memory.to(x.dtype), x], dim=1))  # (B, M + N, d)
        h = context[:, memory.shape[1]:]  # (B, N, d)
        mixed, weights = self.attention(h, context, distances, allowed, need_weights)
        x = x + self.dropout(mixed)
        return x + self.dropout(self.mlp(self.norm2(x))), weights


class TransformerXL(nn.Module):
    """Token embedding -> Transformer-XL blocks (with memory) -> final LayerNorm -> LM head."""

    recurrent = True  # forward takes ``memory=`` and returns the next one in ModelOutput.memory
    objective = "lm"

    def __init__(self, config: TransformerXLConfig, spec: ModelSpec):
        super().__init__()
        validate(config)
        self.config = config
        task = spec.task
        config.check_task(task)
        d = config.d_model
        self.embed = nn.Embedding(task.vocab_size, d)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(XLBlock(config) for _ in range(config.layers))
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, task.vocab_size, bias=False)
        _init_weights(self)
        if config.tie_embeddings:
            self.head.weight = self.embed.weight

    @property
    def mem_len(self) -> int:
        return self.config.mem_len if self.training else self.config.eval_mem_len

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor | None = None, need_weights: bool = False,
                memory: Memory | None = None) -> ModelOutput:
        """inputs (B, N) token ids; mask (B, N) True = real token; memory from the previous
        segment's output (its batch may be larger: a stream's rows come first), or None."""
        memory = self._usable(memory, inputs.shape[0])
        x, new_memory, maps = self._run(inputs, mask, memory, need_weights)
        logits = self.head(x)  # (B, N, V)
        extras: dict[str, torch.Tensor] = {}
        if memory is not None and self.config.compare_memory and (self.training or need_weights):
            extras = self._compare(inputs, mask, logits, need_weights)
        return ModelOutput(logits=logits, attentions=maps, extras=extras, memory=new_memory)

    def _usable(self, memory: Memory | None, batch: int) -> Memory | None:
        if not memory or self.mem_len == 0 or memory[0].shape[1] == 0:
            return None
        if len(memory) != len(self.blocks):
            raise ValueError(f"memory has {len(memory)} layers; this model has {len(self.blocks)}")
        if memory[0].shape[0] < batch:
            raise ValueError(f"memory holds {memory[0].shape[0]} streams, fewer than the batch's {batch}")
        return [m[:batch, -self.mem_len:] for m in memory]

    def _run(self, inputs: torch.Tensor, mask: torch.Tensor | None, memory: Memory | None,
             need_weights: bool) -> tuple[torch.Tensor, Memory | None, list[torch.Tensor] | None]:
        b, n = inputs.shape
        d = self.config.d_model
        m = 0 if memory is None else memory[0].shape[1]
        x = self.dropout(self.embed(inputs))  # (B, N, d)
        real = torch.ones(b, n, dtype=torch.bool, device=inputs.device) if mask is None else mask
        key_mask = torch.cat([real.new_ones(b, m), real], dim=1)  # (B, M + N): memory is real text
        allowed = allowed_keys(key_mask, n, m + n, True, inputs.device)  # (B, 1, N, M + N)
        positions = torch.arange(m + n, device=inputs.device)
        allowed = allowed | (positions[None, :] == positions[m:, None])  # a query always sees itself
        distances = sinusoidal_positions(m + n, d, inputs.device).flip(0).to(x.dtype)  # (M + N, d): M+N-1 .. 0
        hidden: Memory = []
        maps: list[torch.Tensor] | None = [] if need_weights else None
        for index, block in enumerate(self.blocks):
            hidden.append(x)
            past = x.new_zeros(b, 0, d) if memory is None else memory[index]
            x, weights = block(x, past, distances, allowed, need_weights)
            if maps is not None:
                maps.append(weights[..., m:])  # (B, H, N, N): the segment's own tokens
        keep = self.mem_len
        new_memory = None
        if keep > 0:
            new_memory = [
                (h if memory is None else torch.cat([memory[i].to(h.dtype), h], dim=1))[:, -keep:].detach()
                for i, h in enumerate(hidden)
            ]  # (B, min(M + N, mem_len), d) per layer: no gradient into earlier segments
        return self.norm(x), new_memory, maps

    @torch.no_grad()
    def _compare(self, inputs: torch.Tensor, mask: torch.Tensor | None, logits: torch.Tensor,
                 need_weights: bool) -> dict[str, torch.Tensor]:
        """Next-token loss inside the segment with the memory (these logits) and without it."""
        alone, _, _ = self._run(inputs, mask, None, False)
        targets = inputs[:, 1:]  # (B, N - 1)
        if mask is not None:
            targets = targets.masked_fill(~(mask[:, 1:] & mask[:, :-1]), IGNORE_INDEX)
        with_memory = _position_losses(logits[:, :-1], targets)  # (B, N - 1)
        without = _position_losses(self.head(alone)[:, :-1], targets)
        scored = (targets != IGNORE_INDEX).float()
        count = scored.sum().clamp(min=1.0)
        extras = {"loss_memory": with_memory.sum() / count, "loss_no_memory": without.sum() / count}
        if need_weights:
            per_position = scored.sum(dim=0).clamp(min=1.0)  # (N - 1,)
            extras["memory_loss"] = torch.stack([with_memory.sum(dim=0), without.sum(dim=0)]) / per_position
        return extras


def _position_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy per position (B, N'), 0 where the target is IGNORE_INDEX."""
    losses = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX,
                             reduction="none")
    return losses.view(targets.shape)


ENTRY = Entry(
    "transformer_xl", "Transformer-XL: causal LM with a memory of earlier segments and relative positions",
    TransformerXLConfig, TransformerXL,
)
