"""Behaviour of the low-rank and kernel kinds: linformer, performer, linear.

Oracles are dense computations written out here, independently of the kinds'
chunked code: the kernel matrix phi(Q) phi(K)^T, masked and row-normalised,
for the kernel kinds; explicit softmax attention for Performer's estimate and
for Linformer with an identity projection. Lengths span several causal
chunks (70 tokens, chunks of 16) and are not multiples of the chunk.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from effstudio.attention import kernelized
from effstudio.attention.base import AttentionSpec
from effstudio.attention.full import allowed_keys, explicit_attention
from effstudio.attention.linear import LinearAttention, LinearAttentionConfig
from effstudio.attention.linformer import LinformerAttention, LinformerAttentionConfig
from effstudio.attention.performer import PerformerAttention, PerformerAttentionConfig
from effstudio.config import ConfigError
from effstudio.models.base import ModelSpec
from effstudio.models.transformer import Transformer, TransformerConfig
from effstudio.tasks.base import TaskSpec
from tests.attention.compare import max_diff, padded_mask

B, H, D = 2, 2, 8
N = 70  # several chunks of CHUNK, and not a multiple of it
CHUNK = 16
TOL = 1e-5


def inputs(n: int = N, nq: int | None = None, scale: float = 1.0, seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    shapes = ((B, H, nq or n, D), (B, H, n, D), (B, H, n, D))
    return tuple((scale * torch.randn(s, generator=gen)).requires_grad_() for s in shapes)


def padding(n: int = N) -> torch.Tensor:
    return padded_mask(B, n, 23)  # (B, N); the padding starts mid-chunk


def performer(causal: bool, **changes: object) -> PerformerAttention:
    config = dataclasses.replace(PerformerAttentionConfig(features=64, chunk=CHUNK), **changes)
    torch.manual_seed(0)  # the feature seed comes from torch's generator
    return PerformerAttention(config, AttentionSpec(H * D, H, causal, max_length=256)).eval()


def linear(causal: bool) -> LinearAttention:
    return LinearAttention(LinearAttentionConfig(chunk=CHUNK), AttentionSpec(H * D, H, causal, max_length=256))


def dense_kernel_attention(
    phi_q: torch.Tensor, phi_k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor | None, causal: bool
) -> torch.Tensor:
    """The oracle: (phi(Q) phi(K)^T masked, rows normalised) @ V; a row with no key gives 0."""
    kernel = phi_q @ phi_k.transpose(-1, -2)  # (B, H, Nq, Nk)
    allowed = allowed_keys(key_mask, phi_q.shape[-2], phi_k.shape[-2], causal, phi_q.device)
    if allowed is not None:
        kernel = kernel * allowed
    total = kernel.sum(dim=-1, keepdim=True)  # (B, H, Nq, 1)
    return kernel @ v / total.clamp(min=1e-30)


def elu_oracle(q, k, v, key_mask, causal):  # noqa: ANN001, ANN201
    return dense_kernel_attention(F.elu(q) + 1, F.elu(k) + 1, v, key_mask, causal)


def favor_oracle(attn: PerformerAttention, q, k, v, key_mask, causal):  # noqa: ANN001, ANN201
    """FAVOR+ as the paper writes it, without stabilisers: exp(w.x - |x|^2/2) with x = x d^-1/4."""
    w = attn.projection  # (F, D)

    def features(x: torch.Tensor) -> torch.Tensor:
        x = x * D**-0.25
        return torch.exp(x @ w.T - x.square().sum(-1, keepdim=True) / 2)  # (B, H, N, F)

    return dense_kernel_attention(features(q), features(k), v, key_mask, causal)


def grads(out: torch.Tensor, tensors: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    weights = torch.linspace(-1, 1, out.numel()).view_as(out)  # a loss that weighs every output differently
    return torch.autograd.grad((out * weights).sum(), tensors)


def assert_matches_oracle(attn, oracle, causal: bool, masked: bool, nq: int = N) -> None:  # noqa: ANN001
    q, k, v = inputs(nq=nq)
    mask = padding() if masked else None
    out, _ = attn(q, k, v, key_mask=mask)
    expected = oracle(q, k, v, mask, causal)
    assert max_diff(out, expected) < TOL
    for got, want in zip(grads(out, (q, k, v)), grads(expected, (q, k, v)), strict=True):
        assert max_diff(got, want) < TOL


# ------------------------------------------------------------ linear attention
@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "padded"])
def test_linear_equals_dense_elu_kernel(causal: bool, masked: bool) -> None:
    assert_matches_oracle(linear(causal), elu_oracle, causal, masked)


@pytest.mark.parametrize("nq", [29, 83], ids=["fewer-queries", "more-queries"])
def test_linear_causal_with_other_query_lengths(nq: int) -> None:
    """Queries are the last Nq positions of the keys' sequence, as for every causal kind."""
    assert_matches_oracle(linear(True), elu_oracle, True, True, nq=nq)


