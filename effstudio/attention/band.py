"""Exact softmax attention over a band of blocks plus a few columns, in batched operations.

The sliding-window kinds (local, longformer) see, from query block i of b
tokens, key blocks i-1, i and i+1 (causal: i-1 and i), trimmed to the exact
window, and optionally a few column keys every query sees (global tokens).
This path lays the candidate keys of a run of blocks side by side with one copy,
``[K_{i-1}, K_i, K_{i+1}, K_glob]`` (B, H, c, 3b+G, D), and then the run is a
handful of batched operations: one product for the scores, one masked fill,
one softmax, one product for the output. The weights P are kept for the
backward pass (nothing is recomputed), which is again one product per
gradient, the softmax's own backward, and slice additions that fold the
gradients of the side-by-side copy back onto the keys: contiguous adds, no
scatter. Runs of about CHUNK_QUERIES queries keep every tensor but P small, so
the working set stays in the caches and time grows linearly with N.

The price is memory: P holds B*H*N*(3b+G) entries, what the peers keep too.
:func:`fits` says whether that is affordable for a call; when it is not, the
kinds take :mod:`effstudio.attention.block_sparse`'s chunked path, which keeps
only O(N * D) between the passes and recomputes each chunk's weights.
"""

from __future__ import annotations

import functools

import psutil
import torch

from effstudio.attention.block_sparse import Padded

KEEP_LIMIT_BYTES = 1 << 30  # at most this much of kept weights; beyond it the chunked path runs
KEEP_SHARE = 0.25  # and at most this share of the memory available now
CHUNK_QUERIES = 1024  # queries per run of the passes: a run's working tensors stay in the caches


def fits(x: Padded, block: int, columns: int, causal: bool) -> bool:
    """Whether the kept weights (and the same again of working space) fit the memory of this call."""
    b, h, n, _ = x.q.shape
    width = (2 if causal else 3) * block + columns
    needed = 2 * b * h * n * width * x.q.element_size()
    return needed <= min(KEEP_LIMIT_BYTES, KEEP_SHARE * psutil.virtual_memory().available)


def _slots(causal: bool) -> tuple[int, ...]:
    """Which block each slot of a block's candidates holds, relative to the block itself."""
    return (-1, 0) if causal else (-1, 0, 1)


def _side_by_side(t: torch.Tensor, block: int, causal: bool, columns: torch.Tensor | None,
                  start: int = 0, stop: int | None = None) -> torch.Tensor:
    """The candidate keys (or values) of blocks start..stop-1: t (B, H, Np, D) -> (B, H, c, R*b + G, D),
    one copy. Block i gets blocks i-1, i (and i+1 unless causal), zeros past either end, then the columns.
    """
    b, h, n, d = t.shape
    nb = n // block
    stop = nb if stop is None else stop
    blocks = t.view(b, h, nb, block, d)
    slots = _slots(causal)
    out = t.new_empty(b, h, stop - start, len(slots) * block + (0 if columns is None else columns.numel()), d)
    for slot, offset in enumerate(slots):
        lo, hi = max(start, -offset), min(stop, nb - offset)  # the blocks whose neighbour exists
        part = out[:, :, :, slot * block: (slot + 1) * block]
        part[:, :, lo - start: hi - start] = blocks[:, :, lo + offset: hi + offset]
        part[:, :, : lo - start] = 0
        part[:, :, hi - start:] = 0
    if columns is not None:
        out[:, :, :, len(slots) * block:] = t[:, :, columns].unsqueeze(2)
    return out


