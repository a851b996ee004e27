"""The kinds that choose a path per call give the same results on both.

The whole-sequence paths (weights or features kept) run whenever they fit, so the
dense-oracle tests exercise them; here a zero memory limit sends the same inputs
down the chunked paths, whose outputs and gradients must agree.
"""

from __future__ import annotations

import pytest
import torch

from effstudio.attention import band, kernelized, reformer, strided
from effstudio.attention.base import AttentionSpec
from effstudio.attention.local import LocalAttention, LocalAttentionConfig
from effstudio.attention.longformer import LongformerAttention, LongformerAttentionConfig
from effstudio.attention.performer import PerformerAttention, PerformerAttentionConfig
from effstudio.attention.reformer import ReformerAttention, ReformerAttentionConfig
from effstudio.attention.sparse import SparseAttention, SparseAttentionConfig
from tests.attention.compare import max_diff, padded_mask

B, H, D, N = 2, 2, 8, 45
TOL = 1e-5


def build(name: str, causal: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    spec = AttentionSpec(H * D, H, causal=causal, max_length=256)
    return {
        "local": lambda: LocalAttention(LocalAttentionConfig(window=5), spec),
        "longformer": lambda: LongformerAttention(LongformerAttentionConfig(window=4, global_tokens="0,9"), spec),
        "reformer": lambda: ReformerAttention(ReformerAttentionConfig(n_hashes=2, bucket_size=4), spec),
        "performer": lambda: PerformerAttention(PerformerAttentionConfig(features=16), spec),
    }[name]()


def run(attn: torch.nn.Module, mask: torch.Tensor | None) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    q, k, v = (torch.randn(B, H, N, D, generator=gen, dtype=torch.float64).requires_grad_() for _ in range(3))
    keys = q if attn.shares_qk else k
    out, _ = attn(q, keys, v, key_mask=mask)
    return [out, *torch.autograd.grad(out.square().sum(), (q, k, v), allow_unused=True)]


@pytest.mark.parametrize("padded", [False, True], ids=["nomask", "padded"])
@pytest.mark.parametrize("name", ["local", "longformer", "reformer", "performer"])
def test_whole_and_chunked_paths_agree(name: str, padded: bool, monkeypatch) -> None:  # noqa: ANN001
    mask = padded_mask(B, N, 7) if padded else None
    attn = build(name)
    whole = run(attn, mask)
    for module in (band, kernelized, reformer):
        monkeypatch.setattr(module, "KEEP_LIMIT_BYTES", 0)
    chunked = run(attn, mask)
    for got, want in zip(chunked, whole, strict=True):
        if want is None:  # shared query/key space: the separate keys get no gradient
            assert got is None
            continue
        assert max_diff(got, want) <= TOL


@pytest.mark.parametrize("limit", [None, 0], ids=["fits", "too-large"])
def test_the_path_follows_the_memory_limit(limit: int | None, monkeypatch) -> None:  # noqa: ANN001
    calls = []
    for function in (band.BandAttention, reformer.WholeLSHAttention):
        original = function.apply
        monkeypatch.setattr(function, "apply", lambda *a, f=original: calls.append(f) or f(*a))
    if limit is not None:
        for module in (band, reformer, kernelized):
            monkeypatch.setattr(module, "KEEP_LIMIT_BYTES", limit)
    run(build("local"), None)
    run(build("reformer"), None)
    assert len(calls) == (2 if limit is None else 0)
    assert kernelized.keeps_features(H, N, N, 16) is (limit is None)


@pytest.mark.parametrize("padded", [False, True], ids=["nomask", "padded"])
def test_the_kept_features_give_the_same_one_head_at_a_time(padded: bool, monkeypatch) -> None:  # noqa: ANN001
    """The whole path works through groups of heads whose features stay small; any grouping gives the same
    results to float32 rounding, the key stabiliser being per sequence and head."""
    mask = padded_mask(B, N, 7) if padded else None
    attn = build("performer")
    groups = []
    original = kernelized._whole_forward
    monkeypatch.setattr(kernelized, "_whole_forward", lambda *a: groups.append(a[2].shape[0]) or original(*a))
    together = run(attn, mask)
    monkeypatch.setattr(kernelized, "KEEP_GROUP_ELEMENTS", 1)  # one head per group
    one_by_one = run(attn, mask)
    assert groups == [B * H] + [1] * (B * H)
    for got, want in zip(one_by_one, together, strict=True):
        assert max_diff(got, want) <= TOL  # the core computes in float32


@pytest.mark.parametrize("padded", [False, True], ids=["nomask", "padded"])
@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
@pytest.mark.parametrize("name", ["local", "longformer"])
def test_the_band_gives_the_same_in_runs_of_one_block_as_in_one_run(name: str, causal: bool, padded: bool,
                                                                     monkeypatch) -> None:  # noqa: ANN001
    """Runs of blocks meet at every block boundary: the neighbour slots and the folds must line up."""
    mask = padded_mask(B, N, 7) if padded else None
    attn = build(name, causal)
    whole = run(attn, mask)
    monkeypatch.setattr(band, "CHUNK_QUERIES", 1)  # one block per run
    calls = []
    original = band._side_by_side
    monkeypatch.setattr(band, "_side_by_side", lambda *a, **kw: calls.append(a) or original(*a, **kw))
    runs = run(attn, mask)
    assert len(calls) > 6  # several runs in each pass, not one
    for got, want in zip(runs, whole, strict=True):
        assert max_diff(got, want) <= TOL


@pytest.mark.parametrize("padded", [False, True], ids=["nomask", "padded"])
@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
def test_reformer_gives_the_same_in_runs_of_one_chunk_as_in_one_run(causal: bool, padded: bool,
                                                                    monkeypatch) -> None:  # noqa: ANN001
    """A run's first chunk takes its keys from the run before: the folds must carry its gradient there."""
    mask = padded_mask(B, N, 7) if padded else None
    attn = build("reformer", causal)
    whole = run(attn, mask)
    monkeypatch.setattr(reformer, "RUN_QUERIES", 1)  # one chunk per run
    runs = []
    original = reformer._runs
    monkeypatch.setattr(reformer, "_runs", lambda plan: runs.append(original(plan)) or runs[-1])
    chunked = run(attn, mask)
    assert runs and all(len(found) > 6 for found in runs)
    for got, want in zip(chunked, whole, strict=True):
        if want is None:
            assert got is None
            continue
        assert max_diff(got, want) <= TOL


@pytest.mark.parametrize("padded", [False, True], ids=["nomask", "padded"])
@pytest.mark.parametrize("causal", [False, True], ids=["bidirectional", "causal"])
@pytest.mark.parametrize("span,band_block", [(2, 2), (3, 3), (4, 6), (6, 6)],
                         ids=["band-of-a-third", "band-of-a-half", "span-below-stride", "span-of-a-stride"])
def test_sparse_strided_whole_path_agrees_with_the_chunked_one_in_any_runs(span: int, band_block: int, causal: bool,
                                                                        padded: bool, monkeypatch) -> None:  # noqa: ANN001
    """The strided pattern's whole path (both parts' weights kept, one softmax; the band in blocks of the
    smallest divisor of the stride that holds the span) against the chunked path that recomputes them,
    and against itself in runs of one residue block."""
    torch.manual_seed(0)
    attn = SparseAttention(SparseAttentionConfig(pattern="strided", stride=6, local_span=span),
                           AttentionSpec(H * D, H, causal=causal, max_length=256))
    mask = padded_mask(B, N, 7) if padded else None
    calls = []
    original = strided.StridedAttention.apply
    monkeypatch.setattr(strided.StridedAttention, "apply", lambda *a: calls.append(a) or original(*a))
    whole = run(attn, mask)
    assert len(calls) == 1
    assert calls[0][-2:] == (band_block, causal)  # the band's block length, then causality
    monkeypatch.setattr(band, "CHUNK_QUERIES", 1)  # one residue block per run
    in_runs = run(attn, mask)
    monkeypatch.setattr(strided, "PER_HEAD_ENTRIES", 0)  # the residue products head by head
    products, bmm = [], torch.bmm
    monkeypatch.setattr(torch, "bmm", lambda *a, **kw: products.append(a[0].shape) or bmm(*a, **kw))
    by_head = run(attn, mask)
    monkeypatch.setattr(torch, "bmm", bmm)
    assert len(products) == 6 * B * H  # 2 residue products forward and 4 backward, per sequence and head
    monkeypatch.setattr(band, "KEEP_LIMIT_BYTES", 0)  # too large to keep: the chunked path
    chunked = run(attn, mask)
    assert len(calls) == 3
    for other in (in_runs, by_head, chunked):
        for got, want in zip(other, whole, strict=True):
            assert max_diff(got, want) <= TOL
