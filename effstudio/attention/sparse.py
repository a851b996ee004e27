"""The Sparse Transformer's fixed and strided patterns (Child et al., 2019).

strided: a token sees the ``local_span`` tokens around it (causal: before it)
and every ``stride``-th token: keys j with (i - j) divisible by the stride.
The local part is a band of blocks; the strided part is dense attention inside
each residue class modulo the stride, N^2 / stride in all.

fixed: the sequence is cut into blocks of ``stride`` tokens; a token sees its
own block and the last ``summary`` tokens of every block, which carry
information between blocks.

Both parts share one softmax; a key both parts would offer is taken once.

The default stride follows the model's max length (:func:`resolved_stride`):
about twice its square root, so the paper's stride of about sqrt(N) in shape,
with the strided keys per query (N / s) kept below the local band's up to
16384 tokens.

Which path runs: the strided pattern with a span of at most one stride, when no
weights are asked for and both parts' weights fit (:func:`strided.fits`), is
computed whole by :mod:`effstudio.attention.strided` with its weights kept;
otherwise (a wider span, the fixed pattern, the attention-map probe, a sequence
too long to keep the weights) the chunked path of :mod:`block_sparse` runs,
which recomputes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from effstudio.attention import block_sparse as bs
from effstudio.attention import strided
from effstudio.attention.base import AttentionOutput, AttentionSpec
from effstudio.attention.local import check_window
from effstudio.config import ConfigError, param, validate
from effstudio.registry import Entry


@dataclass(frozen=True)
class SparseAttentionConfig:
    pattern: str = param(
        "strided", choices=("strided", "fixed"),
        help="strided: a local band plus every stride-th token; fixed: own block plus summary tokens",
    )
    stride: int = param(
        0, min=0, zero="auto",
        help="Step of the strided pattern; block length of the fixed pattern. 0 (auto): twice the square root of the "
             "max length, rounded up to a power of two (128 up to 4096 tokens, 256 up to 16384), and at least "
             "the local span",
    )
    local_span: int = param(
        128, min=1, label="Local span", help="strided: tokens each token sees on each side (causal: before it)"
    )
    summary: int = param(
        8, min=1, help="fixed: the last tokens of every block that every token sees"
    )

    def check(self) -> None:
        if self.stride == 1:
            raise ConfigError("stride", "a stride of 1 is every token: full attention; use 0 (auto) or 2 and more")
        if self.pattern == "fixed" and self.stride and self.summary > self.stride:
            raise ConfigError("summary", f"{self.summary} summary tokens do not fit a block of {self.stride}")


def resolved_stride(config: SparseAttentionConfig, max_length: int) -> int:
    """The stride a model of ``max_length`` tokens uses: the configured one, or for 0 the smallest power of
    two of at least 2 sqrt(max_length) (and, strided, at least the local span).

    Why twice the square root: with the local span fixed, each query scores about 3 * span band keys
    and N / s strided ones. A stride of sqrt(N) makes the strided part grow as N^1.5 (8x for 4x the
    tokens); twice that keeps it below the band up to 16384 tokens, so a span of 128 scores 384 + 32
    keys per query at 4096 tokens and 384 + 64 at 16384: 4.3x the work for 4x the tokens.
    """
    if config.stride:
        return config.stride
    stride = 1 << math.ceil(math.log2(2 * math.sqrt(max(max_length, 1))))
    return max(stride, config.local_span) if config.pattern == "strided" else stride


class SparseAttention(bs.BlockSparseAttention):
    def __init__(self, config: SparseAttentionConfig, spec: AttentionSpec):
        super().__init__(spec)
        validate(config)
        if config.pattern == "strided":
            check_window(config.local_span, config.local_span, spec.max_length, field="local_span")
        stride = resolved_stride(config, spec.max_length)
        if stride >= spec.max_length:
            raise ConfigError(
                "stride",
                f"a stride of {stride} leaves no pattern in sequences of up to "
                f"{spec.max_length} tokens; use a stride well below that (about its square root)",
            )
        if config.pattern == "fixed" and config.summary > stride:
            raise ConfigError("summary", f"{config.summary} summary tokens do not fit a block of {stride}")
        self.pattern, self.stride = config.pattern, stride
        self.local_span, self.summary = config.local_span, config.summary

    def sees(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        s = self.stride
        if self.pattern == "strided":
            return ((i - j).abs() <= self.local_span) | ((i - j) % s == 0)
        return (i // s == j // s) | (j % s >= s - self.summary)

    def blocked(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None,
                need_weights: bool) -> AttentionOutput:
        s, span = self.stride, self.local_span
        x = bs.pad_inputs(q, k, v, key_mask, s)
        causal = self.causal
        if self.pattern == "strided":
            if span <= s and not need_weights and strided.fits(x, s, span, causal):
                return bs.crop(x, strided.strided_attention(x, s, span, causal), None)
            radius = -(-span // s)  # blocks of one stride that cover the span

            def parts(start: int, stop: int) -> list[bs.Part]:
                return [
                    bs.band_part(x, start, stop, s, radius, causal, keep=lambda i, j: (i - j).abs() <= span),
                    bs.residue_part(x, start, stop, s, keep=lambda i, j: (i - j).abs() > span),
                ]
        else:
            n = x.padded_length
            summary = torch.arange(n, device=q.device).view(-1, s)[:, s - self.summary:].reshape(-1)  # (G,)

            def parts(start: int, stop: int) -> list[bs.Part]:
                return [
                    bs.band_part(x, start, stop, s, 0, causal),
                    bs.column_part(start, stop, summary, keep=lambda i, j: i // s != j // s),
                ]

        return bs.attend_cropped(x, parts, s, causal, need_weights)


ENTRY = Entry(
    "sparse", "Sparse Transformer: strided or fixed patterns (N*sqrt(N) with stride ~ sqrt(N); causal or not)",
    SparseAttentionConfig, SparseAttention,
)
