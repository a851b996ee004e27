"""`effstudio bench graph` on a tiny encoder: the row's fields, a temporary file, and bad sizes refused."""

from __future__ import annotations

import json

import pytest

from effstudio.cli import main
from effstudio.cli.errors import EXIT_USAGE

FIELDS_IN_ORDER = ("file_mb", "layers", "d_model", "boxes", "edges", "graph_layers", "export_s", "repeats", "read_s",
                   "build_s", "layout_s", "total_s", "total_max_s", "target_s", "within_target", "load_1min", "cpus")
FIELDS = set(FIELDS_IN_ORDER)


def test_bench_graph_json_row(tmp_path, capsys):
    folder = tmp_path / "bench"
    folder.mkdir()
    args = ["bench", "graph", "--layers", "1", "--d-model", "16", "--vocab", "20", "--repeats", "2"]
    assert main([*args, "--dir", str(folder), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == FIELDS
    assert (result["layers"], result["d_model"], result["repeats"], result["target_s"]) == (1, 16, 2, 3.0)
    assert 20 < result["boxes"] < 200 and result["edges"] >= result["boxes"] - 2
    assert 0 < result["layout_s"] <= result["total_s"] <= result["total_max_s"]
    assert result["within_target"] is (result["total_max_s"] <= 3.0)
    assert list(folder.iterdir()) == []  # the exported file was temporary

    assert main([*args, "--repeats", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0].strip() for line in lines] == list(FIELDS_IN_ORDER)
    assert lines[0] == f"{'file_mb':>20}: {result['file_mb']}"


def test_bench_graph_refuses_a_zero_layer_encoder(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "graph", "--layers", "0"])
    assert exit_info.value.code == EXIT_USAGE
    assert "--layers" in capsys.readouterr().err
