"""The exact sparse kinds equal a dense masked softmax with the same pattern.

The oracle is ``explicit_attention`` given each module's own ``allowed_pattern``;
the kinds themselves never build that matrix. Float32, forward and gradients,
to 1e-5; lengths that are not multiples of the block sizes, so internal
padding is exercised too.
"""

from __future__ import annotations

import pytest
import torch

from effstudio.attention.base import AttentionSpec
from effstudio.attention.bigbird import BigBirdAttention, BigBirdAttentionConfig
from effstudio.attention.full import explicit_attention
from effstudio.attention.local import LocalAttention, LocalAttentionConfig
from effstudio.attention.longformer import LongformerAttention, LongformerAttentionConfig
from effstudio.attention.sparse import SparseAttention, SparseAttentionConfig, resolved_stride
from effstudio.attention.strided import band_block
from effstudio.config import ConfigError
from effstudio.engine.run_config import RunConfig
from effstudio.models.base import ModelSpec
from effstudio.models.transformer import Transformer, TransformerConfig
from effstudio.tasks.base import TaskSpec
from tests.attention.compare import max_diff, padded_mask

B, H, D = 2, 2, 16
TOL = 1e-5

CASES = {
    "local": (LocalAttention, LocalAttentionConfig(window=5)),
    "local-wide": (LocalAttention, LocalAttentionConfig(window=20)),
    "local-dilated": (LocalAttention, LocalAttentionConfig(window=3, dilation=3)),
    "longformer": (LongformerAttention, LongformerAttentionConfig(window=4, global_tokens="0,9")),
    "longformer-no-global": (LongformerAttention, LongformerAttentionConfig(window=4, global_tokens="")),
    "bigbird": (BigBirdAttention, BigBirdAttentionConfig(block_size=4, window_blocks=3, random_blocks=2, global_blocks=1)),
    "bigbird-wide": (BigBirdAttention, BigBirdAttentionConfig(block_size=3, window_blocks=5, random_blocks=3, global_blocks=2)),
    "sparse-strided": (SparseAttention, SparseAttentionConfig(pattern="strided", stride=6, local_span=4)),
    "sparse-strided-span-of-a-stride": (SparseAttention, SparseAttentionConfig(pattern="strided", stride=6,
                                                                                local_span=6)),
    "sparse-strided-narrow-band": (SparseAttention, SparseAttentionConfig(pattern="strided", stride=8,
                                                                           local_span=3)),
    "sparse-strided-band-of-a-third": (SparseAttention, SparseAttentionConfig(pattern="strided", stride=6,
                                                                               local_span=2)),
    "sparse-strided-long-span": (SparseAttention, SparseAttentionConfig(pattern="strided", stride=4, local_span=9)),
    "sparse-fixed": (SparseAttention, SparseAttentionConfig(pattern="fixed", stride=6, summary=2)),
}


def build(case: str, causal: bool):
    cls, config = CASES[case]
    torch.manual_seed(0)  # BigBird draws its random-block seed here
    return cls(config, AttentionSpec(B * D, H, causal, max_length=256))


def inputs(n: int) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(3)
    return tuple(torch.randn(B, H, n, D, generator=gen).requires_grad_() for _ in range(3))


@pytest.mark.parametrize("padded", [False, True], ids=["nomask", "padded"])
@pytest.mark.parametrize("causal", [False, True], ids=["bidir", "causal"])
@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("n", [37, 48])
def test_equals_dense_masked_softmax(case: str, causal: bool, padded: bool, n: int) -> None:
    attn = build(case, causal)
    pattern = attn.allowed_pattern(n)  # (N, N)
    assert 0.05 < pattern.float().mean() < 0.9, "the case must be sparse, or the oracle proves nothing"
    mask = padded_mask(B, n, 9) if padded else None
    allowed = pattern[None, None] if mask is None else pattern[None, None] & mask[:, None, None, :]

    q, k, v = inputs(n)
    out, weights = attn(q, k, v, key_mask=mask, need_weights=True)
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    q2, k2, v2 = (x.detach().requires_grad_() for x in (q, k, v))
    ref, ref_weights = explicit_attention(q2, k2, v2, allowed)
    ref_grads = torch.autograd.grad(ref.square().sum(), (q2, k2, v2))

    assert max_diff(out, ref) <= TOL
    assert max_diff(weights, ref_weights) <= TOL
    for g, r in zip(grads, ref_grads, strict=True):
        assert max_diff(g, r) <= TOL
    fast, _ = attn(q, k, v, key_mask=mask)  # the path without weights may be another computation
    assert max_diff(fast, ref) <= TOL
    for g, r in zip(torch.autograd.grad(fast.square().sum(), (q, k, v)), ref_grads, strict=True):
        assert max_diff(g, r) <= TOL


def test_bigbird_random_blocks_are_fixed_per_layer_and_saved() -> None:
    layer = build("bigbird", False)
    other = BigBirdAttention(CASES["bigbird"][1], AttentionSpec(B * D, H, False, max_length=256))
    n = 64
    assert torch.equal(layer.allowed_pattern(n), layer.allowed_pattern(n))  # fixed across calls
    assert not torch.equal(layer.allowed_pattern(n), other.allowed_pattern(n))  # differs per layer
    other.load_state_dict(layer.state_dict())  # the seed travels with the weights
    assert torch.equal(layer.allowed_pattern(n), other.allowed_pattern(n))


