"""Reformer's LSH attention (Kitaev, Kaiser and Levskaya, 2020).

Queries and keys share one space: the keys are the queries scaled to unit
length (the model block passes no separate keys, see ``shares_qk``). Each of
``n_hashes`` rounds works like this:

1. Hash. A random rotation R (D, n_buckets/2) puts every token in the bucket
   argmax(cat[xR, -xR]); nearby directions tend to share a bucket. Padded
   tokens go to an extra bucket after the real ones and take no part.
2. Sort by (bucket, position) and cut the sorted sequence into chunks of
   ``bucket_size`` slots, every bucket starting on a fresh chunk (a bucket's
   last chunk may be partly empty).
3. Each chunk attends to itself and to the chunk before it, keeping only
   keys of the query's own bucket (the paper's P_i), key position <= query
   position when causal, and never the query itself unless it has nothing
   else: its own score is -1e5 instead of its dot product.

Rounds are merged by their logsumexp. A (query, key) pair attended in k
rounds has log k taken off its score in each of them, so the result is the
exact softmax over the union of the rounds' neighbourhoods; ``allowed_pattern``
gives that union as a dense mask for tests.

Starting each bucket on a chunk boundary means the keys a query sees depend
only on the tokens of its own bucket at or before it: later tokens (causal
use) and padded tokens never change them. Time and memory grow as
N * bucket_size * n_hashes; an N x N matrix is only built for
``need_weights``.

ONNX export cannot trace the sort-and-chunk layout or :class:`LSHAttention`
(their sizes are Python decisions on the bucket counts), so while exporting
:meth:`ReformerAttention.export_forward` computes the same attention densely:
each token's rank in its bucket is a count of the earlier tokens sharing it,
which gives every token's chunk without sorting, and one masked softmax runs
over the union of the rounds' neighbourhoods, as ``allowed_pattern`` and the
tests' oracle define it. The rotations depend on the number of buckets, known
only at run time, so the graph carries those of every bucket count up to the
model's maximum length and picks its row.
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil
import torch
import torch.nn.functional as F

from effstudio.attention import band
from effstudio.attention.base import Attention, AttentionOutput, AttentionSpec, exporting
from effstudio.attention.full import masked_softmax
from effstudio.config import ConfigError, param, validate
from effstudio.registry import Entry

SELF_SCORE = -1e5  # a query's score for itself: used only when it has no other key
EXPORT_TABLE_LIMIT = 1 << 24  # entries of the export's rotation table (see rotation_table)


@dataclass(frozen=True)
class ReformerAttentionConfig:
    n_hashes: int = param(
        2, min=1, max=8, label="Hash rounds",
        help="Independent bucketings merged together; more rounds miss fewer close keys but cost more",
    )
    bucket_size: int = param(
        64, min=1, label="Bucket size",
        help="Tokens per chunk of the bucket-sorted sequence; each chunk sees itself and the one before",
    )


@dataclass(frozen=True)
class Layout:
    """Where every token sits in each round's bucket-sorted, chunked sequence (L slots)."""

    token: torch.Tensor  # (B, H, R, L) long: the token in each slot (0 in an empty slot)
    filled: torch.Tensor  # (B, H, R, L) bool: the slot holds a real token
    slot: torch.Tensor  # (B, H, R, N) long: each token's slot; L for a padded token (none)
    group: torch.Tensor  # (B, H, R, N) int: bucket * (N + 2) + (rank in its bucket) // chunk
    chunk: int

    @property
    def rounds(self) -> int:
        return self.token.shape[2]

    @property
    def length(self) -> int:
        return self.token.shape[3]


