"""The inspector's graphs: ONNX operators (weights attached, shapes on edges) and checkpoint blocks, laid out."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from effstudio import read_limits
from effstudio.bench.graph import write_encoder
from effstudio.engine.build import build_model, build_task
from effstudio.engine.checkpoint import save_checkpoint
from effstudio.engine.run_config import RunConfig
from effstudio.inspect import open_model
from effstudio.inspect.graph import GraphError, ModelGraph, graph_of
from tests.inspect import files


def by_kind(graph: ModelGraph, kind: str) -> list:
    return [node for node in graph.nodes if node.kind == kind]


def assert_layered_down(graph: ModelGraph) -> None:
    """Every edge goes down at least one layer; boxes of one layer stand apart."""
    assert graph.edges
    for edge in graph.edges:
        assert graph.nodes[edge.target].y > graph.nodes[edge.source].y, edge.value
        assert len(edge.bends) == graph.nodes[edge.target].y - graph.nodes[edge.source].y - 1
    places = [(node.x, node.y) for node in graph.nodes]
    assert len(set(places)) == len(places)


def test_onnx_operators_with_weights_attached_and_shapes_on_edges(tmp_path):
    graph = graph_of(open_model(files.onnx_model(tmp_path / "tiny.onnx")))
    assert [n.kind for n in graph.nodes] == ["Input", "MatMul", "Add", "Relu", "Cast", "Mul", "Output"]
    kinds = {n.kind: n for n in graph.nodes}
    assert kinds["MatMul"].tensors == ["dense.weight"] and "weight ⟨8×4⟩" in kinds["MatMul"].details
    assert kinds["Add"].tensors == ["dense.bias"]
    assert kinds["Cast"].tensors == ["scale"] and "to=1" in kinds["Cast"].details
    assert not any(n.name in ("dense.weight", "dense.bias", "scale") for n in graph.nodes)  # not drawn as boxes
    edges = {(graph.nodes[e.source].kind, graph.nodes[e.target].kind): e.shape for e in graph.edges}
    assert edges == {("Input", "MatMul"): "batch×8", ("MatMul", "Add"): "batch×4", ("Add", "Relu"): "batch×4",
                     ("Relu", "Mul"): "batch×4", ("Cast", "Mul"): "4", ("Mul", "Output"): "batch×4"}
    assert_layered_down(graph)
    assert graph.nodes[0].y == 0 and graph.nodes[-1].y == graph.layers - 1
    assert graph.find("dense.w") == [1] and graph.find("relu") == [3] and graph.find("") == []


def test_exported_model_attaches_constants_and_every_weight(tmp_path):
    path = tmp_path / "encoder.onnx"
    write_encoder(path, layers=2, d_model=16, vocab=20, positions=12)
    inspected = open_model(path)
    graph = graph_of(inspected)
    assert not by_kind(graph, "Constant")
    attached = {name for node in graph.nodes for name in node.tensors}
    assert attached == {t.name for t in inspected.tensors}  # every weight belongs to the operator that reads it
    weighted_matmuls = [n for n in by_kind(graph, "MatMul") if n.tensors]
    assert len(weighted_matmuls) == 2 * 6  # q, k, v, out and the two feed-forward layers of each block
    assert by_kind(graph, "Gemm")[0].tensors == ["model.head.weight", "model.head.bias"]
    into_ff = [e for e in graph.edges if graph.nodes[e.target] in weighted_matmuls and "mlp.2" in
               graph.nodes[e.target].name]
    assert into_ff and all(e.shape.endswith("×64") for e in into_ff)  # the feed-forward width, inferred
    assert [n.name for n in by_kind(graph, "Output")] == ["logits"]
    assert by_kind(graph, "Output")[0].details == ["batch×2"]
    assert_layered_down(graph)


def test_shape_inference_and_size_are_bounded(tmp_path, monkeypatch):
    inspected = open_model(files.onnx_model(tmp_path / "tiny.onnx"))
    monkeypatch.setattr(read_limits, "MAX_SHAPE_INFERENCE_NODES", 2)
    graph = graph_of(inspected)
    assert "MAX_SHAPE_INFERENCE_NODES" in graph.notes[0]
    inner = [e for e in graph.edges if e.value == "h"]
    assert inner[0].shape == ""  # only the file's own shapes: the inputs' and outputs'
    monkeypatch.setattr(read_limits, "MAX_LAYOUT_POINTS", 9)  # 7 boxes, and Cast's edge to Mul bends 3 times
    with pytest.raises(GraphError, match="7 boxes and the bends of its long edges make 10 points.*MAX_LAYOUT_POINTS"):
        graph_of(inspected)
    monkeypatch.setattr(read_limits, "MAX_GRAPH_NODES", 4)
    with pytest.raises(GraphError, match="5 operators, more than the 4 .*MAX_GRAPH_NODES"):
        graph_of(inspected)


def test_a_tensor_file_has_no_graph(tmp_path):
    with pytest.raises(GraphError, match="holds tensors only .*no numbered blocks"):
        graph_of(open_model(files.npz_file(tmp_path / "a.npz")))


def checkpoint(path: Path, **settings) -> Path:
    config = RunConfig.create("transformer", "copy", {
        "model.d_model": 16, "model.layers": 3, "model.heads": 2, "model.dropout": 0.0, "task.train_size": 32,
        "task.val_size": 16, "task.test_size": 8, "task.min_length": 4, "task.max_length": 8,
        "train.device": "cpu", **settings})
    torch.manual_seed(0)
    return save_checkpoint(path, build_model(config, build_task(config).spec), config, step=1)


def test_checkpoint_blocks_from_its_model(tmp_path):
    inspected = open_model(checkpoint(tmp_path / "dense.safetensors", **{"model.attention": "local", "attention.window": 4}))
    graph = graph_of(inspected)
    assert [n.kind for n in graph.nodes] == ["Input", "Embedding", "Embedding", "Block", "Block", "Block",
                                             "LayerNorm", "Linear", "Output"]
    blocks = by_kind(graph, "Block")
    assert [b.name for b in blocks] == ["blocks.0", "blocks.1", "blocks.2"]
    assert blocks[1].details == ["local attention, 2 heads", "feed-forward 64"]
    assert blocks[1].tensors and all(t.startswith("blocks.1.") for t in blocks[1].tensors)
    assert {t for n in graph.nodes for t in n.tensors} == {t.name for t in inspected.tensors}
    chain = {(graph.nodes[e.source].name, graph.nodes[e.target].name): e.shape for e in graph.edges}
    positions = inspected.tensor("positions.weight").shape[0]  # the copy task's sequence: source, separator, copy
    assert chain[("blocks.0", "blocks.1")] == f"batch×{positions}×16"
    assert ("embed", "blocks.0") in chain and ("positions", "blocks.0") in chain
    vocab = inspected.tensor("embed.weight").shape[0]
    assert graph.nodes[-1].details == [f"batch×{positions}×{vocab}"]  # a language model's logits
    assert_layered_down(graph)


def test_checkpoint_blocks_show_experts(tmp_path):
    graph = graph_of(open_model(checkpoint(tmp_path / "moe.safetensors", **{
        "model.layers": 1, "model.ffn": "moe", "model.experts": 4, "model.top_k": 2})))
    assert by_kind(graph, "Block")[0].details[1] == "4 experts × 64, top-2"


def test_other_files_get_blocks_from_their_tensor_names(tmp_path):
    graph = graph_of(open_model(files.bert_folder(tmp_path / "bert")))
    assert graph.title == "blocks from tensor names" and "grouped from the tensor names" in graph.notes[0]
    assert [(n.name, n.kind) for n in graph.nodes] == [
        ("embeddings", "Embedding"), ("encoder.layer.0", "Block"), ("encoder.layer.1", "Block")]
    assert all(t.startswith("encoder.layer.1.") for t in graph.nodes[2].tensors)
    assert graph.nodes[2].details[1:] == ["4 heads (config.json)", "feed-forward 128"]  # 4 × hidden 32
    assert_layered_down(graph)


def test_names_order_blocks_naturally_and_heads_last():
    from effstudio.inspect.name_graph import name_graph
    from effstudio.inspect.tensors import Inspected, TensorRef

    names = ["lm_head.weight", "transformer.h.10.attn.weight", "transformer.h.2.attn.weight", "transformer.ln_f.weight",
             "transformer.wte.weight"]
    inspected = Inspected(Path("gpt.safetensors"), "safetensors", 0, [TensorRef(n, (2,), "float32", None)
                                                                       for n in names])
    graph = name_graph(inspected, "a test")
    assert [n.name for n in graph.nodes] == ["transformer.wte", "transformer.h.2", "transformer.h.10",
                                             "transformer.ln_f", "lm_head"]


def test_a_checkpoint_whose_model_cannot_be_rebuilt_falls_back_to_names(tmp_path, monkeypatch):
    from effstudio.inspect import block_graph

    def refuse(_inspected):
        raise GraphError("model type 'plugin' is not installed")

    monkeypatch.setattr(block_graph, "_built", refuse)
    graph = graph_of(open_model(checkpoint(tmp_path / "c.safetensors", **{"model.layers": 2})))
    assert "model type 'plugin' is not installed" in graph.notes[0]
    assert [n.name for n in graph.nodes if n.kind == "Block"] == ["blocks.0", "blocks.1"]


def test_external_data_is_never_read_for_the_graph(tmp_path):
    path = files.onnx_model(tmp_path / "ext.onnx", external=True)
    inspected = open_model(path)
    (tmp_path / "ext.onnx.data").write_bytes(b"")  # emptied after opening: reading it now would fail
    graph = graph_of(inspected)
    assert {n.kind: n.tensors for n in graph.nodes}["MatMul"] == ["dense.weight"]
    assert any(e.value == "h" and e.shape == "batch×4" for e in graph.edges)  # inferred without the weights