def test_bigbird_random_blocks_avoid_window_global_and_future() -> None:
    config = BigBirdAttentionConfig(block_size=2, window_blocks=3, random_blocks=2, global_blocks=1)
    for causal in (False, True):
        layer = BigBirdAttention(config, AttentionSpec(B * D, H, causal, max_length=256))
        index, valid = layer.random_block_index(12)
        rows = torch.arange(12)[:, None].expand_as(index)
        chosen, row = index[valid], rows[valid]
        assert ((chosen - row).abs() > 1).all() and (chosen >= 1).all()
        if causal:
            assert (chosen < row).all()
        else:
            assert valid[1:].all()  # every non-global block found its random blocks


def test_dilated_window_reaches_further_at_the_same_cost() -> None:
    plain = LocalAttention(LocalAttentionConfig(window=3), AttentionSpec(B * D, H, False, max_length=256))
    dilated = build("local-dilated", False)
    p, d = plain.allowed_pattern(40), dilated.allowed_pattern(40)
    assert torch.equal(p.sum(1)[10:30], d.sum(1)[10:30])  # same keys per query in the middle
    assert d[20, 29] and not p[20, 29]  # 9 = 3 steps of 3 away


def test_longformer_global_token_sees_and_is_seen_by_all() -> None:
    pattern = build("longformer", False).allowed_pattern(30)
    assert pattern[0].all() and pattern[:, 0].all() and pattern[9].all()
    assert not pattern[20, 2]


@pytest.mark.parametrize(
    "cls,config,field",
    [
        (LocalAttention, LocalAttentionConfig(window=300), "window"),
        (LocalAttention, LocalAttentionConfig(window=60, dilation=5), "window"),
        (LongformerAttention, LongformerAttentionConfig(window=256), "window"),
        (LongformerAttention, LongformerAttentionConfig(global_tokens="cls"), "global_tokens"),
        (LongformerAttention, LongformerAttentionConfig(global_tokens="-1"), "global_tokens"),
        (BigBirdAttention, BigBirdAttentionConfig(window_blocks=2), "window_blocks"),
        (BigBirdAttention, BigBirdAttentionConfig(block_size=128), "block_size"),
        (SparseAttention, SparseAttentionConfig(stride=256), "stride"),
        (SparseAttention, SparseAttentionConfig(pattern="fixed", stride=8, summary=9), "summary"),
        (SparseAttention, SparseAttentionConfig(local_span=255), "local_span"),
        (SparseAttention, SparseAttentionConfig(stride=1), "stride"),
        (SparseAttention, SparseAttentionConfig(pattern="fixed", summary=64), "summary"),  # auto block: 32
    ],
)
def test_bad_settings_are_refused_by_name(cls, config, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        cls(config, AttentionSpec(B * D, H, False, max_length=256))
    assert err.value.field == field
    assert str(err.value).startswith(field)


@pytest.mark.parametrize(
    "config,max_length,stride",
    [
        (SparseAttentionConfig(), 256, 128),  # 2 sqrt(N) is 32: the local span of 128 is the floor
        (SparseAttentionConfig(), 4096, 128),
        (SparseAttentionConfig(), 4097, 256),  # rounded up
        (SparseAttentionConfig(), 16384, 256),
        (SparseAttentionConfig(), 65536, 512),
        (SparseAttentionConfig(local_span=8), 256, 32),
        (SparseAttentionConfig(pattern="fixed"), 256, 32),  # the local span is not part of that pattern
        (SparseAttentionConfig(stride=96), 16384, 96),  # a stride given is kept
    ],
)
def test_the_default_stride_follows_the_max_length(config: SparseAttentionConfig, max_length: int,
                                                   stride: int) -> None:
    assert resolved_stride(config, max_length) == stride
    assert SparseAttention(config, AttentionSpec(B * D, H, False, max_length=max_length)).stride == stride


def test_band_blocks_are_the_smallest_divisor_of_the_stride_that_holds_the_span() -> None:
    assert [band_block(256, span) for span in (1, 100, 128, 129, 256)] == [1, 128, 128, 256, 256]
    assert [band_block(6, span) for span in (2, 3, 4, 6)] == [2, 3, 6, 6]


def test_a_default_span_longer_than_the_sequences_is_named_as_the_span() -> None:
    with pytest.raises(ConfigError) as err:
        SparseAttention(SparseAttentionConfig(), AttentionSpec(B * D, H, False, max_length=100))
    assert err.value.field == "local_span"


def test_model_names_the_attention_section_of_a_bad_setting() -> None:
    config = RunConfig.create("transformer", "listops", {"attention": "local", "attention.window": 400})
    task = TaskSpec("toy", "classify", vocab=["<pad>", "a"], num_classes=2, max_length=64)
    with pytest.raises(ConfigError) as err:
        Transformer(TransformerConfig(attention="local"), ModelSpec(task, config.attention))
    assert err.value.field == "attention.window"
    assert "full attention" in err.value.message
