"""Exact attention over the Sparse Transformer's strided pattern, in batched operations.

Token i = a*s + r (residue block a of one stride s, residue r) sees

- the band |i - j| <= span (span <= s), worked in band blocks of b tokens, the
  smallest divisor of s that holds the span (:func:`band_block`): query block
  c sees key blocks c-1, c and c+1, as in :mod:`band`, and
- its residue class, j = a'*s + r for every block a' (causal: a' <= a), except the
  keys the band already offers: |a - a'| <= span // s.

Band blocks narrower than the stride keep the band's work at 3b per query
whatever the stride: a span of 128 in a stride of 256 scores 384 band
candidates, not 768.

The residue part is a dense attention inside each residue class: queries and
keys laid out as (B, H, s, nb, D) give every class's scores (B, H, s, nb, nb)
in one product. Both parts share one softmax per query. A query's row of the
band, in token order (B, H, nb, s), is the transpose of its row in the residue
layout (B, H, s, nb), so the row maxima and totals of the two parts meet by a
transposed view. The residue part is made whole first (it is small: nb
scores per query); the band is then worked through in runs of whole residue
blocks, each run taking its rows' maximum over both parts and turning both
parts' scores of those rows into weights in place. (Residue products per run
were tried: batches of tiny products, a third slower.)

Both parts' weights are kept for the backward pass, which needs no second
softmax: for a query, sum_j P_ij dP_ij = dO_i . O_i over both parts at once.
The weights take B*H*N*(3b + N/s) entries; :func:`fits` says whether a call
can afford them, otherwise the kind takes the chunked path of
:mod:`block_sparse`, which recomputes them.
"""

from __future__ import annotations

import functools

import torch

from effstudio.attention import band
from effstudio.attention.block_sparse import Padded


def band_block(stride: int, span: int) -> int:
    """The band's block length: the smallest divisor of the stride that holds the span (span <= stride)."""
    return next(block for block in range(max(span, 1), stride + 1) if stride % block == 0)


