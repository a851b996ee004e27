"""`effstudio bench pretrained` on a tiny case: the rows and their fields."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("transformers")


def test_rows_of_a_tiny_case() -> None:
    command = [sys.executable, "-m", "effstudio", "bench", "pretrained", "--architectures", "bert,gpt2",
               "--hidden", "32", "--layers", "1", "--repeats", "1", "--long-length", "512", "--window", "32",
               "--finetune-steps", "0", "--no-peak-memory", "--threads", "1", "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["settings"]["architectures"] == ["bert", "gpt2"] and report["threads"] == 1
    rows = report["rows"]
    assert [row["kind"] for row in rows] == ["parity", "parity", "speed", "speed", "long", "int8", "onnx"]
    for row in rows[:2]:
        assert row["ok"] and row["error"] is None and row["hidden"] <= row["tolerance"] == 1e-4
        assert row["logits"] <= 1e-4
    assert [(r["batch"], r["length"]) for r in rows[2:4]] == [(1, 128), (32, 128)]
    for row in rows[2:4]:
        assert row["ratio"] == pytest.approx(row["transformers_eager_ms"] / row["effstudio_ms"], rel=1e-2)
        low, high = row["ratio_spread"]
        assert 0 < low <= high
    long = rows[4]
    assert (long["length"], long["window"]) == (512, 32) and long["full_ms"] > 0 and long["longformer_ms"] > 0
    assert long["full_peak_mb"] is None and long["memory_ratio"] is None  # --no-peak-memory
    assert rows[5]["max_logit_diff"] >= 0 and rows[5]["speedup"] > 0
    assert rows[6]["ok"] and rows[6]["max_abs_diff"] <= 1e-4
