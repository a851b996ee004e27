"""A fuzzer of safetensors headers: every mutated file is either read, or refused with the project's error and
one line; the inspector and checkpoint loading (read_info) always give the same verdict and the same message.

The budget is fixed and the run derandomized, so CI stays fast (a few seconds) and repeatable.
"""

from __future__ import annotations

import json
import math
import struct
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from effstudio.engine.checkpoint import CheckpointError, read_info
from effstudio.inspect import InspectError, open_model
from effstudio.inspect.loader import sniff
from effstudio.inspect.stats import all_stats
from tests.hostile import reader_cases

BYTES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I64": 8, "I32": 4, "I8": 1, "U8": 1, "BOOL": 1}
NAME = st.text(alphabet="abcxyz._0123456789", min_size=1, max_size=10)
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 2**65) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=4) | st.sampled_from(["\ud800", "x\udfff"]),  # lone surrogates: JSON escapes them
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=2),
    max_leaves=6)


@pytest.fixture(scope="module")
def effstudio_metadata(tmp_path_factory) -> dict[str, str]:
    """The metadata of a real checkpoint, so that read_info accepts what the header check accepts."""
    import os

    os.environ.setdefault("EFFSTUDIO_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    path = reader_cases.tiny_checkpoint(tmp_path_factory.mktemp("fuzz") / "model.safetensors")
    return reader_cases.split_safetensors(path)[0]["__metadata__"]


@st.composite
def valid_files(draw) -> tuple[dict[str, Any], bytes]:
    """A well-formed header (tensors laid out in a random order) and its data."""
    names = draw(st.lists(NAME.filter(lambda n: n != "__metadata__"), max_size=4, unique=True))
    entries = {name: (draw(st.sampled_from(sorted(BYTES))), draw(st.lists(st.integers(0, 3), max_size=3)))
               for name in names}
    header: dict[str, Any] = {}
    offset = 0
    for name in draw(st.permutations(names)):
        dtype, shape = entries[name]
        size = math.prod(shape) * BYTES[dtype]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    return header, bytes(range(256)) * (offset // 256) + bytes(range(offset % 256))


def _tensor_names(header: dict[str, Any]) -> list[str]:
    return [name for name in header if name != "__metadata__"]


@st.composite
def mutated(draw, metadata: dict[str, str]) -> tuple[bytes, bytes]:
    """(header bytes with its length field, data) after one mutation of a valid file."""
    header, data = draw(valid_files())
    header = {"__metadata__": dict(metadata), **header}
    names = _tensor_names(header)
    kind = draw(st.sampled_from(["none", "shape", "dim", "retype", "retype", "offsets", "copy_offsets", "dtype",
                                 "drop_field", "extra_field", "duplicate", "metadata", "top_level", "data_length",
                                 "byte", "length_field", "nesting"]))
    if kind in ("shape", "dim", "retype", "offsets", "copy_offsets", "dtype", "drop_field", "extra_field",
                "duplicate", "nesting") and not names:
        kind = "none"
    name = draw(st.sampled_from(names)) if names else ""
    text: str | None = None
    length: int | None = None
    if kind == "shape":
        header[name]["shape"] = draw(JSON_VALUE)
    elif kind == "dim":
        shape = header[name]["shape"] or [1]
        shape[draw(st.integers(0, len(shape) - 1))] = draw(JSON_VALUE)
        header[name]["shape"] = shape
    elif kind == "retype":  # the same number as another JSON type: Python may take it for the number
        field = draw(st.sampled_from(["shape", "data_offsets"]))
        values = header[name][field] or [1]
        index = draw(st.integers(0, len(values) - 1))
        number = values[index]
        values[index] = draw(st.sampled_from([bool(number), float(number), str(number), [number], -number,
                                              number + 2**64]))
        header[name][field] = values
    elif kind == "offsets":
        header[name]["data_offsets"] = draw(st.lists(st.integers(-2, 2**64 + 2), max_size=3) | JSON_VALUE)
    elif kind == "copy_offsets":
        header[name]["data_offsets"] = list(header[draw(st.sampled_from(names))]["data_offsets"])
    elif kind == "dtype":
        header[name]["dtype"] = draw(st.sampled_from(["F32", "I64", "F8_E4M3", "F4", "C64", "Q4", "f32", ""])
                                     | JSON_VALUE)
    elif kind == "drop_field":
        del header[name][draw(st.sampled_from(["dtype", "shape", "data_offsets"]))]
    elif kind == "extra_field":
        header[name][draw(st.text(max_size=5))] = draw(JSON_VALUE)
    elif kind == "duplicate":
        text = json.dumps(header)[:-1] + f", {json.dumps(name)}: {json.dumps(header[name])}}}"
    elif kind == "metadata":
        header["__metadata__"][draw(st.text(max_size=5).filter(lambda k: k not in metadata))] = draw(JSON_VALUE)
    elif kind == "top_level":
        text = json.dumps(draw(JSON_VALUE.filter(lambda v: not isinstance(v, dict))))
    elif kind == "data_length":
        change = draw(st.integers(-8, 8))
        data = data + bytes(change) if change >= 0 else data[:change]
    elif kind == "nesting":
        depth = draw(st.integers(1, 3000))
        text = json.dumps(header)
        entry = json.dumps(header[name])
        text = text.replace(entry, entry[:-1] + ', "x": ' + "[" * depth + "]" * depth + "}", 1)
    raw = (text if text is not None else json.dumps(header)).encode("utf-8")
    if kind == "byte":  # in the tensors' part: a changed run config is read_info's business, not the header's
        tensors_start = len(json.dumps({"__metadata__": header["__metadata__"]})) - 1
        position = draw(st.integers(tensors_start, len(raw) - 1) | st.just(0))
        raw = raw[:position] + bytes([draw(st.integers(0, 255))]) + raw[position + 1:]
    if kind == "length_field":
        length = draw(st.integers(0, 2**64 - 1) | st.integers(len(raw) - 4, len(raw) + len(data) + 4))
    head = struct.pack("<Q", len(raw) if length is None or length < 0 else length)
    return head + raw, data


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_mutated_headers_are_read_or_refused_alike(data, effstudio_metadata):
    head, body = data.draw(mutated(effstudio_metadata))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "fuzzed.safetensors"
        path.write_bytes(head + body)
        try:
            inspected = open_model(path)
            inspect_verdict = None
        except InspectError as err:
            inspect_verdict = str(err)
        try:
            read_info(path)
            info_verdict = None
        except CheckpointError as err:
            info_verdict = str(err)
        if sniff(path) in ("zip", "npy", "gguf", "hdf5"):  # the length field spells another format's magic
            assert inspect_verdict is not None and info_verdict is not None
            return
        assert inspect_verdict == info_verdict
        if inspect_verdict is not None:
            assert inspect_verdict.startswith("fuzzed.safetensors: ") and "\n" not in inspect_verdict
            return
        import safetensors

        with safetensors.safe_open(str(path), framework="pt") as handle:  # the library agrees: it reads them all
            stored = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - not a dict
        stats = all_stats(inspected)
        shown = {t.name for t in inspected.tensors}
        assert set(stats) == shown <= set(stored)
        if shown != set(stored):  # types the inspector cannot show (F4, F8_E8M0...) are named in a note
            assert any("skipped tensors of types" in note for note in inspected.notes)
        for tensor in inspected.tensors:
            assert tuple(stored[tensor.name].shape) == tensor.shape
            assert not isinstance(stats[tensor.name], str), stats[tensor.name]
        inspected.close()
