"""ListOps: the evaluator, the generator's guarantees, and the split cache."""

from __future__ import annotations

import random

import pytest
import torch

from effstudio.config import ConfigError, with_values
from effstudio.paths import task_cache_dir
from effstudio.tasks import cache, listops
from effstudio.tasks.listops import (
    ListOpsConfig,
    ListOpsTask,
    evaluate_listops,
    generate_splits,
    longest_expression,
    sample_expression,
)
from tests.tasks.conftest import assert_read_back_from_cache

SMALL = ListOpsConfig(train_size=200, val_size=50, test_size=50, min_length=8, max_length=64)


def strip_pad(task: ListOpsTask, row: torch.Tensor) -> list[str]:
    return [t for t in task.decode(row.tolist()) if t != "<pad>"]


def all_rows(task: ListOpsTask) -> list[tuple[int, ...]]:
    return [
        tuple(row.tolist()) for name in ("train", "val", "test") for row in task.split(name).inputs
    ]


def cache_files() -> list:
    return sorted(task_cache_dir("listops").glob("*.safetensors"))


# --- evaluator ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("7", 7),
        ("[MAX 4 3 [MIN 2 3 ] 1 0 ]", 4),
        ("[SM 5 7 ]", 2),
        ("[SM 9 9 9 ]", 7),
        ("[MED 1 5 3 ]", 3),
        ("[MED 1 5 ]", 3),  # even count: int(np.median) = floor of the middle two's mean (LRA)
        ("[MED 0 1 ]", 0),  # 0.5 truncates to 0
        ("[MED 2 9 4 7 ]", 5),  # middle two 4 and 7 -> 5.5 -> 5
        ("[MIN 9 [MAX 1 [SM 8 8 ] ] 8 ]", 6),
        ("[MED [MIN 3 4 ] [MAX 8 9 ] [SM 5 5 ] ]", 3),
    ],
)
def test_evaluate_hand_written(text, value):
    assert evaluate_listops(text.split()) == value


@pytest.mark.parametrize("text", ["", "[MAX 1 2", "1 2", "[MIN ]", "]", "[MAX 1 x ]", "[SM 1 ] ]"])
def test_evaluate_refuses_malformed(text):
    with pytest.raises(ValueError):
        evaluate_listops(text.split())


# --- generator ---------------------------------------------------------------------------


def test_examples_reevaluate_to_labels_and_respect_lengths():
    task = ListOpsTask(SMALL)
    for name, size in (("train", 200), ("val", 50), ("test", 50)):
        split = task.split(name)
        assert split.inputs.shape == (size, SMALL.max_length)
        assert split.targets.shape == (size,)
        assert split.inputs.dtype == split.targets.dtype == torch.int64
        for row, label in zip(split.inputs, split.targets, strict=True):
            tokens = strip_pad(task, row)
            assert SMALL.min_length <= len(tokens) <= SMALL.max_length
            assert evaluate_listops(tokens) == label.item()
            # padding only at the end
            assert (row[len(tokens) :] == 0).all()


def test_no_duplicates_within_or_across_splits():
    rows = all_rows(ListOpsTask(SMALL))
    assert len(rows) == 300
    assert len(set(rows)) == len(rows)


def test_labels_cover_several_classes():
    labels = ListOpsTask(SMALL).split("train").targets
    assert labels.min() >= 0 and labels.max() <= 9
    assert len(set(labels.tolist())) >= 6


def test_max_depth_is_respected():
    rng = random.Random(1)
    deepest = 0
    for _ in range(2000):
        tokens = sample_expression(rng, max_depth=3, max_tokens=10_000)
        depth = nesting = 0
        for t in tokens:
            nesting += t.startswith("[")
            nesting -= t == "]"
            depth = max(depth, nesting)
        deepest = max(deepest, depth)
        assert len(tokens) <= longest_expression(3)
    # depth 3 counts the root: at most two operator levels, the third is digits
    assert deepest == 2


def test_sampler_gives_up_past_the_budget():
    rng = random.Random(0)
    results = [sample_expression(rng, max_depth=10, max_tokens=20) for _ in range(2000)]
    assert any(r is None for r in results)
    assert all(len(r) <= 20 for r in results if r is not None)


