"""Exact softmax attention over structured sets of candidate keys.

The sparse kinds (local, longformer, bigbird, sparse) never build an N x N
matrix. Each describes its pattern as a few *parts*, structured sets of
candidate keys that are gathered cheaply for every query:

- ``block_part``: queries in blocks of b tokens see whole key blocks chosen
  per query block (a sliding window of blocks, random blocks);
- ``column_part``: every query sees the same few key positions (global
  tokens, summary positions);
- ``residue_part``: query i sees the keys j with j = i (mod s), computed as
  dense attention inside each of the s residue classes (strided patterns).

A part gives scores (B, H, N, K) for its K candidates per query, their
positions (N, K) and which of them belong to the pattern. ``attend`` adds
padding and causality, takes ONE softmax over the candidates of all parts
together and mixes values part by part. As long as no key is a candidate of
the same query in two parts (each kind's ``keep`` rules see to that), this is
exactly the dense masked softmax over the union pattern, which is what the
tests compare against.

Tokens that see every key (Longformer's and BigBird's global tokens) are few;
``global_rows`` computes their rows by explicit attention, G x N.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from effstudio.attention.full import masked_softmax

# keep(query_positions (N, 1), key_positions (N, K)) -> bool (N, K): which candidates to use
KeepRule = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class KeyPart:
    scores: torch.Tensor  # (B, H, N, K) scaled dot products with the K candidate keys
    key_pos: torch.Tensor  # (N, K) long: where each candidate key sits, always within [0, N)
    valid: torch.Tensor  # (N, K) bool: the candidate belongs to the pattern and is not a repeat
    mix: Callable[[torch.Tensor], torch.Tensor]  # weights (B, H, N, K) -> values mixed (B, H, N, D)


@dataclass
class Padded:
    """q, k, v padded along the sequence to a multiple of the kind's block sizes."""

    q: torch.Tensor  # (B, H, Np, D), already multiplied by 1/sqrt(D)
    k: torch.Tensor  # (B, H, Np, D)
    v: torch.Tensor  # (B, H, Np, D)
    key_mask: torch.Tensor | None  # (B, Np) True = real key; None = all real
    length: int  # N before padding

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


def query_positions(n: int, device: torch.device) -> torch.Tensor:
    return torch.arange(n, device=device)[:, None]  # (N, 1)


def block_part(
    x: Padded, block: int, block_index: torch.Tensor, block_valid: torch.Tensor, keep: KeepRule | None = None
) -> KeyPart:
    """Query block i sees the key blocks ``block_index[i]`` (nb, R), where ``block_valid`` (nb, R)."""
    b, h, n, d = x.q.shape
    nb, r = block_index.shape
    index = block_index.clamp(0, nb - 1)
    qb = x.q.view(b, h, nb, block, d)  # (B, H, nb, b, D)

    def gather(t: torch.Tensor) -> torch.Tensor:
        # index_select, not t[:, :, index]: its backward is an index_add of whole
        # blocks, several times faster than advanced indexing's index_put on CPU
        blocks = t.view(b, h, nb, block, d).index_select(2, index.flatten())  # (B, H, nb*R, b, D)
        return blocks.view(b, h, nb, r * block, d)  # (B, H, nb, R*b, D)

    kb, vb = gather(x.k), gather(x.v)
    scores = (qb @ kb.transpose(-2, -1)).view(b, h, n, r * block)  # (B, H, N, R*b)

    offsets = torch.arange(block, device=index.device)
    key_pos = (index[:, :, None] * block + offsets).reshape(nb, 1, r * block)  # (nb, 1, R*b)
    key_pos = key_pos.expand(nb, block, r * block).reshape(n, r * block)  # (N, R*b)
    valid = block_valid[:, None, :, None].expand(nb, block, r, block).reshape(n, r * block)  # (N, R*b)
    if keep is not None:
        valid = valid & keep(query_positions(n, index.device), key_pos)

    def mix(weights: torch.Tensor) -> torch.Tensor:
        return (weights.view(b, h, nb, block, r * block) @ vb).view(b, h, n, d)  # (B, H, N, D)

    return KeyPart(scores, key_pos, valid, mix)