def n_buckets_for(length: int, bucket_size: int) -> int:
    """Buckets for a sequence: one per bucket_size tokens, rounded up to an even number."""
    chunks = -(-length // bucket_size)
    return 1 if chunks <= 1 else chunks + chunks % 2


def random_rotations(seed: int, n_buckets: int, n_hashes: int, head_dim: int) -> torch.Tensor:
    """The rotations of each round, (D, R, n_buckets/2), fixed by (seed, n_buckets)."""
    generator = torch.Generator().manual_seed(seed * 100_003 + n_buckets)
    return torch.randn(head_dim, n_hashes, n_buckets // 2, generator=generator)


HASH_ROWS = 2048  # tokens hashed at once: their (rows, R*K) rotated copies stay small and in the caches


def hash_buckets(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Angular LSH: x (B, H, N, D), rotations (D, R, K) -> buckets (B, H, R, N) in [0, 2K).

    K grows with N (one bucket per bucket_size tokens), so this is the kind's quadratic part: at
    16K tokens the rotated copy of every token would be 64 MB; it is made HASH_ROWS tokens at a time.
    """
    d, r, k = rotations.shape
    flat = rotations.reshape(d, r * k)
    out = torch.empty(*x.shape[:-1], r, dtype=torch.long, device=x.device)  # (B, H, N, R)
    for start in range(0, x.shape[-2], HASH_ROWS):
        rotated = (x[:, :, start:start + HASH_ROWS] @ flat).unflatten(-1, (r, k))  # (B, H, rows, R, K)
        # argmax over cat[xR, -xR] without building it: the first largest of xR, unless some -xR is larger
        top, top_at = rotated.max(dim=-1)
        bottom, bottom_at = rotated.min(dim=-1)
        torch.where(top >= -bottom, top_at, bottom_at + k, out=out[:, :, start:start + HASH_ROWS])
    return out.transpose(-1, -2)  # (B, H, R, N)


def exclusive_cumsum(x: torch.Tensor) -> torch.Tensor:
    return x.cumsum(-1) - x


def chunk_layout(buckets: torch.Tensor, n_buckets: int, chunk: int) -> Layout:
    """Sort tokens by (bucket, position), each bucket starting on a chunk boundary.

    buckets (B, H, R, N) long, padded tokens in bucket ``n_buckets``; they get no slot.
    """
    b, h, r, n = buckets.shape
    order = torch.sort(buckets, dim=-1, stable=True).indices  # (B, H, R, N) tokens by (bucket, position)
    sorted_buckets = buckets.gather(-1, order)  # (B, H, R, N)
    counts = torch.zeros(b, h, r, n_buckets + 1, dtype=torch.long, device=buckets.device)
    counts.scatter_add_(-1, buckets, torch.ones_like(buckets))  # (B, H, R, nb + 1)
    rank = torch.arange(n, device=buckets.device) - exclusive_cumsum(counts).gather(-1, sorted_buckets)
    room = (counts + chunk - 1) // chunk * chunk  # (B, H, R, nb + 1) slots per bucket
    room[..., n_buckets] = 0  # padded tokens take no slots
    length = max(int(room.sum(-1).max()), chunk)
    slot = exclusive_cumsum(room).gather(-1, sorted_buckets) + rank  # (B, H, R, N) in sorted order
    slot = slot.masked_fill(sorted_buckets == n_buckets, length)  # padded: the spare slot L

    token = torch.zeros(b, h, r, length + 1, dtype=torch.long, device=buckets.device)
    token.scatter_(-1, slot, order)  # (B, H, R, L + 1)
    filled = torch.zeros(b, h, r, length + 1, dtype=torch.bool, device=buckets.device)
    filled.scatter_(-1, slot, sorted_buckets < n_buckets)  # (B, H, R, L + 1)
    group = sorted_buckets * (n + 2) + rank // chunk  # (B, H, R, N) in sorted order
    if (n_buckets + 1) * (n + 2) < 2**31:
        group = group.int()  # half the memory traffic where groups are compared pair by pair
    return Layout(
        token=token[..., :length].contiguous(),
        filled=filled[..., :length].contiguous(),
        slot=torch.empty_like(slot).scatter_(-1, order, slot),  # (B, H, R, N) by position
        group=torch.empty_like(group).scatter_(-1, order, group),  # (B, H, R, N) by position
        chunk=chunk,
    )


def near(query_group: torch.Tensor, key_group: torch.Tensor) -> torch.Tensor:
    """Same bucket, and the key's chunk of that bucket is the query's or the one before."""
    return (query_group - key_group).bitwise_and_(-2) == 0  # the gap is 0 or 1


def take(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, H, N, *rest) and index (B, H, M) into [0, N) -> x[b, h, index[b, h, m]] (B, H, M, *rest)."""
    b, h, n = x.shape[:3]
    offsets = torch.arange(b * h, device=x.device).view(b, h, 1) * n  # (B, H, 1)
    flat = x.reshape(b * h * n, *x.shape[3:])
    return flat.index_select(0, (index + offsets).flatten()).view(*index.shape, *x.shape[3:])


def chunks_of(x: torch.Tensor, chunk: int) -> torch.Tensor:
    """Per slot (B, H, R, L, *rest) -> per chunk (B, H, R, M, c, *rest)."""
    return x.view(*x.shape[:3], -1, chunk, *x.shape[4:])


def key_tokens(layout: Layout) -> torch.Tensor:
    """The candidate keys of each chunk, (B, H, R, M, 2c) long: the chunk before it, then itself.

    The first chunk has none before it: token 0 stands in, and ``key_allowed`` refuses it.
    """
    tokens = chunks_of(layout.token, layout.chunk)  # (B, H, R, M, c)
    before = tokens.roll(1, dims=3)
    before[:, :, :, 0] = 0
    return torch.cat([before, tokens], dim=-1)  # (B, H, R, M, 2c)


def key_allowed(layout: Layout) -> torch.Tensor:
    """Which candidate keys a chunk's queries may see, (B, H, R, M, 2c) bool.

    All filled slots of a chunk share one bucket (buckets start on chunk
    boundaries), so the chunk before is usable exactly when it is the previous
    chunk of the same bucket: its group is one less.
    """
    c = layout.chunk
    filled = chunks_of(layout.filled, c)  # (B, H, R, M, c)
    first = chunks_of(layout.group.gather(-1, layout.token), c)[..., 0]  # (B, H, R, M) group of each chunk
    same_bucket = torch.zeros_like(filled[..., 0])  # (B, H, R, M)
    same_bucket[..., 1:] = first[..., 1:] - first[..., :-1] == 1
    before = filled.roll(1, dims=3) & same_bucket.unsqueeze(-1)  # (B, H, R, M, c)
    return torch.cat([before, filled], dim=-1)  # (B, H, R, M, 2c)


def chunk_pattern(chunk: int, causal: bool, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """What every chunk shares, as (c, 2c) bools: (forbidden, is_self).

    Slots within a chunk are in position order and the chunk before holds only
    earlier positions, so causality only removes the current chunk's upper triangle.
    """
    i = torch.arange(chunk, device=device)[:, None]  # (c, 1) query slot in its chunk
    j = torch.arange(2 * chunk, device=device)[None, :] - chunk  # (1, 2c) key slot; < 0: chunk before
    forbidden = (j > i) if causal else torch.zeros(chunk, 2 * chunk, dtype=torch.bool, device=device)
    return forbidden, j == i


CHUNK_SCORES = 1 << 20  # score entries computed at once (4 MB in float32): bounds the working memory


@dataclass(frozen=True)
class Piece:
    """Consecutive chunks [first, stop) of one round's slots: the unit computed at once."""

    round: int
    first: int
    stop: int


@dataclass(frozen=True)
class Plan:
    """Everything about the pattern that does not depend on q, k, v's values (no gradient)."""

    layout: Layout
    keys_at: torch.Tensor  # (B, H, R, M, 2c) long: each chunk's candidate key tokens
    allowed: torch.Tensor  # (B, H, R, M, 2c) bool: the candidate keys a chunk's queries may see
    in_chunk: torch.Tensor  # (c, 2c) bool: pairs every chunk refuses (causal: later slots)
    is_self: torch.Tensor  # (c, 2c) bool: a query's own slot
    pieces: tuple[Piece, ...]

    @staticmethod
    def of(layout: Layout, causal: bool) -> Plan:
        b, h, r, length = layout.token.shape
        c, m = layout.chunk, length // layout.chunk
        keys_at = key_tokens(layout)  # (B, H, R, M, 2c)
        in_chunk, is_self = chunk_pattern(c, causal, layout.token.device)  # (c, 2c)
        step = max(1, CHUNK_SCORES // (b * h * 2 * c * c))  # chunks per piece
        pieces = tuple(Piece(k, first, min(first + step, m)) for k in range(r) for first in range(0, m, step))
        return Plan(layout, keys_at, key_allowed(layout), in_chunk, is_self, pieces)

    @property
    def pairs(self) -> int:
        """Query-key pairs scored in all: B * H * R * M * c * 2c."""
        return self.allowed.numel() * self.layout.chunk

    def forbidden(self, piece: Piece) -> torch.Tensor:
        """The piece's pairs outside the pattern, (B, H, P, c, 2c) bool; made per piece, not kept."""
        return self.in_chunk | ~self.allowed[:, :, piece.round, piece.first: piece.stop].unsqueeze(-2)

    def tokens(self, piece: Piece) -> tuple[torch.Tensor, torch.Tensor]:
        """The piece's query tokens (B, H, P*c) and candidate key tokens (B, H, P*2c)."""
        c = self.layout.chunk
        queries = self.layout.token[:, :, piece.round, piece.first * c: piece.stop * c]
        keys = self.keys_at[:, :, piece.round, piece.first: piece.stop]
        return queries, keys.flatten(-2)


def round_overlap_bias(layout: Layout, piece: Piece, query_tokens: torch.Tensor, key_tokens_: torch.Tensor,
                       dtype: torch.dtype) -> torch.Tensor:
    """-log(number of rounds attending each pair), (B, H, P, c, 2c), for the pairs of a piece.

    A pair attended in k rounds is then counted once in the merged softmax.
    query_tokens (B, H, P*c) and key_tokens_ (B, H, P*2c): the piece's tokens.
    """
    b, h = query_tokens.shape[:2]
    c = layout.chunk
    others = torch.zeros(b, h, piece.stop - piece.first, c, 2 * c, dtype=torch.uint8, device=query_tokens.device)
    for other in range(layout.rounds):
        if other == piece.round:
            continue  # a pair this round attends is near in it: counted by the 1 of log1p
        group = layout.group[:, :, other]  # (B, H, N)
        others += near(
            group.gather(-1, query_tokens).view(b, h, -1, c, 1),  # (B, H, P, c, 1)
            group.gather(-1, key_tokens_).view(b, h, -1, 1, 2 * c),  # (B, H, P, 1, 2c)
        )
    return others.to(dtype).log1p_().neg_()


def piece_scores(plan: Plan, piece: Piece, queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Scores of a piece (B, H, P, c, 2c): the query's own key SELF_SCORE, forbidden pairs -inf.

    queries (B, H, N, D) scaled by 1/sqrt(D); keys (B, H, N, D) of unit length. Every row
    keeps one finite score, its own slot's (an empty slot's too), so no softmax sees only -inf.
    """
    b, h, _, d = queries.shape
    c = plan.layout.chunk
    query_tokens, key_tokens_ = plan.tokens(piece)
    piece_queries = take(queries, query_tokens).view(b, h, -1, c, d)  # (B, H, P, c, D)
    scores = piece_queries @ take(keys, key_tokens_).view(b, h, -1, 2 * c, d).transpose(-1, -2)
    if plan.layout.rounds > 1:
        scores += round_overlap_bias(plan.layout, piece, query_tokens, key_tokens_, scores.dtype)
    # -inf rather than a large finite value: exp() of a huge negative number takes a slow path
    scores.masked_fill_(plan.forbidden(piece), float("-inf"))
    return scores.masked_fill_(plan.is_self, max(SELF_SCORE, torch.finfo(scores.dtype).min / 2))


def slots_of(t: torch.Tensor, plan: Plan, piece: Piece) -> torch.Tensor:
    """A piece's part of a per-slot tensor (B, H, R, L, *rest) as (B, H, P, c, *rest); a view."""
    c = plan.layout.chunk
    part = t[:, :, piece.round, piece.first * c: piece.stop * c]
    return part.view(*part.shape[:2], -1, c, *part.shape[3:])


class LSHAttention(torch.autograd.Function):
    """Every round's chunked softmax attention, per slot: out (B, H, R, L, D) and lse (B, H, R, L).

    Only the inputs, the outputs and the log-sum-exps are kept; the backward pass
    recomputes one piece's weights P at a time and adds the gradients back to
    the tokens they were gathered from: dV = P^T dO, dP = dO V^T,
    dS = P (dP - rowsum(dO O) + dlse), dQ = dS K, dK = dS^T Q.
    """

    @staticmethod
    def forward(ctx, queries, keys, v, plan):  # noqa: ANN001, ANN205
        b, h, _, d = queries.shape
        r, length = plan.layout.rounds, plan.layout.length
        out, lse = queries.new_zeros(b, h, r, length, d), queries.new_zeros(b, h, r, length)
        for piece in plan.pieces:
            scores = piece_scores(plan, piece, queries, keys)  # (B, H, P, c, 2c)
            top = scores.amax(-1, keepdim=True)  # (B, H, P, c, 1); finite: every row has a finite score
            total = scores.sub_(top).exp_().sum(-1, keepdim=True)  # (B, H, P, c, 1)
            values = take(v, plan.tokens(piece)[1]).view(*scores.shape[:3], -1, d)  # (B, H, P, 2c, D)
            slots_of(out, plan, piece).copy_((scores @ values).div_(total))
            slots_of(lse, plan, piece).copy_((top + total.log()).squeeze(-1))
        ctx.plan = plan
        ctx.save_for_backward(queries, keys, v, out, lse)
        return out, lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, grad_lse):  # noqa: ANN001, ANN205
        queries, keys, v, out, lse = ctx.saved_tensors
        plan: Plan = ctx.plan
        b, h, n, d = queries.shape
        c = plan.layout.chunk
        grads = [torch.zeros(b * h * n, d, dtype=queries.dtype, device=queries.device) for _ in range(3)]
        offsets = torch.arange(b * h, device=queries.device).view(b, h, 1) * n  # (B, H, 1)
        for piece in plan.pieces:
            query_tokens, key_tokens_ = plan.tokens(piece)
            at_queries, at_keys = (query_tokens + offsets).flatten(), (key_tokens_ + offsets).flatten()
            probs = piece_scores(plan, piece, queries, keys)  # (B, H, P, c, 2c)
            probs.sub_(slots_of(lse, plan, piece).unsqueeze(-1)).exp_()
            dout = slots_of(grad_out, plan, piece)  # (B, H, P, c, D)
            delta = (dout * slots_of(out, plan, piece)).sum(-1, keepdim=True)  # (B, H, P, c, 1)
            values = take(v, key_tokens_).view(b, h, -1, 2 * c, d)  # (B, H, P, 2c, D)
            grads[2].index_add_(0, at_keys, (probs.transpose(-1, -2) @ dout).view(-1, d))
            grad_scores = (dout @ values.transpose(-1, -2)).sub_(delta)  # (B, H, P, c, 2c)
            grad_scores.add_(slots_of(grad_lse, plan, piece).unsqueeze(-1)).mul_(probs)
            # the own key's score and forbidden pairs are constants
            grad_scores.masked_fill_(plan.is_self, 0.0)
            grad_scores.masked_fill_(plan.forbidden(piece), 0.0)
            piece_keys = take(keys, key_tokens_).view(b, h, -1, 2 * c, d)  # (B, H, P, 2c, D)
            grads[0].index_add_(0, at_queries, (grad_scores @ piece_keys).view(-1, d))
            piece_queries = take(queries, query_tokens).view(b, h, -1, c, d)  # (B, H, P, c, D)
            grads[1].index_add_(0, at_keys, (grad_scores.transpose(-1, -2) @ piece_queries).view(-1, d))
        return *(g.view(b, h, n, d) for g in grads), None


KEEP_LIMIT_BYTES = 1 << 30  # kept weights of the whole-sequence path at most; beyond, the piecewise path runs
KEEP_SHARE = 0.25  # and at most this share of the memory available now


def keeps_weights(plan: Plan, queries: torch.Tensor) -> bool:
    """Whether the whole-sequence path fits: its weights, kept, and as much again of working space."""
    needed = 2 * plan.pairs * queries.element_size()
    return needed <= min(KEEP_LIMIT_BYTES, KEEP_SHARE * psutil.virtual_memory().available)


RUN_QUERIES = 1024  # query slots per run of a round in the whole-sequence path: its temporaries stay small


def _runs(plan: Plan) -> list[tuple[int, int]]:
    """A round's chunks in runs [first, stop) of about RUN_QUERIES query slots."""
    c = plan.layout.chunk
    m = plan.layout.length // c
    step = max(1, RUN_QUERIES // c)
    return [(first, min(m, first + step)) for first in range(0, m, step)]


class WholeLSHAttention(torch.autograd.Function):
    """Every round's chunked attention over the whole sequence, per token: out (B, H, R, N, D) and
    lse (B, H, R, N); the weights P are kept, so nothing is recomputed.

    A round goes through its chunks in runs (``_runs``): a run's chunk queries and candidate keys
    are gathered once (contiguous copies) and its scores are one product; only P outlives the run.
    Every gradient goes back to the slots with slice additions and to the tokens by one gather
    through the layout per round (each token has one slot per round):
    dV = P^T dO, dS = P (dP - rowsum(dP P) + dlse), dQ = dS K, dK = dS^T Q.
    """

    @staticmethod
    def forward(ctx, queries, keys, v, plan):  # noqa: ANN001, ANN205
        b, h, n, d = queries.shape
        layout = plan.layout
        c = layout.chunk
        out, lse = queries.new_empty(b, h, layout.rounds, n, d), queries.new_empty(b, h, layout.rounds, n)
        kept = []
        for rnd in range(layout.rounds):
            slot_out = queries.new_empty(b, h, layout.length // c, c, d)  # (B, H, M, c, D)
            slot_lse = queries.new_empty(b, h, layout.length // c, c, 1)
            for first, stop in _runs(plan):
                piece = Piece(rnd, first, stop)
                scores = piece_scores(plan, piece, queries, keys)  # (B, H, P, c, 2c)
                top = scores.amax(-1, keepdim=True)  # (B, H, P, c, 1)
                probs = scores.sub_(top).exp_()
                total = probs.sum(-1, keepdim=True)
                probs.div_(total)
                candidates = plan.keys_at[:, :, rnd, first:stop].reshape(b, h, -1)  # (B, H, P*2c)
                torch.matmul(probs, take(v, candidates).view(b, h, -1, 2 * c, d), out=slot_out[:, :, first:stop])
                torch.add(top, total.log_(), out=slot_lse[:, :, first:stop])
                kept.append(probs)
            out[:, :, rnd] = _per_token(slot_out.view(b, h, -1, d), layout, rnd)
            lse[:, :, rnd] = _per_token(slot_lse.view(b, h, -1), layout, rnd)
        # the weights are made here, outside autograd: kept as a list that backward empties run by run
        ctx.plan, ctx.kept = plan, kept
        ctx.save_for_backward(queries, keys, v)
        return out, lse

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out, grad_lse):  # noqa: ANN001, ANN205
        queries, keys, v = ctx.saved_tensors
        plan: Plan = ctx.plan
        b, h, n, d = queries.shape
        layout = plan.layout
        c, m = layout.chunk, layout.length // layout.chunk
        grads: list[torch.Tensor | None] = [None, None, None]  # q, k, v per token: made by round 0's end
        kept = iter(range(len(ctx.kept)))
        for rnd in range(layout.rounds):
            dout = _per_slot(grad_out[:, :, rnd], layout, rnd).view(b, h, m, c, d)  # (B, H, M, c, D)
            dlse = _per_slot(grad_lse[:, :, rnd], layout, rnd).view(b, h, m, c, 1)  # (B, H, M, c, 1)
            # k and v per slot; q's go into dout, each run's over its own dout once that is used
            slot_grads = [dout, queries.new_zeros(b, h, m, c, d), queries.new_zeros(b, h, m, c, d)]
            for first, stop in _runs(plan):
                index = next(kept)
                probs, ctx.kept[index] = ctx.kept[index], None  # freed with this run
                query_tokens, candidates = plan.tokens(Piece(rnd, first, stop))
                dout_run = dout[:, :, first:stop]
                _fold_slots(slot_grads[2], probs.transpose(-1, -2) @ dout_run, first)  # via (B, H, P, 2c, D)
                grad_probs = dout_run @ take(v, candidates).view(b, h, -1, 2 * c, d).transpose(-1, -2)
                grad_scores = torch._softmax_backward_data(grad_probs, probs, -1, probs.dtype)  # P (dP - rowsum(dP P))
                del grad_probs
                grad_scores.addcmul_(probs, dlse[:, :, first:stop])  # d lse / d scores = P
                del probs
                grad_scores.masked_fill_(plan.is_self, 0.0)  # the own key's score is a constant
                torch.matmul(grad_scores, take(keys, candidates).view(b, h, -1, 2 * c, d), out=dout_run)
                chunk_queries = take(queries, query_tokens).view(b, h, -1, c, d)  # (B, H, P, c, D)
                _fold_slots(slot_grads[1], grad_scores.transpose(-1, -2) @ chunk_queries, first)
            for i, slots in enumerate(slot_grads):
                per_token = _per_token(slots.view(b, h, -1, d), layout, rnd)  # (B, H, N, D)
                grads[i] = per_token if grads[i] is None else grads[i].add_(per_token)
            del slot_grads, dout, dout_run
        real = (layout.slot[:, :, 0] < layout.length).unsqueeze(-1)  # (B, H, N, 1): padded tokens have no slot
        return *(grad.mul_(real) for grad in grads), None


def _per_token(slots: torch.Tensor, layout: Layout, rnd: int) -> torch.Tensor:
    """Round ``rnd``'s per-slot values (B, H, L, *rest) per token (B, H, N, *rest), a gather;
    a padded token (no slot) reads the last slot."""
    return take(slots, layout.slot[:, :, rnd].clamp(max=layout.length - 1))


def _per_slot(tokens: torch.Tensor, layout: Layout, rnd: int) -> torch.Tensor:
    """Round ``rnd``'s per-token values (B, H, N, *rest) per slot (B, H, L, *rest), a gather; empty slots 0."""
    slots = take(tokens, layout.token[:, :, rnd])
    return slots.mul_(layout.filled[:, :, rnd].view(*slots.shape[:3], *([1] * (slots.dim() - 3))))


def _fold_slots(slots: torch.Tensor, grad: torch.Tensor, first: int) -> None:
    """Add candidate gradients of chunks first.. (B, H, P, 2c, D) onto the slots (B, H, M, c, D): the
    causal band's fold (the chunk before, then the chunk itself; the first chunk has none before it)."""
    b, h, m, c, d = slots.shape
    band._fold_into(slots.view(b, h, m * c, d), grad, c, True, None, first)


def lsh_attention(
    q: torch.Tensor,
    v: torch.Tensor,
    real: torch.Tensor,
    layout: Layout,
    causal: bool,
    need_weights: bool,
) -> AttentionOutput:
    """Chunked attention over the layout's rounds: q, v (B, H, N, D), real (B, N) bool.

    Two paths, chosen per call by :func:`keeps_weights`: while the weights of the whole
    sequence (B*H*R*L*2c entries, twice over) fit, :class:`WholeLSHAttention` computes it in
    whole-sequence operations and keeps them; beyond, :class:`LSHAttention` works piece by
    piece and recomputes them in the backward pass.
    """
    b, h, n, d = q.shape
    r, length = layout.rounds, layout.length
    with torch.no_grad():
        plan = Plan.of(layout, causal)
    queries, keys = q * d**-0.5, F.normalize(q, dim=-1)  # (B, H, N, D)
    if keeps_weights(plan, queries):
        out, lse = WholeLSHAttention.apply(queries, keys, v, plan)  # (B, H, R, N, D), (B, H, R, N)
    else:
        mixed, lse = LSHAttention.apply(queries, keys, v, plan)  # (B, H, R, L, D), (B, H, R, L)
        # back to token order: token t of round k is at flat slot k*L + slot
        per_round = torch.arange(r, device=q.device).view(1, 1, r, 1) * length  # (1, 1, R, 1)
        unsort = (layout.slot.clamp(max=length - 1) + per_round).view(b, h, r * n)  # (B, H, R*N)
        out = take(mixed.view(b, h, r * length, d), unsort).view(b, h, r, n, d)  # (B, H, R, N, D)
        lse = take(lse.view(b, h, r * length, 1), unsort).view(b, h, r, n)  # (B, H, R, N)
    if r == 1:
        merge = None
        out = out[:, :, 0]  # (B, H, N, D)
    else:
        merge = lse.softmax(dim=2)  # (B, H, R, N) each round's share of the total
        out = (merge.unsqueeze(-1) * out).sum(dim=2)  # (B, H, N, D)
    out = out * real[:, None, :, None]  # a padded token attends to nothing
    weights = None
    if need_weights:
        with torch.no_grad():
            weights = dense_weights(plan, queries, keys, merge, n)
    return out, weights


def dense_weights(
    plan: Plan, queries: torch.Tensor, keys: torch.Tensor, merge: torch.Tensor | None, n: int
) -> torch.Tensor:
    """The exact (B, H, N, N) weights: every round's chunk weights scattered, scaled by its share."""
    layout, c = plan.layout, plan.layout.chunk
    b, h = layout.token.shape[:2]
    share = layout.filled.to(queries.dtype)  # (B, H, R, L) empty slots are no query
    if merge is not None:
        share = share * merge.gather(-1, layout.token)  # (B, H, R, L)
    dense = queries.new_zeros(b, h, n * n)
    for piece in plan.pieces:
        probs = piece_scores(plan, piece, queries, keys).softmax(-1)  # (B, H, P, c, 2c)
        probs *= slots_of(share, plan, piece).unsqueeze(-1)
        query_tokens, key_tokens_ = plan.tokens(piece)
        index = query_tokens.view(b, h, -1, c, 1) * n + key_tokens_.view(b, h, -1, 1, 2 * c)  # (B, H, P, c, 2c)
        dense.scatter_add_(-1, index.flatten(2), probs.flatten(2))
    return dense.view(b, h, n, n)


class ReformerAttention(Attention):
    shares_qk = True
    subquadratic = True

    def __init__(self, config: ReformerAttentionConfig, spec: AttentionSpec):
        super().__init__(spec)
        validate(config)
        if config.bucket_size > spec.max_length:
            raise ConfigError(
                "bucket_size",
                f"bucket size {config.bucket_size} is larger than the model's maximum length "
                f"{spec.max_length}",
            )
        self.n_hashes, self.bucket_size = config.n_hashes, config.bucket_size
        # drawn from torch's global RNG, saved with the checkpoint: rotations follow from it
        self.register_buffer("hash_seed", torch.randint(0, 2**31 - 1, ()))
        self._rotations: dict[tuple, torch.Tensor] = {}

    def rotations(self, n_buckets: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The (D, R, n_buckets/2) rotations for sequences hashed into n_buckets, cached."""
        key = (int(self.hash_seed), n_buckets, device, dtype)
        if key not in self._rotations:
            rotations = random_rotations(key[0], n_buckets, self.n_hashes, self.head_dim)
            self._rotations[key] = rotations.to(device=device, dtype=dtype)
        return self._rotations[key]

    def buckets(self, q: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Each token's bucket in each round, (B, H, R, N); padded tokens in bucket n_buckets.

        With a single bucket there is one round, every real token in bucket 0.
        """
        b, h, n, _ = q.shape
        n_buckets = n_buckets_for(n, self.bucket_size)
        with torch.no_grad():
            if n_buckets == 1:
                buckets = torch.zeros(b, h, 1, n, dtype=torch.long, device=q.device)
            else:
                buckets = hash_buckets(q, self.rotations(n_buckets, q.device, q.dtype))
            return buckets.masked_fill(~real[:, None, None, :], n_buckets)  # (B, H, R, N)

    def layout(self, q: torch.Tensor, real: torch.Tensor) -> Layout:
        n_buckets = n_buckets_for(q.shape[-2], self.bucket_size)
        return chunk_layout(self.buckets(q, real), n_buckets, self.bucket_size)

    def allowed_pattern(self, q: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The union of the rounds' neighbourhoods as a dense (B, H, N, N) bool, for tests.

        Padded queries see nothing; the query itself is included (it scores -1e5).
        """
        real = _real(q, key_mask)
        group = self.layout(q, real).group  # (B, H, R, N)
        pattern = near(group.unsqueeze(-1), group.unsqueeze(-2)).any(dim=2)  # (B, H, N, N)
        pattern &= real[:, None, :, None] & real[:, None, None, :]
        if self.causal:
            pattern &= torch.ones_like(pattern[0, 0]).tril()
        return pattern

    def prepare_export(self) -> None:
        self.rotation_table(self.hash_seed.device, torch.float32)

    def rotation_table(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Every bucket count's rotations, (T + 1, D, R, T/2): row nb holds ``rotations(nb)``, zero-padded.

        T is the bucket count of the model's longest sequence; rows of counts that never occur stay 0.
        Export only.
        """
        key = (int(self.hash_seed), "table", device, dtype)
        if key in self._rotations:
            return self._rotations[key]
        most = n_buckets_for(self.spec.max_length, self.bucket_size)
        width = max(most // 2, 1)
        if (most + 1) * self.head_dim * self.n_hashes * width > EXPORT_TABLE_LIMIT:
            raise ConfigError(
                "bucket_size",
                f"exporting Reformer with buckets of {self.bucket_size} for sequences of up to "
                f"{self.spec.max_length} needs the rotations of {most} bucket counts; use larger buckets",
            )
        table = torch.zeros(most + 1, self.head_dim, self.n_hashes, width, device=device, dtype=dtype)
        for n_buckets in range(2, most + 1, 2):
            table[n_buckets, :, :, : n_buckets // 2] = self.rotations(n_buckets, device, dtype)
        self._rotations[key] = table
        return table

    def export_forward(
        self, q: torch.Tensor, v: torch.Tensor, real: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Export only: (out (B, H, N, D), weights (B, H, N, N)) from tensor operations on the traced length."""
        n, d = q.shape[-2], q.shape[-1]
        chunks = (torch.as_tensor(n) + self.bucket_size - 1) // self.bucket_size
        n_buckets = torch.where(chunks <= 1, torch.ones_like(chunks), chunks + chunks % 2)  # as n_buckets_for
        half = n_buckets // 2
        table = self.rotation_table(q.device, q.dtype)  # (T + 1, D, R, K)
        width = table.shape[-1]
        rotated = torch.einsum("bhnd,drk->bhrnk", q, table.index_select(0, n_buckets.reshape(1))[0])
        unused = torch.arange(width, device=q.device) >= half  # (K,) columns past this count's rotations
        both = torch.cat([rotated.masked_fill(unused, float("-inf")), (-rotated).masked_fill(unused, float("-inf"))],
                         dim=-1)  # (B, H, R, N, 2K): argmax order as in hash_buckets
        pick = both.argmax(dim=-1)  # (B, H, R, N)
        buckets = torch.where(pick < width, pick, pick - width + half)
        buckets = torch.where(n_buckets == 1, torch.zeros_like(buckets), buckets)
        buckets = buckets.masked_fill(~real[:, None, None, :], -1)  # padded tokens share no real bucket

        positions = torch.arange(n, device=q.device)
        earlier = positions[None, :] < positions[:, None]  # (N, N) key before query
        same = buckets.unsqueeze(-1) == buckets.unsqueeze(-2)  # (B, H, R, N, N)
        chunk = (same & earlier).long().sum(dim=-1) // self.bucket_size  # (B, H, R, N) chunk within the bucket
        gap = chunk.unsqueeze(-1) - chunk.unsqueeze(-2)  # (B, H, R, N, N)
        allowed = (same & (gap >= 0) & (gap <= 1)).any(dim=2)  # (B, H, N, N) union of the rounds
        allowed = allowed & real[:, None, :, None] & real[:, None, None, :]
        if self.causal:
            allowed = allowed & (positions[None, :] <= positions[:, None])

        scores = (q * d**-0.5) @ F.normalize(q, dim=-1).transpose(-1, -2)  # (B, H, N, N)
        own = positions[None, :] == positions[:, None]  # (N, N)
        scores = scores.masked_fill(own, max(SELF_SCORE, torch.finfo(scores.dtype).min / 2))
        weights = masked_softmax(scores, allowed)  # (B, H, N, N)
        return weights @ v * real[:, None, :, None], weights

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_mask: torch.Tensor | None = None, need_weights: bool = False) -> AttentionOutput:
        if exporting():
            out, weights = self.export_forward(q, v, _real(q, key_mask))
            return out, (weights if need_weights else None)
        real = _real(q, key_mask)  # k is ignored: the keys are the queries scaled to unit length
        return lsh_attention(q, v, real, self.layout(q, real), self.causal, need_weights)


def _real(q: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    """key_mask, or all True: (B, N) bool."""
    if key_mask is not None:
        return key_mask
    return torch.ones(q.shape[0], q.shape[-2], dtype=torch.bool, device=q.device)


ENTRY = Entry(
    "reformer", "Reformer LSH attention: shared query/key space, hashed buckets, chunked (N log N; causal or not)",
    ReformerAttentionConfig, ReformerAttention,
)
