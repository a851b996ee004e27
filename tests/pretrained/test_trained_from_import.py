"""A run fine-tuned from an imported model (`train --init`) keeps the import's tokenizer as its own task file and
names it beside its checkpoint, as the import does: the run folder moves, and quantize, export, compare, resume
and the files they write read it there. The data stays the user's file, named where it is (as for any run)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from effstudio.cli import main
from effstudio.engine.checkpoint import TASK_FILES_KEY, read_info
from effstudio.engine.loading import read_onnx_metadata
from effstudio.paths import allow_path, forget_allowed_paths
from effstudio.pretrained.convert import convert_checkpoint

T = pytest.importorskip("transformers")


@pytest.fixture
def imported(tmp_path) -> tuple[Path, Path]:
    """A tiny random BERT with its vocabulary, imported with a small table of documents: (checkpoint, data)."""
    folder = tmp_path / "hf" / "bert"
    torch.manual_seed(0)
    config = T.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=4, intermediate_size=37,
                          vocab_size=99, max_position_embeddings=64, num_labels=2)
    T.BertForSequenceClassification(config).save_pretrained(folder)
    words = [f"w{i}" for i in range(99 - 5)]
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    data = tmp_path / "docs.csv"
    data.write_text("text,label\n" + "".join(f"w{i} w{i + 1} w{i * 7 % 90},LABEL_{i % 2}\n" for i in range(40)))
    out = tmp_path / "imported" / "bert.safetensors"
    assert main(["import", str(folder), "--out", str(out), "--set", f"task.path={data}"]) == 0
    return out, data


def named_tokenizer(config_json: str) -> str:
    return json.loads(config_json)["task"]["tokenizer_path"]


def kept_tokenizer(model_file: Path, metadata: dict[str, str]) -> bytes:
    """The tokenizer kept beside ``model_file``: named by its config by name alone, and bound by its hash."""
    file = model_file.with_name(f"{model_file.stem}.tokenizer.json")
    assert named_tokenizer(metadata["config"]) == file.name
    assert json.loads(metadata[TASK_FILES_KEY]) == {"tokenizer.json": hashlib.sha256(file.read_bytes()).hexdigest()}
    return file.read_bytes()


def test_a_run_from_an_import_keeps_its_tokenizer_wherever_it_is_moved(imported, tmp_path, capsys, one_thread):
    source, data = imported
    tokenizer = source.with_name("bert.tokenizer.json").read_bytes()
    run = tmp_path / "run"
    assert main(["train", "--init", str(source), "--steps", "2", "--out", str(run), "--set", f"task.path={data}",
                 "--no-record"]) == 0
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    shutil.move(run, moved)
    checkpoint = moved / "checkpoint.safetensors"
    info = read_info(checkpoint)
    assert kept_tokenizer(checkpoint, info.metadata) == tokenizer
    assert info.config.task.tokenizer_path == str(moved / "checkpoint.tokenizer.json")
    assert 'tokenizer_path = "checkpoint.tokenizer.json"' in (moved / "config.toml").read_text()

    # the data is the user's file where it was: named on each command, the tokenizer never is
    data_only = ["--allow-path", str(data)]
    outputs = tmp_path / "outputs"
    quantized, exported = outputs / "small.safetensors", outputs / "model.onnx"
    assert main(["quantize", str(checkpoint), "--method", "dynamic-int8", "--out", str(quantized), *data_only]) == 0
    assert main(["export", "onnx", str(checkpoint), "--out", str(exported), *data_only]) == 0
    assert kept_tokenizer(quantized, read_info(quantized).metadata) == tokenizer
    assert kept_tokenizer(exported, read_onnx_metadata(exported)) == tokenizer
    capsys.readouterr()
    assert main(["compare", str(checkpoint), str(exported), str(quantized), "--json", *data_only]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert len(rows) == 3 and all(row["accuracy"] is not None for row in rows)

    # resuming reads the folder's config.toml as naming the same tokenizer: nothing to warn of
    assert main(["train", "--resume", str(checkpoint), "--steps", "3", "--no-record", *data_only]) == 0
    assert "warning" not in capsys.readouterr().err and read_info(checkpoint).step == 3
    config = moved / "config.toml"
    config.write_text(config.read_text().replace('"checkpoint.tokenizer.json"', '"other.tokenizer.json"'))
    assert main(["train", "--resume", str(checkpoint), "--steps", "4", "--no-record", *data_only]) == 0
    assert "sets task.tokenizer_path = 'other.tokenizer.json', which this resumed run does not use" in (
        capsys.readouterr().err)


def test_a_student_and_an_efficient_copy_of_an_import_keep_its_tokenizer(imported, tmp_path, one_thread):
    source, data = imported
    tokenizer = source.with_name("bert.tokenizer.json").read_bytes()
    student = tmp_path / "students" / "student.safetensors"
    assert main(["distill", "--teacher", str(source), "--student-model", "transformer", "--steps", "1",
                 "--set", "model.d_model=16", "--set", "model.layers=1", "--set", "model.heads=2",
                 "--out", str(student), "--allow-path", str(data)]) == 0
    assert kept_tokenizer(student, read_info(student).metadata) == tokenizer
    longer = tmp_path / "efficient" / "long.safetensors"
    allow_path(data)  # as the window does for the data its user picked
    try:
        list(convert_checkpoint(source, longer, attention="longformer", attention_settings={"window": 16},
                                max_length=128))
    finally:
        forget_allowed_paths()
    assert kept_tokenizer(longer, read_info(longer).metadata) == tokenizer