def test_same_seed_same_tensors_and_different_seed_differs():
    first, second = generate_splits(SMALL), generate_splits(SMALL)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = generate_splits(with_values(SMALL, {"seed": 1}))
    assert not torch.equal(first["train/inputs"], other["train/inputs"])


def test_spec_and_decode():
    task = ListOpsTask(SMALL)
    spec = task.spec
    assert (spec.name, spec.objective, spec.num_classes, spec.max_length, spec.pad_id) == (
        "listops",
        "classify",
        10,
        64,
        0,
    )
    assert spec.vocab[0] == "<pad>" and "<cls>" not in spec.vocab
    assert set(spec.vocab) == {"<pad>", "[MIN", "[MAX", "[MED", "[SM", "]", *"0123456789"}
    ids = [spec.vocab.index(t) for t in "[SM 5 7 ]".split()]
    assert task.decode(ids) == ["[SM", "5", "7", "]"]
    with pytest.raises(ValueError):
        task.split("bogus")


def test_config_checks():
    with pytest.raises(ConfigError) as err:
        with_values(ListOpsConfig(), {"min_length": 300, "max_length": 200})
    assert err.value.field == "min_length"
    with pytest.raises(ConfigError) as err:
        ListOpsTask(ListOpsConfig(max_depth=2, min_length=13))  # depth 2 has at most 12 tokens
    assert err.value.field == "min_length"


def test_infeasible_sizes_raise_instead_of_looping(monkeypatch):
    monkeypatch.setattr(listops, "MAX_FRUITLESS_DRAWS", 5000)
    # depth 2 and length 4 allow only "[OP a b ]": 4 * 10 * 10 = 400 distinct expressions
    config = ListOpsConfig(
        train_size=500, val_size=1, test_size=1, min_length=4, max_length=4, max_depth=2
    )
    with pytest.raises(ConfigError) as err:
        ListOpsTask(config).split("train")
    assert err.value.field == "train_size"


# --- cache -------------------------------------------------------------------------------


def test_cache_file_is_created_then_reused(monkeypatch):
    assert_read_back_from_cache(monkeypatch, listops, lambda: ListOpsTask(SMALL), "train")
    assert len(cache_files()) == 1


def test_a_different_config_gets_its_own_file():
    ListOpsTask(SMALL).split("train")
    ListOpsTask(with_values(SMALL, {"seed": 3})).split("train")
    assert len(cache_files()) == 2


@pytest.mark.parametrize("damage", ["garbage", "truncate", "empty"])
def test_corrupt_cache_file_is_regenerated(monkeypatch, damage):
    expected = ListOpsTask(SMALL).split("val")
    (path,) = cache_files()
    data = path.read_bytes()
    path.write_bytes(
        {
            "garbage": b"not a safetensors file" * 10,
            "truncate": data[: len(data) // 2],
            "empty": b"",
        }[damage]
    )

    calls = []
    real = listops.generate_splits
    monkeypatch.setattr(listops, "generate_splits", lambda config: calls.append(1) or real(config))
    again = ListOpsTask(SMALL).split("val")
    assert calls == [1]
    assert torch.equal(expected.inputs, again.inputs)
    assert path.read_bytes() == data  # rewritten whole


def test_cache_key_depends_on_config_and_version_only():
    config = {"a": 1, "b": "x"}
    assert cache.cache_key(config, 1) == cache.cache_key({"b": "x", "a": 1}, 1)
    assert cache.cache_key(config, 1) != cache.cache_key(config, 2)
    assert cache.cache_key(config, 1) != cache.cache_key({"a": 2, "b": "x"}, 1)


def test_unwritable_cache_still_gives_data(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    monkeypatch.setenv("EFFSTUDIO_CACHE_DIR", str(blocker))
    assert len(ListOpsTask(SMALL).split("test")) == 50


def test_cache_leaves_no_temp_files():
    ListOpsTask(SMALL).split("train")
    assert [p.suffix for p in task_cache_dir("listops").iterdir()] == [".safetensors"]
