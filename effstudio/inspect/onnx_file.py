"""ONNX models: initializers as tensors, and the graph's inputs, outputs, opset and operators.

The protobuf is parsed with ``onnx.load(load_external_data=False)``; nothing in
the graph is run. A model whose external data lies outside its folder, is
missing or too short is refused before anything is read
(:func:`effstudio.engine.onnx_model.load_checked`); initializers kept in
external data files are memory-mapped from those files.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from effstudio.engine.onnx_model import OnnxFileError, load_checked, metadata_json
from effstudio.inspect.dtypes import STORAGE
from effstudio.inspect.tensors import Inspected, InspectError, TensorRef

if TYPE_CHECKING:  # onnx is imported where a file is read (see effstudio.engine.onnx_model)
    from onnx import GraphProto, ModelProto, TensorProto, ValueInfoProto


def _fail(path: Path, reason: str) -> InspectError:
    return InspectError(f"{path.name}: {reason}")


def _onnx_types() -> dict[int, str]:
    from onnx import TensorProto as T

    return {T.FLOAT: "float32", T.DOUBLE: "float64", T.FLOAT16: "float16", T.BFLOAT16: "bfloat16",
            T.FLOAT8E4M3FN: "float8_e4m3fn", T.FLOAT8E5M2: "float8_e5m2", T.INT64: "int64", T.INT32: "int32",
            T.INT16: "int16", T.INT8: "int8", T.UINT64: "uint64", T.UINT32: "uint32", T.UINT16: "uint16",
            T.UINT8: "uint8", T.BOOL: "bool", T.COMPLEX64: "complex64", T.COMPLEX128: "complex128"}


def _type_name(elem_type: int) -> str:
    from onnx import TensorProto

    try:
        return TensorProto.DataType.Name(elem_type).lower()
    except ValueError:
        return f"type {elem_type}"


def _value_info(value: ValueInfoProto) -> dict[str, Any]:
    tensor_type = value.type.tensor_type
    shape: list[int | str] = []
    for dim in tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            shape.append(int(dim.dim_value))
        else:
            shape.append(dim.dim_param or "?")
    return {"name": value.name, "dtype": _type_name(tensor_type.elem_type), "shape": shape}


def _count_ops(graph: GraphProto, counts: Counter) -> None:
    from onnx import AttributeProto

    for node in graph.node:
        domain = f"{node.domain}." if node.domain and node.domain != "ai.onnx" else ""
        counts[domain + node.op_type] += 1
        for attribute in node.attribute:
            if attribute.type == AttributeProto.GRAPH:
                _count_ops(attribute.g, counts)
            elif attribute.type == AttributeProto.GRAPHS:
                for sub in attribute.graphs:
                    _count_ops(sub, counts)


def graph_info(model: ModelProto) -> dict[str, Any]:
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    counts: Counter = Counter()
    _count_ops(graph, counts)
    producer = " ".join(p for p in (model.producer_name, model.producer_version) if p)
    return {
        "inputs": [_value_info(v) for v in graph.input if v.name not in initializers],
        "outputs": [_value_info(v) for v in graph.output],
        "opset": {(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import},
        "operators": dict(counts.most_common()),
        "nodes": sum(counts.values()),
        "ir_version": int(model.ir_version),
        "producer": producer,
    }


def _external(path: Path, init: TensorProto, dtype: str, shape: tuple[int, ...]):
    """A loader of external data whose location and range load_checked has accepted."""
    info = {entry.key: entry.value for entry in init.external_data}
    offset, length = int(info.get("offset") or 0), info.get("length")
    target = (path.parent / info["location"]).resolve()
    storage = STORAGE[dtype]
    nbytes = math.prod(shape) * storage.itemsize

    def load() -> np.ndarray:
        if length and int(length) != nbytes:
            raise InspectError(f"{path.name}: tensor {init.name!r} claims {length} bytes of external data, "
                               f"its shape needs {nbytes:,}")
        if not target.is_file() or target.stat().st_size < offset + nbytes:
            raise InspectError(f"{path.name}: the external data file {info['location']!r} of tensor {init.name!r} "
                               f"is missing or shorter than the {offset + nbytes:,} bytes the tensor needs")
        if nbytes == 0:
            return np.empty(shape, dtype=storage)
        return np.memmap(target, dtype=storage, mode="r", offset=offset, shape=shape)

    return load


def _embedded(init: TensorProto, dtype: str, shape: tuple[int, ...]):
    storage = STORAGE[dtype]

    def load() -> np.ndarray:
        if init.raw_data:
            raw = init.raw_data
            if len(raw) != math.prod(shape) * storage.itemsize:
                raise InspectError(f"tensor {init.name!r} holds {len(raw):,} bytes, its shape needs "
                                   f"{math.prod(shape) * storage.itemsize:,}")
            return np.frombuffer(raw, dtype=storage).reshape(shape)
        from onnx import numpy_helper

        array = numpy_helper.to_array(init)
        if array.dtype.itemsize == storage.itemsize:
            return np.ascontiguousarray(array).view(storage).reshape(shape)
        if dtype == "bfloat16":  # an older onnx hands bfloat16 out as float32
            return (np.asarray(array, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16).reshape(shape)
        return np.asarray(array).astype(storage).reshape(shape)

    return load


def read_onnx(path: Path) -> Inspected:
    size = path.stat().st_size
    if size == 0:
        raise _fail(path, "the file is empty (0 bytes)")
    try:
        model = load_checked(path)
    except OnnxFileError as err:
        raise InspectError(str(err)) from None
    if model.ir_version <= 0 or (not model.graph.node and not model.graph.initializer):
        raise _fail(path, "does not look like an ONNX model (no IR version, no graph)")
    types = _onnx_types()
    from onnx import TensorProto

    tensors: list[TensorRef] = []
    skipped = 0
    external = 0
    for init in model.graph.initializer:
        dtype = types.get(init.data_type)
        if dtype is None:
            skipped += 1
            continue
        shape = tuple(int(d) for d in init.dims)
        if init.data_location == TensorProto.EXTERNAL:
            external += 1
            tensors.append(TensorRef(init.name, shape, dtype, _external(path, init, dtype, shape), mapped=True))
        else:
            tensors.append(TensorRef(init.name, shape, dtype, _embedded(init, dtype, shape)))
    notes = []
    if skipped:
        notes.append(f"skipped {skipped} initializers of types effstudio cannot read")
    if external:
        notes.append(f"{external} initializers are kept in external data files beside the model")
    metadata = {prop.key: prop.value for prop in model.metadata_props}
    if "config" in metadata and "effstudio.format" in metadata:
        try:
            metadata_json(path, metadata, "config")
        except OnnxFileError as err:
            notes.append(f"effstudio metadata cannot be used: {err}")
    return Inspected(path, "onnx", size, tensors, metadata=metadata, graph=graph_info(model), notes=notes,
                     files=[path], keepalive=[model])
