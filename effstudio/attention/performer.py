"""Performer attention: FAVOR+ (Choromanski et al. 2021, "Rethinking Attention with Performers").

Softmax attention's kernel exp(q.k) (with q, k already scaled by d^-1/4) is the
expectation over w ~ N(0, I) of phi_w(q) phi_w(k), with the positive random
feature phi_w(x) = exp(w.x - |x|^2 / 2). Averaging over F features w_1..w_F
gives an unbiased estimate whose weights are never negative (unlike sin/cos
features), so normalising by their sum is safe. The features are drawn in
blocks of D mutually orthogonal directions, each scaled to the length of a
Gaussian vector: the same marginals, lower variance. The rest is the shared
linear-attention core (:mod:`effstudio.attention.kernelized`): linear in
length, causal by chunked prefix sums.

The ``relu`` kernel uses phi_w(x) = relu(w.x) + 1e-3 instead: not an estimate
of softmax, a cheaper similarity the model learns to use (the paper's
"generalised" attention).

Numerics. exp(w.x - |x|^2 / 2) overflows float32 for keys of moderate size,
so every feature is divided by a stabiliser that cancels in the ratio:

- queries: each query's own largest logit. A per-query constant multiplies
  the numerator and the denominator alike, so the query's |x|^2 / 2 is not
  even computed.
- keys, bidirectional: the largest logit over all real keys, one constant per
  sequence and head.
- keys, causal: a constant that only earlier keys may decide, else a later
  token would change (through rounding and underflow) what an earlier query
  sees. It is the largest logit of the first real key, which every query that
  has any key has already seen. Logits more than ``KEY_CEILING`` above it are
  clipped there, so a later outlier cannot overflow the running sums.

Redrawing. Fixed features are one draw of the estimator; redrawing every
``redraw_interval`` training steps (training-mode forward calls) averages the
draws out over training, as the paper recommends. Eval mode never redraws.
Each draw follows from a seed and the draw's number, and the current features
are a buffer, so a checkpoint reproduces the outputs exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from effstudio.attention.base import AttentionOutput, AttentionSpec
from effstudio.attention.kernelized import FeatureMap, KernelizedAttention, chunk_param, zero_padded
from effstudio.config import param, validate
from effstudio.registry import Entry

RELU_EPS = 1e-3  # keeps every relu feature positive, so a real key always has weight
KEY_CEILING = 40.0  # causal: key logits at most this far above the stabiliser (e^40 ~ 2e17)


@dataclass(frozen=True)
class PerformerAttentionConfig:
    features: int = param(
        256, min=1, max=65536, label="Random features",
        help="Random features per head; more give a closer estimate of softmax attention "
        "and cost proportionally more",
    )
    kernel: str = param(
        "softmax", choices=("softmax", "relu"),
        help="softmax: positive random features that estimate softmax attention; "
        "relu: relu(w.x) features, cheaper, not an estimate of softmax",
    )
    redraw_interval: int = param(
        1000, min=0, label="Redraw every", zero="never",
        help="Draw new random features every this many training steps; 0 keeps the first draw",
    )
    chunk: int = chunk_param()


def orthogonal_features(count: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random directions (count, dim), orthogonal within each block of ``dim``.

    Each block is the Q of a Gaussian matrix's QR decomposition (signs fixed so
    it is uniformly distributed); each row is then scaled to the norm of an
    independent Gaussian vector, so every row is marginally N(0, I).
    """
    blocks = []
    for start in range(0, count, dim):
        gaussian = torch.randn(dim, dim, generator=generator)
        q, r = torch.linalg.qr(gaussian)
        q = q * torch.sign(torch.diagonal(r)).masked_fill(torch.diagonal(r) == 0, 1.0)
        blocks.append(q.T[: min(dim, count - start)])  # rows are orthonormal
    directions = torch.cat(blocks)  # (count, dim)
    norms = torch.randn(count, dim, generator=generator).norm(dim=1, keepdim=True)  # (count, 1)
    return directions * norms


