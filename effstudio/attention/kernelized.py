"""The linear-attention core shared by the kernel methods (Performer, linear attention).

A kernel method replaces exp(q.k / sqrt(d)) by a dot product of feature maps,
phi(q).phi(k), with phi(x) >= 0 of width F. Attention then factors:

    out_i = sum_j phi(q_i).phi(k_j) v_j / sum_j phi(q_i).phi(k_j)
          = phi(q_i) (phi(K)^T V) / phi(q_i) (phi(K)^T 1)

so the keys are summed into one (F x D) state before any query reads it: time
and memory grow as N * F * D, never N^2. The denominator rides along as an
extra value column of ones, so one matmul gives numerator and denominator.

Causal use needs, for every query, the state of the keys up to it: a prefix
sum. Keeping that state per token would cost N * F * D memory, so the sequence
is cut into chunks of C tokens instead. Within a chunk the C x C block of
phi(q).phi(k) is computed and masked, like small quadratic attention; across
chunks one (F x D) state per chunk carries everything before it (an exclusive
cumulative sum of the chunks' states). Time is O(N * C * F + N * F * D).

Memory and speed. The (N x F) feature tensors are the largest things here,
and autograd would keep both for the backward pass, plus the chunks' states,
plus a gradient per elementwise step. :class:`KernelAttentionFunction` keeps
only q, k, v and the output: the backward pass recomputes the features one
side at a time (an extra feature matmul, the cheapest part) and applies the
core's and the feature maps' gradients, written out by hand and in place.
The heads are worked through a group at a time, and a long sequence a tile
of rows at a time (states carried from tile to tile), so at most about
``WORK_ELEMENTS`` feature entries exist at once: small enough to stay in the
cache, large enough that each operation is big (an operation split across
threads waits for its slowest thread, so many small ones suffer when other
processes share the cores). Everything is computed in float32, whatever the
input dtype: sums over thousands of keys lose too much in 16 bits.

Which path runs is chosen per call. Bidirectional attention whose features
(B*H*(Nq+Nk)*F floats, twice over) fit in a quarter of the memory available
and 1 GB (:func:`keeps_features`; 4 heads, 16K tokens, 256 features: 134 MB)
runs whole sequences and keeps the features for the backward pass: the feature
maps, the two (N x F)(F x D) products and their gradients, nothing recomputed,
the key stabiliser taken from the logits just computed (one pass). It works
through groups of heads whose features take at most ``KEEP_GROUP_ELEMENTS``
entries (16 MB: 4 heads at once at 4K tokens, one at a time at 16K), because a
larger tensor leaves the caches and, with glibc's allocator, any block over
32 MB is returned to the system when freed and page-faulted afresh on every
call (one head at a time is a fifth faster at 16K). Longer sequences, and
causal use, take the tiles above.

Everything here is agnostic of the feature map: a kind subclasses
:class:`KernelizedAttention` and supplies its two :class:`FeatureMap` objects.
Padded keys get all-zero features, so they add nothing to any state; a query
with no real key then has a zero numerator and denominator, and its output
is zero.

ONNX export cannot trace :class:`KernelAttentionFunction` (its tiles, groups
and chunks are Python loops over sizes known only at run time), so while
exporting, :meth:`KernelizedAttention.export_forward` computes the same
normalised kernel attention in plain tensor operations, with the same feature
maps, stabilisers and padding rule.
"""

from __future__ import annotations

import contextlib
from functools import partial
from typing import Any

import psutil
import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from effstudio.attention.base import Attention, AttentionOutput, AttentionSpec, exporting
from effstudio.attention.full import allowed_keys
from effstudio.config import param


def chunk_param() -> Any:
    """The ``chunk`` field of a kernelized kind's config."""
    return param(64, min=1, max=4096, label="Causal chunk",
                 help="Causal use only: tokens per block of the prefix sum; larger blocks do more "
                      "quadratic work per block but keep fewer running states", advanced=True)


