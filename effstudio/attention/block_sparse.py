"""Exact softmax attention over structured sets of candidate keys, chunk by chunk.

The sparse kinds (local, longformer, bigbird, sparse) never build an N x N
matrix. Each describes its pattern as a few *parts*: groups of queries that
share one list of candidate keys, gathered once per group.

- ``block_part``: queries in blocks of b tokens see whole key blocks chosen
  per query block (a sliding window of blocks, random blocks);
- ``column_part``: every query sees the same few key positions (global
  tokens, summary positions);
- ``residue_part``: query i sees the keys j with j = i (mod s) (strided
  patterns); its groups are the residue classes.

``attend`` takes ONE softmax over the candidates of all parts together and
mixes values part by part. As long as no key is a candidate of the same query
in two parts (each kind's ``keep`` rules see to that), this is exactly the
dense masked softmax over the union pattern, which is what the tests compare
against.

It works like FlashAttention, over structured key sets instead of tiles: the
queries are processed in chunks of rows; the forward pass keeps only the
output and each row's log-sum-exp, and the backward pass recomputes one
chunk's scores at a time. Memory is then a few chunk-sized buffers plus
O(N * D), whatever the length, and no elementwise pass runs over a
score-sized tensor more often than it must.

Tokens that see every key (Longformer's and BigBird's global tokens) are few;
``global_rows`` computes their rows by explicit attention, G x N.

ONNX export cannot trace ``PatternAttention`` (its chunk loop and parts are
Python decisions on the length), so each kind then calls
``dense_pattern_attention`` with its pattern built from tensor operations on
the traced length: the same softmax as a dense N x N masked matrix. It only
ever runs inside an exported graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from effstudio.attention.base import Attention, AttentionOutput, exporting
from effstudio.attention.full import explicit_attention, masked_softmax

# keep(query_positions, key_positions) -> bool, broadcast: which candidates belong to the pattern
KeepRule = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
CHUNK_SCORES = 1 << 20  # score entries per chunk (4 MB in float32): bounds the working memory


@dataclass
class Padded:
    """q, k, v padded along the sequence to a multiple of the kind's block sizes."""

    q: torch.Tensor  # (B, H, Np, D), already multiplied by 1/sqrt(D)
    k: torch.Tensor  # (B, H, Np, D)
    v: torch.Tensor  # (B, H, Np, D)
    key_mask: torch.Tensor | None  # (B, Np) True = real key; None = all real
    length: int  # N before padding
    # what parts share across chunks within one call: keys and values laid out by residue class
    shared: dict = field(default_factory=dict)

    @property
    def padded_length(self) -> int:
        return self.q.shape[-2]


def pad_inputs(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None, multiple: int
) -> Padded:
    if q.shape[-2] != k.shape[-2]:
        raise ValueError(
            f"sparse attention patterns are defined on one sequence; got {q.shape[-2]} queries "
            f"and {k.shape[-2]} keys"
        )
    n = q.shape[-2]
    extra = -n % multiple
    q = q * q.shape[-1] ** -0.5  # scale once rather than every part's scores
    if extra:
        q, k, v = (torch.nn.functional.pad(x, (0, 0, 0, extra)) for x in (q, k, v))
        if key_mask is None:
            key_mask = torch.ones(q.shape[0], n, dtype=torch.bool, device=q.device)
        key_mask = torch.nn.functional.pad(key_mask, (0, extra), value=False)  # (B, Np)
    return Padded(q, k, v, key_mask, n)


