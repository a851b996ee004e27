"""`effstudio bench data`: a small synthetic CSV read, tokenized and reloaded, reported as JSON."""

from __future__ import annotations

import json

import pytest

from effstudio.cli import main
from effstudio.cli.errors import EXIT_USAGE

FIELDS = {"rows", "file_mb", "load_s", "tokenize_s", "cached_load_s", "peak_rss_mb"}


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFSTUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EFFSTUDIO_CACHE_DIR", str(tmp_path / "cache"))


def test_bench_data_json_reports_every_figure(tmp_path, capsys):
    folder = tmp_path / "bench"
    assert main(["bench", "data", "--rows", "2000", "--dir", str(folder), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == FIELDS
    assert result["rows"] == 2000
    assert 0.2 < result["file_mb"] < 1.0  # about 200 bytes a row
    assert result["load_s"] > 0 and result["tokenize_s"] > 0 and result["cached_load_s"] > 0
    assert 50 < result["peak_rss_mb"] < 4096
    assert list(folder.iterdir()) == []  # the CSV and its cache were temporary
    assert not (tmp_path / "cache").exists()  # the user's cache was left alone


def test_bench_data_refuses_too_few_rows(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "data", "--rows", "5"])
    assert exit_info.value.code == EXIT_USAGE
    assert "from 100 to" in capsys.readouterr().err
