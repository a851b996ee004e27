"""Diff of two checkpoints: structure, relative change, and pruning's zeros."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from effstudio.inspect import open_model
from effstudio.inspect.diff import TensorChangeEvent, compare_names, diff_models, iter_diff
from tests.inspect import files


def test_added_removed_reshaped_and_relative_change(tmp_path):
    r = files.rng(8)
    a = {"keep": r.standard_normal((20, 10)).astype(np.float32), "same": np.ones(5, np.float32),
         "gone": np.zeros(3, np.float32), "grow": np.ones((4, 4), np.float32),
         "pruned": r.standard_normal((50, 50)).astype(np.float32)}
    b = dict(a)
    del b["gone"]
    b["new"] = np.ones(2, np.float32)
    b["grow"] = np.ones((8, 4), np.float32)
    b["keep"] = a["keep"] * 1.1
    pruned = a["pruned"].copy()
    pruned[np.abs(pruned) < 0.5] = 0
    b["pruned"] = pruned
    diff = diff_models(open_model(files.safetensors_file(tmp_path / "a.safetensors", a)),
                       open_model(files.safetensors_file(tmp_path / "b.safetensors", b)))
    assert [t.name for t in diff.added] == ["new"]
    assert [t.name for t in diff.removed] == ["gone"]
    assert [(x.shape, y.shape) for x, y in diff.reshaped] == [((4, 4), (8, 4))]
    changes = {c.name: c for c in diff.compared}
    assert set(changes) == {"keep", "same", "pruned"}
    assert changes["keep"].relative_change == pytest.approx(0.1, rel=1e-5)
    assert changes["same"].relative_change == 0.0 and not changes["same"].changed
    expected = np.linalg.norm(pruned.astype(np.float64) - a["pruned"]) / np.linalg.norm(a["pruned"].astype(np.float64))
    assert changes["pruned"].relative_change == pytest.approx(expected, rel=1e-9)
    assert changes["pruned"].sparsity_a == 0.0
    assert changes["pruned"].sparsity_b == pytest.approx(100 * np.mean(pruned == 0))
    assert diff.summary() == {"added": 1, "removed": 1, "reshaped": 1, "changed": 2, "unchanged": 1}
    record = json.loads(json.dumps(diff.to_json(), allow_nan=False))
    assert record["reshaped"] == [{"name": "grow", "shape_a": [4, 4], "shape_b": [8, 4]}]


def test_diff_across_formats_layouts_and_wrappers(tmp_path):
    weight = torch.randn(6, 4)
    files.safetensors_file(tmp_path / "a.safetensors", {"layer.weight": weight.numpy()})
    torch.save({"state_dict": {"module.layer.weight": (weight * 2).t().contiguous().t()}}, tmp_path / "b.ckpt")
    diff = diff_models(open_model(tmp_path / "a.safetensors"), open_model(tmp_path / "b.ckpt"))
    assert not diff.added and not diff.removed
    assert diff.compared[0].relative_change == pytest.approx(1.0, rel=1e-6)


def test_diff_events_arrive_one_per_shared_tensor(tmp_path):
    a = open_model(files.safetensors_file(tmp_path / "a.safetensors"))
    b = open_model(files.safetensors_file(tmp_path / "b.safetensors", files.bert_tensors(seed=1)))
    diff = compare_names(a, b)
    events = list(iter_diff(diff, chunk=100))
    assert [e.change.name for e in events if isinstance(e, TensorChangeEvent)] == [x.name for x, _ in diff.common]
    assert events[-1].status == "finished" and len(diff.compared) == len(diff.common)
