"""`effstudio inspect` is a contract: its JSON fields, its exit codes, its reasons."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch

from effstudio.cli import main, window
from tests.inspect import files

TOP = {"format", "file_bytes", "params", "architecture", "tensors"}
TENSOR = ["name", "shape", "dtype", "numel", "min", "max", "mean", "std", "sparsity"]


def run_json(capsys, *argv):
    code = main(["inspect", *argv, "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out), captured.err


def test_json_fields_are_the_contract(tmp_path, capsys):
    folder = files.bert_folder(tmp_path / "bert")
    code, record, _ = run_json(capsys, str(folder))
    assert code == 0
    assert TOP <= set(record)
    assert record["format"] == "safetensors"
    assert record["file_bytes"] == (folder / "model.safetensors").stat().st_size
    assert record["architecture"] == "BERT-like encoder, 2 layers, hidden 32, 4 heads, vocab 100"
    tensors = files.bert_tensors()
    assert record["params"] == sum(a.size for a in tensors.values())
    assert {t["name"] for t in record["tensors"]} == set(tensors)
    for entry in record["tensors"]:
        assert list(entry) == TENSOR
        array = tensors[entry["name"]].astype(np.float64)
        assert entry["shape"] == list(array.shape) and entry["dtype"] == "float32" and entry["numel"] == array.size
        assert entry["min"] == pytest.approx(array.min()) and entry["max"] == pytest.approx(array.max())
        assert entry["mean"] == pytest.approx(array.mean(), abs=1e-12)
        assert entry["std"] == pytest.approx(array.std())
        assert entry["sparsity"] == pytest.approx(100 * np.mean(array == 0))


def test_no_stats_reads_no_data(tmp_path, capsys):
    code, record, _ = run_json(capsys, str(files.onnx_model(tmp_path / "m.onnx")), "--no-stats")
    assert code == 0 and record["format"] == "onnx"
    assert all(t["mean"] is None for t in record["tensors"])
    assert record["graph"]["operators"]["MatMul"] == 1


def test_text_output(tmp_path, capsys):
    torch.save({"state_dict": {"layer.weight": torch.ones(3, 2)}}, tmp_path / "m.ckpt")
    assert main(["inspect", str(tmp_path / "m.ckpt")]) == 0
    out = capsys.readouterr().out
    assert "format        pytorch" in out and "layer.weight" in out and "3\u00d72" in out
    assert "weights unwrapped from the checkpoint's 'state_dict' entry" in out


def test_diff_json(tmp_path, capsys):
    a = {"w": np.ones((2, 3), np.float32), "old": np.ones(1, np.float32)}
    b = {"w": np.full((2, 3), 1.5, np.float32), "new": np.ones(1, np.float32)}
    code, record, _ = run_json(capsys, str(files.safetensors_file(tmp_path / "a.safetensors", a)), "--diff",
                               str(files.safetensors_file(tmp_path / "b.safetensors", b)))
    assert code == 0
    assert record["summary"] == {"added": 1, "removed": 1, "reshaped": 0, "changed": 1, "unchanged": 0}
    assert [t["name"] for t in record["added"]] == ["new"] and [t["name"] for t in record["removed"]] == ["old"]
    assert record["compared"][0]["name"] == "w"
    assert record["compared"][0]["relative_change"] == pytest.approx(0.5)
    assert main(["inspect", str(tmp_path / "a.safetensors"), "--diff", str(tmp_path / "b.safetensors")]) == 0
    assert "1 added, 1 removed, 0 reshaped, 1 changed, 0 unchanged" in capsys.readouterr().out


def test_bad_files_exit_1_with_the_reason(tmp_path, capsys):
    marker = tmp_path / "PWNED"
    evil = files.malicious_files(tmp_path / "evil", marker)[0]
    code = main(["inspect", str(evil)])
    assert code == 1 and "refused" in capsys.readouterr().err
    assert not marker.exists()
    good = files.safetensors_file(tmp_path / "good.safetensors")
    cut = files.truncated_copy(good, tmp_path / "cut.safetensors", good.stat().st_size // 2)
    code, record, err = run_json(capsys, str(cut))
    assert code == 1 and "truncated" in record["error"] and "truncated" in err
    (tmp_path / "empty.pt").write_bytes(b"")
    assert main(["inspect", str(tmp_path / "empty.pt")]) == 1
    assert "empty (0 bytes)" in capsys.readouterr().err
    assert main(["inspect", str(good), "--diff", str(tmp_path / "nowhere.safetensors")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_unreadable_tensor_is_reported_and_exits_1(tmp_path, capsys, monkeypatch):
    from effstudio import read_limits

    path = files.npz_file(tmp_path / "arrays.npz", compressed=True)
    with zipfile.ZipFile(path) as archive:
        sizes = {info.filename: info.file_size for info in archive.infolist()}
    assert sizes["b.npy"] < min(sizes["a.npy"], sizes["c.npy"])
    monkeypatch.setattr(read_limits, "MAX_INFLATED_BYTES", sizes["b.npy"])  # "b" fits, "a" and "c" do not
    code, record, err = run_json(capsys, str(path))
    assert code == 1 and "MAX_INFLATED_BYTES" in err
    assert [t["name"] for t in record["tensors"] if t["mean"] is not None] == ["b"]
    assert sum("MAX_INFLATED_BYTES" in w for w in record["warnings"]) == 2


def test_a_path_alone_opens_the_window_on_it(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(window, "cmd_gui", lambda args: seen.append(args.path) or 0)
    path = str(files.safetensors_file(tmp_path / "m.safetensors"))
    assert main([path]) == 0
    assert seen == [path]


def test_bench_inspect_reports_times_and_memory(tmp_path, capsys):
    assert main(["bench", "inspect", "--size-mb", "2", "--tensors", "4", "--dir", str(tmp_path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tensors"] == 4 and result["file_mb"] == pytest.approx(2, rel=0.01)
    assert {"summary_s", "stats_s", "stats_warm_s", "peak_rss_growth_mb", "cache"} <= set(result)
    assert result["failed"] == [] and result["peak_rss_growth_mb"] < 300
    assert list(tmp_path.iterdir()) == []  # the synthetic file is gone
