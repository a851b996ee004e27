"""Bad files give a clear reason, and nothing in a file is ever executed."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from effstudio.inspect import InspectError, open_model
from tests.inspect import files


def test_malicious_pickles_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "PWNED"
    for path in files.malicious_files(tmp_path / "evil", marker):
        with pytest.raises(InspectError) as caught:
            open_model(path)
        message = str(caught.value)
        assert message.startswith(path.name) and "refused" in message, message
        assert "never executes code" in message
        assert ("posix.system" in message or "os.system" in message or "builtins.exec" in message), message
        assert not marker.exists(), f"{path.name} ran code"


def test_whole_pickled_model_is_refused_with_advice(tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "model.pt")
    with pytest.raises(InspectError, match="torch.nn.modules.linear.Linear.*state_dict"):
        open_model(tmp_path / "model.pt")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_is_refused(tmp_path):
    torch.jit.script(torch.nn.Linear(2, 2)).save(str(tmp_path / "scripted.pt"))
    with pytest.raises(InspectError, match="TorchScript"):
        open_model(tmp_path / "scripted.pt")


@pytest.fixture
def good(tmp_path):
    return files.safetensors_file(tmp_path / "good.safetensors")


def test_truncated_in_the_header(good, tmp_path):
    bad = files.truncated_copy(good, tmp_path / "cut_header.safetensors", 40)
    with pytest.raises(InspectError, match="header claims .* truncated"):
        open_model(bad)


def test_truncated_in_the_data(good, tmp_path):
    bad = files.truncated_copy(good, tmp_path / "cut_data.safetensors", good.stat().st_size - 100)
    with pytest.raises(InspectError, match="the file is truncated: its header describes"):
        open_model(bad)


def test_header_claiming_more_bytes_than_the_file(good, tmp_path):
    data = bytearray(good.read_bytes())
    data[:8] = (10**12).to_bytes(8, "little")
    (tmp_path / "liar.safetensors").write_bytes(bytes(data))
    with pytest.raises(InspectError, match="header claims 1,000,000,000,000 bytes"):
        open_model(tmp_path / "liar.safetensors")


def test_offsets_that_disagree_with_the_shape(tmp_path):
    import json
    import struct

    header = json.dumps({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 32]}}).encode()
    (tmp_path / "odd.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + bytes(32))
    with pytest.raises(InspectError, match="needs 64 bytes but its offsets span 32"):
        open_model(tmp_path / "odd.safetensors")


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".onnx", ".npy", ".npz", ".bin"])
def test_empty_files(tmp_path, suffix):
    (tmp_path / f"empty{suffix}").write_bytes(b"")
    with pytest.raises(InspectError, match=r"empty \(0 bytes\)"):
        open_model(tmp_path / f"empty{suffix}")


def test_wrong_extensions_name_the_real_format(tmp_path):
    torch.save({"w": torch.ones(2)}, tmp_path / "really_a_zip.safetensors")
    with pytest.raises(InspectError, match=r"extension says \.safetensors but the file is a zip archive.*\.pt"):
        open_model(tmp_path / "really_a_zip.safetensors")
    files.safetensors_file(tmp_path / "really_safetensors.pt")
    with pytest.raises(InspectError, match="is a safetensors file. Rename it to .safetensors"):
        open_model(tmp_path / "really_safetensors.pt")
    np.save(tmp_path / "array.npy", np.ones(3))
    (tmp_path / "array.npy").rename(tmp_path / "array.onnx")
    with pytest.raises(InspectError, match="NumPy .npy array"):
        open_model(tmp_path / "array.onnx")


def test_garbage_with_a_known_extension(tmp_path):
    (tmp_path / "noise.pt").write_bytes(bytes(range(7, 200)))
    with pytest.raises(InspectError, match="not a pytorch file"):
        open_model(tmp_path / "noise.pt")
    (tmp_path / "noise.onnx").write_bytes(b"\xff" * 64)
    with pytest.raises(InspectError, match="ONNX"):
        open_model(tmp_path / "noise.onnx")


def assert_cut_is_refused(full: Path, cut: Path, size: int, words: str) -> None:
    """The first ``size`` bytes of ``full`` as ``cut``: opening it is an InspectError that says ``words``."""
    files.truncated_copy(full, cut, size)
    with pytest.raises(InspectError, match=words):
        open_model(cut)


def test_truncated_pytorch_onnx_and_numpy_files(tmp_path):
    torch.save({"w": torch.randn(64, 64)}, tmp_path / "full.pt")
    assert_cut_is_refused(tmp_path / "full.pt", tmp_path / "cut.pt", (tmp_path / "full.pt").stat().st_size // 2,
                          "damaged or truncated")
    torch.save({"w": torch.randn(64, 64)}, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    assert_cut_is_refused(tmp_path / "legacy.pt", tmp_path / "cut_legacy.pt", 100, "cut_legacy.pt")
    full = files.onnx_model(tmp_path / "full.onnx")
    assert_cut_is_refused(full, tmp_path / "cut.onnx", full.stat().st_size - 20, "cut.onnx")
    np.save(tmp_path / "full.npy", np.ones((100, 100)))
    assert_cut_is_refused(tmp_path / "full.npy", tmp_path / "cut.npy", 5000, "truncated")
    npz = files.npz_file(tmp_path / "full.npz")
    assert_cut_is_refused(npz, tmp_path / "cut.npz", npz.stat().st_size - 30, "damaged or truncated")


def test_numpy_object_arrays_are_not_unpickled(tmp_path):
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(InspectError, match="Python objects"):
        open_model(tmp_path / "objects.npy")
    np.savez(tmp_path / "mixed.npz", good=np.ones(3), bad=np.array([None], dtype=object))
    inspected = open_model(tmp_path / "mixed.npz")
    assert [t.name for t in inspected.tensors] == ["good"]
    assert any("'bad'" in note and "never loads" in note for note in inspected.notes)


def test_other_formats_and_odd_zips(tmp_path):
    (tmp_path / "model.gguf").write_bytes(b"GGUF" + bytes(60))
    with pytest.raises(InspectError, match="GGUF"):
        open_model(tmp_path / "model.gguf")
    with zipfile.ZipFile(tmp_path / "docs.pt", "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(InspectError, match="neither a PyTorch checkpoint"):
        open_model(tmp_path / "docs.pt")
    with pytest.raises(InspectError, match="does not exist"):
        open_model(tmp_path / "missing.safetensors")
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(InspectError, match="no model weights found"):
        open_model(tmp_path / "empty_folder")
