"""charlm: a text file as consecutive segments of characters, bits per character."""

from __future__ import annotations

import math

import pytest
import torch

from effstudio.config import ConfigError
from effstudio.engine.data import StreamIndices, stream_eval_batches
from effstudio.registry import get_registry
from effstudio.tasks.charlm import SAMPLE_TEXT, CharLMConfig, CharLMTask


def task_for(path, **changes) -> CharLMTask:
    return CharLMTask(CharLMConfig(path=str(path), **changes))


def test_reads_a_file_into_consecutive_segments(tmp_path) -> None:
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    path = tmp_path / "abc.txt"
    path.write_text(text, encoding="utf-8")
    task = task_for(path, segment_length=10, val_fraction=0.1, test_fraction=0.1)
    assert task.spec.objective == "lm" and task.spec.vocab[0] == "<pad>"
    assert task.spec.vocab_size == 27 and task.spec.max_length == 10
    train, val, test = (task.split(name) for name in ("train", "val", "test"))
    assert train.contiguous and val.contiguous and test.contiguous
    assert train.inputs.shape == (79, 10) and val.inputs.shape == (9, 10)  # (800 - 1) // 10, (100 - 1) // 10
    # the targets are the next characters, across row boundaries; rows continue each other
    assert task.text(train.inputs.flatten()) == text[:790]
    assert task.text(train.targets.flatten()) == text[1:791]
    assert task.text(val.inputs[0]) == text[800:810]  # validation follows training, test follows validation
    assert task.text(test.inputs[0]) == text[900:910]
    assert task.loss_metrics(math.log(2) * 3.0) == {"bits_per_char": pytest.approx(3.0)}


def test_the_sample_text_is_the_default_and_registered() -> None:
    task = get_registry().get("tasks", "charlm").factory(CharLMConfig())
    assert task.path == SAMPLE_TEXT and SAMPLE_TEXT.with_name("README.md").is_file()
    assert len(task.split("train")) > 50
    assert task.decode([task.vocab.index("\n"), task.vocab.index("a")]) == ["\n", "a"]


@pytest.mark.parametrize("content,message", [
    (None, "no such file"), (b"", "empty"), (b"   \n", "empty"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "binary"), (b"caf\xe9 au lait " * 20, "not UTF-8"),
])
def test_clear_errors_for_files_that_are_not_text(tmp_path, content, message) -> None:
    path = tmp_path / "file.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as err:
        task_for(path)
    assert err.value.field == "path"


def test_a_text_too_short_for_one_segment_is_refused(tmp_path) -> None:
    path = tmp_path / "short.txt"
    path.write_text("just a few words, " * 5, encoding="utf-8")
    with pytest.raises(ConfigError, match="fewer than one segment") as err:
        task_for(path, segment_length=64)
    assert err.value.field == "segment_length"


def test_streams_read_consecutive_rows_in_order() -> None:
    indices = StreamIndices(size=20, global_batch=4, micro_batches=2, seed=0)  # 2 lanes of 10 rows
    first = [row.tolist() for row, _ in zip(indices, range(12), strict=False)]
    assert first[:3] == [[0, 10], [1, 11], [2, 12]]
    assert first[10] == [0, 10] and indices.restarts(10) and not indices.restarts(3)
    ranks = [StreamIndices(20, 4, 1, 0, start=2, rank=r, world_size=2) for r in (0, 1)]
    assert [next(iter(r)).tolist() for r in ranks] == [[2, 12], [7, 17]]  # lanes 0, 2 and 1, 3


def test_stream_evaluation_covers_every_row_once(tmp_path) -> None:
    path = tmp_path / "abc.txt"
    path.write_text("abcdefghij" * 100, encoding="utf-8")
    split = task_for(path, segment_length=7).split("train")
    batches = list(stream_eval_batches(split, 0, batch_size=4, segments_per_lane=5))
    rows = torch.cat([b.inputs for b in batches])
    assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, split.inputs.tolist()))
    assert [len(b.inputs) for b in batches][0] == 4 and len(batches[-1].inputs) <= 4
    assert torch.equal(batches[1].inputs[0], split.inputs[1])  # lane 0 goes on in order