# -------------------------------------------------------------------- parts
@dataclass
class Part:
    """G groups of g queries each; every query of a group has the same K candidate keys.

    Groups are contiguous runs of the chunk's queries, or (``interleaved``) its
    residue classes: group r holds queries start + r, start + r + G, ...
    """

    query_pos: torch.Tensor  # (G, g) long: each query's position
    key_index: torch.Tensor  # (G, K) long: each group's candidate keys, within [0, Np)
    valid: torch.Tensor  # bool, broadcastable to (G, g, K): the candidate belongs to the pattern
    interleaved: bool = False

    @property
    def candidates(self) -> int:
        return self.key_index.shape[-1]

    def group(self, t: torch.Tensor) -> torch.Tensor:
        """A chunk's rows (B, H, c, X) as groups (B, H, G, g, X); a view."""
        b, h, _, x = t.shape
        groups, size = self.query_pos.shape
        if self.interleaved:
            return t.view(b, h, size, groups, x).transpose(2, 3)
        return t.view(b, h, groups, size, x)

    def ungroup(self, t: torch.Tensor) -> torch.Tensor:
        """Groups (B, H, G, g, X) back to the chunk's rows (B, H, c, X)."""
        if self.interleaved:
            t = t.transpose(2, 3)
        return t.reshape(t.shape[0], t.shape[1], -1, t.shape[-1])

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        """Each group's candidate keys (or values): t (B, H, Np, D) -> (B, H, G, K, D)."""
        b, h, _, d = t.shape
        return t.index_select(2, self.key_index.flatten()).view(b, h, *self.key_index.shape, d)

    def add_back(self, target: torch.Tensor, grads: torch.Tensor) -> None:
        """Add gradients of the gathered candidates (B, H, G, K, D) into target (B, H, Np, D)."""
        b, h, _, d = target.shape
        target.index_add_(2, self.key_index.flatten(), grads.reshape(b, h, -1, d))

    def allowed(self, key_mask: torch.Tensor | None, causal: bool) -> torch.Tensor:
        """The pattern with causality and padding: bool (B or 1, 1, G, g, K)."""
        ok = self.valid
        if causal:
            ok = ok & (self.key_index[:, None, :] <= self.query_pos[:, :, None])  # (G, g, K)
        ok = ok[None, None]
        if key_mask is not None:
            ok = ok & key_mask[:, self.key_index][:, None, :, None, :]  # (B, 1, G, g, K)
        return ok