def zero_padded(t: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
    """t (B, H, N, F) with the rows of padded keys (key_mask (B, N) False) set to 0, in place.

    masked_fill, not a product: whatever a padded key holds, its features are 0.
    """
    return t if key_mask is None else t.masked_fill_(~key_mask[:, None, :, None], 0.0)


class FeatureMap:
    """phi: x (B, H, N, D) -> (B, H, N, F), entries >= 0, and its gradient.

    Key maps are given key_mask (B, N) (True = real) and return all-zero
    features for padded keys, whatever those hold; query maps get None. The
    core calls a map again in the backward pass, so it must be deterministic
    and hold no trainable parameters; whatever it reads (random features) is
    bound when it is made.
    """

    def bind(self, x: torch.Tensor, key_mask: torch.Tensor | None, rows: int) -> FeatureMap:
        """This map with whatever it takes from a whole sequence (a stabiliser) taken from x.

        The core then applies the bound map to x a tile of rows at a time; it
        reads x (B, H, N, D) itself at most ``rows`` rows at a time. By default
        there is nothing to take: the map itself.
        """
        return self

    def __call__(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def backward(
        self, x: torch.Tensor, phi: torch.Tensor, g_phi: torch.Tensor, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The gradient for x (B, H, N, D) given phi = self(x, key_mask) and g_phi, which it may overwrite.

        Parts of phi that only scale a whole row (stabilisers) may be treated as
        constants: attention is normalised per query, so they cancel.
        """
        raise NotImplementedError


def with_ones(v: torch.Tensor) -> torch.Tensor:
    """v (B, H, N, D) -> (B, H, N, D + 1): the last column sums the weights (the denominator)."""
    return torch.cat([v, v.new_ones(*v.shape[:-1], 1)], dim=-1)


def seen(total: torch.Tensor) -> torch.Tensor:
    """Which rows' weight totals are large enough to divide by, as a bool like ``total``.

    A total of 0 means the row saw no real key (their features are 0). A
    positive total below sqrt(tiny) only arises when every feature product
    underflowed: the ratio is rounding noise, and its gradient, which divides
    by the total twice, would overflow. Both count as having seen nothing, and
    their output is 0 (the numerator is as small as the total), without an
    epsilon that would bias every other row.
    """
    return total > torch.finfo(total.dtype).tiny ** 0.5


# ------------------------------------------------------------ chunked causal
def _chunks(x: torch.Tensor, c: int) -> torch.Tensor:
    """(G, 1, N, E) -> (G, 1, N / C, C, E); N is a whole number of chunks."""
    g, h, n, e = x.shape
    return x.view(g, h, n // c, c, e)


def _rows(x: torch.Tensor) -> torch.Tensor:
    """(G, 1, M, C, E) -> (G, 1, M * C, E)."""
    g, h, m, c, e = x.shape
    return x.view(g, h, m * c, e)


def _exclusive_cumsum(x: torch.Tensor, start: torch.Tensor | None) -> torch.Tensor:
    """Along the chunk axis of (G, 1, M, F, E): chunk t gets start + the sum of chunks 0..t-1.

    One cumsum: a Python loop of M slab additions is a little faster on an
    idle machine, but it is hundreds of small threaded operations, and each
    waits for its slowest thread when other processes share the cores.
    """
    out = torch.empty_like(x)
    out[:, :, 0] = 0.0 if start is None else start
    torch.cumsum(x[:, :, :-1], dim=2, out=out[:, :, 1:])
    if start is not None:
        out[:, :, 1:] += start.unsqueeze(2)
    return out


def _exclusive_suffix_sum(x: torch.Tensor, end: torch.Tensor | None) -> torch.Tensor:
    """Along the chunk axis of (G, 1, M, F, E): chunk t gets end + the sum of chunks t+1..M-1."""
    return _exclusive_cumsum(x.flip(2), end).flip(2)


def _kernel_blocks(q_chunks: torch.Tensor, k_chunks: torch.Tensor) -> torch.Tensor:
    """phi(q).phi(k) within each chunk, keys after the query zeroed: (G, 1, M, C, C)."""
    return (q_chunks @ k_chunks.transpose(-1, -2)).tril_()


# --------------------------------------------------------------- the function
WORK_ELEMENTS = 1 << 21  # feature entries (N x F) worked on at once: a group of heads, or rows of one


KEEP_GROUP_ELEMENTS = 1 << 22  # whole path: feature entries (N x F) per group of heads
KEEP_LIMIT_BYTES = 1 << 30  # kept features of the whole-sequence path at most
KEEP_SHARE = 0.25  # and at most this share of the memory available now


def keeps_features(heads: int, nq: int, nk: int, width: int) -> bool:
    """Whether bidirectional attention takes the whole-sequence path and keeps its features:
    (Nq + Nk) x F per head, float32, twice over for the backward pass's working space."""
    needed = 2 * heads * (nq + nk) * width * 4
    return needed <= min(KEEP_LIMIT_BYTES, KEEP_SHARE * psutil.virtual_memory().available)


def _float32_only(device: torch.device) -> contextlib.AbstractContextManager:
    """No autocast inside: the core and its recomputation run in the dtype they are given."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def _tiles(n: int, rows: int) -> list[slice]:
    return [slice(start, min(start + rows, n)) for start in range(0, n, rows)]


def _normalise(mixed: torch.Tensor, out: torch.Tensor, total: torch.Tensor) -> None:
    """Write num / total into out (G, 1, R, D) and total into total (G, 1, R, 1), from mixed (G, 1, R, E)."""
    total.copy_(mixed[..., -1:])
    torch.div(mixed[..., :-1], torch.where(seen(total), total, 1.0), out=out)


def _mixed_grad(g_out: torch.Tensor, out: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """The gradient for mixed = [num, total] (G, 1, R, E) given that for out = num / total (G, 1, R, D).

    Where the row saw nothing the total was replaced by the constant 1.
    """
    ok = seen(total)  # (G, 1, R, 1)
    g_num = g_out / torch.where(ok, total, 1.0)  # (G, 1, R, D)
    g_total = (g_num * out).sum(dim=-1, keepdim=True).neg_().masked_fill_(~ok, 0.0)  # (G, 1, R, 1)
    return torch.cat([g_num, g_total], dim=-1)


class KernelAttentionFunction(torch.autograd.Function):
    """Normalised kernel attention; only the inputs and the output are kept for backward.

    Inputs are (B*H, 1, N, D) with key_mask (B*H, Nk) or None, every head its
    own sequence. They are worked through ``group`` heads at a time, and each
    group in tiles of ``rows`` rows, so at most one tile's (rows x F) features
    exist at once. ``chunk`` is None for bidirectional attention, else the
    causal chunk length; causal inputs are aligned (query i is key i) and a
    whole number of chunks long, with ``rows`` a multiple of the chunk.
    """

    @staticmethod
    def forward(ctx, query_map, key_map, chunk, group, rows, keep, q, k, v, key_mask):  # noqa: ANN001, ANN205
        out = q.new_empty(*q.shape[:-1], v.shape[-1])  # (BH, 1, Nq, D)
        total = q.new_empty(*q.shape[:-1], 1)  # (BH, 1, Nq, 1)
        ctx.query_map, ctx.key_map, ctx.chunk, ctx.group, ctx.rows, ctx.keep = query_map, key_map, chunk, group, rows, keep
        if keep:  # bidirectional, a group of whole sequences at a time, the features kept
            kept = [_whole_forward(query_map, key_map, q[heads], k[heads], v[heads],
                                   None if key_mask is None else key_mask[heads], out[heads], total[heads])
                    for heads in _tiles(q.shape[0], group)]
            ctx.states = [state for state, _, _ in kept]  # per group (G, 1, F, E)
            ctx.save_for_backward(q, k, v, key_mask, out, total, *(phi for _, *phis in kept for phi in phis))
            return out
        bound, carried = [], []
        for heads in _tiles(q.shape[0], group):
            mask = None if key_mask is None else key_mask[heads]
            bound.append(key_map.bind(k[heads], mask, rows))
            sweep = _bidirectional_forward if chunk is None else partial(_causal_forward, chunk=chunk)
            carried.append(
                sweep(query_map, bound[-1], rows, q[heads], k[heads], v[heads], mask, out[heads], total[heads])
            )
        ctx.bound, ctx.carried = bound, carried  # per group: the bound key map; states (few, F x E)
        ctx.save_for_backward(q, k, v, key_mask, out, total)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out):  # noqa: ANN001, ANN205
        q, k, v, key_mask, out, total, *features = ctx.saved_tensors
        groups = _tiles(q.shape[0], ctx.group)
        if ctx.keep and len(groups) == 1:  # every head in one group: its gradients are the whole ones
            with _float32_only(q.device):
                return None, None, None, None, None, None, *_whole_backward(
                    ctx.query_map, ctx.key_map, ctx.states[0], *features, q, k, v, key_mask, out, total, g_out), None
        g_q, g_k, g_v = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        with _float32_only(q.device):
            for number, heads in enumerate(groups):
                mask = None if key_mask is None else key_mask[heads]
                if ctx.keep:
                    phi_q, phi_k = features[2 * number: 2 * number + 2]
                    g_q[heads], g_k[heads], g_v[heads] = _whole_backward(
                        ctx.query_map, ctx.key_map, ctx.states[number], phi_q, phi_k,
                        q[heads], k[heads], v[heads], mask, out[heads], total[heads], g_out[heads])
                    continue
                sweep = _bidirectional_backward if ctx.chunk is None else partial(_causal_backward, chunk=ctx.chunk)
                sweep(
                    ctx.query_map, ctx.bound[number], ctx.rows, ctx.carried[number],
                    q[heads], k[heads], v[heads], mask, out[heads], total[heads], g_out[heads],
                    g_q[heads], g_k[heads], g_v[heads],
                )
        return None, None, None, None, None, None, g_q, g_k, g_v, None


# The sweeps below work on one group of heads, (G, 1, N, D), and write their
# results into the slices they are given.
def _bidirectional_forward(
    query_map: FeatureMap, key_map: FeatureMap, rows: int,
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None,
    out: torch.Tensor, total: torch.Tensor,
) -> torch.Tensor:
    """Sum the keys into state = phi(K)^T [V, 1] tile by tile, then let each query tile read it."""
    state = None
    for t in _tiles(k.shape[-2], rows):
        mask = None if key_mask is None else key_mask[:, t]
        part = key_map(k[:, :, t], mask).transpose(-1, -2) @ with_ones(v[:, :, t])  # (G, 1, F, E)
        state = part if state is None else state.add_(part)
    for t in _tiles(q.shape[-2], rows):
        _normalise(query_map(q[:, :, t]) @ state, out[:, :, t], total[:, :, t])  # via (G, 1, R, E)
    return state  # (G, 1, F, E)


def _whole_forward(
    query_map: FeatureMap, key_map: FeatureMap,
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None,
    out: torch.Tensor, total: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Bidirectional, a group of whole sequences: (state (G, 1, F, E), phi_q (G, 1, Nq, F), phi_k (G, 1, Nk, F)).

    The key map takes its stabiliser from the logits it has just computed: one pass over them.
    """
    phi_k = key_map(k, key_mask)  # (G, 1, Nk, F)
    state = phi_k.transpose(-1, -2) @ with_ones(v)  # (G, 1, F, E)
    phi_q = query_map(q)  # (G, 1, Nq, F)
    _normalise(phi_q @ state, out, total)
    return state, phi_q, phi_k


def _whole_backward(
    query_map: FeatureMap, key_map: FeatureMap, state: torch.Tensor, phi_q: torch.Tensor, phi_k: torch.Tensor,
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None,
    out: torch.Tensor, total: torch.Tensor, g_out: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The gradients (g_q, g_k, g_v) of :func:`_whole_forward` for one group of heads, from its kept features."""
    g_mixed = _mixed_grad(g_out, out, total)  # (G, 1, Nq, E)
    g_state = phi_q.transpose(-1, -2) @ g_mixed  # (G, 1, F, E)
    g_q = query_map.backward(q, phi_q, g_mixed @ state.transpose(-1, -2))  # (G, 1, Nq, D)
    del g_mixed
    g_values, g_ones = g_state[..., :-1], g_state[..., -1:]  # (G, 1, F, D), (G, 1, F, 1)
    g_v = phi_k @ g_values  # (G, 1, Nk, D)
    g_phi_k = (v @ g_values.transpose(-1, -2)).add_(g_ones.transpose(-1, -2))  # (G, 1, Nk, F)
    g_k = key_map.backward(k, phi_k, g_phi_k, key_mask)
    return g_q, g_k, g_v


def _bidirectional_backward(
    query_map: FeatureMap, key_map: FeatureMap, rows: int, state: torch.Tensor,
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None,
    out: torch.Tensor, total: torch.Tensor, g_out: torch.Tensor,
    g_q: torch.Tensor, g_k: torch.Tensor, g_v: torch.Tensor,
) -> None:
    """Query tiles first (their gradients, and the state's), then key tiles."""
    g_state = torch.zeros_like(state)  # (G, 1, F, E)
    for t in _tiles(q.shape[-2], rows):
        phi_q = query_map(q[:, :, t])  # (G, 1, R, F)
        g_mixed = _mixed_grad(g_out[:, :, t], out[:, :, t], total[:, :, t])  # (G, 1, R, E)
        g_state += phi_q.transpose(-1, -2) @ g_mixed
        g_q[:, :, t] = query_map.backward(q[:, :, t], phi_q, g_mixed @ state.transpose(-1, -2))
    g_values, g_ones = g_state[..., :-1], g_state[..., -1:]  # (G, 1, F, D), (G, 1, F, 1)
    for t in _tiles(k.shape[-2], rows):
        mask = None if key_mask is None else key_mask[:, t]
        phi_k = key_map(k[:, :, t], mask)  # (G, 1, R, F)
        g_v[:, :, t] = phi_k @ g_values
        g_phi_k = (v[:, :, t] @ g_values.transpose(-1, -2)).add_(g_ones.transpose(-1, -2))  # (G, 1, R, F)
        g_k[:, :, t] = key_map.backward(k[:, :, t], phi_k, g_phi_k, mask)


def _causal_forward(
    query_map: FeatureMap, key_map: FeatureMap, rows: int,
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None,
    out: torch.Tensor, total: torch.Tensor, *, chunk: int,
) -> list[torch.Tensor | None]:
    """Tile by tile: within a chunk the masked C x C block; across chunks, chunk t reads the
    states K_c^T [V_c, 1] of all earlier chunks, carried from tile to tile.

    Returns the carried state at the start of each tile, for the backward pass.
    """
    carried, starts = None, []
    for t in _tiles(q.shape[-2], rows):
        mask = None if key_mask is None else key_mask[:, t]
        q_chunks = _chunks(query_map(q[:, :, t]), chunk)  # (G, 1, M, C, F)
        k_chunks = _chunks(key_map(k[:, :, t], mask), chunk)  # (G, 1, M, C, F)
        v_chunks = _chunks(with_ones(v[:, :, t]), chunk)  # (G, 1, M, C, E)
        states = k_chunks.transpose(-1, -2) @ v_chunks  # (G, 1, M, F, E)
        before = _exclusive_cumsum(states, carried)  # (G, 1, M, F, E)
        mixed = _kernel_blocks(q_chunks, k_chunks) @ v_chunks  # (G, 1, M, C, E)
        mixed += q_chunks @ before
        _normalise(_rows(mixed), out[:, :, t], total[:, :, t])
        starts.append(carried)
        carried = before[:, :, -1] + states[:, :, -1]  # (G, 1, F, E)
    return starts


def _causal_backward(
    query_map: FeatureMap, key_map: FeatureMap, rows: int, starts: list[torch.Tensor | None],
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None,
    out: torch.Tensor, total: torch.Tensor, g_out: torch.Tensor,
    g_q: torch.Tensor, g_k: torch.Tensor, g_v: torch.Tensor, *, chunk: int,
) -> None:
    """Tiles from last to first. With A = tril(Q K^T) per chunk, S_t the state before chunk t
    and R_t the sum of the later chunks' Q^T G (what each chunk's state is read with):
    dQ = tril(G V^T) K + G S^T, dK = tril(G V^T)^T Q + V R^T, dV = A^T G + K R.
    """
    later = None  # R carried from the tiles after this one: (G, 1, F, E)
    for t, start in reversed(list(zip(_tiles(q.shape[-2], rows), starts, strict=True))):
        mask = None if key_mask is None else key_mask[:, t]
        phi_q, phi_k = query_map(q[:, :, t]), key_map(k[:, :, t], mask)  # (G, 1, R, F)
        q_chunks, k_chunks = _chunks(phi_q, chunk), _chunks(phi_k, chunk)  # (G, 1, M, C, F)
        v_chunks = _chunks(with_ones(v[:, :, t]), chunk)  # (G, 1, M, C, E)
        g_chunks = _chunks(_mixed_grad(g_out[:, :, t], out[:, :, t], total[:, :, t]), chunk)  # (G, 1, M, C, E)

        g_scores = (g_chunks @ v_chunks.transpose(-1, -2)).tril_()  # (G, 1, M, C, C)
        before = _exclusive_cumsum(k_chunks.transpose(-1, -2) @ v_chunks, start)  # (G, 1, M, F, E)
        g_phi_q = g_scores @ k_chunks  # (G, 1, M, C, F)
        g_phi_q += g_chunks @ before.transpose(-1, -2)
        del before

        read = q_chunks.transpose(-1, -2) @ g_chunks  # (G, 1, M, F, E)
        after = _exclusive_suffix_sum(read, later)  # (G, 1, M, F, E)
        later = after[:, :, 0] + read[:, :, 0]
        del read
        g_phi_k = g_scores.transpose(-1, -2) @ q_chunks  # (G, 1, M, C, F)
        g_phi_k += v_chunks @ after.transpose(-1, -2)
        g_values = _kernel_blocks(q_chunks, k_chunks).transpose(-1, -2) @ g_chunks  # (G, 1, M, C, E)
        g_values += k_chunks @ after
        g_v[:, :, t] = _rows(g_values)[..., :-1]
        g_q[:, :, t] = query_map.backward(q[:, :, t], phi_q, _rows(g_phi_q))
        g_k[:, :, t] = key_map.backward(k[:, :, t], phi_k, _rows(g_phi_k), mask)


def implied_weights(phi_q: torch.Tensor, phi_k: torch.Tensor, is_causal: bool) -> torch.Tensor:
    """The (B, H, Nq, Nk) matrix the kernel applies: phi(Q) phi(K)^T, masked and row-normalised.

    out = weights @ v, as the fast paths compute it. Padded keys have zero
    features, so their column is 0; a row with no allowed key is all 0. Only
    the attention-map probe asks for this; it is the one place an N x N matrix
    exists.
    """
    nq, nk = phi_q.shape[-2], phi_k.shape[-2]
    kernel = phi_q @ phi_k.transpose(-1, -2)  # (B, H, Nq, Nk)
    allowed = allowed_keys(None, nq, nk, is_causal, phi_q.device)  # (Nq, Nk) or None
    if allowed is not None:
        kernel = kernel.masked_fill(~allowed, 0.0)
    total = kernel.sum(dim=-1, keepdim=True)  # (B, H, Nq, 1)
    ok = seen(total)  # (B, H, Nq, 1)
    return torch.where(ok, kernel, 0.0) / torch.where(ok, total, torch.ones_like(total))


class KernelizedAttention(Attention):
    """Attention through a feature map: subclasses define ``feature_maps``; the rest is shared.

    ``chunk`` is the causal path's chunk length (tokens per C x C block) and
    ``feature_width`` the F of the feature maps (it sizes the work per step).
    """

    subquadratic = True

    def __init__(self, spec: AttentionSpec, chunk: int, feature_width: int):
        super().__init__(spec)
        self.chunk, self.feature_width = chunk, feature_width

    def feature_maps(self) -> tuple[FeatureMap, FeatureMap]:
        """The query and the key feature map for one call, bound to what they read now."""
        raise NotImplementedError

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_mask: torch.Tensor | None = None, need_weights: bool = False) -> AttentionOutput:
        if exporting():
            return self.export_forward(q, k, v, key_mask, need_weights)
        b, h, nq, _ = q.shape
        nk, dtype = k.shape[-2], v.dtype
        query_map, key_map = self.feature_maps()
        with _float32_only(q.device):
            q, k, v = q.float(), k.float(), v.float()  # (B, H, N, D)
            # every head is its own sequence from here: (B*H, 1, N, D), key_mask (B*H, Nk)
            flat_q, flat_k, flat_v = (x.reshape(b * h, 1, *x.shape[-2:]) for x in (q, k, v))
            mask = None if key_mask is None else key_mask.repeat_interleave(h, dim=0)
            n, chunk, q_front = max(nq, nk), None, 0
            if self.causal:
                flat_q, flat_k, flat_v, mask, q_front, chunk = _align(flat_q, flat_k, flat_v, mask, self.chunk)
                n = flat_q.shape[-2]
            keep = chunk is None and keeps_features(b * h, nq, nk, self.feature_width)
            if keep:  # whole sequences, the features kept for the backward pass
                group, rows = max(1, KEEP_GROUP_ELEMENTS // (n * self.feature_width)), n
            else:
                group = max(1, WORK_ELEMENTS // (n * self.feature_width))
                rows = max(1, WORK_ELEMENTS // (group * self.feature_width))
            if chunk is not None:
                rows = max(chunk, rows // chunk * chunk)
            out = KernelAttentionFunction.apply(query_map, key_map, chunk, group, rows, keep, flat_q, flat_k, flat_v,
                                                mask)
            out = out[:, :, q_front : q_front + nq].reshape(b, h, nq, -1)  # (B, H, Nq, D)
            weights = None
            if need_weights:
                with torch.no_grad():
                    phi_q, phi_k = query_map(q), key_map(k, key_mask)  # (B, H, N, F)
                    weights = implied_weights(phi_q, phi_k, self.causal)  # (B, H, Nq, Nk)
        return out.to(dtype), weights

    def export_forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                       key_mask: torch.Tensor | None = None, need_weights: bool = False) -> AttentionOutput:
        """Export only: the forward in plain tensor operations, shapes as the call shape.

        Bidirectional: phi(Q) (phi(K)^T [V, 1]), linear in length. Causal: the
        (Nq, Nk) kernel with the keys after each query zeroed, times [V, 1];
        quadratic, but a prefix sum of (F x E) states per token would be larger.
        The key map is unbound, so it takes its stabiliser from the whole
        sequence, which is what the fast path binds it to.
        """
        dtype = v.dtype
        query_map, key_map = self.feature_maps()
        q, k, v = q.float(), k.float(), v.float()
        phi_q, phi_k = query_map(q), key_map(k, key_mask)  # (B, H, Nq, F), (B, H, Nk, F); padded keys 0
        values = with_ones(v)  # (B, H, Nk, E)
        kernel = None
        if self.causal or need_weights:
            kernel = phi_q @ phi_k.transpose(-1, -2)  # (B, H, Nq, Nk)
            if self.causal:
                # queries are the last Nq positions of the keys' sequence, as in allowed_keys
                nq, nk = q.shape[-2], k.shape[-2]
                query_pos = torch.arange(nq, device=q.device)[:, None] + (nk - nq)  # (Nq, 1)
                kernel = kernel.masked_fill(torch.arange(nk, device=q.device)[None, :] > query_pos, 0.0)
        if self.causal:
            mixed = kernel @ values  # (B, H, Nq, E)
        else:
            mixed = phi_q @ (phi_k.transpose(-1, -2) @ values)  # (B, H, Nq, E) via the (F, E) state
        total = mixed[..., -1:]  # (B, H, Nq, 1)
        ok = seen(total)
        out = mixed[..., :-1] / torch.where(ok, total, torch.ones_like(total))  # (B, H, Nq, D)
        weights = None
        if need_weights:
            row_total = kernel.sum(dim=-1, keepdim=True)  # (B, H, Nq, 1)
            row_ok = seen(row_total)
            weights = torch.where(row_ok, kernel, 0.0) / torch.where(row_ok, row_total, torch.ones_like(row_total))
        return out.to(dtype), weights


def _align(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None, chunk: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, int, int]:
    """Pad (BH, 1, N, D) inputs for the causal sweep: (q, k, v, key_mask, query_front, chunk).

    Causal attention takes the queries to be the last Nq positions of the keys'
    sequence (as ``allowed_keys`` does), so the shorter side is padded in front
    to N = max(Nq, Nk), making query i and key i the same position; the end is
    padded to a whole number of chunks. Padded keys are masked out; padded
    query rows are cut from the output.
    """
    nq, nk = q.shape[-2], k.shape[-2]
    n = max(nq, nk)
    chunk = min(chunk, n)
    q_front, k_front, back = n - nq, n - nk, -n % chunk
    if k_front or back:
        if key_mask is None:
            key_mask = torch.ones(k.shape[0], nk, dtype=torch.bool, device=k.device)
        key_mask = F.pad(key_mask, (k_front, back), value=False)  # (BH, N')
        k, v = (F.pad(x, (0, 0, k_front, back)) for x in (k, v))
    if q_front or back:
        q = F.pad(q, (0, 0, q_front, back))
    return q, k, v, key_mask, q_front, chunk
