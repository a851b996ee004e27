"""`effstudio import`: the checkpoint it writes, --check, --set / --max-length, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from effstudio.cli import main
from effstudio.engine.checkpoint import read_info

T = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hf") / "tiny-bert"
    torch.manual_seed(0)
    config = T.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                          vocab_size=99, max_position_embeddings=64, num_labels=2)
    T.BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def test_import_writes_a_checkpoint_and_checks_it(bert, tmp_path, capsys):
    out = tmp_path / "bert.safetensors"
    assert main(["import", str(bert), "--out", str(out), "--check", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["architecture"] == "bert" and record["model_type"] == "transformer"
    assert record["task"] == "textclass" and record["out"] == str(out)
    assert record["check"]["exact"] and record["check"]["hidden"] <= 1e-4 and record["check"]["logits"] <= 1e-4
    assert any("ids instead of text" in line for line in record["warnings"])
    info = read_info(out)
    assert info.config.model.norm_position == "post" and info.config.task.tokenizer_path.endswith(
        "bert.tokenizer.json")


def test_import_makes_the_model_efficient_on_the_way(bert, tmp_path, capsys):
    out = tmp_path / "long.safetensors"
    assert main(["import", str(bert), "--out", str(out), "--set", "attention=longformer",
                 "--set", "attention.window=16", "--max-length", "256"]) == 0
    text = capsys.readouterr().out
    assert "attention sdpa -> longformer" in text and "maximum length 64 -> 256" in text
    info = read_info(out)
    assert (info.config.model.attention, info.config.attention.window, info.config.task.max_length) == (
        "longformer", 16, 256)


@pytest.mark.parametrize(("args", "message"), [
    (["--max-length", "32"], "below the model's own 64"),
    (["--set", "model.layers=3"], "import --set takes task.SETTING=VALUE, attention=KIND"),
    (["--set", "attention=nonsense"], "nonsense"),
])
def test_bad_choices_write_nothing(bert, tmp_path, capsys, args, message):
    out = tmp_path / "x.safetensors"
    assert main(["import", str(bert), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_a_folder_without_config_writes_nothing(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    out = tmp_path / "x.safetensors"
    assert main(["import", str(tmp_path / "empty"), "--out", str(out)]) == 2
    assert "no config.json here" in capsys.readouterr().err
    assert not out.exists()


def test_check_without_transformers_is_one_line_and_the_import_stands(bert, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "transformers", None)
    out = tmp_path / "bert.safetensors"
    assert main(["import", str(bert), "--out", str(out), "--check"]) == 0
    err = capsys.readouterr().err
    assert "check skipped" in err and "not installed" in err
    assert out.is_file()
