import csv
import io

import pytest

from effstudio.compress.compare import (
    compare_job,
    pareto_front,
    pareto_indices,
    rows_to_csv,
    rows_to_markdown,
)
from effstudio.compress.export import export_job
from effstudio.compress.quantize import quantize_job
from effstudio.engine.loading import CompressError
from tests.compress.conftest import make_checkpoint, tiny_config

CONTRACT = {"name", "params", "file_bytes", "accuracy", "latency_ms_b1", "latency_ms_b32", "peak_mb"}


def test_compare_returns_rows_with_exactly_the_contract_fields(tiny_checkpoint, tmp_path):
    int8 = tmp_path / "int8.safetensors"
    list(quantize_job(tiny_checkpoint, "dynamic-int8", int8))
    onnx = tmp_path / "model.onnx"
    list(export_job(tiny_checkpoint, onnx, check=False))
    rows = [e for e in compare_job([tiny_checkpoint, int8, onnx], repeats=3) if e.kind == "compare_row"]
    assert [r.name for r in rows] == ["tiny.safetensors", "int8.safetensors", "model.onnx"]
    for row in rows:
        assert set(row.to_json()) == CONTRACT
        assert row.error is None and 0.0 <= row.accuracy <= 1.0 and row.latency_ms_b1 > 0
    assert rows[1].file_bytes < rows[0].file_bytes
    table = list(csv.reader(io.StringIO(rows_to_csv(rows))))
    assert table[0][0] == "name" and len(table) == 4
    markdown = rows_to_markdown(rows)
    assert markdown.count("\n") == 5 and "| Variant |" in markdown


def test_files_of_another_task_are_refused(tiny_checkpoint, tmp_path):
    other = make_checkpoint(tmp_path / "copy.safetensors", tiny_config("copy"))
    with pytest.raises(CompressError, match="one task"):
        list(compare_job([tiny_checkpoint, other]))


def test_pareto_front():
    points = [(1.0, 0.5), (2.0, 0.6), (3.0, 0.55), (0.5, 0.4), (2.0, 0.5)]
    assert pareto_front(points) == [0, 1, 3]


def test_pareto_ignores_failed_rows():
    from effstudio.compress.events import CompareRowEvent

    rows = [CompareRowEvent("a", 1, 1, 0.5, 1.0, 2.0, 0.0), CompareRowEvent("b", 1, 1, None, None, None, None)]
    assert pareto_indices(rows) == [0]


def test_every_variant_is_timed_on_the_same_stated_length(tiny_checkpoint, tmp_path):
    import torch

    from effstudio.compress.compare import compare_task
    from effstudio.compress.timed import timing_batches

    task, _ = compare_task([tiny_checkpoint])
    val = task.split("val")
    pad = task.spec.pad_id
    longest = int((val.inputs != pad).sum(dim=1).max())
    one, many, length = timing_batches(val, pad)
    assert length == longest and one.inputs.shape == (1, longest) and many.inputs.shape == (32, longest)
    assert bool(one.mask.all()) and bool(many.mask.all())  # every timed token is real
    # a longer length repeats the example's tokens, a shorter one cuts them
    real = val.inputs[(val.inputs != pad).sum(dim=1).argmax()]
    real = real[real != pad]
    one_long, _, _ = timing_batches(val, pad, longest + 5)
    assert torch.equal(one_long.inputs[0], torch.cat([real, real[:5]]))
    one_short, many_short, n = timing_batches(val, pad, 8)
    assert n == 8 and torch.equal(one_short.inputs[0], real[:8]) and many_short.inputs.shape == (32, 8)

    int8 = tmp_path / "int8.safetensors"
    list(quantize_job(tiny_checkpoint, "dynamic-int8", int8))
    events = list(compare_job([tiny_checkpoint, int8], repeats=3, length=12))
    rows = [e for e in events if e.kind == "compare_row"]
    assert [r.length for r in rows] == [12, 12]
    verdict = events[-1]
    assert verdict.kind == "compare_verdict" and verdict.length == 12
    assert verdict.text.startswith("machine too busy") != verdict.holds
    with pytest.raises(CompressError, match="outside what the task's models take"):
        list(compare_job([tiny_checkpoint], length=10_000))


