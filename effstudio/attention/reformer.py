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
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from effstudio.attention.base import Attention, AttentionSpec
from effstudio.config import ConfigError, param, validate
from effstudio.registry import Entry

SELF_SCORE = -1e5  # a query's score for itself: used only when it has no other key


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
    group: torch.Tensor  # (B, H, R, N) long: bucket * (N + 2) + (rank in its bucket) // chunk
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


def hash_buckets(x: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Angular LSH: x (B, H, N, D), rotations (D, R, K) -> buckets (B, H, R, N) in [0, 2K)."""
    rotated = torch.einsum("bhnd,drk->bhrnk", x, rotations)  # (B, H, R, N, K)
    return torch.cat([rotated, -rotated], dim=-1).argmax(dim=-1)  # (B, H, R, N)


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
    return Layout(
        token=token[..., :length].contiguous(),
        filled=filled[..., :length].contiguous(),
        slot=torch.empty_like(slot).scatter_(-1, order, slot),  # (B, H, R, N) by position
        group=torch.empty_like(group).scatter_(-1, order, group),  # (B, H, R, N) by position
        chunk=chunk,
    )


def near(query_group: torch.Tensor, key_group: torch.Tensor) -> torch.Tensor:
    """Same bucket, and the key's chunk of that bucket is the query's or the one before."""
    return ((query_group - key_group) & -2) == 0  # the gap is 0 or 1


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


def round_overlap_bias(layout: Layout, keys: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """-log(number of rounds attending each pair), (B, H, R, M, c, 2c), for pairs a round attends.

    A pair attended in k rounds is then counted once in the merged softmax.
    keys (B, H, R, M, 2c): the candidate key tokens of each chunk.
    """
    b, h, r, length = layout.token.shape
    c = layout.chunk
    group = layout.group.to(torch.int32)  # (B, H, R, N)
    rounds = torch.ones(b, h, r, length // c, c, 2 * c, dtype=torch.uint8, device=keys.device)
    for this in range(r):
        for other in range(r):
            if other == this:
                continue  # a pair this round attends is near in it: the 1 above
            query_group = group[:, :, other].gather(-1, layout.token[:, :, this])  # (B, H, L)
            key_group = group[:, :, other].gather(-1, keys[:, :, this].flatten(-2))  # (B, H, 2L)
            rounds[:, :, this] += near(
                chunks_of(query_group.unsqueeze(2), c).squeeze(2).unsqueeze(-1),  # (B, H, M, c, 1)
                key_group.view(b, h, -1, 1, 2 * c),  # (B, H, M, 1, 2c)
            )
    return rounds.to(dtype).log_().neg_()


class ChunkSoftmax(torch.autograd.Function):
    """softmax(scores) and its logsumexp over the last axis, after replacing some scores.

    Forbidden pairs score finfo.min and a query's own key SELF_SCORE (``is_self``
    broadcasts); ``bias`` (or None) is then added. Only the weights and masks are
    kept for the backward pass, which is the softmax's (plus the logsumexp's).
    """

    @staticmethod
    def forward(ctx, scores, forbidden, is_self, bias):  # noqa: ANN001, ANN205
        self_score = max(SELF_SCORE, torch.finfo(scores.dtype).min / 2)  # finite even in float16
        x = scores.masked_fill(is_self, self_score)  # (..., K)
        if bias is not None:
            x += bias
        x.masked_fill_(forbidden, torch.finfo(x.dtype).min)
        top = x.amax(dim=-1, keepdim=True)  # (..., 1)
        x.sub_(top).exp_()
        total = x.sum(dim=-1, keepdim=True)  # (..., 1)
        probs = x.div_(total)  # (..., K)
        ctx.save_for_backward(probs, forbidden, is_self)
        return probs, (top + total.log()).squeeze(-1)

    @staticmethod
    def backward(ctx, grad_probs, grad_lse):  # noqa: ANN001, ANN205
        probs, forbidden, is_self = ctx.saved_tensors
        inner = (grad_probs * probs).sum(dim=-1, keepdim=True) - grad_lse.unsqueeze(-1)  # (..., 1)
        grad = (grad_probs - inner).mul_(probs)  # (..., K)
        return grad.masked_fill_(is_self, 0).masked_fill_(forbidden, 0), None, None, None


def lsh_attention(
    q: torch.Tensor,
    v: torch.Tensor,
    real: torch.Tensor,
    layout: Layout,
    causal: bool,
    need_weights: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Chunked attention over the layout's rounds: q, v (B, H, N, D), real (B, N) bool."""
    b, h, n, d = q.shape
    r, length, c = layout.rounds, layout.length, layout.chunk
    m = length // c
    with torch.no_grad():
        keys_at = key_tokens(layout)  # (B, H, R, M, 2c)
        forbidden, is_self = chunk_pattern(c, causal, q.device)  # (c, 2c)
        forbidden = forbidden | ~key_allowed(layout).unsqueeze(-2)  # (B, H, R, M, c, 2c)
        bias = round_overlap_bias(layout, keys_at, q.dtype) if r > 1 else None  # (B, H, R, M, c, 2c)

    queries = take(q * d**-0.5, layout.token.view(b, h, -1)).view(b, h, r, m, c, d)
    keys = take(F.normalize(q, dim=-1), keys_at.view(b, h, -1)).view(b, h, r, m, 2 * c, d)
    values = take(v, keys_at.view(b, h, -1)).view(b, h, r, m, 2 * c, d)
    scores = queries @ keys.transpose(-1, -2)  # (B, H, R, M, c, 2c)
    probs, lse = ChunkSoftmax.apply(scores, forbidden, is_self, bias)  # (B, H, R, M, c, 2c), (.., c)
    mixed = probs @ values  # (B, H, R, M, c, D)

    # back to token order: token t of round k is at flat slot k*L + slot
    per_round = torch.arange(r, device=q.device).view(1, 1, r, 1) * length  # (1, 1, R, 1)
    unsort = (layout.slot.clamp(max=length - 1) + per_round).view(b, h, r * n)  # (B, H, R*N)
    out = take(mixed.reshape(b, h, r * length, d), unsort).view(b, h, r, n, d)  # (B, H, R, N, D)
    if r == 1:
        merge = None
        out = out[:, :, 0]  # (B, H, N, D)
    else:
        lse = take(lse.reshape(b, h, r * length), unsort).view(b, h, r, n)  # (B, H, R, N)
        merge = lse.softmax(dim=2)  # (B, H, R, N) each round's share of the total
        out = (merge.unsqueeze(-1) * out).sum(dim=2)  # (B, H, N, D)
    out = out * real[:, None, :, None]  # a padded token attends to nothing
    weights = dense_weights(probs, merge, layout, keys_at, n) if need_weights else None
    return out, weights


