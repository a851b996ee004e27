"""Hostile model files for the readers, generated at test time: each ``make_<case>(folder) -> Path``.

Every case is a file a stranger could hand over: a stride-0 tensor of 10**12
elements over one float, a 4 MB .npz member that inflates to 4 GiB, a pickle
that declares 4 GiB, a zip whose benign ``xdata.pkl`` stands before the
malicious ``data.pkl`` that torch loads, safetensors headers with overlapping
offsets, duplicate names or a shape of ``[true, true]``, ONNX files whose
external data lies outside their folder. Pickle payloads create the file
``folder / MARKER`` if they are ever executed; a test asserts it never exists.

``CASES`` lists (name, maker, kind of file) for the matrix over every entry
point; kinds: "checkpoint" (an effstudio safetensors checkpoint, also read by
resume/compare/prune), "pytorch", "npz", "onnx".
"""

from __future__ import annotations

import collections
import io
import json
import os
import pickle
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

MARKER = "PWNED"  # created by a pickle payload that runs: must never exist


# ----------------------------------------------------------------- helpers
def tiny_config() -> Any:
    from effstudio.engine.run_config import RunConfig

    return RunConfig.create("transformer", "copy", {
        "model.d_model": 16, "model.layers": 1, "model.heads": 2, "model.dropout": 0.0,
        "task.train_size": 32, "task.val_size": 16, "task.test_size": 8, "task.min_length": 4,
        "task.max_length": 8, "train.batch_size": 8, "train.steps": 2, "train.device": "cpu"})


def tiny_checkpoint(path: Path) -> Path:
    """A real effstudio checkpoint of a tiny copy-task transformer."""
    from effstudio.engine.build import build_model, build_task
    from effstudio.engine.checkpoint import save_checkpoint

    config = tiny_config()
    torch.manual_seed(0)
    model = build_model(config, build_task(config).spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(path, model, config, step=3)


def split_safetensors(path: Path) -> tuple[dict[str, Any], bytes]:
    data = path.read_bytes()
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8:8 + length]), data[8 + length:]


def write_safetensors(path: Path, header_text: str | bytes, data: bytes) -> Path:
    raw = header_text.encode("utf-8") if isinstance(header_text, str) else header_text
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def _checkpoint_with(folder: Path, name: str, edit: Any) -> Path:
    """A tiny checkpoint whose header ``edit(header) -> header text`` rewrote; the data stays."""
    path = tiny_checkpoint(folder / name)
    header, data = split_safetensors(path)
    return write_safetensors(path, edit(header), data)


def _same_size_pair(header: dict[str, Any]) -> tuple[str, str]:
    """Two tensors with byte ranges of one length, the first earlier in the data."""
    by_size: dict[int, list[str]] = {}
    for name, entry in header.items():
        if name != "__metadata__":
            begin, end = entry["data_offsets"]
            by_size.setdefault(end - begin, []).append(name)
    names = next(group for group in by_size.values() if len(group) >= 2)
    first, second = sorted(names[:2], key=lambda n: header[n]["data_offsets"][0])
    return first, second


def _first_tensor(header: dict[str, Any]) -> str:
    return next(name for name in header if name != "__metadata__")


# --------------------------------------------------------- safetensors cases
def make_st_overlapping_offsets(folder: Path) -> Path:
    """A later tensor's data_offsets point at an earlier tensor's bytes."""
    def edit(header):
        first, second = _same_size_pair(header)
        header[second]["data_offsets"] = list(header[first]["data_offsets"])
        return json.dumps(header)

    return _checkpoint_with(folder, "overlap.safetensors", edit)


def make_st_duplicate_names(folder: Path) -> Path:
    """One tensor name twice in the header (JSON parsers keep the last one silently)."""
    def edit(header):
        name = _first_tensor(header)
        text = json.dumps(header)
        return text[:-1] + f", {json.dumps(name)}: {json.dumps(header[name])}}}"

    return _checkpoint_with(folder, "duplicate.safetensors", edit)


def make_st_shape_true(folder: Path) -> Path:
    """A shape of [true, true]: Python counts True as 1, the format has no booleans there."""
    def edit(header):
        header[_first_tensor(header)]["shape"] = [True, True]
        return json.dumps(header)

    return _checkpoint_with(folder, "shape_true.safetensors", edit)


def make_st_negative_dim(folder: Path) -> Path:
    def edit(header):
        name = _first_tensor(header)
        header[name]["shape"] = [-1, *header[name]["shape"][1:]]
        return json.dumps(header)

    return _checkpoint_with(folder, "negative_dim.safetensors", edit)


