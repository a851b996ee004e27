"""Reformer's LSH attention against a dense oracle with the same neighbourhoods.

The oracle scores every pair as Reformer does (keys are the queries scaled to
unit length, a query's own key scores -1e5) and takes one masked softmax over
the union of the rounds' neighbourhoods, which ``allowed_pattern`` gives as a
dense mask. With a single bucket that union is every (real, earlier when
causal) key: plain full attention with the self-masking rule.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from effstudio.attention.base import AttentionSpec
from effstudio.attention.full import masked_softmax
from effstudio.attention.reformer import (
    SELF_SCORE,
    ReformerAttention,
    ReformerAttentionConfig,
    n_buckets_for,
)
from effstudio.config import ConfigError
from tests.attention.compare import max_diff, padded_mask

B, H, D = 2, 2, 8
TOL = 1e-5


def build(causal: bool, n_hashes: int = 2, bucket_size: int = 4, max_length: int = 256) -> ReformerAttention:
    torch.manual_seed(0)  # the hash seed is drawn from the global generator
    config = ReformerAttentionConfig(n_hashes=n_hashes, bucket_size=bucket_size)
    return ReformerAttention(config, AttentionSpec(H * D, H, causal, max_length=max_length))


def inputs(n: int, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(B, H, n, D, generator=gen, dtype=torch.float64).requires_grad_() for _ in range(2))


def oracle(q: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense shared-QK attention: q, v (B, H, N, D), allowed (B, H, N, N) -> out, weights."""
    n = q.shape[-2]
    scores = q @ F.normalize(q, dim=-1).transpose(-2, -1) * q.shape[-1] ** -0.5  # (B, H, N, N)
    scores = scores.masked_fill(torch.eye(n, dtype=torch.bool), SELF_SCORE)
    weights = masked_softmax(scores, allowed)  # (B, H, N, N)
    return weights @ v, weights


@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
@pytest.mark.parametrize("padded", [False, True], ids=["nomask", "padded"])
def test_one_bucket_is_full_attention_without_self(causal: bool, padded: bool) -> None:
    n = 20
    attn = build(causal, bucket_size=32)  # one chunk holds the whole sequence
    assert n_buckets_for(n, 32) == 1
    mask = padded_mask(B, n, 7) if padded else torch.ones(B, n, dtype=torch.bool)
    q, v = inputs(n)
    allowed = mask[:, None, :, None] & mask[:, None, None, :]  # (B, 1, N, N) real pairs
    if causal:
        allowed = allowed & torch.ones(n, n, dtype=torch.bool).tril()
    expected, expected_weights = oracle(q, v, allowed.expand(B, H, n, n))
    out, weights = attn(q, q, v, key_mask=mask if padded else None, need_weights=True)
    assert max_diff(out, expected * mask[:, None, :, None]) <= TOL
    assert max_diff(weights, expected_weights * mask[:, None, :, None]) <= TOL
    # the self score is a last resort: a token with other keys gives itself (almost) no weight
    diagonal = weights.diagonal(dim1=-2, dim2=-1)[:, :, 1:]  # (B, H, N-1), the first causal token is alone
    assert diagonal[mask[:, None, 1:].expand_as(diagonal)].max() < 1e-6


@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
@pytest.mark.parametrize("padded", [False, True], ids=["nomask", "padded"])
@pytest.mark.parametrize("n_hashes", [1, 3])
def test_hashed_rounds_equal_dense_softmax_over_their_union(causal: bool, padded: bool, n_hashes: int) -> None:
    n = 45  # several buckets of 4, not a multiple of the bucket size
    attn = build(causal, n_hashes=n_hashes)
    mask = padded_mask(B, n, 7) if padded else None
    q, v = inputs(n)
    allowed = attn.allowed_pattern(q, mask)  # (B, H, N, N)
    assert 0.02 < allowed.double().mean() < 0.5, "the case must be sparse, or the oracle proves nothing"

    out, weights = attn(q, q, v, key_mask=mask, need_weights=True)
    grads = torch.autograd.grad(out.square().sum(), (q, v))
    q2, v2 = (x.detach().requires_grad_() for x in (q, v))
    expected, expected_weights = oracle(q2, v2, allowed)
    expected_grads = torch.autograd.grad(expected.square().sum(), (q2, v2))

    assert max_diff(out, expected) <= TOL
    assert max_diff(weights, expected_weights) <= TOL
    for got, want in zip(grads, expected_grads, strict=True):
        assert max_diff(got, want) <= TOL


def test_more_rounds_find_more_neighbours() -> None:
    q, _ = inputs(64)
    coverage = [build(False, n_hashes=r).allowed_pattern(q).double().mean().item() for r in (1, 2, 4)]
    assert coverage[0] < coverage[1] < coverage[2]


def test_buckets_follow_direction() -> None:
    """Angular LSH: a token and a slightly perturbed copy share a bucket far more often than strangers."""
    attn = build(False, n_hashes=8, bucket_size=4)
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(1, 1, 64, D, generator=gen)
    near = x + 0.05 * torch.randn(x.shape, generator=gen)
    far = torch.randn(x.shape, generator=gen)
    real = torch.ones(1, 64, dtype=torch.bool)

    def same_bucket(a: torch.Tensor, b: torch.Tensor) -> float:
        pair = torch.cat([a, b], dim=2)  # (1, 1, 128, D): both in one sequence, hashed alike
        buckets = attn.buckets(pair, torch.cat([real, real], dim=1))  # (1, 1, R, 128)
        return (buckets[..., :64] == buckets[..., 64:]).double().mean().item()

    assert same_bucket(x, near) > 0.8
    assert same_bucket(x, far) < 0.4


def test_hashing_is_fixed_by_the_saved_seed() -> None:
    first, second = build(False), ReformerAttention(
        ReformerAttentionConfig(bucket_size=4), AttentionSpec(H * D, H, False, max_length=256))
    q, _ = inputs(40)
    second.load_state_dict(first.state_dict())
    assert torch.equal(first.allowed_pattern(q), second.allowed_pattern(q))


@pytest.mark.parametrize("config,field", [
    (ReformerAttentionConfig(bucket_size=512), "bucket_size"),
    (ReformerAttentionConfig(bucket_size=0), "bucket_size"),
    (ReformerAttentionConfig(n_hashes=0), "n_hashes"),
])
def test_bad_settings_are_refused_by_name(config: ReformerAttentionConfig, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        ReformerAttention(config, AttentionSpec(H * D, H, False, max_length=256))
    assert err.value.field == field