# ----------------------------------------------------------------- performer
@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "padded"])
def test_performer_equals_dense_favor_kernel(causal: bool, masked: bool) -> None:
    attn = performer(causal)
    assert_matches_oracle(attn, lambda *a: favor_oracle(attn, *a), causal, masked)


@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
def test_work_split_into_tiles_gives_the_same(causal: bool, monkeypatch) -> None:  # noqa: ANN001
    """Long inputs are worked through a few heads, or a tile of rows, at a time.

    With this budget Performer (64 features) takes one head at a time in tiles
    of 31 rows (causal: one chunk of 16), linear attention (8 features) three
    heads at a time, then the last one.
    """
    monkeypatch.setattr(kernelized, "WORK_ELEMENTS", 2000)
    attn = performer(causal)
    assert_matches_oracle(attn, lambda *a: favor_oracle(attn, *a), causal, masked=True)
    assert_matches_oracle(linear(causal), elu_oracle, causal, masked=True)


@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
def test_performer_relu_kernel_equals_dense(causal: bool) -> None:
    attn = performer(causal, kernel="relu")
    w = attn.projection.T * D**-0.25  # (D, F)

    def oracle(q, k, v, mask, causal):  # noqa: ANN001, ANN202
        return dense_kernel_attention(torch.relu(q @ w) + 1e-3, torch.relu(k @ w) + 1e-3, v, mask, causal)

    assert_matches_oracle(attn, oracle, causal, masked=True)


def test_performer_error_falls_as_features_grow() -> None:
    """FAVOR+ estimates softmax attention: more random features, a closer estimate."""
    exact_inputs = [inputs(n=48, scale=0.5, seed=seed) for seed in range(4)]
    errors = {}
    for features in (16, 256, 1024):
        total = 0.0
        for seed, (q, k, v) in enumerate(exact_inputs):
            torch.manual_seed(seed)
            attn = PerformerAttention(
                PerformerAttentionConfig(features=features), AttentionSpec(H * D, H, max_length=256)
            ).eval()
            with torch.no_grad():
                out, _ = attn(q, k, v)
                exact, _ = explicit_attention(q, k, v, None)
            total += ((out - exact).norm() / exact.norm()).item()
        errors[features] = total / len(exact_inputs)
    assert errors[256] < 0.5 * errors[16], errors
    assert errors[1024] < 0.7 * errors[256], errors


@pytest.mark.parametrize("kind", ["performer", "linear"])
def test_causal_never_sees_the_future_across_chunks(kind: str) -> None:
    attn = performer(True) if kind == "performer" else linear(True)
    mask, t = padding(), 37  # mid-chunk
    q, k, v = inputs()
    out, _ = attn(q, k, v, key_mask=mask)
    gen = torch.Generator().manual_seed(5)
    changed = [x.detach().clone() for x in (q, k, v)]
    for x in changed:
        x[:, :, t:] = 5 * torch.randn(x[:, :, t:].shape, generator=gen)
    out2, _ = attn(*changed, key_mask=mask)
    assert max_diff(out2[:, :, :t], out[:, :, :t]) < TOL
    assert max_diff(out2[:, :, t:], out[:, :, t:]) > 0.1


def test_performer_causal_scale_is_set_by_the_past() -> None:
    """Keys with very negative logits stay visible however large a later key's logit is.

    A stabiliser taken over the whole sequence would let the later key push the
    earlier keys' features to zero (underflow): a leak from the future.
    """
    attn = performer(True)
    q, k, v = (x.detach() for x in inputs())
    k = 12 * k  # large keys: logits some 150 below zero, far below the aligned key's
    out, _ = attn(q, k, v)
    assert (out[:, :, :50].abs().sum(-1) > 0).all()  # every early query still sees its keys
    aligned = k.clone()
    aligned[:, :, 50] = attn.projection[0] * D**0.25  # x = w: the largest logit a key can have
    out2, _ = attn(q, aligned, v)
    assert torch.isfinite(out).all() and torch.isfinite(out2).all()
    assert max_diff(out2[:, :, :50], out[:, :, :50]) < TOL