def make_st_count_disagrees(folder: Path) -> Path:
    """A shape whose element count is twice what the byte range holds."""
    def edit(header):
        name = _first_tensor(header)
        header[name]["shape"] = [2 * header[name]["shape"][0], *header[name]["shape"][1:]]
        return json.dumps(header)

    return _checkpoint_with(folder, "count.safetensors", edit)


def make_st_header_not_object(folder: Path) -> Path:
    """A header that is valid JSON, but a list."""
    path = tiny_checkpoint(folder / "list_header.safetensors")
    header, data = split_safetensors(path)
    return write_safetensors(path, json.dumps([header]), data)


def make_st_header_too_large(folder: Path) -> Path:
    """The length field claims a 2 GB header."""
    path = tiny_checkpoint(folder / "huge_header.safetensors")
    data = bytearray(path.read_bytes())
    data[:8] = struct.pack("<Q", 2_000_000_000)
    path.write_bytes(bytes(data))
    return path


def make_st_deep_header(folder: Path) -> Path:
    """A tensor entry carries an extra field nested 100,000 deep (a recursive parser overflows)."""
    def edit(header):
        name = _first_tensor(header)
        text = json.dumps(header)
        entry = json.dumps(header[name])
        deep = entry[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
        return text.replace(entry, deep, 1)

    return _checkpoint_with(folder, "deep.safetensors", edit)


# ------------------------------------------------------------ PyTorch cases
def make_pt_stride0_view(folder: Path) -> Path:
    """torch.save of a 10**12-element view (stride 0) of one float: a 1 KB file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "stride0.pt"
    torch.save({"weight": torch.ones(1).expand(10**12)}, path)
    return path


def make_pt_repeated_rows(folder: Path) -> Path:
    """A 10**9 x 4 view whose rows all share four stored floats (strides (0, 1))."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "repeated_rows.pt"
    torch.save({"weight": torch.arange(4.0).as_strided((10**9, 4), (0, 1))}, path)
    return path


class _StorageRef:
    def __init__(self, key: str, numel: int):
        self.key, self.numel = key, numel


class _Rebuild:
    """Pickles as torch._utils._rebuild_tensor_v2(storage, offset, size, stride, False, OrderedDict())."""

    def __init__(self, storage: _StorageRef, offset: int, size: tuple[int, ...], stride: tuple[int, ...]):
        self.args = (storage, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, self.args


class _TorchPickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, _StorageRef):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None


def torch_pickle(obj: Any) -> bytes:
    buffer = io.BytesIO()
    _TorchPickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def write_torch_zip(path: Path, members: list[tuple[str, bytes]], compress_pickles: bool = False) -> Path:
    """A PyTorch-style zip with exactly these members, in this order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members:
            method = zipfile.ZIP_DEFLATED if compress_pickles and name.endswith(".pkl") else zipfile.ZIP_STORED
            archive.writestr(name, data, compress_type=method)
    return path


def _torch_members(root: str, pickled: bytes, storage: bytes) -> list[tuple[str, bytes]]:
    return [(f"{root}/data.pkl", pickled), (f"{root}/byteorder", b"little"), (f"{root}/data/0", storage),
            (f"{root}/version", b"3\n")]


def make_pt_view_beyond_storage(folder: Path) -> Path:
    """A tensor of 1000 elements (offset 5) over a storage of one float."""
    pickled = torch_pickle({"weight": _Rebuild(_StorageRef("0", 1), 5, (1000,), (1,))})
    return write_torch_zip(folder / "beyond.pt", _torch_members("beyond", pickled, struct.pack("<f", 1.0)))


class _RunsShell:
    """Unpickling this calls os.system to create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def make_pt_misdirected_pickle(folder: Path) -> Path:
    """A benign a/xdata.pkl before the a/data.pkl that torch loads, which calls os.system."""
    marker = folder / MARKER
    benign = torch_pickle({"weight": _Rebuild(_StorageRef("0", 1), 0, (1,), (1,))})
    evil = pickle.dumps({"weight": _RunsShell(marker)}, protocol=2)
    members = [("a/xdata.pkl", benign), *_torch_members("a", evil, struct.pack("<f", 1.0))]
    return write_torch_zip(folder / "misdirected.pt", members)


def make_pt_pickle_in_other_folder(folder: Path) -> Path:
    """b/data.pkl (benign) listed before a/data.pkl (malicious), but the first entry puts torch's root at a/."""
    marker = folder / MARKER
    benign = torch_pickle({"weight": _Rebuild(_StorageRef("0", 1), 0, (1,), (1,))})
    evil = pickle.dumps({"weight": _RunsShell(marker)}, protocol=2)
    members = [("a/version", b"3\n"), ("b/data.pkl", benign), ("a/data.pkl", evil), ("a/byteorder", b"little"),
               ("a/data/0", struct.pack("<f", 1.0))]
    return write_torch_zip(folder / "other_folder.pt", members)


def make_pt_python2_names(folder: Path) -> Path:
    """A protocol 2 pickle naming commands.getoutput and __builtin__.eval (Python 3: subprocess, builtins)."""
    folder.mkdir(parents=True, exist_ok=True)
    command = f"touch '{folder / MARKER}'".encode()
    body = (b"\x80\x02}q\x00(X\x01\x00\x00\x00a"
            b"ccommands\ngetoutput\nq\x01X" + struct.pack("<I", len(command)) + command + b"\x85R"
            b"X\x01\x00\x00\x00bc__builtin__\neval\nq\x02X\x01\x00\x00\x001\x85Ru.")
    path = folder / "python2.pt"
    path.write_bytes(body)
    return path


def make_pt_memo_hidden_global(folder: Path) -> Path:
    """STACK_GLOBAL whose module and name come from the memo, after decoy strings: still os.system."""
    folder.mkdir(parents=True, exist_ok=True)
    command = f"touch '{folder / MARKER}'".encode()

    def text(value: bytes) -> bytes:
        return b"\x8c" + bytes([len(value)]) + value  # SHORT_BINUNICODE

    body = (b"\x80\x04" + b"}\x94"                       # {} memo 0
            + text(b"os") + b"\x94" + text(b"system") + b"\x94"  # memo 1, 2
            + b"00"                                    # POP POP
            + text(b"collections") + text(b"OrderedDict") + b"00"  # decoys, popped
            + b"h\x01h\x02\x93"                        # BINGET 1, BINGET 2, STACK_GLOBAL
            + text(command) + b"\x85R"                 # (command,) REDUCE
            + b"0.")                                   # POP the result, STOP with the dict
    path = folder / "memo.pt"
    path.write_bytes(body)
    return path


def make_pt_pickle_declares_4gib(folder: Path) -> Path:
    """A zip checkpoint whose deflated data.pkl declares 4 GiB inflated (in both zip headers)."""
    path = folder / "big_pickle.pt"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"weight": torch.ones(3)}, path)
    with zipfile.ZipFile(path) as archive:
        members = [(info.filename, archive.read(info)) for info in archive.infolist()]
    write_torch_zip(path, members, compress_pickles=True)
    return declare_size(path, "big_pickle/data.pkl", 0xFFFF_FF00)


