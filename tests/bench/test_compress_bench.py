"""The compression benchmark runs end to end (a few steps) and judges every target of the compression lab."""

from __future__ import annotations

import json

import pytest

from effstudio.bench.compress import TARGETS, format_report
from effstudio.cli import main


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFSTUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EFFSTUDIO_CACHE_DIR", str(tmp_path / "cache"))


def test_bench_compress_json_reports_every_target(tmp_path, capsys):
    assert main(["bench", "compress", "--train-steps", "2", "--distill-steps", "2", "--dir", str(tmp_path / "b"),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["targets"]) == set(TARGETS)
    for name, verdict in report["targets"].items():
        assert verdict["met"] == (eval(f"{verdict['value']!r} {verdict['target']}")), name  # noqa: S307
    assert report["targets"]["student_param_ratio"]["target"] == "<= 0.25"
    distill = report["distill"]
    assert distill["task"] == "digits" and distill["param_ratio"] == pytest.approx(distill["student_params"] / distill["teacher_params"])
    assert report["onnx"]["max_abs_diff"] <= 1e-4  # parity holds even for an untrained model
    assert report["dynamic_int8"]["linear_ratio"] >= 3.5
    assert (tmp_path / "b" / "distill" / "teacher" / "checkpoint.safetensors").is_file()
    assert "distill (ViT on digits, 2 steps)" in format_report(report)
    # every variant timed alternately on one length, as the comparison table times them, with a verdict
    timing = report["timing"]
    assert timing["length_b1"] == report["model"]["timing_length_b1"] == 128  # the longest validation example
    assert set(timing["b1"]) == set(timing["b32"]) == {"float32", "dynamic-int8", "onnxruntime", "pruned"}
    assert report["dynamic_int8"]["fp32_ms_b1"] == report["onnx"]["eager_ms_b1"] == report["pruned"]["full_ms_b1"]
    assert all(v["spread"] == v["p95_ms"] / v["p50_ms"] for v in timing["b1"].values())
    assert timing["verdict"].startswith("steady") == timing["holds"]
    assert f"timing {'holds' if timing['holds'] else 'DOES NOT HOLD'}: " in format_report(report)
