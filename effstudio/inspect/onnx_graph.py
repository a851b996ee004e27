"""An ONNX file's operator graph: one box per operator, edges labelled with the shapes of the values.

Weights are not boxes: an initializer, the output of a ``Constant`` operator and
an ``Identity`` of either (PyTorch's exporter shares equal weights so) are
attached to the operator that reads them, listed in its box and selectable in
the Tensors tab. Shapes come from the file's own value infos, completed by ONNX
shape inference run on a copy of the graph *without* its weights (large
initializers become typed inputs), so inferring a 100 MB model copies no weight
bytes; graphs larger than ``MAX_SHAPE_INFERENCE_NODES`` keep the stored shapes.
The protobuf is the one :mod:`effstudio.inspect.onnx_file` read (external data is
never loaded here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from effstudio import read_limits
from effstudio.engine.onnx_model import OnnxFileError, load_checked
from effstudio.inspect.graph import GraphError, GraphNode, ModelGraph, check_size, shape_text
from effstudio.inspect.tensors import Inspected

if TYPE_CHECKING:
    from onnx import AttributeProto, GraphProto, ModelProto, TypeProto

SMALL_INITIALIZER_BYTES = 1024  # kept for shape inference: Reshape targets, axes, scalars
LIST_SHOWN = 8  # attribute lists longer than this are cut with an ellipsis


def _proto(inspected: Inspected) -> ModelProto:
    from onnx import ModelProto

    for kept in inspected.keepalive:
        if isinstance(kept, ModelProto):
            return kept
    try:  # the file was closed: read its protobuf again, as checked as the first time
        return load_checked(inspected.path)
    except OnnxFileError as err:
        raise GraphError(str(err)) from None


def _dims(type_proto: TypeProto) -> list[int | str] | None:
    if not type_proto.HasField("tensor_type") or not type_proto.tensor_type.HasField("shape"):
        return None
    dims: list[int | str] = []
    for dim in type_proto.tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        elif dim.dim_param and not dim.dim_param.startswith("unk__"):  # inference's own names say nothing
            dims.append(dim.dim_param)
        else:
            dims.append("?")
    return dims


def _weightless_copy(model: ModelProto) -> ModelProto:
    """The model with every large initializer replaced by a typed graph input: what shape inference needs."""
    from onnx import helper

    graph = model.graph
    small, typed = [], []
    for init in graph.initializer:
        if init.external_data or len(init.raw_data) > SMALL_INITIALIZER_BYTES or init.ByteSize() > 4 * SMALL_INITIALIZER_BYTES:
            typed.append(helper.make_tensor_value_info(init.name, init.data_type, list(init.dims)))
        else:
            small.append(init)
    typed_names = {t.name for t in typed}
    inputs = [v for v in graph.input if v.name not in typed_names]  # old IR lists initializers as inputs too
    light = helper.make_graph(list(graph.node), graph.name or "graph", inputs + typed, list(graph.output),
                              initializer=small, value_info=list(graph.value_info))
    copy = helper.make_model(light, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    copy.functions.extend(model.functions)
    return copy


def _shapes(model: ModelProto, notes: list[str]) -> dict[str, list[int | str]]:
    """Value name -> dims, from the file and, where the graph is small enough, from shape inference."""
    graph = model.graph
    values = list(graph.input) + list(graph.output) + list(graph.value_info)
    if len(graph.node) <= read_limits.MAX_SHAPE_INFERENCE_NODES:
        from onnx import shape_inference

        try:
            inferred = shape_inference.infer_shapes(_weightless_copy(model), data_prop=True)
            values += list(inferred.graph.value_info) + list(inferred.graph.output)
        except Exception as err:  # onnx raises its own error types for graphs it cannot follow
            notes.append(f"shape inference failed ({type(err).__name__}: {str(err).splitlines()[0][:160]}); "
                         "edges show the shapes stored in the file")
    else:
        notes.append(f"{len(graph.node):,} operators: more than the {read_limits.MAX_SHAPE_INFERENCE_NODES:,} "
                     "shape inference runs on (MAX_SHAPE_INFERENCE_NODES); edges show the shapes stored in the file")
    shapes: dict[str, list[int | str]] = {}
    for value in values:
        dims = _dims(value.type)
        if dims is not None and (value.name not in shapes or "?" in shape_text(shapes[value.name])):
            shapes[value.name] = dims
    return shapes


def _short(values: list[Any]) -> str:
    shown = ", ".join(_scalar(v) for v in values[:LIST_SHOWN])
    return f"[{shown}{', …' if len(values) > LIST_SHOWN else ''}]"


def _scalar(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)[:60]


def _attribute(attribute: AttributeProto) -> str:
    from onnx import AttributeProto, helper

    if attribute.type == AttributeProto.TENSOR:
        tensor = attribute.t
        return f"{attribute.name}=⟨{shape_text(list(tensor.dims))}⟩ {_dtype(tensor.data_type)}"
    if attribute.type == AttributeProto.GRAPH:
        return f"{attribute.name}=subgraph of {len(attribute.g.node)} operators"
    if attribute.type == AttributeProto.GRAPHS:
        return f"{attribute.name}={len(attribute.graphs)} subgraphs"
    if attribute.type in (AttributeProto.SPARSE_TENSOR, AttributeProto.SPARSE_TENSORS, AttributeProto.TENSORS,
                          AttributeProto.TYPE_PROTO, AttributeProto.TYPE_PROTOS):
        return f"{attribute.name}=({AttributeProto.AttributeType.Name(attribute.type).lower()})"
    value = helper.get_attribute_value(attribute)
    return f"{attribute.name}={_short(list(value)) if isinstance(value, list) else _scalar(value)}"


def _dtype(elem_type: int) -> str:
    from onnx import TensorProto

    try:
        return TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return f"type {elem_type}"


def _constant_text(attribute_node: Any) -> str:
    """What a Constant operator holds, in a few characters: a small value itself, else its shape."""
    from onnx import numpy_helper

    for attribute in attribute_node.attribute:
        if attribute.name == "value" and attribute.HasField("t"):
            tensor = attribute.t
            count = 1
            for d in tensor.dims:
                count *= d
            if count <= 4 and tensor.data_location != 1:  # 1: EXTERNAL, never read here
                return "= " + _short(numpy_helper.to_array(tensor).ravel().tolist())
            return f"⟨{shape_text(list(tensor.dims))}⟩ {_dtype(tensor.data_type)}"
        if attribute.name.startswith("value_"):
            return f"= {_attribute(attribute).split('=', 1)[1]}"
    return "constant"


def _constants(graph: GraphProto) -> tuple[dict[str, str], dict[str, str]]:
    """Constant-like values: name -> text for the reading box, and name -> initializer it stands for."""
    texts: dict[str, str] = {}
    weight_of: dict[str, str] = {}
    for init in graph.initializer:
        texts[init.name] = f"⟨{shape_text(list(init.dims))}⟩"
        weight_of[init.name] = init.name
    for sparse in graph.sparse_initializer:
        texts[sparse.values.name] = f"⟨{shape_text(list(sparse.dims))}⟩ sparse"
    for node in graph.node:  # in topological order, so an Identity meets its source first
        if node.op_type == "Constant" and not node.input and len(node.output) == 1:
            texts[node.output[0]] = _constant_text(node)
        elif node.op_type == "Identity" and len(node.input) == 1 and node.input[0] in texts:
            texts[node.output[0]] = texts[node.input[0]]
            if node.input[0] in weight_of:
                weight_of[node.output[0]] = weight_of[node.input[0]]
    return texts, weight_of


def onnx_graph(inspected: Inspected) -> ModelGraph:
    model = _proto(inspected)
    graph = model.graph
    texts, weight_of = _constants(graph)
    operators = [node for node in graph.node if not any(out in texts for out in node.output)]
    check_size(len(operators), "operators")
    result = ModelGraph("ONNX operators")
    shapes = _shapes(model, result.notes)
    readable = {tensor.name for tensor in inspected.tensors}
    producer: dict[str, int] = {}
    for value in graph.input:
        if value.name not in texts:
            producer[value.name] = result.add(GraphNode(value.name, "Input", [shape_text(shapes.get(value.name, []))
                                                                             if value.name in shapes else "?"]))
    used_names: set[str] = set()
    for position, node in enumerate(operators):
        name = node.name or f"{node.op_type}_{position}"
        if name in used_names:  # names are optional and need not be unique; the box's must be
            name = f"{name}#{position}"
        used_names.add(name)
        op = node.op_type if not node.domain or node.domain == "ai.onnx" else f"{node.domain}.{node.op_type}"
        box = GraphNode(name, op, [_attribute(a) for a in node.attribute])
        for slot, value in enumerate(node.input):
            if value in texts:
                label = value.rsplit(".", 1)[-1] if value in weight_of else f"input {slot}"
                box.details.append(f"{label} {texts[value]}")
                if weight_of.get(value) in readable:
                    box.tensors.append(weight_of[value])
        index = result.add(box)
        for value in node.output:
            producer[value] = index
    for index, node in zip(range(len(result.nodes) - len(operators), len(result.nodes)), operators, strict=True):
        for value in dict.fromkeys(node.input):  # a value read twice is one edge
            if value and value in producer:
                result.connect(producer[value], index, value, shape_text(shapes[value]) if value in shapes else "")
    for value in graph.output:
        out = result.add(GraphNode(value.name, "Output", [shape_text(shapes[value.name]) if value.name in shapes
                                                          else "?"]))
        if value.name in producer:
            result.connect(producer[value.name], out, value.name,
                           shape_text(shapes[value.name]) if value.name in shapes else "")
    hidden = len(graph.node) - len(operators)
    if hidden:
        result.notes.append(f"{hidden} constant operators (Constant, Identity of a weight) are shown inside the "
                            "operators that read them")
    return result
