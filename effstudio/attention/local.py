"""Sliding-window attention: each token sees the tokens within ``window`` positions.

Computed in blocks of at least ``window`` tokens: query block i attends to key
blocks i-1, i, i+1 (causal: i-1, i) and a position mask trims them to the exact
window, so time and memory grow as N * 3 * block rather than N^2.

Two paths compute it, chosen per call by :func:`effstudio.attention.band.fits`:
while the weights (B*H*N*3*block entries, twice over for working space) fit
in a quarter of the memory available and 1 GB, the whole sequence is a few
batched operations with the weights kept for the backward pass
(:mod:`effstudio.attention.band`: about 60 MB at 16K tokens, 4 heads); beyond
that, :mod:`effstudio.attention.block_sparse`'s chunked path keeps only
O(N * D) and recomputes the weights chunk by chunk.

With dilation d a token sees every d-th token, up to ``window`` steps on each
side: positions i + d*t for |t| <= window. Those keys all share i's residue
modulo d, so the sequence is split into d interleaved sequences, each of
which is a plain sliding window of ``window`` tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from effstudio.attention import band
from effstudio.attention import block_sparse as bs
from effstudio.attention.base import AttentionOutput, AttentionSpec
from effstudio.config import ConfigError, param, validate
from effstudio.registry import Entry

MIN_BLOCK = 16  # smaller blocks cost more in per-block overhead than they save


@dataclass(frozen=True)
class LocalAttentionConfig:
    window: int = param(
        64, min=1, help="Tokens each token sees on each side (causal: before it)"
    )
    dilation: int = param(
        1, min=1, max=64, help="See every d-th token, reaching d times further with the same cost",
        advanced=True,
    )


def check_window(window: int, reach: int, max_length: int, field: str = "window") -> None:
    """Refuse a window that covers every sequence the model will see: that is full attention."""
    if reach >= max_length - 1:
        raise ConfigError(
            field,
            f"a window of {window} reaches {reach} tokens, which covers every sequence of up to "
            f"{max_length} tokens: that is full attention; use 'sdpa' or a smaller window",
        )


def sliding_window(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_mask: torch.Tensor | None,
    window: int,
    causal: bool,
    need_weights: bool,
) -> AttentionOutput:
    """Exact attention with |i - j| <= window (and j <= i when causal); shapes as the call shape."""
    block = max(window, MIN_BLOCK)
    x = bs.pad_inputs(q, k, v, key_mask, block)
    if band.fits(x, block, 0, causal):
        out = band.band_attention(x, block, window, causal)
        return bs.crop(x, out, band.band_weights(x, block, window, causal) if need_weights else None)

    def parts(start: int, stop: int) -> list[bs.Part]:
        return [bs.band_part(x, start, stop, block, 1, causal, keep=lambda i, j: (i - j).abs() <= window)]

    return bs.attend_cropped(x, parts, block, causal, need_weights)


class LocalAttention(bs.BlockSparseAttention):
    def __init__(self, config: LocalAttentionConfig, spec: AttentionSpec):
        super().__init__(spec)
        validate(config)
        check_window(config.window, config.window * config.dilation, spec.max_length)
        self.window, self.dilation = config.window, config.dilation

    def sees(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        gap = i - j
        return (gap.abs() <= self.window * self.dilation) & (gap % self.dilation == 0)

    def blocked(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None,
                need_weights: bool) -> AttentionOutput:
        if self.dilation == 1:
            return sliding_window(q, k, v, key_mask, self.window, self.causal, need_weights)
        return self._dilated(q, k, v, key_mask, need_weights)

    def _dilated(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        key_mask: torch.Tensor | None,
        need_weights: bool,
    ) -> AttentionOutput:
        d = self.dilation
        b, h, n, dim = q.shape
        extra = -n % d
        if extra:
            q, k, v = (torch.nn.functional.pad(x, (0, 0, 0, extra)) for x in (q, k, v))
            if key_mask is None:
                key_mask = torch.ones(b, n, dtype=torch.bool, device=q.device)
            key_mask = torch.nn.functional.pad(key_mask, (0, extra), value=False)
        m = (n + extra) // d

        def split(x: torch.Tensor) -> torch.Tensor:
            # position m*d + r -> sequence r of the batch: (B*d, H, M, D)
            return x.view(b, h, m, d, dim).permute(0, 3, 1, 2, 4).reshape(b * d, h, m, dim)

        mask = None if key_mask is None else key_mask.view(b, m, d).transpose(1, 2).reshape(b * d, m)
        out, weights = sliding_window(
            split(q), split(k), split(v), mask, self.window, self.causal, need_weights
        )
        out = out.view(b, d, h, m, dim).permute(0, 2, 3, 1, 4).reshape(b, h, m * d, dim)
        if weights is not None:
            dense = torch.zeros(b, h, m, d, m, d, dtype=weights.dtype, device=weights.device)
            # same-residue entries: dense[.., mi, r, mj, r] = weights of sequence r at (mi, mj)
            dense.diagonal(dim1=3, dim2=5).copy_(weights.view(b, d, h, m, m).permute(0, 2, 3, 4, 1))
            weights = dense.view(b, h, m * d, m * d)[:, :, :n, :n]
        return out[:, :, :n], weights


ENTRY = Entry(
    "local", "Sliding-window attention, optionally dilated (linear in length; causal or not)",
    LocalAttentionConfig, LocalAttention,
)
