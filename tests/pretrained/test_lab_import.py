"""Which dropped paths the window imports as Hugging Face folders."""

from __future__ import annotations

from effstudio.pretrained.lab_import import hugging_face_folder, imported_path


def test_a_folder_with_config_and_weights_or_a_weights_file_in_one(tmp_path) -> None:
    folder = tmp_path / "bert"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert hugging_face_folder(folder) is None  # no weights: not a model folder
    (folder / "model.safetensors").write_bytes(b"")
    assert hugging_face_folder(folder) == folder
    assert hugging_face_folder(folder / "model.safetensors") == folder
    (folder / "notes.txt").write_text("")
    assert hugging_face_folder(folder / "notes.txt") is None
    (folder / "config.json").unlink()
    assert hugging_face_folder(folder) is None  # weights without config.json: an ordinary file or folder


def test_sharded_and_pickled_weights_count(tmp_path) -> None:
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model-00001-of-00002.bin").write_bytes(b"")
    assert hugging_face_folder(tmp_path) == tmp_path
    checkpoint = tmp_path / "run.safetensors"  # an effstudio checkpoint beside a config.json is not one
    checkpoint.write_bytes(b"")
    assert hugging_face_folder(checkpoint) is None


def test_imports_go_under_the_runs_folder() -> None:
    path = imported_path("/models/tiny-bert")
    assert path.name == "tiny-bert.safetensors" and path.parent.name == "imported"