def declare_size(path: Path, member: str, size: int) -> Path:
    """Rewrite the inflated size a zip declares for ``member`` (local header and central directory)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    struct.pack_into("<I", data, info.header_offset + 22, size)
    name = member.encode()
    central = data.find(b"PK\x01\x02")
    while bytes(data[central + 46:central + 46 + struct.unpack_from("<H", data, central + 28)[0]]) != name:
        central = data.find(b"PK\x01\x02", central + 4)
    struct.pack_into("<I", data, central + 24, size)
    path.write_bytes(bytes(data))
    return path


# --------------------------------------------------------------- NumPy cases
def _zip_of_one(path: Path, name: str, compressed: bytes, inflated_size: int, crc: int) -> Path:
    """A zip archive of one deflated member, written field by field (no zip64: sizes below 4 GiB)."""
    encoded = name.encode()
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 8, 0, 0x21, crc, len(compressed), inflated_size,
                        len(encoded), 0) + encoded
    central = struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 8, 0, 0x21, crc, len(compressed),
                          inflated_size, len(encoded), 0, 0, 0, 0, 0, 0) + encoded
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, 1, 1, len(central), len(local) + len(compressed), 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(local + compressed + central + end)
    return path


def make_npz_bomb_4gib(folder: Path) -> Path:
    """A 4 MB .npz member that really inflates to 4 GiB of zeros (its CRC is not computed: nobody gets there)."""
    chunk = 16 << 20
    chunks = 255
    tail = chunk - 256
    elements = (chunks * chunk + tail) // 4
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (elements,)})
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = deflate.compress(header.getvalue()) + deflate.flush(zlib.Z_FULL_FLUSH)
    zeros = deflate.compress(bytes(chunk)) + deflate.flush(zlib.Z_FULL_FLUSH)  # the same bytes every time
    last = deflate.compress(bytes(tail)) + deflate.flush()
    inflated = len(header.getvalue()) + chunks * chunk + tail
    return _zip_of_one(folder / "bomb.npz", "weights.npy", head + zeros * chunks + last, inflated, 0)


def make_npz_header_disagrees(folder: Path) -> Path:
    """An .npy header inside the .npz that claims 10**12 floats in a member of a few bytes."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
    payload = header.getvalue() + bytes(16)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    compressed = deflate.compress(payload) + deflate.flush()
    return _zip_of_one(folder / "liar.npz", "weights.npy", compressed, len(payload), zlib.crc32(payload))


