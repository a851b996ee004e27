"""Copy / reverse: sequence layout, answer-only targets, determinism and caching."""

from __future__ import annotations

import pytest
import torch

from effstudio.config import ConfigError, with_values
from effstudio.paths import task_cache_dir
from effstudio.tasks import copy as copy_task
from effstudio.tasks.base import IGNORE_INDEX
from effstudio.tasks.copy import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    SEP_ID,
    CopyConfig,
    CopyTask,
    generate_splits,
)
from tests.tasks.conftest import assert_read_back_from_cache

SMALL = CopyConfig(
    vocab_size=7, min_length=2, max_length=9, train_size=300, val_size=40, test_size=40
)


@pytest.mark.parametrize("mode", ["copy", "reverse", "sort"])
def test_layout_and_answer_only_targets(mode):
    config = with_values(SMALL, {"mode": mode})
    task = CopyTask(config)
    split = task.split("train")
    width = 2 * config.max_length + 3
    assert split.inputs.shape == split.targets.shape == (300, width)
    assert split.inputs.dtype == split.targets.dtype == torch.int64
    lengths = set()
    for row, target in zip(split.inputs.tolist(), split.targets.tolist(), strict=True):
        sep = row.index(SEP_ID)
        n = sep - 1
        lengths.add(n)
        source, answer = row[1:sep], row[sep + 1 : sep + 1 + n]
        assert row[0] == BOS_ID and row[2 * n + 2] == EOS_ID
        assert all(t == PAD_ID for t in row[2 * n + 3 :])
        assert all(4 <= s < 4 + config.vocab_size for s in source)
        assert answer == {"copy": source, "reverse": source[::-1], "sort": sorted(source)}[mode]
        # scored: exactly the positions predicting y1..yn and <eos>, each with the next token
        scored = [t for t, v in enumerate(target) if v != IGNORE_INDEX]
        assert scored == list(range(n + 1, 2 * n + 2))
        assert [target[t] for t in scored] == answer + [EOS_ID]
    assert lengths == set(range(config.min_length, config.max_length + 1))


def test_spec_and_decode():
    task = CopyTask(SMALL)
    spec = task.spec
    assert spec.objective == "lm"
    assert spec.vocab[:4] == ("<pad>", "<bos>", "<sep>", "<eos>") and spec.pad_id == 0
    assert spec.vocab_size == spec.num_classes == 4 + 7
    assert spec.max_length == 2 * 9 + 3
    assert task.decode([1, 4, 5, 2, 4, 5, 3, 0]) == [
        "<bos>",
        "0",
        "1",
        "<sep>",
        "0",
        "1",
        "<eos>",
        "<pad>",
    ]
    with pytest.raises(ValueError):
        task.split("bogus")


def test_same_seed_same_tensors_and_different_seed_differs():
    first, second = generate_splits(SMALL), generate_splits(SMALL)
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = generate_splits(with_values(SMALL, {"seed": 5}))
    assert not torch.equal(first["train/inputs"], other["train/inputs"])
    # splits come from separate streams: val does not repeat train's first rows
    assert not torch.equal(first["val/inputs"], first["train/inputs"][:40])


def test_cache_is_created_then_reused(monkeypatch):
    assert_read_back_from_cache(monkeypatch, copy_task, lambda: CopyTask(SMALL), "val")
    assert len(list(task_cache_dir("copy").glob("*.safetensors"))) == 1


def test_min_length_above_max_length_is_refused():
    with pytest.raises(ConfigError) as err:
        with_values(CopyConfig(), {"min_length": 20, "max_length": 10})
    assert err.value.field == "min_length"
    with pytest.raises(ConfigError) as err:
        with_values(CopyConfig(), {"mode": "shuffle"})
    assert err.value.field == "mode"


def test_source_target_form_matches_the_sequences():
    task = CopyTask(with_values(SMALL, {"mode": "reverse"}))
    lm, pairs = task.split("val"), task.as_seq2seq().split("val")
    spec = task.as_seq2seq().spec
    assert spec.objective == "seq2seq" and spec.source_length == 9 and spec.max_length == 10
    assert pairs.inputs.shape == (40, 9) and pairs.targets.shape == (40, 10) and not pairs.aligned
    for row, source, target in zip(lm.inputs.tolist(), pairs.inputs.tolist(), pairs.targets.tolist(), strict=True):
        n = row.index(SEP_ID) - 1
        assert source == row[1 : n + 1] + [PAD_ID] * (9 - n)
        assert target == row[n + 2 : 2 * n + 3] + [IGNORE_INDEX] * (9 - n)
        assert target[n] == EOS_ID