def test_peak_memory_is_measured_or_missing_with_its_reason(tiny_checkpoint, tmp_path):
    int8 = tmp_path / "int8.safetensors"
    list(quantize_job(tiny_checkpoint, "dynamic-int8", int8))
    onnx = tmp_path / "model.onnx"
    list(export_job(tiny_checkpoint, onnx, check=False))
    rows = [e for e in compare_job([tiny_checkpoint, int8, onnx], repeats=3) if e.kind == "compare_row"]
    original, quantized, exported = rows
    # PyTorch: the activations of a batch of 32 x 40 tokens (d_model 32): at least one (32, 41, 32) float tensor
    assert original.peak_mb >= 32 * 41 * 32 * 4 / 2**20
    assert quantized.peak_mb > 0 and "weights excluded" in original.peak_mb_note
    assert exported.peak_mb is None and "own memory arena" in exported.peak_mb_note
    assert "| - |" in rows_to_markdown(rows)  # a dash, never a zero that was not measured


def test_measurements_of_an_unchanged_file_are_reused(tiny_checkpoint, tmp_path):
    import shutil

    from effstudio.compress.compare import Measurements

    copy = tmp_path / "copy.safetensors"
    shutil.copy(tiny_checkpoint, copy)
    known = Measurements()
    first = [e for e in compare_job([copy], repeats=3, measurements=known) if e.kind in ("compare_row", "progress")]
    assert any(e.kind == "progress" and e.stage == "evaluating copy.safetensors" for e in first)
    again = list(compare_job([copy], repeats=3, measurements=known))
    assert not any(e.kind == "progress" and e.stage.startswith("evaluating") for e in again)
    (row_a,), (row_b,) = ([e for e in run if e.kind == "compare_row"] for run in (first, again))
    assert row_b.reused == ("accuracy",) and row_b.accuracy == row_a.accuracy and row_b.peak_mb == row_a.peak_mb
    # a rewritten file is measured again
    other = make_checkpoint(tmp_path / "other.safetensors", seed=3)
    shutil.copy(other, copy)
    third = [e for e in compare_job([copy], repeats=3, measurements=known) if e.kind == "compare_row"]
    assert third[0].reused == ()


def test_an_onnx_file_counts_the_parameters_of_its_checkpoint(tmp_path):
    from effstudio.compress.export import onnx_param_counts
    from effstudio.compress.formats import count_params
    from effstudio.engine.loading import load_checkpoint

    # Performer keeps a random projection as a buffer: the graph stores it as an initializer
    source = make_checkpoint(tmp_path / "performer.safetensors", tiny_config(**{"model.attention": "performer"}))
    onnx = tmp_path / "performer.onnx"
    list(export_job(source, onnx, check=False))
    model = load_checkpoint(source).model
    buffers = sum(b.numel() for name, b in model.named_buffers() if name.endswith("projection"))
    params, note = onnx_param_counts(onnx)
    assert params == count_params(model)
    assert f"hold {params + buffers:,} values (+{buffers:,})" in note and "buffers" in note
    row = [e for e in compare_job([source, onnx], repeats=3) if e.kind == "compare_row"][1]
    assert row.params == count_params(model) and row.params_note == note


def test_a_variant_that_cannot_run_at_the_length_gets_an_error_row(tiny_checkpoint, tmp_path, monkeypatch):
    from effstudio.compress import compare as compare_module
    from effstudio.compress.compare import Variant

    opened = compare_module.open_variant

    def refusing(path, task, known, eval_batch_size=64):
        variant = yield from opened(path, task, known, eval_batch_size)
        if path.name == "second.safetensors":
            def forward(batch):
                raise RuntimeError(f"sequence of {batch.inputs.shape[1]} tokens is too long")
            return Variant(variant.path, forward, variant.params, "", variant.accuracy, variant.weights, [])
        return variant

    second = make_checkpoint(tmp_path / "second.safetensors", seed=1)
    monkeypatch.setattr(compare_module, "open_variant", refusing)
    events = list(compare_job([tiny_checkpoint, second], repeats=3, length=20))
    good, bad = [e for e in events if e.kind == "compare_row"]
    assert good.error is None and good.latency_ms_b1 > 0
    assert bad.error == "does not run at 20 tokens: sequence of 20 tokens is too long"
    assert bad.latency_ms_b1 is None and bad.accuracy is not None  # what was measured stays
    timing = [e for e in events if e.kind == "progress" and e.stage == "timing batch 1"]
    assert [e.done for e in timing] == [0, 1, 2, 3] and timing[-1].total == 3  # reported round by round