# ---------------------------------------------------------------- ONNX cases
def onnx_with_metadata(path: Path, config_text: str | None = None, external: bool = False) -> Path:
    """A small ONNX model carrying effstudio metadata (a run config, or the given text)."""
    import onnx

    from tests.inspect.files import onnx_model

    path.parent.mkdir(parents=True, exist_ok=True)
    onnx_model(path, external=external)
    model = onnx.load(str(path), load_external_data=False)
    entries = {"effstudio.format": "1", "task": "copy", "model_type": "transformer",
               "config": json.dumps(tiny_config().to_dict()) if config_text is None else config_text}
    for key, value in entries.items():
        item = model.metadata_props.add()
        item.key, item.value = key, value
    onnx.save_model(model, str(path))
    return path


def _point_external(path: Path, location: str, offset: int | None = None) -> Path:
    """Make every external tensor of ``path`` name ``location`` (and ``offset``)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for init in model.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location":
                entry.value = location
            if entry.key == "offset" and offset is not None:
                entry.value = str(offset)
    onnx.save_model(model, str(path))
    return path


def _external_model(folder: Path) -> Path:
    path = onnx_with_metadata(folder / "model" / "model.onnx", external=True)
    (folder / "secret.bin").write_bytes((path.parent / "model.onnx.data").read_bytes())
    return path


def make_onnx_external_parent(folder: Path) -> Path:
    return _point_external(_external_model(folder), "../secret.bin")


def make_onnx_external_absolute(folder: Path) -> Path:
    path = _external_model(folder)
    return _point_external(path, str((folder / "secret.bin").resolve()))


def make_onnx_external_symlink(folder: Path) -> Path:
    """The location is a name in the model's folder, but a symlink to a file outside it."""
    path = _external_model(folder)
    (path.parent / "model.onnx.data").unlink()
    (path.parent / "model.onnx.data").symlink_to((folder / "secret.bin").resolve())
    return path


def make_onnx_external_missing(folder: Path) -> Path:
    path = _external_model(folder)
    (path.parent / "model.onnx.data").unlink()
    return path


def make_onnx_external_beyond_end(folder: Path) -> Path:
    """The data file is there, but the tensor's offset lies past its end."""
    path = _external_model(folder)
    return _point_external(path, "model.onnx.data", offset=1 << 20)


def make_onnx_metadata_not_json(folder: Path) -> Path:
    return onnx_with_metadata(folder / "not_json.onnx", config_text="{model: transformer")


def make_onnx_metadata_not_object(folder: Path) -> Path:
    return onnx_with_metadata(folder / "not_object.onnx", config_text="[1, 2, 3]")


CASES = [
    ("st_overlapping_offsets", make_st_overlapping_offsets, "checkpoint"),
    ("st_duplicate_names", make_st_duplicate_names, "checkpoint"),
    ("st_shape_true", make_st_shape_true, "checkpoint"),
    ("st_negative_dim", make_st_negative_dim, "checkpoint"),
    ("st_count_disagrees", make_st_count_disagrees, "checkpoint"),
    ("st_header_not_object", make_st_header_not_object, "checkpoint"),
    ("st_header_too_large", make_st_header_too_large, "checkpoint"),
    ("st_deep_header", make_st_deep_header, "checkpoint"),
    ("pt_stride0_view", make_pt_stride0_view, "pytorch"),
    ("pt_repeated_rows", make_pt_repeated_rows, "pytorch"),
    ("pt_view_beyond_storage", make_pt_view_beyond_storage, "pytorch"),
    ("pt_misdirected_pickle", make_pt_misdirected_pickle, "pytorch"),
    ("pt_pickle_in_other_folder", make_pt_pickle_in_other_folder, "pytorch"),
    ("pt_python2_names", make_pt_python2_names, "pytorch"),
    ("pt_memo_hidden_global", make_pt_memo_hidden_global, "pytorch"),
    ("pt_pickle_declares_4gib", make_pt_pickle_declares_4gib, "pytorch"),
    ("npz_bomb_4gib", make_npz_bomb_4gib, "npz"),
    ("npz_header_disagrees", make_npz_header_disagrees, "npz"),
    ("onnx_external_parent", make_onnx_external_parent, "onnx"),
    ("onnx_external_absolute", make_onnx_external_absolute, "onnx"),
    ("onnx_external_symlink", make_onnx_external_symlink, "onnx"),
    ("onnx_external_missing", make_onnx_external_missing, "onnx"),
    ("onnx_external_beyond_end", make_onnx_external_beyond_end, "onnx"),
    ("onnx_metadata_not_json", make_onnx_metadata_not_json, "onnx"),
    ("onnx_metadata_not_object", make_onnx_metadata_not_object, "onnx"),
]