@dataclass
class ResiduePart(Part):
    """The residue classes of the whole sequence as candidates: (B, H, s, M, D), key m*s + r.

    Every chunk sees all keys, so they are laid out by residue once per call (in
    ``shared``), and their gradients are summed in that layout and added back once.
    """

    shared: dict = field(default_factory=dict)

    @staticmethod
    def by_residue(t: torch.Tensor, stride: int) -> torch.Tensor:
        b, h, n, d = t.shape
        return t.view(b, h, n // stride, stride, d).transpose(2, 3)  # (B, H, s, M, D), a view

    def gather(self, t: torch.Tensor) -> torch.Tensor:
        key = ("keys", t.data_ptr(), t.shape)
        if key not in self.shared:
            self.shared[key] = self.by_residue(t, self.key_index.shape[0]).contiguous()
        return self.shared[key]

    def add_back(self, target: torch.Tensor, grads: torch.Tensor) -> None:
        key = ("grads", target.data_ptr())
        if key in self.shared:
            self.shared[key][1].add_(grads)
        else:
            self.shared[key] = (target, grads.clone())


def add_back_residue_grads(shared: dict) -> None:
    """Add the gradients ResidueParts summed in their own layout to the tensors they belong to."""
    for key in [key for key in shared if key[0] == "grads"]:
        target, grads = shared.pop(key)
        ResiduePart.by_residue(target, grads.shape[2]).add_(grads)


def _kept(valid: torch.Tensor, keep: KeepRule | None, query_pos: torch.Tensor, key_pos: torch.Tensor):
    return valid if keep is None else valid & keep(query_pos, key_pos)


def block_part(
    start: int, stop: int, block: int, block_index: torch.Tensor, block_valid: torch.Tensor,
    keep: KeepRule | None = None,
) -> Part:
    """Query block i of rows [start, stop) sees the key blocks ``block_index[i]`` (nbc, R), all
    existing blocks, where ``block_valid`` (nbc, R)."""
    device = block_index.device
    n_blocks, r = block_index.shape
    offsets = torch.arange(block, device=device)
    key_index = (block_index[:, :, None] * block + offsets).reshape(n_blocks, r * block)  # (G, K)
    query_pos = torch.arange(start, stop, device=device).view(n_blocks, block)  # (G, g)
    valid = block_valid[:, None, :, None].expand(n_blocks, 1, r, block).reshape(n_blocks, 1, r * block)
    return Part(query_pos, key_index, _kept(valid, keep, query_pos[:, :, None], key_index[:, None, :]))


def band_part(
    x: Padded, start: int, stop: int, block: int, radius: int, causal: bool, keep: KeepRule | None = None
) -> Part:
    """Query block i sees key blocks i - radius .. i + radius (only up to i when causal)."""
    n_blocks = x.padded_length // block
    offsets = torch.arange(-radius, 1 if causal else radius + 1, device=x.q.device)
    index = torch.arange(start // block, stop // block, device=x.q.device)[:, None] + offsets  # (nbc, R)
    valid = (index >= 0) & (index < n_blocks)
    return block_part(start, stop, block, index.clamp(0, n_blocks - 1), valid, keep)


def column_part(start: int, stop: int, positions: torch.Tensor, keep: KeepRule | None = None) -> Part:
    """Every query of rows [start, stop) sees the keys at ``positions`` (K,)."""
    query_pos = torch.arange(start, stop, device=positions.device)[None]  # (1, c)
    valid = torch.ones(1, 1, positions.numel(), dtype=torch.bool, device=positions.device)
    return Part(query_pos, positions[None], _kept(valid, keep, query_pos[:, :, None], positions[None, None]))


def residue_part(x: Padded, start: int, stop: int, stride: int, keep: KeepRule | None = None) -> Part:
    """Query i of rows [start, stop) sees the keys j with j = i (mod stride); start is a multiple of it."""
    device = x.q.device
    classes = torch.arange(stride, device=device)[:, None]  # (s, 1)
    key_index = classes + stride * torch.arange(x.padded_length // stride, device=device)  # (s, M)
    query_pos = start + classes + stride * torch.arange((stop - start) // stride, device=device)  # (s, c/s)
    valid = torch.ones(1, 1, 1, dtype=torch.bool, device=device)
    valid = _kept(valid, keep, query_pos[:, :, None], key_index[:, None, :])
    return ResiduePart(query_pos, key_index, valid, interleaved=True, shared=x.shared)


# The parts of the queries in rows [start, stop): a kind's whole pattern, one chunk at a time
PartsOf = Callable[[int, int], list[Part]]


@dataclass
class Plan:
    parts: PartsOf
    chunks: list[tuple[int, int]]
    key_mask: torch.Tensor | None  # (B, Np)
    causal: bool
    shared: dict  # Padded.shared


def make_plan(x: Padded, parts: PartsOf, unit: int, causal: bool) -> Plan:
    """Chunks of whole units (blocks, strides) holding about CHUNK_SCORES score entries each."""
    b, h, n, _ = x.q.shape
    per_row = b * h * max(1, sum(p.candidates for p in parts(0, unit)))
    rows = max(unit, CHUNK_SCORES // per_row // unit * unit)
    chunks = [(start, min(start + rows, n)) for start in range(0, n, rows)]
    return Plan(parts, chunks, x.key_mask, causal, x.shared)


# ------------------------------------------------------------ the computation
def _scores(part: Part, q: torch.Tensor, k: torch.Tensor, plan: Plan) -> torch.Tensor:
    """A part's scores for a chunk's queries q (B, H, c, D): (B, H, G, g, K), -inf outside the pattern."""
    scores = part.group(q) @ part.gather(k).transpose(-1, -2)  # (B, H, G, g, K)
    return scores.masked_fill_(~part.allowed(plan.key_mask, plan.causal), float("-inf"))


def _forward_chunk(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: Plan, start: int, stop: int, dense: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Output rows (B, H, c, D) and their log-sum-exp (B, H, c); fills ``dense`` rows if given."""
    parts = plan.parts(start, stop)
    qc = q[:, :, start:stop]  # (B, H, c, D)
    scores = [_scores(part, qc, k, plan) for part in parts]  # each (B, H, G, g, K)
    top = torch.stack([p.ungroup(s.amax(-1, keepdim=True)) for p, s in zip(parts, scores, strict=True)]).amax(0)
    top = top.masked_fill_(top == float("-inf"), 0.0)  # (B, H, c, 1); a row with no key stays empty
    total = torch.zeros_like(top)  # (B, H, c, 1)
    out = torch.zeros_like(qc)  # (B, H, c, D)
    for part, s in zip(parts, scores, strict=True):
        s.sub_(part.group(top)).exp_()  # unnormalised weights, 0 outside the pattern
        total += part.ungroup(s.sum(-1, keepdim=True))
        out += part.ungroup(s @ part.gather(v))  # (B, H, c, D)
    safe = total.clamp_min(torch.finfo(total.dtype).tiny)
    out /= safe
    if dense is not None:
        rows = dense[:, :, start:stop]  # (B, H, c, Np)
        for part, s in zip(parts, scores, strict=True):
            index = part.key_index[:, None, :].expand(s.shape)  # (B, H, G, g, K)
            part.group(rows).scatter_add_(-1, index, s / part.group(safe))
    lse = torch.where(total > 0, top + safe.log(), float("inf"))  # (B, H, c, 1); inf: no key
    return out, lse.squeeze(-1)


def run_forward(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, plan: Plan, with_weights: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """out (B, H, Np, D), lse (B, H, Np) and, if asked, the dense weights (B, H, Np, Np)."""
    b, h, n, _ = q.shape
    out, lse = torch.empty_like(q), q.new_empty(b, h, n)
    dense = q.new_zeros(b, h, n, n) if with_weights else None
    for start, stop in plan.chunks:
        out[:, :, start:stop], lse[:, :, start:stop] = _forward_chunk(q, k, v, plan, start, stop, dense)
    return out, lse, dense


class PatternAttention(torch.autograd.Function):
    """softmax over a plan's pattern, saving only the output and the log-sum-exp per row.

    The backward pass recomputes each chunk's weights P from the scores and
    the saved log-sum-exp, then: dV = P^T dO, dP = dO V^T, dS = P (dP - rowsum(dO O)),
    dQ = dS K, dK = dS^T Q, the key-side gradients added back to where each
    candidate was gathered from.
    """

    @staticmethod
    def forward(ctx, q, k, v, plan):  # noqa: ANN001, ANN205
        out, lse, _ = run_forward(q, k, v, plan)
        ctx.plan = plan
        ctx.save_for_backward(q, k, v, out, lse)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # noqa: ANN001, ANN205
        q, k, v, out, lse = ctx.saved_tensors
        plan: Plan = ctx.plan
        b, h, _, d = q.shape
        grad_q, grad_k, grad_v = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
        for start, stop in plan.chunks:
            qc, dout = q[:, :, start:stop], grad_out[:, :, start:stop]  # (B, H, c, D)
            delta = (dout * out[:, :, start:stop]).sum(-1, keepdim=True)  # (B, H, c, 1)
            row_lse = lse[:, :, start:stop, None]  # (B, H, c, 1)
            for part in plan.parts(start, stop):
                qg, dog = part.group(qc), part.group(dout)  # (B, H, G, g, D)
                keys, values = part.gather(k), part.gather(v)  # (B, H, G, K, D)
                probs = _scores(part, qc, k, plan).sub_(part.group(row_lse)).exp_()  # (B, H, G, g, K)
                part.add_back(grad_v, probs.transpose(-1, -2) @ dog)
                grad_scores = (dog @ values.transpose(-1, -2)).sub_(part.group(delta)).mul_(probs)
                grad_q[:, :, start:stop] += part.ungroup(grad_scores @ keys)
                part.add_back(grad_k, grad_scores.transpose(-1, -2) @ qg)
        add_back_residue_grads(plan.shared)
        return grad_q, grad_k, grad_v, None


def attend(
    x: Padded, parts: PartsOf, unit: int, causal: bool, need_weights: bool
) -> AttentionOutput:
    """One softmax over every part's candidates: (out (B, H, Np, D), weights (B, H, Np, Np) or None).

    ``unit`` is the granularity every part needs its rows in (a block, a stride); Np is a multiple of it.
    """
    plan = make_plan(x, parts, unit, causal)
    out = PatternAttention.apply(x.q, x.k, x.v, plan)  # (B, H, Np, D)
    if not need_weights:
        return out, None
    with torch.no_grad():
        _, _, weights = run_forward(x.q, x.k, x.v, plan, with_weights=True)
    return out, weights


def global_rows(
    x: Padded,
    out: torch.Tensor,
    weights: torch.Tensor | None,
    positions: torch.Tensor,
    causal: bool,
) -> AttentionOutput:
    """Replace the rows of the queries at ``positions`` (G,) by attention over every key."""
    n = x.padded_length
    scores = x.q[:, :, positions] @ x.k.transpose(-2, -1)  # (B, H, G, N)
    allowed = None
    if causal:
        allowed = (torch.arange(n, device=positions.device) <= positions[:, None])[None, None]  # (1, 1, G, N)
    if x.key_mask is not None:
        real = x.key_mask[:, None, None, :]  # (B, 1, 1, N)
        allowed = real if allowed is None else allowed & real
    row_weights = masked_softmax(scores, allowed)  # (B, H, G, N)
    out = out.index_copy(2, positions, row_weights @ x.v)  # (B, H, N, D)
    if weights is not None:
        weights = weights.index_copy(2, positions, row_weights)  # (B, H, N, N)
    return out, weights


def crop(x: Padded, out: torch.Tensor, weights: torch.Tensor | None) -> AttentionOutput:
    """Drop the padding added by ``pad_inputs``: (B, H, N, D) and (B, H, N, N)."""
    n = x.length
    return out[:, :, :n], (None if weights is None else weights[:, :, :n, :n])


def attend_cropped(x: Padded, parts: PartsOf, unit: int, causal: bool, need_weights: bool,
                   global_positions: torch.Tensor | None = None) -> AttentionOutput:
    """``attend``, the rows of the queries at ``global_positions`` (G,) by ``global_rows``, then ``crop``."""
    out, weights = attend(x, parts, unit, causal, need_weights)
    if global_positions is not None and len(global_positions):
        out, weights = global_rows(x, out, weights, global_positions, causal)
    return crop(x, out, weights)


def dense_pattern_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None, pattern: torch.Tensor,
    need_weights: bool,
) -> AttentionOutput:
    """Export only: softmax over ``pattern`` (N, N) bool, causality included, and the real keys.

    q, k, v (B, H, N, D), key_mask (B, N) -> out (B, H, N, D) and, if asked, weights (B, H, N, N).
    A query with no allowed key gets a zero row, as ``attend`` gives it.
    """
    allowed = pattern[None, None]  # (1, 1, N, N)
    if key_mask is not None:
        allowed = allowed & key_mask[:, None, None, :]  # (B, 1, N, N)
    out, weights = explicit_attention(q, k, v, allowed)
    return out, (weights if need_weights else None)


class BlockSparseAttention(Attention):
    """A kind whose keys per query follow a pattern of positions, computed by ``attend`` in blocks.

    A subclass gives ``sees(i, j)``, the pattern before causality, and ``blocked``, its forward
    through parts; an ONNX export takes ``dense_pattern_attention`` over ``export_pattern`` instead.
    """

    subquadratic = True

    def sees(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """Whether query position i may see key position j: (N, 1) and (1, N) -> (N, N) bool."""
        raise NotImplementedError

    def allowed_pattern(self, n: int | torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
        """The dense (N, N) pattern this kind computes: for tests, and the export path (n may be traced)."""
        i, j = torch.arange(n, device=device)[:, None], torch.arange(n, device=device)[None, :]
        ok = self.sees(i, j)
        return ok & (j <= i) if self.causal else ok

    def export_pattern(self, n: int | torch.Tensor, device: torch.device) -> torch.Tensor:
        """The (N, N) pattern from tensor operations on a traced length n."""
        return self.allowed_pattern(n, device)

    def blocked(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None,
                need_weights: bool) -> AttentionOutput:
        raise NotImplementedError

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_mask: torch.Tensor | None = None, need_weights: bool = False) -> AttentionOutput:
        if exporting():
            pattern = self.export_pattern(q.shape[-2], q.device)  # (N, N)
            return dense_pattern_attention(q, k, v, key_mask, pattern, need_weights)
        return self.blocked(q, k, v, key_mask, need_weights)