def dense_weights(
    probs: torch.Tensor, merge: torch.Tensor | None, layout: Layout, keys_at: torch.Tensor, n: int
) -> torch.Tensor:
    """The exact (B, H, N, N) weights: every round's chunk weights scattered, scaled by its share."""
    b, h, r, length = layout.token.shape
    c = layout.chunk
    share = layout.filled.to(probs.dtype)  # (B, H, R, L) empty slots are no query
    if merge is not None:
        share = share * merge.gather(-1, layout.token)  # (B, H, R, L)
    values = probs * chunks_of(share, c).unsqueeze(-1)  # (B, H, R, M, c, 2c)
    query_pos = chunks_of(layout.token, c).unsqueeze(-1)  # (B, H, R, M, c, 1)
    index = (query_pos * n + keys_at.unsqueeze(-2)).expand(values.shape)  # (B, H, R, M, c, 2c)
    dense = probs.new_zeros(b, h, n * n)
    dense = dense.scatter_add(-1, index.reshape(b, h, -1), values.reshape(b, h, -1))  # (B, H, N*N)
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

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        real = _real(q, key_mask)  # k is ignored: the keys are the queries scaled to unit length
        return lsh_attention(q, v, real, self.layout(q, real), self.causal, need_weights)


def _real(q: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    """key_mask, or all True: (B, N) bool."""
    if key_mask is not None:
        return key_mask
    return torch.ones(q.shape[0], q.shape[-2], dtype=torch.bool, device=q.device)


def build_reformer(config: ReformerAttentionConfig, spec: AttentionSpec) -> ReformerAttention:
    return ReformerAttention(config, spec)


ENTRY = Entry(
    name="reformer",
    description="Reformer LSH attention: shared query/key space, hashed buckets, chunked (N log N)",
    config_cls=ReformerAttentionConfig,
    factory=build_reformer,
)