@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
def test_performer_large_inputs_stay_finite(causal: bool) -> None:
    attn = performer(causal)
    q, k, v = inputs(scale=30.0)
    out, _ = attn(q, k, v, key_mask=padding())
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert all(torch.isfinite(x.grad).all() for x in (q, k, v))


@pytest.mark.parametrize("kind", ["performer", "linear"])
@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
def test_sequence_without_keys_gives_zero(kind: str, causal: bool) -> None:
    attn = performer(causal) if kind == "performer" else linear(causal)
    mask = padding()
    mask[1] = False
    q, k, v = inputs()
    out, weights = attn(q, k, v, key_mask=mask, need_weights=True)
    assert (out[1] == 0).all() and (weights[1] == 0).all()
    assert torch.isfinite(out[0]).all() and out[0].abs().sum() > 0


def test_performer_redraws_every_interval_in_training_only() -> None:
    attn = performer(False, redraw_interval=3).train()
    q, k, v = (x.detach() for x in inputs())
    first = attn.projection.clone()
    outs = [attn(q, k, v)[0] for _ in range(3)]
    assert all(torch.equal(o, outs[0]) for o in outs)  # three steps on the first draw
    assert torch.equal(attn.projection, first)
    out4, _ = attn(q, k, v)  # step 4 starts on a new draw
    assert not torch.equal(attn.projection, first)
    assert max_diff(out4, outs[0]) > 1e-4
    second = attn.projection.clone()
    attn.eval()
    for _ in range(7):
        attn(q, k, v)
    assert torch.equal(attn.projection, second) and int(attn.steps) == 4


def test_performer_never_redraws_with_interval_zero() -> None:
    attn = performer(False, redraw_interval=0).train()
    first = attn.projection.clone()
    q, k, v = (x.detach() for x in inputs())
    for _ in range(5):
        attn(q, k, v)
    assert torch.equal(attn.projection, first)


def test_performer_checkpoint_reproduces_outputs_and_redraws() -> None:
    attn = performer(False, redraw_interval=2).train()
    q, k, v = (x.detach() for x in inputs())
    for _ in range(3):
        attn(q, k, v)  # a redraw has happened
    state = {name: t.clone() for name, t in attn.state_dict().items()}
    torch.manual_seed(123)  # a different seed: a fresh module draws other features
    other = PerformerAttention(attn_config(attn), attn.spec).train()
    assert not torch.equal(other.projection, attn.projection)
    other.load_state_dict(state)
    assert torch.equal(other(q, k, v)[0], attn(q, k, v)[0])  # same step, same features
    assert torch.equal(other(q, k, v)[0], attn(q, k, v)[0])  # and the same next redraw


def attn_config(attn: PerformerAttention) -> PerformerAttentionConfig:
    return PerformerAttentionConfig(
        features=attn.num_features, kernel=attn.kernel, redraw_interval=attn.redraw_interval, chunk=attn.chunk
    )


# ----------------------------------------------------------------- linformer
def identity_linformer(n: int, max_length: int) -> LinformerAttention:
    attn = LinformerAttention(LinformerAttentionConfig(k=n), AttentionSpec(H * D, H, max_length=max_length))
    with torch.no_grad():
        eye = torch.zeros(n, max_length)
        eye[:, :n] = torch.eye(n)
        attn.key_projection.copy_(eye)
        attn.value_projection.copy_(eye)
    return attn


def test_linformer_with_identity_projection_is_full_attention() -> None:
    n = 12
    attn = identity_linformer(n, max_length=20)
    q, k, v = inputs(n)
    out, weights = attn(q, k, v, need_weights=True)
    exact, exact_weights = explicit_attention(q, k, v, None)
    assert max_diff(out, exact) < TOL
    assert max_diff(weights, exact_weights) < TOL
    for got, want in zip(grads(out, (q, k, v)), grads(exact, (q, k, v)), strict=True):
        assert max_diff(got, want) < TOL


def test_linformer_padding_is_zeroed_before_projecting() -> None:
    """With the identity projection, padded tokens become zero keys and values, nothing more."""
    n = 12
    attn = identity_linformer(n, max_length=20)
    q, k, v = inputs(n)
    mask = padding(n)
    out, _ = attn(q, k, v, key_mask=mask)
    keep = mask[:, None, :, None]  # (B, 1, N, 1)
    exact, _ = explicit_attention(q, k * keep, v * keep, None)
    assert max_diff(out, exact) < TOL