def fits(x: Padded, stride: int, span: int, causal: bool) -> bool:
    """Whether both parts' kept weights (and the same again of working space) fit this call's memory: the
    band's rule, with each query's residue keys (N / s) in place of the band's columns."""
    return band.fits(x, band_block(stride, span), x.padded_length // stride, causal)


def _by_residue(t: torch.Tensor, stride: int) -> torch.Tensor:
    """(B, H, Np, D) -> (B, H, s, nb, D): row (r, a) is token a*s + r; a view."""
    b, h, n, d = t.shape
    return t.view(b, h, n // stride, stride, d).transpose(2, 3)


PER_HEAD_ENTRIES = 1 << 17  # per-head operands from this size on are multiplied head by head


def _product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b for residue-layout operands (B, H, s, x, y) and (B, H, s, y, z) -> (B, H, s, x, z).

    A residue-layout view cannot merge its head and residue axes, so a batched product first copies
    both operands. From PER_HEAD_ENTRIES entries per head on (2048 tokens of 64 dims), one product
    per sequence and head reads the views as they are: at 16K tokens this part takes half the time,
    and the whole kind about a seventh less."""
    if a[0, 0].numel() < PER_HEAD_ENTRIES:
        return a @ b
    out = a.new_empty(*a.shape[:-1], b.shape[-1])
    for row in range(a.shape[0]):
        for head in range(a.shape[1]):
            torch.bmm(a[row, head], b[row, head], out=out[row, head])
    return out


def _by_token(t: torch.Tensor) -> torch.Tensor:
    """The inverse of ``_by_residue`` as a contiguous (B, H, Np, D)."""
    b, h, s, nb, d = t.shape
    return t.transpose(2, 3).reshape(b, h, nb * s, d)


@functools.lru_cache(maxsize=8)
def _blocks_outside(nb: int, near: int, causal: bool, device: torch.device) -> torch.Tensor:
    """Key blocks a' a query block a does not take from its residue class, (nb, nb) bool: the
    band's (|a - a'| <= near) and, when causal, later ones."""
    gap = torch.arange(nb, device=device)[:, None] - torch.arange(nb, device=device)[None, :]  # a - a'
    out = gap.abs() <= near
    if causal:
        out |= gap < 0
    return out


def residue_outside(x: Padded, stride: int, span: int, causal: bool) -> torch.Tensor:
    """Pairs outside the residue part, bool (B or 1, 1, s or 1, nb, nb), padded keys included."""
    n = x.padded_length
    nb = n // stride
    out = _blocks_outside(nb, span // stride, causal, x.q.device)[None, None, None]  # (1, 1, 1, nb, nb)
    if x.key_mask is None:
        return out
    real = x.key_mask.view(-1, nb, stride).transpose(1, 2)  # (B, s, nb)
    return out | ~real[:, None, :, None, :]  # (B, 1, s, nb, nb)


class StridedAttention(torch.autograd.Function):
    """out = P_band V_band + P_res V_res under one softmax; both P are kept for backward."""

    @staticmethod
    def forward(ctx, q, k, v, band_outside, res_outside, stride, block, causal):  # noqa: ANN001, ANN205
        b, h, n, d = q.shape
        s, nb, per = stride, n // stride, stride // block  # per: band blocks in one residue block
        # the residue part whole: (B, H, s, nb, nb), later its weights, in place
        res = _product(_by_residue(q, s), _by_residue(k, s).transpose(-1, -2))
        res.masked_fill_(res_outside, float("-inf"))
        res_top = res.amax(-1).transpose(-1, -2)  # (B, H, nb, s) in token order
        queries = q.view(b, h, n // block, block, d)
        out = q.new_empty(b, h, n // block, block, d)
        kept = []
        for first, last in band._chunks(nb, s):  # residue blocks first..last-1 are band blocks start..stop-1
            start, stop, rows_of = first * per, last * per, (b, h, last - first, s)
            candidates = band._side_by_side(k, block, causal, None, start, stop)  # (B, H, c, K, D)
            scores = queries[:, :, start:stop] @ candidates.transpose(-1, -2)  # (B, H, c, b, K)
            del candidates
            scores.masked_fill_(band_outside[:, :, start:stop], float("-inf"))
            top = torch.maximum(scores.amax(-1).view(rows_of), res_top[:, :, first:last])  # (B, H, ca, s)
            top.masked_fill_(top == float("-inf"), 0.0)  # a row with no key: every weight 0
            rows = res[:, :, :, first:last]  # (B, H, s, ca, nb): these queries' residue scores
            rows.sub_(top.transpose(-1, -2).unsqueeze(-1)).exp_()
            probs = scores.sub_(top.view(scores.shape[:-1]).unsqueeze(-1)).exp_()
            total = probs.sum(-1).view(rows_of).add_(rows.sum(-1).transpose(-1, -2))  # (B, H, ca, s)
            total.clamp_min_(torch.finfo(total.dtype).tiny)
            probs.div_(total.view(scores.shape[:-1]).unsqueeze(-1))
            rows.div_(total.transpose(-1, -2).unsqueeze(-1))
            torch.matmul(probs, band._side_by_side(v, block, causal, None, start, stop), out=out[:, :, start:stop])
            kept.append(probs)
        # the residue part's output (B, H, s, nb, D) added through a transposed view: no token-order copy
        out.view(b, h, nb, s, d).add_(_product(res, _by_residue(v, s)).transpose(2, 3))
        out = out.view(b, h, n, d)
        ctx.stride, ctx.block, ctx.causal = stride, block, causal
        ctx.save_for_backward(q, k, v, out, res, *kept)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # noqa: ANN001, ANN205
        q, k, v, out, res, *kept = ctx.saved_tensors
        s, block, causal = ctx.stride, ctx.block, ctx.causal
        b, h, n, d = q.shape
        nb, per = n // s, s // block
        grad_out = grad_out.contiguous()
        delta = (grad_out * out).sum(-1)  # (B, H, N): sum_j P_ij dP_ij over both parts
        # the residue part whole: res (B, H, s, nb, nb)
        dout_res = _by_residue(grad_out, s).contiguous()  # read by two products: laid out once
        grad_v = _by_token(_product(res.transpose(-1, -2), dout_res))
        grad_scores = _product(dout_res, _by_residue(v, s).transpose(-1, -2))
        grad_scores.sub_(delta.view(b, h, nb, s).transpose(-1, -2).unsqueeze(-1)).mul_(res)
        grad_q = _by_token(_product(grad_scores, _by_residue(k, s))).view(b, h, n // block, block, d)
        grad_k = _by_token(_product(grad_scores.transpose(-1, -2), _by_residue(q, s)))
        del grad_scores
        # the band, run by run
        queries, dout = q.view(b, h, n // block, block, d), grad_out.view(b, h, n // block, block, d)
        band_delta = delta.view(b, h, n // block, block)
        for (first, last), probs in zip(band._chunks(nb, s), kept, strict=True):
            start, stop = first * per, last * per
            dout_run = dout[:, :, start:stop]  # (B, H, c, b, D)
            band._fold_into(grad_v, probs.transpose(-1, -2) @ dout_run, block, causal, None, start)
            candidates = band._side_by_side(v, block, causal, None, start, stop)
            grad_run = (dout_run @ candidates.transpose(-1, -2)).sub_(band_delta[:, :, start:stop].unsqueeze(-1))
            del candidates
            grad_run.mul_(probs)  # the band scores' gradient (B, H, c, b, K)
            grad_q[:, :, start:stop] += grad_run @ band._side_by_side(k, block, causal, None, start, stop)
            band._fold_into(grad_k, grad_run.transpose(-1, -2) @ queries[:, :, start:stop], block, causal, None,
                            start)
        return grad_q.view(b, h, n, d), grad_k, grad_v, None, None, None, None, None


def strided_attention(x: Padded, stride: int, span: int, causal: bool) -> torch.Tensor:
    """out (B, H, Np, D): exact attention with |i - j| <= span (span <= stride) or (i - j) % stride == 0,
    j <= i when causal."""
    block = band_block(stride, span)
    with torch.no_grad():
        band_outside = band.forbidden(x, block, span, causal, None)  # (B or 1, 1, Np / b, b, K)
        res_outside = residue_outside(x, stride, span, causal)
    return StridedAttention.apply(x.q, x.k, x.v, band_outside, res_outside, stride, block, causal)