def _fold_into(grad: torch.Tensor, part: torch.Tensor, block: int, causal: bool, columns: torch.Tensor | None,
               start: int) -> None:
    """Add the adjoint of ``_side_by_side`` for blocks start..: part (B, H, c, R*b + G, D) onto grad
    (B, H, Np, D), as contiguous slice additions (no scatter)."""
    b, h, n, d = grad.shape
    nb, stop = n // block, start + part.shape[2]
    blocks = grad.view(b, h, nb, block, d)
    slots = _slots(causal)
    for slot, offset in enumerate(slots):
        lo, hi = max(start, -offset), min(stop, nb - offset)
        blocks[:, :, lo + offset: hi + offset] += part[:, :, lo - start: hi - start, slot * block: (slot + 1) * block]
    if columns is not None:
        grad[:, :, columns] += part[:, :, :, len(slots) * block:].sum(dim=2)  # (B, H, G, D); distinct positions


def forbidden(x: Padded, block: int, window: int, causal: bool, columns: torch.Tensor | None) -> torch.Tensor:
    """Which (query, candidate) pairs are outside the pattern: bool (B or 1, 1, nb, b, R*b + G).

    Band: |i - j| > window, the blocks past either end, causality, padded keys. Columns: a
    column inside the query's window (the band offers it), causality, padded keys.
    """
    out = _positions_outside(x.padded_length, block, window, causal,
                             None if columns is None else tuple(columns.tolist()), x.q.device)
    if x.key_mask is None:
        return out
    real = _side_by_side(x.key_mask[:, None, :, None].float(), block, causal, columns) > 0  # (B, 1, nb, K, 1)
    return out | ~real.transpose(-1, -2)  # (B, 1, nb, b, K)


@functools.lru_cache(maxsize=8)
def _positions_outside(n: int, block: int, window: int, causal: bool, columns: tuple[int, ...] | None,
                       device: torch.device) -> torch.Tensor:
    """The pattern's part that depends on positions only, (1, 1, nb, b, R*b + G) bool; cached, since a
    model calls every layer with the same length."""
    nb = n // block
    query = torch.arange(n, device=device).view(nb, block, 1)  # (nb, b, 1)
    offsets = torch.arange(-block, (1 if causal else 2) * block, device=device)  # (R*b,)
    key = (torch.arange(nb, device=device) * block).view(nb, 1, 1) + offsets  # (nb, 1, R*b)
    gap = query - key  # (nb, b, R*b)
    out = (gap.abs() > window) | (key < 0) | (key >= n)
    if causal:
        out |= gap < 0
    if columns is not None:
        gap = query - torch.tensor(columns, device=device)  # (nb, b, G)
        outside = gap.abs() <= window
        if causal:
            outside |= gap < 0
        out = torch.cat([out, outside], dim=-1)
    return out[None, None]


def _probs(scores: torch.Tensor, outside: torch.Tensor, masked: bool) -> torch.Tensor:
    """Softmax of scores (.., K) over the pattern, in place; a row with no key is all 0.

    Without a key mask every query sees at least itself, so the plain softmax cannot meet an empty row.
    """
    scores.masked_fill_(outside, float("-inf"))
    if not masked:
        return torch.softmax(scores, dim=-1)
    top = scores.amax(-1, keepdim=True)
    top.masked_fill_(top == float("-inf"), 0.0)
    probs = scores.sub_(top).exp_()
    return probs.div_(probs.sum(-1, keepdim=True).clamp_min_(torch.finfo(probs.dtype).tiny))


