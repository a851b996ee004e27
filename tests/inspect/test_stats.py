"""Chunked statistics equal numpy's over the whole array, for every element type."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from effstudio.engine.events import JobControl
from effstudio.inspect import open_model
from effstudio.inspect.dtypes import to_float
from effstudio.inspect.stats import (
    StatsDoneEvent,
    Stopped,
    TensorStatsEvent,
    histogram,
    iter_stats,
    matrix_view,
    tensor_stats,
)
from tests.inspect import files


def reference(values: np.ndarray) -> dict[str, float]:
    values = values.astype(np.float64).ravel()
    finite = values[np.isfinite(values)]
    return {"min": finite.min(), "max": finite.max(), "mean": finite.mean(), "std": finite.std(),
            "sparsity": 100.0 * np.count_nonzero(values == 0) / values.size}


def assert_matches(stats, expected, rel=1e-9):
    for key, value in expected.items():
        assert getattr(stats, key) == pytest.approx(value, rel=rel, abs=1e-12), key


@pytest.fixture
def mixed(tmp_path):
    r = files.rng(5)
    dense = r.standard_normal((37, 53))
    dense[dense < -0.8] = 0.0
    tensors = {
        "f32": dense.astype(np.float32),
        "f16": (dense * 3).astype(np.float16),
        "f64": dense,
        "i8": r.integers(-128, 128, size=(5, 7, 11)).astype(np.int8),
        "i64": r.integers(-10**6, 10**6, size=1001).astype(np.int64),
        "u8": r.integers(0, 3, size=(64,)).astype(np.uint8),
        "flags": r.random(99) < 0.3,
    }
    bf16 = torch.from_numpy(dense.astype(np.float32)).to(torch.bfloat16)
    fp8 = torch.from_numpy(dense.astype(np.float32)).to(torch.float8_e4m3fn)
    fp8b = torch.from_numpy(dense.astype(np.float32)).to(torch.float8_e5m2)
    path = files.safetensors_file(tmp_path / "mixed.safetensors", tensors)
    typed = files.torch_safetensors(tmp_path / "typed.safetensors", {"bf16": bf16, "fp8": fp8, "fp8b": fp8b})
    truth = {name: array for name, array in tensors.items()}
    truth.update({"bf16": bf16.float().numpy(), "fp8": fp8.float().numpy(), "fp8b": fp8b.float().numpy()})
    return open_model(path), open_model(typed), truth


@pytest.mark.parametrize("chunk", [1 << 22, 7, 64])
def test_stats_match_numpy_for_every_dtype(mixed, chunk):
    plain, typed, truth = mixed
    for inspected in (plain, typed):
        for tensor in inspected.tensors:
            assert_matches(tensor_stats(tensor, chunk=chunk), reference(truth[tensor.name]))


def test_dtypes_are_named(mixed):
    plain, typed, _ = mixed
    assert {t.name: t.dtype for t in typed.tensors} == {"bf16": "bfloat16", "fp8": "float8_e4m3fn",
                                                          "fp8b": "float8_e5m2"}
    assert plain.tensor("flags").dtype == "bool" and plain.tensor("f16").dtype == "float16"


def test_float8_tables_match_torch():
    codes = torch.arange(256, dtype=torch.uint8)
    for dtype, name in ((torch.float8_e4m3fn, "float8_e4m3fn"), (torch.float8_e5m2, "float8_e5m2")):
        ours = to_float(codes.numpy(), name)
        theirs = codes.view(dtype).float().numpy()
        np.testing.assert_array_equal(ours, theirs)


def test_nan_and_inf_are_counted_and_left_out(tmp_path):
    values = np.array([1.0, np.nan, -2.0, np.inf, 0.0, 3.0], dtype=np.float32)
    inspected = open_model(files.safetensors_file(tmp_path / "n.safetensors", {"x": values}))
    stats = tensor_stats(inspected.tensors[0], chunk=4)
    assert stats.nonfinite == 2
    assert (stats.min, stats.max, stats.mean) == (-2.0, 3.0, pytest.approx(0.5))
    assert stats.sparsity == pytest.approx(100 / 6)
    only_nan = open_model(files.safetensors_file(tmp_path / "m.safetensors",
                                                 {"x": np.full(3, np.nan, np.float32)}))
    assert tensor_stats(only_nan.tensors[0]).mean is None


def test_empty_and_scalar_tensors(tmp_path):
    inspected = open_model(files.safetensors_file(tmp_path / "e.safetensors", {
        "empty": np.zeros((0, 4), np.float32), "scalar": np.array(2.5, np.float32)}))
    assert tensor_stats(inspected.tensor("empty")).mean is None
    scalar = tensor_stats(inspected.tensor("scalar"))
    assert (scalar.min, scalar.max, scalar.std, scalar.sparsity) == (2.5, 2.5, 0.0, 0.0)
    assert matrix_view(inspected.tensor("scalar")).values.shape == (1, 1)


def test_iter_stats_yields_one_event_per_tensor_then_done(tmp_path):
    inspected = open_model(files.safetensors_file(tmp_path / "m.safetensors"))
    events = list(iter_stats(inspected))
    assert [e.name for e in events[:-1]] == [t.name for t in inspected.tensors]
    assert all(isinstance(e, TensorStatsEvent) and e.total == len(inspected.tensors) for e in events[:-1])
    done = events[-1]
    assert isinstance(done, StatsDoneEvent) and done.status == "finished" and done.tensors == len(events) - 1
    assert events[0].to_json()["event"] == "tensor_stats"


def test_stop_acts_between_and_within_tensors(tmp_path):
    inspected = open_model(files.safetensors_file(tmp_path / "m.safetensors"))
    control = JobControl()
    seen = []
    for event in iter_stats(inspected, control, chunk=16):
        seen.append(event)
        control.stop()
    assert isinstance(seen[-1], StatsDoneEvent) and seen[-1].status == "stopped"
    assert len(seen) == 2
    with pytest.raises(Stopped):
        tensor_stats(inspected.tensors[0], chunk=16, control=control)


def test_histogram_counts_every_finite_value(tmp_path):
    values = files.rng(4).standard_normal(5000).astype(np.float32)
    inspected = open_model(files.safetensors_file(tmp_path / "h.safetensors", {"x": values}))
    counts, edges = histogram(inspected.tensors[0], bins=32, chunk=333)
    expected, expected_edges = np.histogram(values, bins=32, range=(values.min(), values.max()))
    np.testing.assert_allclose(edges, expected_edges, rtol=1e-6)
    assert counts.sum() == values.size
    assert np.abs(counts - expected).sum() <= 2  # float32 edges may move a value across a boundary


def test_matrix_views(tmp_path):
    r = files.rng(6)
    tensors = {"matrix": r.standard_normal((40, 30)).astype(np.float32),
               "big": r.standard_normal((1200, 700)).astype(np.float32),
               "vector": np.arange(10, dtype=np.float32),
               "conv": r.standard_normal((8, 3, 3, 3)).astype(np.float32)}
    inspected = open_model(files.safetensors_file(tmp_path / "v.safetensors", tensors))
    view = matrix_view(inspected.tensor("matrix"))
    np.testing.assert_array_equal(view.values, tensors["matrix"])
    big = matrix_view(inspected.tensor("big"), max_side=100)
    assert big.values.shape == (100, 100) and "sampled 100 of 1200 rows" in big.description
    assert big.values[0, 0] == tensors["big"][0, 0] and big.values[-1, -1] == tensors["big"][-1, -1]
    vector = matrix_view(inspected.tensor("vector"))
    assert vector.values.shape == (3, 4) and math.isnan(vector.values[-1, -1])
    np.testing.assert_array_equal(vector.values.ravel()[:10], tensors["vector"])
    conv = matrix_view(inspected.tensor("conv"))
    assert conv.values.shape == (8, 27) and "first axis" in conv.description


def test_released_pages_read_back_the_same_values(tmp_path):
    from effstudio.inspect import pages

    values = files.rng(7).standard_normal(1 << 16).astype(np.float32)
    inspected = open_model(files.safetensors_file(tmp_path / "p.safetensors", {"x": values}))
    raw = inspected.tensors[0].raw()
    before = raw.copy()
    pages.release(raw)
    np.testing.assert_array_equal(raw, before)
