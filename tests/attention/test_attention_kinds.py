"""The shared contract of every registered attention kind (plugins included).

Each test runs once per name in the registry, so a new kind is covered by
registering it; only the full/sdpa agreement test names kinds.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from effstudio.attention.base import AttentionSpec
from effstudio.registry import get_registry

KINDS = get_registry().names("attention")
B, H, N, D = 2, 2, 6, 4
DIM = H * D
MAX_LENGTH = 512  # what the kinds are built for; the contract tests pass shorter sequences


def assert_near(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-5) -> None:
    # not torch.testing.assert_close: its first call imports torch.distributed (seconds)
    assert actual.shape == expected.shape, f"shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    diff = (actual - expected).abs().max().item() if actual.numel() else 0.0
    assert diff <= tol, f"max difference {diff:.3g} > {tol}"


def build(kind: str, causal: bool) -> torch.nn.Module:
    entry = get_registry().get("attention", kind)
    module = entry.factory(entry.default_config(), AttentionSpec(DIM, H, causal, max_length=MAX_LENGTH))
    return module.eval()  # no dropout: outputs must be comparable between calls


def supports(kind: str, causal: bool) -> bool:
    return not causal or build(kind, False).supports_causal


def qkv(nq: int = N, nk: int = N, grad: bool = False) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(0)
    shapes = ((B, H, nq, D), (B, H, nk, D), (B, H, nk, D))
    return tuple(torch.randn(s, generator=gen).requires_grad_(grad) for s in shapes)


def noise_like(x: torch.Tensor) -> torch.Tensor:
    """Large values, unlike the inputs, so a leak would show."""
    return 5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))


def padding_mask() -> torch.Tensor:
    mask = torch.ones(B, N, dtype=torch.bool)  # (B, N), True = real token
    mask[0, 4:] = False
    mask[1, 2:] = False
    return mask


def causal_params() -> list:
    """Every kind, bidirectional and causal; a kind that cannot be causal skips its causal case."""
    return [
        pytest.param(kind, causal, id=f"{kind}-{'causal' if causal else 'bidir'}",
                     marks=() if supports(kind, causal) else pytest.mark.skip(reason=f"{kind} cannot be causal"))
        for kind in KINDS
        for causal in (False, True)
    ]


@pytest.mark.parametrize("kind,causal", causal_params())
def test_output_shape(kind: str, causal: bool) -> None:
    q, k, v = qkv()
    out, _ = build(kind, causal)(q, k, v, key_mask=padding_mask())
    assert out.shape == (B, H, N, D)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("kind,causal", causal_params())
def test_masked_keys_are_ignored(kind: str, causal: bool) -> None:
    attn, mask = build(kind, causal), padding_mask()
    q, k, v = qkv()
    out, _ = attn(q, k, v, key_mask=mask)
    pad = ~mask[:, None, :, None]  # (B, 1, N, 1)
    k2 = torch.where(pad, noise_like(k), k)
    v2 = torch.where(pad, noise_like(v), v)
    out2, _ = attn(q, k2, v2, key_mask=mask)
    real = mask[:, None, :, None].expand_as(out)  # (B, H, N, D)
    assert_near(out2[real], out[real])


@pytest.mark.parametrize("kind", KINDS)
def test_causal_never_sees_the_future(kind: str) -> None:
    if not supports(kind, True):
        pytest.skip(f"{kind} cannot be causal")
    attn, t = build(kind, True), 3
    q, k, v = qkv()
    out, _ = attn(q, k, v)
    later = [x.clone() for x in (q, k, v)]
    for x in later:
        x[:, :, t:] = noise_like(x[:, :, t:])
    out2, _ = attn(*later)
    assert_near(out2[:, :, :t], out[:, :, :t])


@pytest.mark.parametrize("kind,causal", causal_params())
def test_weights_are_normalised_over_real_keys(kind: str, causal: bool) -> None:
    mask = padding_mask()
    q, k, v = qkv()
    attn = build(kind, causal)
    _, weights = attn(q, k, v, key_mask=mask, need_weights=True)
    assert weights is not None and weights.shape == (B, H, N, N)
    assert torch.isfinite(weights).all()
    if attn.weights_are_probabilities:
        assert (weights >= 0).all()
        real_rows = mask[:, None, :].expand(B, H, N)  # (B, H, Nq)
        sums = weights.sum(dim=-1)  # (B, H, Nq)
        assert_near(sums[real_rows], torch.ones_like(sums[real_rows]))
    masked_keys = ~mask[:, None, None, :].expand_as(weights)  # (B, H, Nq, Nk)
    assert (weights[masked_keys] == 0).all()
    if causal:
        assert (weights.triu(diagonal=1) == 0).all()


@pytest.mark.parametrize("kind,causal", causal_params())
def test_weights_reproduce_the_output(kind: str, causal: bool) -> None:
    """The returned weights are the matrix that mixes the values: out = weights @ v."""
    mask = padding_mask()
    q, k, v = qkv()
    attn = build(kind, causal)
    out, weights = attn(q, k, v, key_mask=mask, need_weights=True)
    fast, _ = attn(q, k, v, key_mask=mask)
    assert_near(out, fast)  # asking for the weights does not change the output
    real_rows = mask[:, None, :, None].expand_as(out)  # (B, H, Nq, D)
    assert_near((weights @ v)[real_rows], out[real_rows])


@pytest.mark.parametrize("kind,causal", causal_params())
def test_gradients_flow(kind: str, causal: bool) -> None:
    attn = build(kind, causal)
    q, k, v = qkv(grad=True)
    out, _ = attn(q, k, v, key_mask=padding_mask())
    out.square().sum().backward()
    inputs = (q, v) if attn.shares_qk else (q, k, v)  # a shared-QK kind reads keys from q
    for x in (*inputs, *attn.parameters()):
        assert x.grad is not None and torch.isfinite(x.grad).all()
        assert x.grad.abs().sum() > 0


@pytest.mark.parametrize("kind,causal", causal_params())
def test_row_without_keys_is_finite(kind: str, causal: bool) -> None:
    mask = padding_mask()
    mask[1] = False  # a sequence with no real token at all
    q, k, v = qkv(grad=True)
    attn = build(kind, causal)
    for need_weights in (False, True):
        out, weights = attn(q, k, v, key_mask=mask, need_weights=need_weights)
        assert torch.isfinite(out).all()
        assert weights is None or torch.isfinite(weights).all()
    out.sum().backward()
    for x in (q, v) if attn.shares_qk else (q, k, v):  # a shared-QK kind reads keys from q
        assert torch.isfinite(x.grad).all()


@pytest.mark.parametrize("kind", [k for k in ("full", "sdpa") if k in KINDS])
@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
def test_exact_kinds_zero_a_row_without_keys(kind: str, causal: bool) -> None:
    mask = padding_mask()
    mask[1] = False
    q, k, v = qkv()
    for need_weights in (False, True):
        out, _ = build(kind, causal)(q, k, v, key_mask=mask, need_weights=need_weights)
        assert (out[1] == 0).all()


@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
@pytest.mark.parametrize("padded", [False, True], ids=["nomask", "padded"])
@pytest.mark.parametrize("need_weights", [False, True], ids=["fast", "probe"])
@pytest.mark.parametrize("nq,nk", [(N, N), (4, N)], ids=["self", "shorter-q"])
def test_full_and_sdpa_agree(causal: bool, padded: bool, need_weights: bool, nq: int, nk: int) -> None:
    q, k, v = qkv(nq, nk)
    mask = padding_mask() if padded else None
    out_full, w_full = build("full", causal)(q, k, v, key_mask=mask, need_weights=need_weights)
    out_sdpa, w_sdpa = build("sdpa", causal)(q, k, v, key_mask=mask, need_weights=need_weights)
    assert_near(out_sdpa, out_full)
    if need_weights:
        assert_near(w_sdpa, w_full)


class LargestStorage(TorchDispatchMode):
    """Records the largest tensor storage any op produces, backward included."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        outputs = out if isinstance(out, (tuple, list)) else (out,)
        for t in outputs:
            if isinstance(t, torch.Tensor):
                # storage bytes, not numel: an expanded view costs nothing
                self.largest = max(self.largest, t.untyped_storage().nbytes())
        return out


def largest_storage(attn: torch.nn.Module, n: int) -> int:
    q, k, v = (torch.randn(1, 1, n, D, requires_grad=True) for _ in range(3))
    mask = torch.ones(1, n, dtype=torch.bool)
    mask[0, -n // 40:] = False
    with LargestStorage() as probe:
        out, _ = attn(q, k, v, key_mask=mask)
        out.sum().backward()
    return probe.largest


@pytest.mark.parametrize("kind,causal", causal_params())
def test_subquadratic_kinds_never_form_n_by_n(kind: str, causal: bool) -> None:
    entry = get_registry().get("attention", kind)
    n = 4096
    attn = entry.factory(entry.default_config(), AttentionSpec(D, 1, causal, max_length=n))
    if not attn.subquadratic:
        pytest.skip(f"{kind} is quadratic by design")
    quadratic = n * n * 4  # bytes of one float32 N x N matrix
    largest = largest_storage(attn, n)
    assert largest < quadratic / 4, f"a tensor of {largest / quadratic:.2f} x N^2 appeared"
    # the largest tensor grows with N, not N^2
    assert largest / largest_storage(attn, n // 2) < 3
