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

Memory. The (N x F) feature tensors are the largest things here, and autograd
would keep both for the backward pass, plus the chunks' states, plus one
gradient per elementwise step. :class:`KernelAttentionFunction` instead keeps
only q, k, v and the output, and the backward pass recomputes the features
one side at a time (an extra feature matmul, the cheapest part) and applies
the core's gradients written out by hand. Everything is computed in float32,
whatever the input dtype: sums over thousands of keys lose too much in 16 bits.

Everything here is agnostic of the feature map: a kind subclasses
:class:`KernelizedAttention` and supplies ``feature_maps``. Padded keys get
all-zero features, so they add nothing to any state; a query with no real key
then has a zero numerator and denominator, and its output is zero.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from effstudio.attention.base import Attention, AttentionSpec
from effstudio.attention.full import allowed_keys

FeatureMap = Callable[[torch.Tensor], torch.Tensor]  # (B, H, N, D) -> (B, H, N, F), >= 0
KeyFeatureMap = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]  # also takes key_mask (B, N)


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


# ---------------------------------------------------------------- chunk layout
def _chunk_layout(n_queries: int, n_keys: int, chunk: int) -> tuple[int, int, int, int]:
    """(query_front, key_front, back, c): rows of zero padding, and the chunk length.

    Causal attention takes the queries to be the last Nq positions of the keys'
    sequence (as ``allowed_keys`` does), so the shorter side is padded in front
    to N = max(Nq, Nk), making query i and key i the same position; the end is
    padded to a whole number of chunks. Padded rows have zero features, so they
    add nothing, and padded query rows are cut from the output.
    """
    n = max(n_queries, n_keys)
    c = min(chunk, n)
    return n - n_queries, n - n_keys, -n % c, c