def _chunks(nb: int, block: int) -> list[tuple[int, int]]:
    """Query blocks in runs of about CHUNK_QUERIES queries: each run's working tensors stay small."""
    step = max(1, CHUNK_QUERIES // block)
    return [(start, min(nb, start + step)) for start in range(0, nb, step)]


class BandAttention(torch.autograd.Function):
    """out = P V over the band and columns; P is kept, so the backward pass is products and folds.

    Both passes go through the query blocks in runs (``_chunks``): only P stays whole, every other
    tensor of the run (the candidates side by side, the scores' gradient) is a run's size.
    """

    @staticmethod
    def forward(ctx, q, k, v, outside, block, causal, columns, masked):  # noqa: ANN001, ANN205
        b, h, n, d = q.shape
        nb = n // block
        queries = q.view(b, h, nb, block, d)  # (B, H, nb, b, D)
        kept, outs = [], []
        for start, stop in _chunks(nb, block):
            candidates = _side_by_side(k, block, causal, columns, start, stop)  # (B, H, c, K, D)
            scores = queries[:, :, start:stop] @ candidates.transpose(-1, -2)  # (B, H, c, b, K)
            del candidates
            probs = _probs(scores, outside[:, :, start:stop], masked)
            outs.append(probs @ _side_by_side(v, block, causal, columns, start, stop))  # (B, H, c, b, D)
            kept.append(probs)
        ctx.block, ctx.causal, ctx.columns = block, causal, columns
        ctx.save_for_backward(q, k, v, *kept)
        out = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
        return out.view(b, h, n, d)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # noqa: ANN001, ANN205
        q, k, v, *kept = ctx.saved_tensors
        block, causal, columns = ctx.block, ctx.causal, ctx.columns
        b, h, n, d = q.shape
        nb = n // block
        queries = q.view(b, h, nb, block, d)
        dout = grad_out.contiguous().view(b, h, nb, block, d)  # (B, H, nb, b, D)
        grad_k, grad_v = torch.zeros_like(k), torch.zeros_like(v)
        grad_q = []
        for (start, stop), probs in zip(_chunks(nb, block), kept, strict=True):
            dout_run = dout[:, :, start:stop]  # (B, H, c, b, D)
            _fold_into(grad_v, probs.transpose(-1, -2) @ dout_run, block, causal, columns, start)
            candidates = _side_by_side(v, block, causal, columns, start, stop)
            grad_probs = dout_run @ candidates.transpose(-1, -2)  # (B, H, c, b, K)
            del candidates
            grad_scores = torch._softmax_backward_data(grad_probs, probs, -1, probs.dtype)  # P (dP - rowsum(dP P))
            del grad_probs
            grad_q.append(grad_scores @ _side_by_side(k, block, causal, columns, start, stop))
            _fold_into(grad_k, grad_scores.transpose(-1, -2) @ queries[:, :, start:stop], block, causal, columns,
                       start)
        grad_q = grad_q[0] if len(grad_q) == 1 else torch.cat(grad_q, dim=2)
        return grad_q.view(b, h, n, d), grad_k, grad_v, None, None, None, None, None


def band_attention(x: Padded, block: int, window: int, causal: bool,
                   columns: torch.Tensor | None = None) -> torch.Tensor:
    """out (B, H, Np, D): exact attention with |i - j| <= window (j <= i when causal) plus ``columns`` (G,)."""
    if columns is not None and not columns.numel():
        columns = None
    with torch.no_grad():
        outside = forbidden(x, block, window, causal, columns)
    return BandAttention.apply(x.q, x.k, x.v, outside, block, causal, columns, x.key_mask is not None)


def band_weights(x: Padded, block: int, window: int, causal: bool,
                 columns: torch.Tensor | None = None) -> torch.Tensor:
    """The dense weights (B, H, Np, Np) of :func:`band_attention`, for the attention-map probe."""
    if columns is not None and not columns.numel():
        columns = None
    b, h, n, d = x.q.shape
    nb = n // block
    with torch.no_grad():
        scores = x.q.view(b, h, nb, block, d) @ _side_by_side(x.k, block, causal, columns).transpose(-1, -2)
        probs = _probs(scores, forbidden(x, block, window, causal, columns), x.key_mask is not None)
        width = (2 if causal else 3) * block
        # key j of block i's band sits at padded column i*b + j of a (Np + 2b)-wide row: a strided view
        dense = x.q.new_zeros(b, h, n, n + 2 * block)
        row = n + 2 * block
        band = dense.as_strided((b, h, nb, block, width), (h * n * row, n * row, block * row + block, row, 1))
        band.copy_(probs[..., :width])
        dense = dense[..., block: block + n].contiguous()
        if columns is not None:
            dense.index_add_(-1, columns, probs[..., width:].reshape(b, h, n, -1))
    return dense