def test_linformer_short_sequence_uses_the_first_columns() -> None:
    """A sequence and the same sequence followed by padding give the same outputs."""
    torch.manual_seed(0)
    attn = LinformerAttention(LinformerAttentionConfig(k=16), AttentionSpec(H * D, H, max_length=64))
    q, k, v = (x.detach() for x in inputs(40))
    mask = torch.ones(B, 40, dtype=torch.bool)
    mask[:, 30:] = False
    short, _ = attn(q[:, :, :30], k[:, :, :30], v[:, :, :30])
    padded, _ = attn(q, k, v, key_mask=mask)
    assert max_diff(padded[:, :, :30], short) < TOL


def test_linformer_refuses_longer_sequences() -> None:
    attn = LinformerAttention(LinformerAttentionConfig(k=8), AttentionSpec(H * D, H, max_length=32))
    q, k, v = inputs(33)
    with pytest.raises(ValueError, match="up to 32 tokens"):
        attn(q, k, v)


def test_linformer_shared_projection_has_one_matrix() -> None:
    attn = LinformerAttention(LinformerAttentionConfig(k=8, share_kv=True), AttentionSpec(H * D, H, max_length=32))
    assert [name for name, _ in attn.named_parameters()] == ["key_projection"]
    q, k, v = inputs(20)
    out, weights = attn(q, k, v, need_weights=True)
    assert max_diff(weights @ v, out) < TOL


# -------------------------------------------------------------- bad settings
@pytest.mark.parametrize(
    "build,field",
    [
        (lambda: PerformerAttention(PerformerAttentionConfig(features=0), AttentionSpec(16, 2)), "features"),
        (lambda: PerformerAttention(PerformerAttentionConfig(features=-3), AttentionSpec(16, 2)), "features"),
        (lambda: PerformerAttention(PerformerAttentionConfig(redraw_interval=-1), AttentionSpec(16, 2)),
         "redraw_interval"),
        (lambda: PerformerAttention(PerformerAttentionConfig(kernel="cosine"), AttentionSpec(16, 2)), "kernel"),
        (lambda: LinearAttention(LinearAttentionConfig(chunk=0), AttentionSpec(16, 2)), "chunk"),
        (lambda: LinformerAttention(LinformerAttentionConfig(k=0), AttentionSpec(16, 2, max_length=64)), "k"),
        (lambda: LinformerAttention(LinformerAttentionConfig(k=64), AttentionSpec(16, 2, max_length=64)), "k"),
        (lambda: LinformerAttention(LinformerAttentionConfig(k=100), AttentionSpec(16, 2, max_length=64)), "k"),
        (lambda: LinformerAttention(LinformerAttentionConfig(k=8), AttentionSpec(16, 2, causal=True)),
         "attention"),
    ],
    ids=["features-0", "features-negative", "redraw-negative", "kernel-unknown", "chunk-0", "k-0",
         "k-equal-max", "k-above-max", "linformer-causal"],
)
def test_bad_settings_are_refused(build, field: str) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError) as info:
        build()
    assert info.value.field == field


def test_linformer_k_error_names_the_attention_section_in_a_model() -> None:
    vocab = ("<pad>", "a", "b")
    task = TaskSpec("toy", "classify", vocab, num_classes=2, max_length=31)
    config = TransformerConfig(d_model=16, heads=2, attention="linformer")
    with pytest.raises(ConfigError) as info:
        Transformer(config, ModelSpec(task, LinformerAttentionConfig(k=32)))  # 31 tokens + summary token
    assert info.value.field == "attention.k"
    assert "no compression" in info.value.message


def test_performer_weights_stay_a_distribution_with_huge_logits() -> None:
    """Where the raw kernel would overflow, every row still sums to 1, or to 0 where all underflowed."""
    attn = performer(False)
    q, k, v = (x.detach() for x in inputs(scale=20.0))
    out, weights = attn(q, k, v, need_weights=True)
    assert torch.isfinite(weights).all() and (weights >= 0).all()
    sums = weights.sum(-1)  # (B, H, N)
    assert ((sums - 1).abs() < TOL).float().mean() > 0.5  # most rows keep a key
    assert (((sums - 1).abs() < TOL) | (sums == 0)).all()
    assert max_diff(weights @ v, out) < 1e-4
