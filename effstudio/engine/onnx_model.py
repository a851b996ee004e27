"""ONNX files opened safely: external data that stays inside the model's folder, metadata that is JSON.

An ONNX model may keep tensors in other files, named by a location relative to
the model. A file from elsewhere can name ``/etc/shadow``, ``../../secret``, a
symlink out of its folder, a missing file, or bytes beyond a file's end; the
ONNX libraries then read what they should not, or fail with a traceback. So
every reader of ONNX files in effstudio (inspect, compare, the compression
jobs) opens them through :func:`load_checked`: the protobuf is parsed without
its external data, every tensor that names external data is checked (relative
location, inside the model's folder after resolving symlinks, present, a
regular file, offset and length within its size), and only then may onnx or
onnxruntime read the data. :func:`metadata_json` parses effstudio's JSON
metadata entries with the same bounds as other JSON read from files.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any

from effstudio import read_limits
from effstudio.bounded_parse import loads_json
from effstudio.config import ConfigError
from effstudio.paths import escape_reason

if TYPE_CHECKING:  # onnx is imported where a file is read: it takes half a second
    from onnx import GraphProto, ModelProto, NodeProto, TensorProto


class OnnxFileError(ValueError):
    """An ONNX file that effstudio refuses to read further; the message names the file and the field."""


def load_checked(path: str | Path) -> ModelProto:
    """The ModelProto of ``path``, without external data, after checking every external data reference."""
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError) as err:
        raise OnnxFileError(f"{path.name}: not a valid ONNX model: the protobuf cannot be parsed ({err}); "
                            "the file is damaged, truncated or of another format") from None
    check_external_data(path, model)
    return model


def _tensors_of_graph(graph: GraphProto) -> Iterator[TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from _tensors_of_node(node)


def _tensors_of_node(node: NodeProto) -> Iterator[TensorProto]:
    for attribute in node.attribute:
        if attribute.HasField("t"):
            yield attribute.t
        yield from attribute.tensors
        if attribute.HasField("sparse_tensor"):
            yield attribute.sparse_tensor.values
            yield attribute.sparse_tensor.indices
        if attribute.HasField("g"):
            yield from _tensors_of_graph(attribute.g)
        for graph in attribute.graphs:
            yield from _tensors_of_graph(graph)


def all_tensors(model: ModelProto) -> Iterator[TensorProto]:
    """Every TensorProto of the model: initializers, constants in nodes, subgraphs, functions."""
    yield from _tensors_of_graph(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from _tensors_of_node(node)


def check_external_data(path: Path, model: ModelProto) -> None:
    """OnnxFileError naming the tensor and the location of the first external reference that is refused."""
    from onnx import TensorProto

    folder = path.parent.resolve()
    for tensor in all_tensors(model):
        if not (tensor.HasField("data_location") and tensor.data_location == TensorProto.EXTERNAL):
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        problem = _location_problem(folder, location) or _range_problem(folder / location, info)
        if problem:
            raise OnnxFileError(f"{path.name}: tensor {tensor.name!r} keeps its data in {location!r}, which "
                                f"{problem}; refused, nothing of it was read")


def _location_problem(folder: Path, location: str) -> str | None:
    if not location:
        return "is no file name"
    if "\x00" in location:
        return "holds a NUL character"
    if PurePosixPath(location).is_absolute() or PureWindowsPath(location).anchor:
        return "is an absolute path; external data must lie beside the model"
    if ".." in PurePosixPath(location.replace("\\", "/")).parts:
        return "climbs out of the model's folder (..)"
    target = folder / location
    if not target.exists() and not target.is_symlink():
        return "is missing from the model's folder"
    # a symbolic link out (or a loop), or a hard link, which may be a file outside under a name inside
    problem = escape_reason(target, folder)
    if problem is None and not target.is_file():
        return "is not a regular file"
    return problem


def _range_problem(target: Path, info: dict[str, str]) -> str | None:
    try:
        offset = int(info.get("offset") or 0)
        length = int(info["length"]) if info.get("length") else None
    except ValueError:
        return f"has an offset or length that is not a number ({info.get('offset')!r}, {info.get('length')!r})"
    size = target.stat().st_size
    if offset < 0 or (length is not None and length < 0):
        return f"has a negative offset or length ({offset}, {length})"
    end = offset + (length or 0)
    if offset > size or end > size:
        return f"holds {size:,} bytes, but the tensor needs bytes {offset:,}-{end:,}"
    return None


def metadata_json(path: Path, metadata: dict[str, str], key: str) -> dict[str, Any]:
    """The JSON object stored in metadata entry ``key``; OnnxFileError naming the field otherwise."""
    text = metadata[key]
    if len(text) > read_limits.MAX_JSON_BYTES:
        raise OnnxFileError(f"{path.name}: metadata {key!r} holds {len(text):,} characters, more than the "
                            f"{read_limits.MAX_JSON_BYTES:,} effstudio reads (MAX_JSON_BYTES)")
    try:
        value = loads_json(text, source=path, field=key, max_bytes=read_limits.MAX_JSON_BYTES)
    except ConfigError as err:  # not JSON, or nested deeper than any config
        raise OnnxFileError(f"{path.name}: metadata {key!r} is {err.message}") from None
    if not isinstance(value, dict):
        raise OnnxFileError(f"{path.name}: metadata {key!r} is JSON but not an object (it is "
                            f"{type(value).__name__}); it should hold the run config")
    return value
