"""Longformer attention: a sliding window plus a few global tokens.

Every token sees the tokens within ``window`` positions (computed in blocks,
as in ``local``) and the global tokens; a global token (e.g. the
classification token at position 0) sees every token. Global rows are
computed by explicit attention over all keys, G x N; the window and the global
columns share one softmax, and a global key inside a query's window is taken
from the window only, so no key counts twice.

As in ``local``, two paths, chosen per call by
:func:`effstudio.attention.band.fits`: the band and the global columns as a
few whole-sequence operations with the weights kept (while they fit: 3 *
window + G entries per query), else the chunked path that recomputes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from effstudio.attention import band
from effstudio.attention import block_sparse as bs
from effstudio.attention.base import AttentionOutput, AttentionSpec
from effstudio.attention.local import MIN_BLOCK, check_window
from effstudio.config import ConfigError, param, validate
from effstudio.registry import Entry


@dataclass(frozen=True)
class LongformerAttentionConfig:
    window: int = param(64, min=1, help="Tokens each token sees on each side (causal: before it)")
    global_tokens: str = param(
        "0", label="Global tokens",
        help="Comma-separated positions that see and are seen by every token "
        "(0 is the classification token of an encoder); empty for none",
    )

    def check(self) -> None:
        parse_positions(self.global_tokens)


def parse_positions(text: str) -> tuple[int, ...]:
    try:
        positions = tuple(sorted({int(part) for part in text.replace(" ", "").split(",") if part}))
    except ValueError:
        raise ConfigError("global_tokens", f"expected positions like '0' or '0,1,2', got {text!r}") from None
    if any(p < 0 for p in positions):
        raise ConfigError("global_tokens", f"positions count from 0, got {text!r}")
    return positions


class LongformerAttention(bs.BlockSparseAttention):
    def __init__(self, config: LongformerAttentionConfig, spec: AttentionSpec):
        super().__init__(spec)
        validate(config)
        check_window(config.window, config.window, spec.max_length)
        self.window = config.window
        self.global_positions = parse_positions(config.global_tokens)

    def sees(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        # compared, not indexed: a position past the end matches nothing, whatever the traced length
        positions = torch.tensor(self.global_positions, dtype=torch.long, device=i.device)  # (G,)
        is_global = (i == positions).any(dim=-1)  # (N,)
        return ((i - j).abs() <= self.window) | is_global[:, None] | is_global[None, :]

    def blocked(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None,
                need_weights: bool) -> AttentionOutput:
        window = self.window
        block = max(window, MIN_BLOCK)
        x = bs.pad_inputs(q, k, v, key_mask, block)
        positions = [p for p in self.global_positions if p < x.length]
        glob = torch.tensor(positions, dtype=torch.long, device=q.device)  # (G,)
        if band.fits(x, block, len(positions), self.causal):
            out = band.band_attention(x, block, window, self.causal, glob)
            weights = band.band_weights(x, block, window, self.causal, glob) if need_weights else None
            if positions:
                out, weights = bs.global_rows(x, out, weights, glob, self.causal)
            return bs.crop(x, out, weights)

        def parts(start: int, stop: int) -> list[bs.Part]:
            band = bs.band_part(x, start, stop, block, 1, self.causal, keep=lambda i, j: (i - j).abs() <= window)
            if not positions:
                return [band]
            return [band, bs.column_part(start, stop, glob, keep=lambda i, j: (i - j).abs() > window)]

        return bs.attend_cropped(x, parts, block, self.causal, need_weights, glob)


ENTRY = Entry(
    "longformer", "Sliding window plus global tokens that see everything (linear in length; causal or not)",
    LongformerAttentionConfig, LongformerAttention,
)
