"""A compression output that cannot be written (a full disk) is one line, and the file already there is kept.

Every writer (float and int8 checkpoints, ONNX, onnxruntime int8) goes through
``atomic_write``; a failure is injected where the bytes meet the disk.
"""

import errno

import pytest
import safetensors
import safetensors.torch

from effstudio import cli
from effstudio.cli.errors import EXIT_USAGE
from effstudio.engine import checkpoint

COMMANDS = {
    "fp16": ["quantize", "{ckpt}", "--method", "fp16", "--out", "{out}.safetensors"],
    "dynamic-int8": ["quantize", "{ckpt}", "--method", "dynamic-int8", "--out", "{out}.safetensors"],
    "prune": ["prune", "{ckpt}", "--method", "heads", "--amount", "0.5", "--out", "{out}.safetensors"],
    "onnx": ["export", "onnx", "{ckpt}", "--out", "{out}.onnx"],
    "onnx-int8": ["quantize", "{ckpt}", "--method", "onnx-int8", "--out", "{out}.onnx"],
}


def _disk_full(file) -> None:
    raise OSError(errno.ENOSPC, "No space left on device")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_full_disk_keeps_the_existing_output(name, tiny_checkpoint, tmp_path, monkeypatch, capsys):
    argv = [a.format(ckpt=tiny_checkpoint, out=tmp_path / "result") for a in COMMANDS[name]]
    out = tmp_path / argv[-1].rsplit("/", 1)[-1]
    out.write_bytes(b"the user's earlier result")
    monkeypatch.setattr(checkpoint, "_fsync_file", _disk_full)
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code != 0
    lines = [line for line in err.splitlines() if line.startswith("effstudio:")]
    assert len(lines) == 1, err
    assert "No space left on device" in lines[0]
    if name != "onnx-int8":  # that one fails first on its float32 export in a temporary folder
        assert str(out) in lines[0]
    assert "Traceback" not in err
    assert out.read_bytes() == b"the user's earlier result"
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_safetensors_error_is_a_write_failure_too(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise safetensors.SafetensorError("Error while serializing: IoError(No space left on device)")

    monkeypatch.setattr(safetensors.torch, "save_file", refuse)
    out = tmp_path / "int8.safetensors"
    code = cli.main(["quantize", str(tiny_checkpoint), "--method", "dynamic-int8", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert "could not write" in err and "nothing was written" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".*.tmp"))


def test_an_error_of_the_writer_itself_is_not_called_a_full_disk(tmp_path):
    """Only errors of the bytes reaching the disk are rewritten; a writer's own refusal passes unchanged."""

    def refuse(tmp):
        raise checkpoint.CheckpointError("the model cannot be written this way")

    with pytest.raises(checkpoint.CheckpointError, match="^the model cannot be written this way$"):
        checkpoint.atomic_write(tmp_path / "x.bin", refuse)
    assert list(tmp_path.iterdir()) == []
