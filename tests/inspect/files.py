"""Model files of every format, built in a test's tmp_path (never fetched from anywhere)."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file as save_torch


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def bert_tensors(layers: int = 2, hidden: int = 32, vocab: int = 100, seed: int = 0) -> dict[str, np.ndarray]:
    r = rng(seed)
    tensors = {"embeddings.word_embeddings.weight": r.standard_normal((vocab, hidden)).astype(np.float32),
               "embeddings.position_embeddings.weight": r.standard_normal((16, hidden)).astype(np.float32)}
    for i in range(layers):
        for part in ("query", "key", "value"):
            tensors[f"encoder.layer.{i}.attention.self.{part}.weight"] = r.standard_normal(
                (hidden, hidden)).astype(np.float32)
            tensors[f"encoder.layer.{i}.attention.self.{part}.bias"] = np.zeros(hidden, dtype=np.float32)
        tensors[f"encoder.layer.{i}.output.dense.weight"] = r.standard_normal((hidden, 4 * hidden)).astype(np.float32)
    return tensors


def safetensors_file(path: Path, tensors: dict[str, np.ndarray] | None = None,
                     metadata: dict[str, str] | None = None) -> Path:
    save_numpy(tensors if tensors is not None else bert_tensors(), str(path), metadata=metadata)
    return path


def bert_folder(folder: Path, layers: int = 2, hidden: int = 32, heads: int = 4, vocab: int = 100) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    safetensors_file(folder / "model.safetensors", bert_tensors(layers, hidden, vocab))
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["BertForMaskedLM"], "model_type": "bert", "num_hidden_layers": layers,
        "hidden_size": hidden, "num_attention_heads": heads, "vocab_size": vocab, "intermediate_size": 4 * hidden,
    }))
    return folder


def sharded_folder(folder: Path, tensors: dict[str, np.ndarray], shards: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    names = list(tensors)
    weight_map = {}
    for index in range(shards):
        shard = f"model-{index + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[index::shards]}
        save_numpy(part, str(folder / shard))
        weight_map.update(dict.fromkeys(part, shard))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


class CreatesFile:
    """Unpickling this calls os.system to create a marker file (what a malicious checkpoint does)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


class ExecsCode:
    """Unpickling this calls builtins.exec on code that creates a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').close()",)


def malicious_files(folder: Path, marker: Path) -> list[Path]:
    """The same attack in a raw pickle, a PyTorch zip, a legacy PyTorch file and via exec."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = folder / "raw_pickle.pt"
    raw.write_bytes(pickle.dumps({"weight": CreatesFile(marker)}, protocol=4))
    zipped = folder / "zip_format.pth"
    torch.save({"weight": torch.ones(2), "payload": CreatesFile(marker)}, zipped)
    legacy = folder / "legacy_format.bin"
    torch.save({"weight": torch.ones(2), "payload": CreatesFile(marker)}, legacy, _use_new_zipfile_serialization=False)
    execs = folder / "exec.ckpt"
    execs.write_bytes(pickle.dumps({"state_dict": {"w": ExecsCode(marker)}}, protocol=2))
    return [raw, zipped, legacy, execs]


def truncated_copy(source: Path, target: Path, keep: int) -> Path:
    target.write_bytes(source.read_bytes()[:keep])
    return target


def onnx_model(path: Path, external: bool = False) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    r = rng(1)
    weight = numpy_helper.from_array(r.standard_normal((8, 4)).astype(np.float32), "dense.weight")
    bias = numpy_helper.from_array(np.zeros(4, dtype=np.float32), "dense.bias")
    scale = numpy_helper.from_array(r.standard_normal(4).astype(np.float16), "scale")
    nodes = [
        helper.make_node("MatMul", ["x", "dense.weight"], ["h"]),
        helper.make_node("Add", ["h", "dense.bias"], ["h2"]),
        helper.make_node("Relu", ["h2"], ["h3"]),
        helper.make_node("Cast", ["scale"], ["scale32"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["h3", "scale32"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        initializer=[weight, bias, scale])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tests")
    onnx.checker.check_model(model)
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data", size_threshold=0)
    else:
        onnx.save_model(model, str(path))
    return path


def npz_file(path: Path, compressed: bool = False) -> Path:
    r = rng(2)
    arrays = {"a": r.standard_normal((6, 5)).astype(np.float32), "b": np.arange(10, dtype=np.int64),
              "c": np.asfortranarray(r.standard_normal((3, 4)))}
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path


def zip_named(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({}))
    return path


def torch_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    save_torch(tensors, str(path), metadata=metadata)
    return path