def band_part(x: Padded, block: int, radius: int, causal: bool, keep: KeepRule | None = None) -> KeyPart:
    """Query block i sees key blocks i - radius .. i + radius (only up to i when causal)."""
    nb = x.padded_length // block
    offsets = torch.arange(-radius, 1 if causal else radius + 1, device=x.q.device)
    index = torch.arange(nb, device=x.q.device)[:, None] + offsets  # (nb, R)
    return block_part(x, block, index, (index >= 0) & (index < nb), keep)


def column_part(x: Padded, positions: torch.Tensor, keep: KeepRule | None = None) -> KeyPart:
    """Every query sees the keys at ``positions`` (G,)."""
    n = x.padded_length
    kg, vg = x.k[:, :, positions], x.v[:, :, positions]  # (B, H, G, D)
    scores = x.q @ kg.transpose(-2, -1)  # (B, H, N, G)
    key_pos = positions.expand(n, -1)  # (N, G)
    valid = torch.ones_like(key_pos, dtype=torch.bool)
    if keep is not None:
        valid = keep(query_positions(n, positions.device), key_pos)
    return KeyPart(scores, key_pos, valid, lambda weights: weights @ vg)  # mix: (B, H, N, D)


def residue_part(x: Padded, stride: int, keep: KeepRule | None = None) -> KeyPart:
    """Query i sees the keys j with j = i (mod stride): dense attention within each residue class."""
    b, h, n, d = x.q.shape
    m = n // stride

    def by_residue(t: torch.Tensor) -> torch.Tensor:
        return t.view(b, h, m, stride, d).transpose(2, 3)  # (B, H, s, M, D): position = m * s + r

    vr = by_residue(x.v)
    scores = by_residue(x.q) @ by_residue(x.k).transpose(-2, -1)  # (B, H, s, M, M)
    scores = scores.transpose(2, 3).reshape(b, h, n, m)  # (B, H, N, M) in query order
    positions = torch.arange(n, device=x.q.device)
    key_pos = torch.arange(m, device=x.q.device) * stride + (positions % stride)[:, None]  # (N, M)
    valid = torch.ones_like(key_pos, dtype=torch.bool)
    if keep is not None:
        valid = keep(positions[:, None], key_pos)

    def mix(weights: torch.Tensor) -> torch.Tensor:
        per_class = weights.view(b, h, m, stride, m).transpose(2, 3) @ vr  # (B, H, s, M, D)
        return per_class.transpose(2, 3).reshape(b, h, n, d)  # (B, H, N, D)

    return KeyPart(scores, key_pos, valid, mix)


def attend(
    x: Padded, parts: list[KeyPart], causal: bool, need_weights: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One softmax over every part's candidates: (out (B, H, Np, D), weights (B, H, Np, Np) or None)."""
    n = x.padded_length
    positions = query_positions(n, x.q.device)
    allowed = []
    for part in parts:
        ok = part.valid  # (N, K)
        if causal:
            ok = ok & (part.key_pos <= positions)
        ok = ok[None, None]  # (1, 1, N, K)
        if x.key_mask is not None:
            ok = ok & x.key_mask[:, part.key_pos][:, None]  # (B, 1, N, K)
        allowed.append(ok)
    batch = x.q.shape[0] if x.key_mask is not None else 1
    allowed_all = torch.cat([a.expand(batch, 1, n, -1) for a in allowed], dim=-1)  # (B|1, 1, N, K_all)
    weights = masked_softmax(torch.cat([p.scores for p in parts], dim=-1), allowed_all)  # (B, H, N, K_all)

    pieces = weights.split([p.scores.shape[-1] for p in parts], dim=-1)
    out = sum(part.mix(w) for part, w in zip(parts, pieces))  # (B, H, N, D)
    if not need_weights:
        return out, None
    dense = torch.zeros(*x.q.shape[:2], n, n, dtype=weights.dtype, device=weights.device)
    for part, w in zip(parts, pieces):
        dense.scatter_add_(-1, part.key_pos.expand_as(w), w)  # (B, H, N, N)
    return out, dense


def global_rows(
    x: Padded,
    out: torch.Tensor,
    weights: torch.Tensor | None,
    positions: torch.Tensor,
    causal: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
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


def crop(
    x: Padded, out: torch.Tensor, weights: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Drop the padding added by ``pad_inputs``: (B, H, N, D) and (B, H, N, N)."""
    n = x.length
    return out[:, :, :n], (None if weights is None else weights[:, :, :n, :n])