def _to_chunks(x: torch.Tensor, front: int, back: int, c: int) -> torch.Tensor:
    """(B, H, N, E) -> (B, H, M, C, E), with zero rows added in front and behind."""
    if front or back:
        x = F.pad(x, (0, 0, front, back))
    b, h, n, e = x.shape
    return x.view(b, h, n // c, c, e)


def _from_chunks(x: torch.Tensor, front: int, length: int) -> torch.Tensor:
    """(B, H, M, C, E) -> (B, H, length, E): the rows that :func:`_to_chunks` did not add."""
    b, h, m, c, e = x.shape
    return x.view(b, h, m * c, e)[:, :, front : front + length]


def _exclusive_cumsum(x: torch.Tensor) -> torch.Tensor:
    """Along the chunk axis (dim 2) of (B, H, M, F, E): chunk t gets the sum of chunks 0..t-1.

    A loop of M slab additions: torch.cumsum over this strided axis is several
    times slower, and M = N / C is small.
    """
    out = torch.empty_like(x)
    out[:, :, 0] = 0.0
    for t in range(1, x.shape[2]):
        torch.add(out[:, :, t - 1], x[:, :, t - 1], out=out[:, :, t])
    return out


def _exclusive_suffix_sum(x: torch.Tensor) -> torch.Tensor:
    """Along the chunk axis (dim 2) of (B, H, M, F, E): chunk t gets the sum of chunks t+1..M-1."""
    out = torch.empty_like(x)
    out[:, :, -1] = 0.0
    for t in range(x.shape[2] - 2, -1, -1):
        torch.add(out[:, :, t + 1], x[:, :, t + 1], out=out[:, :, t])
    return out


# ------------------------------------------------------------ chunked causal
def _kernel_blocks(q_chunks: torch.Tensor, k_chunks: torch.Tensor) -> torch.Tensor:
    """phi(q).phi(k) within each chunk, keys after the query zeroed: (B, H, M, C, C)."""
    return (q_chunks @ k_chunks.transpose(-1, -2)).tril_()


def _causal_mix(q_chunks: torch.Tensor, k_chunks: torch.Tensor, v_chunks: torch.Tensor) -> torch.Tensor:
    """Sum over allowed keys of phi(q).phi(k) [v, 1]: chunks (B, H, M, C, F|F|E) -> (B, H, M, C, E).

    Within a chunk, the masked C x C block; across chunks, chunk t reads the
    exclusive prefix S_t of the chunks' states K_c^T V_c.
    """
    mixed = _kernel_blocks(q_chunks, k_chunks) @ v_chunks  # (B, H, M, C, E)
    states = k_chunks.transpose(-1, -2) @ v_chunks  # (B, H, M, F, E)
    mixed += q_chunks @ _exclusive_cumsum(states)  # (B, H, M, C, E)
    return mixed


def _causal_query_grad(
    k_chunks: torch.Tensor, v_chunks: torch.Tensor, g_mixed: torch.Tensor
) -> torch.Tensor:
    """d mixed / d phi(q) applied to g_mixed (B, H, M, C, E): tril(G V^T) K + G S^T, (B, H, M, C, F)."""
    g_q = (g_mixed @ v_chunks.transpose(-1, -2)).tril_() @ k_chunks  # (B, H, M, C, F)
    states = k_chunks.transpose(-1, -2) @ v_chunks  # (B, H, M, F, E)
    g_q += g_mixed @ _exclusive_cumsum(states).transpose(-1, -2)
    return g_q


def _causal_key_value_grads(
    q_chunks: torch.Tensor, k_chunks: torch.Tensor, v_chunks: torch.Tensor, g_mixed: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """d mixed / d (phi(k), [v, 1]) applied to g_mixed: (B, H, M, C, F) and (B, H, M, C, E).

    A chunk's state is read by every later chunk, so its gradient is the
    suffix sum R_t of the later chunks' Q^T G: dK = tril(G V^T)^T Q + V R^T,
    dV = tril(Q K^T)^T G + K R.
    """
    later = _exclusive_suffix_sum(q_chunks.transpose(-1, -2) @ g_mixed)  # (B, H, M, F, E)
    g_k = (g_mixed @ v_chunks.transpose(-1, -2)).tril_().transpose(-1, -2) @ q_chunks  # (B, H, M, C, F)
    g_k += v_chunks @ later.transpose(-1, -2)
    g_v = _kernel_blocks(q_chunks, k_chunks).transpose(-1, -2) @ g_mixed  # (B, H, M, C, E)
    g_v += k_chunks @ later
    return g_k, g_v


# --------------------------------------------------------------- the function
GROUP_ELEMENTS = 1 << 20  # feature entries (N x F summed over a group of heads) worked on at once


def _float32_only(device: torch.device) -> contextlib.AbstractContextManager:
    """No autocast inside: the core and its recomputation run in the dtype they are given."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


def _with_graph(feature_map: Callable[..., torch.Tensor], x: torch.Tensor, *args: object) -> torch.Tensor:
    """feature_map(x, *args) recomputed with a graph back to x (which requires grad)."""
    with torch.enable_grad(), _float32_only(x.device):
        return feature_map(x, *args)


def _mix(
    query_map: FeatureMap,
    key_map: KeyFeatureMap,
    chunk: int | None,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Sum over allowed keys of phi(q).phi(k) [v, 1], (G, 1, Nq, E), and the bidirectional state."""
    values = with_ones(v)  # (G, 1, Nk, E), E = D + 1
    if chunk is None:
        state = key_map(k, key_mask).transpose(-1, -2) @ values  # (G, 1, F, E)
        return query_map(q) @ state, state  # (G, 1, Nq, E)
    q_front, k_front, back, c = _chunk_layout(q.shape[-2], k.shape[-2], chunk)
    mixed = _causal_mix(
        _to_chunks(query_map(q), q_front, back, c),  # (G, 1, M, C, F)
        _to_chunks(key_map(k, key_mask), k_front, back, c),  # (G, 1, M, C, F)
        _to_chunks(values, k_front, back, c),  # (G, 1, M, C, E)
    )
    return _from_chunks(mixed, q_front, q.shape[-2]), None  # (G, 1, Nq, E)


class KernelAttentionFunction(torch.autograd.Function):
    """Normalised kernel attention; only the inputs and the output are kept for backward.

    Inputs are (B*H, 1, N, D) with key_mask (B*H, Nk) or None; they are worked
    through in groups of ``group`` heads, so only one group's (N x F) features
    exist at a time. ``chunk`` is None for bidirectional attention, else the
    causal chunk length. The feature maps are called again in the backward
    pass, so they must be deterministic and hold no trainable parameters
    (their gradients would be lost); what they read is fixed when they are made.
    """

    @staticmethod
    def forward(ctx, query_map, key_map, chunk, group, q, k, v, key_mask):  # noqa: ANN001, ANN205
        out = q.new_empty(*q.shape[:-1], v.shape[-1])  # (BH, 1, Nq, D)
        total = q.new_empty(*q.shape[:-1], 1)  # (BH, 1, Nq, 1)
        states = []
        for start in range(0, q.shape[0], group):
            part = slice(start, start + group)
            mask = None if key_mask is None else key_mask[part]
            mixed, state = _mix(query_map, key_map, chunk, q[part], k[part], v[part], mask)  # (G, 1, Nq, E)
            total[part] = mixed[..., -1:]
            out[part] = mixed[..., :-1] / torch.where(seen(total[part]), total[part], 1.0)
            states.append(state)
        state = torch.cat(states) if chunk is None and states else None  # (BH, 1, F, E)
        ctx.query_map, ctx.key_map, ctx.chunk, ctx.group = query_map, key_map, chunk, group
        ctx.save_for_backward(q, k, v, key_mask, out, total, state)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out):  # noqa: ANN001, ANN205
        q, k, v, key_mask, out, total, state = ctx.saved_tensors
        g_q, g_k, g_v = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
        for start in range(0, q.shape[0], ctx.group):
            part = slice(start, start + ctx.group)
            # out = num / total where the row saw something, num / 1 (a constant) elsewhere
            ok = seen(total[part])  # (G, 1, Nq, 1)
            g_num = g_out[part] / torch.where(ok, total[part], 1.0)  # (G, 1, Nq, D)
            g_total = -(g_num * out[part]).sum(dim=-1, keepdim=True).masked_fill_(~ok, 0.0)
            g_mixed = torch.cat([g_num, g_total], dim=-1)  # (G, 1, Nq, E)
            del g_num, g_total
            inputs = (
                q[part].detach().requires_grad_(),
                k[part].detach().requires_grad_(),
                v[part],
                None if key_mask is None else key_mask[part],
            )
            if ctx.chunk is None:
                grads = _bidirectional_backward(ctx.query_map, ctx.key_map, *inputs, state[part], g_mixed)
            else:
                grads = _causal_backward(ctx.query_map, ctx.key_map, ctx.chunk, *inputs, g_mixed)
            g_q[part], g_k[part], g_v[part] = grads
        return None, None, None, None, g_q, g_k, g_v, None


def _bidirectional_backward(
    query_map: FeatureMap,
    key_map: KeyFeatureMap,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: torch.Tensor | None,
    state: torch.Tensor,
    g_mixed: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients for q, k, v of mixed = phi(q) (phi(k)^T [v, 1]); one side's features at a time."""
    phi_q = _with_graph(query_map, q)  # (G, 1, Nq, F)
    g_state = phi_q.detach().transpose(-1, -2) @ g_mixed  # (G, 1, F, E)
    (g_q,) = torch.autograd.grad(phi_q, q, g_mixed @ state.transpose(-1, -2))  # via (G, 1, Nq, F)
    del phi_q
    phi_k = _with_graph(key_map, k, key_mask)  # (G, 1, Nk, F)
    g_v = phi_k.detach() @ g_state[..., :-1]  # (G, 1, Nk, D)
    (g_k,) = torch.autograd.grad(phi_k, k, with_ones(v) @ g_state.transpose(-1, -2))  # via (G, 1, Nk, F)
    return g_q, g_k, g_v


def _causal_backward(
    query_map: FeatureMap,
    key_map: KeyFeatureMap,
    chunk: int,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: torch.Tensor | None,
    g_mixed: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients for q, k, v of the chunked causal mix: the query side first, then keys and values."""
    nq, nk = q.shape[-2], k.shape[-2]
    q_front, k_front, back, c = _chunk_layout(nq, nk, chunk)
    g_chunks = _to_chunks(g_mixed, q_front, back, c)  # (G, 1, M, C, E)
    v_chunks = _to_chunks(with_ones(v), k_front, back, c)  # (G, 1, M, C, E)
    phi_k = _with_graph(key_map, k, key_mask)  # (G, 1, Nk, F)
    k_chunks = _to_chunks(phi_k.detach(), k_front, back, c)  # (G, 1, M, C, F)

    phi_q = _with_graph(query_map, q)  # (G, 1, Nq, F)
    g_phi_q = _from_chunks(_causal_query_grad(k_chunks, v_chunks, g_chunks), q_front, nq)
    (g_q,) = torch.autograd.grad(phi_q, q, g_phi_q)  # via (G, 1, Nq, F)
    del g_phi_q

    q_chunks = _to_chunks(phi_q.detach(), q_front, back, c)  # (G, 1, M, C, F)
    del phi_q
    g_k_chunks, g_v_chunks = _causal_key_value_grads(q_chunks, k_chunks, v_chunks, g_chunks)
    del q_chunks
    g_v = _from_chunks(g_v_chunks, k_front, nk)[..., :-1]  # (G, 1, Nk, D)
    (g_k,) = torch.autograd.grad(phi_k, k, _from_chunks(g_k_chunks, k_front, nk))  # via (G, 1, Nk, F)
    return g_q, g_k, g_v


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
    ``feature_width`` the F of the feature maps (it sizes the groups of heads).
    """

    subquadratic = True

    def __init__(self, spec: AttentionSpec, chunk: int, feature_width: int):
        super().__init__(spec)
        self.chunk, self.feature_width = chunk, feature_width

    def feature_maps(self) -> tuple[FeatureMap, KeyFeatureMap]:
        """The query and key feature maps for one call: (G, H', N, D) -> (G, H', N, F), >= 0.

        The key map also takes key_mask (G, N) or None and gives padded keys
        all-zero features that do not depend on what they hold. Both are called
        again in the backward pass (see :class:`KernelAttentionFunction`):
        deterministic, no trainable parameters, and bound now to whatever they
        read (random features).
        """
        raise NotImplementedError

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_mask: torch.Tensor | None = None,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, h, nq, _ = q.shape
        nk, dtype = k.shape[-2], v.dtype
        query_map, key_map = self.feature_maps()
        chunk = self.chunk if self.causal else None
        group = max(1, GROUP_ELEMENTS // (max(nq, nk) * self.feature_width))
        with _float32_only(q.device):
            q, k, v = q.float(), k.float(), v.float()  # (B, H, N, D)
            # every head is its own sequence from here: (B*H, 1, N, D), key_mask (B*H, Nk)
            flat = [x.reshape(b * h, 1, *x.shape[-2:]) for x in (q, k, v)]
            mask = None if key_mask is None else key_mask.repeat_interleave(h, dim=0)
            out = KernelAttentionFunction.apply(query_map, key_map, chunk, group, *flat, mask)
            weights = None
            if need_weights:
                with torch.no_grad():
                    phi_q, phi_k = query_map(q), key_map(k, key_mask)  # (B, H, N, F)
                    weights = implied_weights(phi_q, phi_k, self.causal)  # (B, H, Nq, Nk)
        return out.view(b, h, nq, -1).to(dtype), weights  # (B, H, Nq, D)
