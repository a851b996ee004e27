"""Hostile Hugging Face folders given to `effstudio import`: every value config.json gives is checked as a `--set`
value is, before anything is sized by it, and every refusal is one line, exit 2, nothing written."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch

from effstudio.cli import main
from effstudio.cli.errors import EXIT_USAGE

T = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def bert(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hf") / "tiny-bert"
    torch.manual_seed(0)
    config = T.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                          vocab_size=99, max_position_embeddings=64, num_labels=2)
    T.BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def _edit_config(folder: Path, changes: dict | None, raw: str | None) -> None:
    path = folder / "config.json"
    if raw is not None:
        path.write_text(raw, encoding="utf-8")
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    config.update(changes or {})
    path.write_text(json.dumps(config), encoding="utf-8")


# (changes to config.json, raw text instead, what the one line says); sizes that would allocate tens of GB
# (a vocabulary of 10^12 ids, a table of 10^12 token types) must be refused before anything is built
CONFIG_CASES = {
    "vocabulary of 10^12 rows": ({"vocab_size": 10**12}, None, r"model\.vocab_size: must be <="),
    "token types beyond the bound": ({"type_vocab_size": 10**12}, None, r"model\.token_types: must be <="),
    "feed-forward wider than the bound": ({"intermediate_size": 10**12}, None, r"model\.ff_width: must be <="),
    "epsilon not a number": ({"layer_norm_eps": float("nan")}, None, r"model\.norm_eps: must be a finite number"),
    "negative epsilon": ({"layer_norm_eps": -1.0}, None, r"model\.norm_eps: must be >="),
    "dropout not a number": ({"hidden_dropout_prob": float("nan")}, None, r"model\.dropout: must be a finite"),
    "no attention heads": ({"num_attention_heads": 0}, None, r"not divisible by its 0 attention heads"),
    "an activation that names code": ({"hidden_act": "os.system"}, None, r"not an activation effstudio has"),
    "a size written as text": ({"vocab_size": "99"}, None, r"'vocab_size' is '99', not a number"),
    "positions beyond any task": ({"max_position_embeddings": 10**12}, None, r"max_length: must be <="),
    "classes in the trillions": ({"num_labels": 10**12, "id2label": None}, None, r"more than the limit of"),
    "classes counted in words": ({"num_labels": "two", "id2label": None}, None, r"'num_labels' is 'two', not a"),
    "an activation given as a list": ({"hidden_act": ["gelu"]}, None, r"not an activation effstudio has"),
    "an epsilon of 400 digits": ({"layer_norm_eps": 10**400}, None, r"'layer_norm_eps' is too large a number"),
    "config.json a list": (None, "[1, 2]", r"holds a JSON object, not list"),
    "config.json not JSON": (None, "{\"model_type\": ", r"config\.json"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_hostile_config_values_are_one_line_and_write_nothing(bert, tmp_path, capsys, case):
    changes, raw, expected = CONFIG_CASES[case]
    folder = tmp_path / "folder"
    shutil.copytree(bert, folder)
    _edit_config(folder, changes, raw)
    out = tmp_path / "out" / "model.safetensors"
    assert main(["import", str(folder), "--out", str(out)]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert re.search(expected, err), err
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_a_truncated_weights_file_is_one_line(bert, tmp_path, capsys):
    folder = tmp_path / "folder"
    shutil.copytree(bert, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    out = tmp_path / "model.safetensors"
    assert main(["import", str(folder), "--out", str(out)]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.safetensors" in err and "Traceback" not in err, err
    assert not out.exists()


def _import_refused(folder: Path, tmp_path: Path, capsys) -> str:
    out = tmp_path / "out" / "model.safetensors"
    assert main(["import", str(folder), "--out", str(out)]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not out.parent.exists() or not any(out.parent.iterdir())
    return err


def _sharded(bert: Path, folder: Path, shard_names: list[str]) -> None:
    """The tiny BERT as a shard index whose tensors are spread over ``shard_names`` (files made for each)."""
    shutil.copytree(bert, folder)
    weights = folder / "model.safetensors"
    tensors = list(json.loads(weights.read_bytes()[8: 8 + int.from_bytes(weights.read_bytes()[:8], "little")]))
    tensors = [name for name in tensors if name != "__metadata__"]
    weight_map = {name: shard_names[i % len(shard_names)] for i, name in enumerate(tensors)}
    for name in set(shard_names):
        shutil.copy(weights, folder / name)
    weights.unlink()
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


def test_a_shard_index_naming_more_shards_than_the_limit_is_refused(bert, tmp_path, capsys, monkeypatch):
    from effstudio.pretrained import hf_folder

    monkeypatch.setattr(hf_folder, "MAX_SHARDS", 2)
    _sharded(bert, tmp_path / "folder", ["a.safetensors", "b.safetensors", "c.safetensors"])
    assert "more than the limit of 2 shards" in _import_refused(tmp_path / "folder", tmp_path, capsys)


@pytest.mark.parametrize("name", ["model-00001-of-00001.safetensors", "config.json", "model.safetensors.index.json"],
                         ids=["a shard", "config.json", "the shard index"])
def test_a_file_that_links_outside_the_folder_is_refused(bert, tmp_path, capsys, name):
    folder = tmp_path / "folder"
    _sharded(bert, folder, ["model-00001-of-00001.safetensors"])
    outside = tmp_path / "elsewhere" / name
    outside.parent.mkdir()
    (folder / name).rename(outside)
    (folder / name).symlink_to(outside)
    err = _import_refused(folder, tmp_path, capsys)
    assert "leads outside the folder" in err and name in err, err


@pytest.mark.parametrize("name", ["vocab.json", "merges.txt"])
def test_a_tokenizer_file_that_links_outside_the_folder_gives_no_tokenizer(tmp_path, name):
    from effstudio.pretrained.hf_folder import read_tokenizer

    folder, outside = tmp_path / "folder", tmp_path / "elsewhere"
    folder.mkdir()
    outside.mkdir()
    (folder / "vocab.json").write_text(json.dumps({"a": 0, "b": 1, "ab": 2}))
    (folder / "merges.txt").write_text("#version: 0.2\na b\n")
    (folder / name).rename(outside / name)
    (folder / name).symlink_to(outside / name)
    tokenizer, problem = read_tokenizer(folder)
    assert tokenizer is None
    assert problem.startswith(name) and "leads outside the folder" in problem, problem
