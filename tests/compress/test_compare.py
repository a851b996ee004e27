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