def draw_generator(seed: int, draw: int) -> torch.Generator:
    """The generator of draw number ``draw``: the same (seed, draw) always gives the same features."""
    return torch.Generator().manual_seed((seed * 1_000_003 + draw) % (2**63 - 1))


class PerformerAttention(KernelizedAttention):
    def __init__(self, config: PerformerAttentionConfig, spec: AttentionSpec):
        validate(config)
        super().__init__(spec, config.chunk, config.features)
        self.num_features, self.kernel = config.features, config.kernel
        self.redraw_interval = config.redraw_interval
        # from torch's global RNG, so torch.manual_seed makes a model reproducible
        self.register_buffer("seed", torch.randint(0, 2**31 - 1, ()))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))  # training steps taken
        self.register_buffer("projection", self.draw(0))  # (F, D)

    def draw(self, number: int) -> torch.Tensor:
        """The features of draw ``number`` (0 = at construction), (F, D) float32 on the CPU."""
        return orthogonal_features(
            self.num_features, self.head_dim, draw_generator(int(self.seed), number)
        )

    def _count_step(self) -> None:
        """Count one training step; redraw the features once every ``redraw_interval`` steps."""
        if not self.training or self.redraw_interval == 0:
            return
        steps = int(self.steps)
        if steps and steps % self.redraw_interval == 0:
            # feature maps made for earlier calls keep the scaled copy they were made with
            self.projection.copy_(self.draw(steps // self.redraw_interval))
        self.steps += 1

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                key_mask: torch.Tensor | None = None, need_weights: bool = False) -> AttentionOutput:
        self._count_step()
        return super().forward(q, k, v, key_mask, need_weights)

    def feature_maps(self) -> tuple[FeatureMap, FeatureMap]:
        # bound to this call's draw: a redraw replaces the buffer, never changes this tensor;
        # scaled so that q.k / sqrt(d) = (q d^-1/4).(k d^-1/4)
        w = self.projection.float().T * self.head_dim**-0.25  # (D, F)
        if self.kernel == "relu":
            return ReluFeatures(w), ReluFeatures(w)
        return FavorQueryFeatures(w), FavorKeyFeatures(w, self.causal)


# The maps build their logits and turn them into features in place, and their
# backward passes reuse the incoming gradient's memory: each (N x F) pass costs
# about as much as the matmul, so none makes a copy it can avoid.
class FavorQueryFeatures(FeatureMap):
    """exp(w.x) / (its largest value), x = q d^-1/4: (B, H, N, D) -> (B, H, N, F).

    The |x|^2 / 2 term and the stabiliser are per-query constants, which cancel
    in the query's normalisation, so neither is computed.
    """

    def __init__(self, w: torch.Tensor):
        self.w = w  # (D, F), d^-1/4 included

    def __call__(self, q: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        logits = q @ self.w  # (B, H, N, F)
        return logits.sub_(logits.amax(dim=-1, keepdim=True)).exp_()

    def backward(
        self, q: torch.Tensor, phi: torch.Tensor, g_phi: torch.Tensor, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        return g_phi.mul_(phi) @ self.w.T  # d exp(logits) = exp(logits) d logits: (B, H, N, D)


class FavorKeyFeatures(FeatureMap):
    """exp(w.x - |x|^2 / 2 - c), x = k d^-1/4: (B, H, N, D) -> (B, H, N, F); padded keys 0.

    c is one constant per sequence and head (see the module's notes): fixed by
    :meth:`bind` for a whole sequence, or taken from the keys it is given.
    """

    def __init__(self, w: torch.Tensor, causal: bool, shift: torch.Tensor | None = None):
        self.w, self.causal, self.shift = w, causal, shift  # (D, F) with d^-1/4; (B, H, 1, 1)

    def logits(self, k: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """w.x - |x|^2 / 2, -inf for padded keys: (B, H, N, F)."""
        square_norm = k.square().sum(dim=-1, keepdim=True)  # (B, H, N, 1)
        logits = (k @ self.w).add_(square_norm, alpha=-0.5 * k.shape[-1] ** -0.5)  # |x|^2 = |k|^2 / sqrt(d)
        if key_mask is not None:
            # exp(-inf) = 0: padded keys get zero features, whatever their values
            logits.masked_fill_(~key_mask[:, None, :, None], -math.inf)
        return logits

    def stabiliser(self, k: torch.Tensor, key_mask: torch.Tensor | None, rows: int) -> torch.Tensor:
        """c for each sequence and head, (B, H, 1, 1); 0 for a sequence without real keys.

        Bidirectional: the largest logit of any real key (taken ``rows`` keys at
        a time). Causal: the largest logit of the first real key.
        """
        if self.causal:
            b, h, _, d = k.shape
            first = key_mask.long().argmax(dim=-1) if key_mask is not None else k.new_zeros(b, dtype=torch.long)
            row = k.gather(2, first.view(b, 1, 1, 1).expand(b, h, 1, d))  # (B, H, 1, D) the first real key
            top = self.logits(row, None).amax(dim=-1, keepdim=True)  # (B, H, 1, 1)
            return top if key_mask is None else top.masked_fill(~key_mask.any(dim=-1).view(b, 1, 1, 1), 0.0)
        top = None
        for start in range(0, k.shape[-2], rows):
            part = slice(start, start + rows)
            mask = None if key_mask is None else key_mask[:, part]
            tile_top = self.logits(k[:, :, part], mask).amax(dim=(-2, -1), keepdim=True)  # (B, H, 1, 1)
            top = tile_top if top is None else torch.maximum(top, tile_top)
        return torch.where(torch.isfinite(top), top, 0.0)

    def bind(self, k: torch.Tensor, key_mask: torch.Tensor | None, rows: int) -> FavorKeyFeatures:
        if not self.causal and rows >= k.shape[-2]:
            return self  # one tile holds every key: each call takes c from the logits it computes
        return FavorKeyFeatures(self.w, self.causal, self.stabiliser(k, key_mask, rows))

    def __call__(self, k: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        logits = self.logits(k, key_mask)  # (B, H, N, F)
        if self.shift is not None:
            logits.sub_(self.shift)
        elif self.causal:
            logits.sub_(self.stabiliser(k, key_mask, k.shape[-2]))
        else:
            top = logits.amax(dim=(-2, -1), keepdim=True)  # (B, H, 1, 1)
            logits.sub_(torch.where(torch.isfinite(top), top, 0.0))
        if self.causal:
            logits.clamp_(max=KEY_CEILING)
        return logits.exp_()

    def backward(
        self, k: torch.Tensor, phi: torch.Tensor, g_phi: torch.Tensor, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        g_logits = g_phi.mul_(phi)  # (B, H, N, F); 0 for padded keys, whose phi is 0
        if self.causal:
            g_logits.masked_fill_(phi >= math.exp(KEY_CEILING), 0.0)  # clipped logits pass nothing
        # logits = k.w - |k|^2 / (2 sqrt(d)): the second term's gradient is -k / sqrt(d) per unit
        g_k = g_logits @ self.w.T  # (B, H, N, D)
        return g_k.sub_(k * g_logits.sum(dim=-1, keepdim=True), alpha=k.shape[-1] ** -0.5)


class ReluFeatures(FeatureMap):
    """relu(w.x) + eps, x = x d^-1/4: (B, H, N, D) -> (B, H, N, F); padded keys (given a mask) 0."""

    def __init__(self, w: torch.Tensor):
        self.w = w  # (D, F), d^-1/4 included

    def __call__(self, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        return zero_padded((x @ self.w).relu_().add_(RELU_EPS), key_mask)  # (B, H, N, F)

    def backward(
        self, x: torch.Tensor, phi: torch.Tensor, g_phi: torch.Tensor, key_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        # relu passes the gradient where w.x > 0, i.e. where phi rose above eps (padded keys: phi = 0)
        return g_phi.masked_fill_(phi <= RELU_EPS, 0.0) @ self.w.T  # (B, H, N, D)


ENTRY = Entry(
    "performer", "Performer FAVOR+: positive orthogonal random features (linear in length; causal or not)",
    PerformerAttentionConfig, PerformerAttention,
)
