"""performer-floor: the same function as the performer kind, in plain operations, measured beside it."""

from __future__ import annotations

import pytest
import torch

from effstudio.attention.base import AttentionSpec
from effstudio.bench.attention import AttentionBenchSettings
from effstudio.bench.attention_case import measure
from effstudio.bench.attention_floor import PerformerFloor
from effstudio.config import ConfigError
from effstudio.registry import get_registry


def test_the_floor_computes_what_the_kind_computes() -> None:
    spec = AttentionSpec(dim=32, heads=2, max_length=64)
    entry = get_registry().get("attention", "performer")
    torch.manual_seed(0)
    kind = entry.factory(entry.default_config(), spec).eval()
    torch.manual_seed(0)
    floor = PerformerFloor(spec)
    q, k, v = (torch.randn(1, 2, 40, 16, generator=torch.Generator().manual_seed(i)) * 0.5 for i in range(3))
    assert torch.allclose(kind(q, k, v)[0], floor(q, k, v)[0], atol=1e-5)


def test_every_kind_run_measures_the_floor_after_its_kind() -> None:
    kinds = AttentionBenchSettings(device="cpu").resolved().kinds
    assert kinds[kinds.index("performer") + 1] == "performer-floor"
    assert "performer-floor" not in AttentionBenchSettings(device="cpu", causal=True).resolved().kinds
    assert AttentionBenchSettings(kinds=("performer-floor",), device="cpu").resolved().kinds == ("performer-floor",)


def test_a_floor_case_is_measured_like_a_kind() -> None:
    result = measure("performer-floor", 64, batch=1, heads=2, head_dim=8, backward=True, causal=False,
                     device="cpu", repeats=1)
    assert result["ok"] and result["ms"] > 0
    with pytest.raises(ConfigError):
        measure("performer-floor", 64, batch=1, heads=2, head_dim=8, backward=True, causal=True,
                device="cpu", repeats=1)
