"""Every format opens to the same picture: names, shapes, dtypes, sizes, architecture."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from effstudio.inspect import InspectError, open_model
from effstudio.inspect.stats import tensor_stats
from tests.inspect import files


def test_safetensors_header_metadata_and_params(tmp_path):
    path = files.safetensors_file(tmp_path / "m.safetensors", metadata={"note": "hello"})
    inspected = open_model(path)
    expected = files.bert_tensors()
    assert inspected.format == "safetensors"
    assert inspected.file_bytes == path.stat().st_size
    assert {t.name: t.shape for t in inspected.tensors} == {n: a.shape for n, a in expected.items()}
    assert inspected.params == sum(a.size for a in expected.values())
    assert inspected.metadata == {"note": "hello"}
    assert inspected.dtypes() == {"float32": len(expected)}
    assert all(t.mapped for t in inspected.tensors)
    weight = inspected.tensor("encoder.layer.1.output.dense.weight")
    np.testing.assert_array_equal(weight.raw(), expected["encoder.layer.1.output.dense.weight"])


def test_hugging_face_folder_is_described_from_its_config(tmp_path):
    inspected = open_model(files.bert_folder(tmp_path / "bert"))
    assert inspected.config["model_type"] == "bert"
    assert inspected.architecture == "BERT-like encoder, 2 layers, hidden 32, 4 heads, vocab 100"
    assert inspected.path == tmp_path / "bert"


def test_architecture_from_names_without_a_config(tmp_path):
    inspected = open_model(files.safetensors_file(tmp_path / "m.safetensors"))
    assert inspected.architecture == "BERT-like encoder, 2 layers, hidden 32, vocab 100"
    gpt = {f"h.{i}.attn.c_attn.weight": np.zeros((16, 48), np.float32) for i in range(3)}
    gpt["wte.weight"] = np.zeros((50, 16), np.float32)
    assert open_model(files.safetensors_file(tmp_path / "g.safetensors", gpt)).architecture == \
        "GPT-like decoder (gpt2), 3 layers, hidden 16, vocab 50"


def test_sharded_folder_with_index(tmp_path):
    tensors = files.bert_tensors()
    folder = files.sharded_folder(tmp_path / "sharded", tensors, shards=3)
    inspected = open_model(folder)
    assert inspected.format == "safetensors-sharded"
    assert sorted(t.name for t in inspected.tensors) == sorted(tensors)
    assert len(inspected.files) == 3
    assert inspected.file_bytes == sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    (folder / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(InspectError, match="model-00002-of-00003.safetensors, which is missing"):
        open_model(folder)


def test_effstudio_checkpoint_is_recognised(tmp_path):
    from effstudio.engine.checkpoint import save_checkpoint
    from effstudio.engine.run_config import RunConfig

    config = RunConfig.create("transformer", "copy", {"model.d_model": 32, "model.layers": 1, "model.heads": 2})
    path = save_checkpoint(tmp_path / "checkpoint.safetensors", torch.nn.Linear(4, 4), config, step=7)
    inspected = open_model(path)
    assert inspected.is_effstudio
    assert inspected.architecture.startswith("effstudio transformer, 1 layer, d_model 32, 2 heads")
    assert "task copy" in inspected.architecture and "step 7" in inspected.architecture
    folder_view = open_model(tmp_path)  # a run folder: the checkpoint, not its .state.pt
    assert folder_view.files == [path]


def test_pytorch_zip_and_legacy(tmp_path):
    state = {"linear.weight": torch.randn(4, 3), "linear.bias": torch.zeros(4),
             "bn.num_batches_tracked": torch.tensor(5)}
    torch.save(state, tmp_path / "zip.pt")
    torch.save(state, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    for name, fmt, mapped in (("zip.pt", "pytorch", True), ("legacy.pt", "pytorch-legacy", False)):
        inspected = open_model(tmp_path / name)
        assert inspected.format == fmt
        assert {t.name for t in inspected.tensors} == set(state)
        assert inspected.params == 12 + 4  # the batch counter is not a parameter
        weight = inspected.tensor("linear.weight")
        assert weight.mapped is mapped
        np.testing.assert_array_equal(weight.raw(), state["linear.weight"].numpy())


def test_lightning_and_data_parallel_checkpoints_are_unwrapped(tmp_path):
    weights = {"module.encoder.weight": torch.randn(3, 3), "module.head.bias": torch.zeros(2)}
    torch.save({"epoch": 4, "global_step": 120, "pytorch-lightning_version": "2.4.0", "state_dict": weights,
                "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(3, 3)}}}],
                "hyper_parameters": {"lr": 0.1}}, tmp_path / "lightning.ckpt")
    inspected = open_model(tmp_path / "lightning.ckpt")
    assert [t.name for t in inspected.tensors] == ["encoder.weight", "head.bias"]
    assert inspected.metadata["epoch"] == "4" and inspected.metadata["global_step"] == "120"
    assert any("'state_dict'" in note for note in inspected.notes)
    assert any("'module.'" in note for note in inspected.notes)

    torch.save({"model": {"a": {"b": torch.ones(2)}}, "step": 3}, tmp_path / "nested.pth")
    assert [t.name for t in open_model(tmp_path / "nested.pth").tensors] == ["a.b"]


def test_pytorch_bfloat16_and_strided_tensors(tmp_path):
    base = torch.randn(6, 5)
    torch.save({"bf": base.to(torch.bfloat16), "t": base.t()}, tmp_path / "m.pt")
    inspected = open_model(tmp_path / "m.pt")
    bf = tensor_stats(inspected.tensor("bf"))
    assert bf.mean == pytest.approx(base.to(torch.bfloat16).double().mean().item(), abs=1e-6)
    transposed = inspected.tensor("t")
    assert transposed.shape == (5, 6)
    assert tensor_stats(transposed, chunk=7).std == pytest.approx(base.double().std(unbiased=False).item(), rel=1e-6)


def test_onnx_initializers_and_graph(tmp_path):
    inspected = open_model(files.onnx_model(tmp_path / "tiny.onnx"))
    assert inspected.format == "onnx"
    assert {t.name: (t.shape, t.dtype) for t in inspected.tensors} == {
        "dense.weight": ((8, 4), "float32"), "dense.bias": ((4,), "float32"), "scale": ((4,), "float16")}
    graph = inspected.graph
    assert graph["inputs"] == [{"name": "x", "dtype": "float", "shape": ["batch", 8]}]
    assert graph["outputs"] == [{"name": "y", "dtype": "float", "shape": ["batch", 4]}]
    assert graph["opset"] == {"ai.onnx": 17}
    assert graph["operators"] == {"MatMul": 1, "Add": 1, "Relu": 1, "Cast": 1, "Mul": 1}
    assert inspected.architecture.startswith("ONNX graph of 5 nodes")
    assert tensor_stats(inspected.tensor("dense.bias")).sparsity == 100.0


def test_onnx_external_data_is_mapped_and_kept_in_its_folder(tmp_path):
    path = files.onnx_model(tmp_path / "ext.onnx", external=True)
    inspected = open_model(path)
    weight = inspected.tensor("dense.weight")
    assert weight.mapped
    reference = open_model(files.onnx_model(tmp_path / "inline.onnx")).tensor("dense.weight").raw()
    np.testing.assert_array_equal(weight.raw(), reference)

    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for init in model.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location":
                entry.value = "../outside.data"
    onnx.save_model(model, str(tmp_path / "escape.onnx"))
    with pytest.raises(InspectError, match=r"'dense.weight' keeps its data in '\.\./outside.data', which climbs out"):
        open_model(tmp_path / "escape.onnx")  # refused before any tensor is read


@pytest.mark.parametrize("compressed", [False, True])
def test_npz(tmp_path, compressed):
    path = files.npz_file(tmp_path / "arrays.npz", compressed=compressed)
    inspected = open_model(path)
    assert inspected.format == "npz"
    with np.load(path) as reference:
        for tensor in inspected.tensors:
            assert tensor.mapped is not compressed
            np.testing.assert_array_equal(tensor.raw(), reference[tensor.name])
            assert tensor_stats(tensor).mean == pytest.approx(reference[tensor.name].mean())


def test_npy_memory_mapped_fortran_order(tmp_path):
    array = np.asfortranarray(files.rng(3).standard_normal((7, 9)).astype(np.float16))
    np.save(tmp_path / "f.npy", array)
    inspected = open_model(tmp_path / "f.npy")
    tensor = inspected.tensors[0]
    assert (inspected.format, tensor.name, tensor.shape, tensor.dtype, tensor.mapped) == \
        ("npy", "f", (7, 9), "float16", True)
    np.testing.assert_array_equal(tensor.raw(), array)
    stats = tensor_stats(tensor, chunk=5)
    assert stats.std == pytest.approx(array.astype(np.float64).std(), rel=1e-6)


def test_unknown_extension_is_read_by_content(tmp_path):
    path = files.safetensors_file(tmp_path / "weights.data")
    assert open_model(path).format == "safetensors"
    (tmp_path / "notes.txt").write_text("hello, this is not a model\n")
    with pytest.raises(InspectError, match="not a format effstudio reads"):
        open_model(tmp_path / "notes.txt")


def test_record_is_plain_json(tmp_path):
    from effstudio.inspect.report import inspect_record
    from effstudio.inspect.stats import all_stats

    inspected = open_model(files.bert_folder(tmp_path / "bert"))
    record = inspect_record(inspected, all_stats(inspected))
    assert json.loads(json.dumps(record, allow_nan=False))["config"]["model_type"] == "bert"
