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

from tests.hostile.cases import Case, declare_into

CASES: list[Case] = []
case = declare_into(CASES)

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
@case("checkpoint")
def make_st_overlapping_offsets(folder: Path) -> Path:
    """A later tensor's data_offsets point at an earlier tensor's bytes."""
    def edit(header):
        first, second = _same_size_pair(header)
        header[second]["data_offsets"] = list(header[first]["data_offsets"])
        return json.dumps(header)

    return _checkpoint_with(folder, "overlap.safetensors", edit)


@case("checkpoint")
def make_st_duplicate_names(folder: Path) -> Path:
    """One tensor name twice in the header (JSON parsers keep the last one silently)."""
    def edit(header):
        name = _first_tensor(header)
        text = json.dumps(header)
        return text[:-1] + f", {json.dumps(name)}: {json.dumps(header[name])}}}"

    return _checkpoint_with(folder, "duplicate.safetensors", edit)


@case("checkpoint")
def make_st_shape_true(folder: Path) -> Path:
    """A shape of [true, true]: Python counts True as 1, the format has no booleans there."""
    def edit(header):
        header[_first_tensor(header)]["shape"] = [True, True]
        return json.dumps(header)

    return _checkpoint_with(folder, "shape_true.safetensors", edit)


@case("checkpoint")
def make_st_negative_dim(folder: Path) -> Path:
    def edit(header):
        name = _first_tensor(header)
        header[name]["shape"] = [-1, *header[name]["shape"][1:]]
        return json.dumps(header)

    return _checkpoint_with(folder, "negative_dim.safetensors", edit)


@case("checkpoint")
def make_st_count_disagrees(folder: Path) -> Path:
    """A shape whose element count is twice what the byte range holds."""
    def edit(header):
        name = _first_tensor(header)
        header[name]["shape"] = [2 * header[name]["shape"][0], *header[name]["shape"][1:]]
        return json.dumps(header)

    return _checkpoint_with(folder, "count.safetensors", edit)


@case("checkpoint")
def make_st_header_not_object(folder: Path) -> Path:
    """A header that is valid JSON, but a list."""
    path = tiny_checkpoint(folder / "list_header.safetensors")
    header, data = split_safetensors(path)
    return write_safetensors(path, json.dumps([header]), data)


@case("checkpoint")
def make_st_header_too_large(folder: Path) -> Path:
    """The length field claims a 2 GB header."""
    path = tiny_checkpoint(folder / "huge_header.safetensors")
    data = bytearray(path.read_bytes())
    data[:8] = struct.pack("<Q", 2_000_000_000)
    path.write_bytes(bytes(data))
    return path


@case("checkpoint")
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
@case("pytorch")
def make_pt_stride0_view(folder: Path) -> Path:
    """torch.save of a 10**12-element view (stride 0) of one float: a 1 KB file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "stride0.pt"
    torch.save({"weight": torch.ones(1).expand(10**12)}, path)
    return path


@case("pytorch")
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


@case("pytorch")
def make_pt_view_beyond_storage(folder: Path) -> Path:
    """A tensor of 1000 elements (offset 5) over a storage of one float."""
    pickled = torch_pickle({"weight": _Rebuild(_StorageRef("0", 1), 5, (1000,), (1,))})
    return write_torch_zip(folder / "beyond.pt", _torch_members("beyond", pickled, struct.pack("<f", 1.0)))


@case("pytorch")
def make_pt_storage_larger_than_record(folder: Path) -> Path:
    """A storage that declares 1,000 floats over a record of one: a memory-mapped load read the archive's
    other bytes (its directory) as the tensor's values."""
    pickled = torch_pickle({"weight": _Rebuild(_StorageRef("0", 1000), 0, (64,), (1,))})
    return write_torch_zip(folder / "long_storage.pt", _torch_members("long_storage", pickled, struct.pack("<f", 1.0)))


class _RunsShell:
    """Unpickling this calls os.system to create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


@case("pytorch")
def make_pt_misdirected_pickle(folder: Path) -> Path:
    """A benign a/xdata.pkl before the a/data.pkl that torch loads, which calls os.system."""
    marker = folder / MARKER
    benign = torch_pickle({"weight": _Rebuild(_StorageRef("0", 1), 0, (1,), (1,))})
    evil = pickle.dumps({"weight": _RunsShell(marker)}, protocol=2)
    members = [("a/xdata.pkl", benign), *_torch_members("a", evil, struct.pack("<f", 1.0))]
    return write_torch_zip(folder / "misdirected.pt", members)


@case("pytorch")
def make_pt_pickle_in_other_folder(folder: Path) -> Path:
    """b/data.pkl (benign) listed before a/data.pkl (malicious), but the first entry puts torch's root at a/."""
    marker = folder / MARKER
    benign = torch_pickle({"weight": _Rebuild(_StorageRef("0", 1), 0, (1,), (1,))})
    evil = pickle.dumps({"weight": _RunsShell(marker)}, protocol=2)
    members = [("a/version", b"3\n"), ("b/data.pkl", benign), ("a/data.pkl", evil), ("a/byteorder", b"little"),
               ("a/data/0", struct.pack("<f", 1.0))]
    return write_torch_zip(folder / "other_folder.pt", members)


@case("pytorch")
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


@case("pytorch")
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


@case("pytorch")
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


@case("npz")
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


@case("npz")
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


@case("onnx")
def make_onnx_external_parent(folder: Path) -> Path:
    return _point_external(_external_model(folder), "../secret.bin")


@case("onnx")
def make_onnx_external_absolute(folder: Path) -> Path:
    path = _external_model(folder)
    return _point_external(path, str((folder / "secret.bin").resolve()))


@case("onnx")
def make_onnx_external_symlink(folder: Path) -> Path:
    """The location is a name in the model's folder, but a symlink to a file outside it."""
    path = _external_model(folder)
    (path.parent / "model.onnx.data").unlink()
    (path.parent / "model.onnx.data").symlink_to((folder / "secret.bin").resolve())
    return path


@case("onnx")
def make_onnx_external_missing(folder: Path) -> Path:
    path = _external_model(folder)
    (path.parent / "model.onnx.data").unlink()
    return path


@case("onnx")
def make_onnx_external_beyond_end(folder: Path) -> Path:
    """The data file is there, but the tensor's offset lies past its end."""
    path = _external_model(folder)
    return _point_external(path, "model.onnx.data", offset=1 << 20)


@case("onnx")
def make_onnx_metadata_not_json(folder: Path) -> Path:
    return onnx_with_metadata(folder / "not_json.onnx", config_text="{model: transformer")


@case("onnx")
def make_onnx_metadata_not_object(folder: Path) -> Path:
    return onnx_with_metadata(folder / "not_object.onnx", config_text="[1, 2, 3]")


# ------------------------------------------ pickles that call what they may only name
def _pickle_text(value: str) -> bytes:
    data = value.encode()
    return b"X" + struct.pack("<I", len(data)) + data  # BINUNICODE


def _global(module: str, name: str) -> bytes:
    return f"c{module}\n{name}\n".encode()  # GLOBAL


def _shell_call(folder: Path) -> bytes:
    """GLOBAL os.system, (command,): pushed, ready for REDUCE; running it creates the marker."""
    return _global("os", "system") + _pickle_text(f"touch '{folder / MARKER}'") + b"\x85"


def _zip_with_pickle(path: Path, body: bytes) -> Path:
    """A PyTorch zip whose data.pkl is ``body`` (a protocol 2 pickle unless it says otherwise)."""
    return write_torch_zip(path, _torch_members(path.stem, body, struct.pack("<f", 1.0)))


@case("pytorch")
def make_pt_calls_tensor_constructor(folder: Path) -> Path:
    """torch.Tensor(2**33) from a 100-byte pickle: PyTorch's safe loader runs it (32 GB it does not hold)."""
    body = b"\x80\x02" + _global("torch", "Tensor") + b"\x8a\x05" + (2**33).to_bytes(5, "little") + b"\x85R."
    return _zip_with_pickle(folder / "tensor_call.pt", body)


@case("pytorch")
def make_pt_calls_bytearray(folder: Path) -> Path:
    """bytearray(2**34): PyTorch's safe loader allows it and fills 16 GiB of memory with zeros."""
    body = b"\x80\x02" + _global("builtins", "bytearray") + b"\x8a\x05" + (2**34).to_bytes(5, "little") + b"\x85R."
    return _zip_with_pickle(folder / "bytearray.pt", body)


@case("pytorch")
def make_pt_rebuild_from_type_calls_tensor(folder: Path) -> Path:
    """torch._tensor._rebuild_from_type_v2(torch.Tensor, torch.Tensor, (2**33,), {}): an allowed rebuilder
    that calls its first argument."""
    body = (b"\x80\x02" + _global("torch._tensor", "_rebuild_from_type_v2") + b"(" + _global("torch", "Tensor")
            + _global("torch", "Tensor") + b"\x8a\x05" + (2**33).to_bytes(5, "little") + b"\x85}tR.")
    return _zip_with_pickle(folder / "from_type.pt", body)


@case("pytorch")
def make_pt_newobj_ex_storage(folder: Path) -> Path:
    """NEWOBJ_EX torch.storage.UntypedStorage (2**40,) {}: a storage created, not read from the file."""
    body = (b"\x80\x04" + _global("torch.storage", "UntypedStorage") + b"\x8a\x06" + (2**40).to_bytes(6, "little")
            + b"\x85}\x92.")
    return _zip_with_pickle(folder / "newobj_ex.pt", body)


@case("pytorch")
def make_pt_build_on_a_class(folder: Path) -> Path:
    """BUILD on the class torch.Tensor: its attributes replaced (the __dict__ state of a class)."""
    body = b"\x80\x02" + _global("torch", "Tensor") + b"N}" + _pickle_text("__repr__") + b"Ns\x86b."
    return _zip_with_pickle(folder / "build.pt", body)


@case("pytorch")
def make_pt_getattr_chain(folder: Path) -> Path:
    """getattr(getattr(torch.serialization, "os"), "system")(command): os.system, never named."""
    fetch = _global("builtins", "getattr")
    body = (b"\x80\x02" + fetch + fetch + _global("torch", "serialization") + _pickle_text("os") + b"\x86R"
            + _pickle_text("system") + b"\x86R" + _pickle_text(f"touch '{folder / MARKER}'") + b"\x85R.")
    return _zip_with_pickle(folder / "getattr.pt", body)


@case("pytorch")
def make_pt_attrgetter(folder: Path) -> Path:
    body = (b"\x80\x02" + _global("operator", "attrgetter") + _pickle_text("system") + b"\x85R"
            + _global("os", "path") + b"\x85R.")
    return _zip_with_pickle(folder / "attrgetter.pt", body)


@case("pytorch")
def make_pt_functools_partial(folder: Path) -> Path:
    body = b"\x80\x02" + _global("functools", "partial") + b"(" + _shell_call(folder)[:-1] + b"tR)R."
    return _zip_with_pickle(folder / "partial.pt", body)


@case("pytorch")
def make_pt_copyreg_reconstructor(folder: Path) -> Path:
    body = (b"\x80\x02" + _global("copyreg", "_reconstructor") + b"(" + _global("subprocess", "Popen")
            + _global("builtins", "object") + b"NtR.")
    return _zip_with_pickle(folder / "reconstructor.pt", body)


@case("pytorch")
def make_pt_numpy_reconstruct(folder: Path) -> Path:
    """numpy.core.multiarray._reconstruct(os.system, (0,), b'x'): a numpy helper handed a shell call."""
    body = (b"\x80\x02" + _global("numpy.core.multiarray", "_reconstruct") + b"(" + _global("os", "system")
            + b"K\x00\x85" + _pickle_text("b") + b"tR.")
    return _zip_with_pickle(folder / "np_reconstruct.pt", body)


@case("pytorch")
def make_pt_protocol0_inst(folder: Path) -> Path:
    """A protocol 0 text pickle: INST os system, the call in one opcode."""
    body = f"(S'touch {folder / MARKER}'\nios\nsystem\np0\n.".encode()
    return _zip_with_pickle(folder / "protocol0.pt", body)


@case("pytorch")
def make_pt_uppercase_data_pkl(folder: Path) -> Path:
    """Folders a/ and b/: torch loads a/DATA.PKL (found without regard to case); b/data.pkl is the decoy."""
    benign = torch_pickle({"weight": _Rebuild(_StorageRef("0", 1), 0, (1,), (1,))})
    evil = b"\x80\x02" + _shell_call(folder) + b"R."
    members = [("a/version", b"3\n"), ("b/data.pkl", benign), ("a/DATA.PKL", evil), ("a/byteorder", b"little"),
               ("a/data/0", struct.pack("<f", 1.0))]
    return write_torch_zip(folder / "upper.pt", members)


@case("pytorch")
def make_pt_data_pkl_is_a_folder(folder: Path) -> Path:
    """a/data.pkl/ is a directory entry (holding the real pickle): no pickle by that name."""
    benign = torch_pickle({"weight": _Rebuild(_StorageRef("0", 1), 0, (1,), (1,))})
    members = [("a/data.pkl/", b""), ("a/data.pkl/data.pkl", benign), ("a/data/0", struct.pack("<f", 1.0))]
    return write_torch_zip(folder / "pkl_folder.pt", members)


@case("pytorch")
def make_pt_thousands_of_pickles(folder: Path) -> Path:
    """4,000 stored pickles of 9 kB: each under the pickle limit, 36 MB together (12 s of scanning per reader)."""
    one = pickle.dumps(list(range(3000)), protocol=2)[:9000]
    benign = torch_pickle({"weight": _Rebuild(_StorageRef("0", 1), 0, (1,), (1,))})
    members = [("a/data.pkl", benign), ("a/data/0", struct.pack("<f", 1.0)),
               *((f"a/extra/{i}.pkl", one) for i in range(4000))]
    return write_torch_zip(folder / "many_pickles.pt", members)


# --------------------------------------------- resume's training state beside good weights
def _checkpoint_with_state(folder: Path, state: bytes) -> Path:
    """A resumable tiny checkpoint whose checkpoint.state.pt is ``state``; the weights name its hash, as a
    forger makes them. Returns the state file (inspect reads it); resume reads it beside the weights."""
    import hashlib

    import safetensors.torch

    from effstudio.engine import checkpoint as ckpt
    from tests.hostile.checkpoint_cases import save_pair

    weights = save_pair(folder, 3)
    state_file = ckpt.state_path(weights)
    state_file.write_bytes(state)
    tensors = safetensors.torch.load_file(str(weights))
    with safetensors.safe_open(str(weights), framework="pt") as handle:
        metadata = {**(handle.metadata() or {}), ckpt.STATE_HASH_KEY: hashlib.sha256(state).hexdigest()}
    safetensors.torch.save_file(tensors, str(weights), metadata=metadata)
    return state_file


def _state_zip(members: list[tuple[str, bytes, int]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data, method in members:
            archive.writestr(name, data, compress_type=method)
    return buffer.getvalue()


@case("training_state")
def make_state_deflated_pickle(folder: Path) -> Path:
    """A 40 kB state whose deflated data.pkl inflates to 40 MiB (torch inflates it whole, then unpickles)."""
    big = pickle.dumps({"step": 3, "pad": bytes(40 << 20)}, protocol=4)
    return _checkpoint_with_state(folder, _state_zip([("checkpoint.state/data.pkl", big, zipfile.ZIP_DEFLATED),
                                                      ("checkpoint.state/byteorder", b"little", zipfile.ZIP_STORED)]))


@case("training_state")
def make_state_calls_bytearray(folder: Path) -> Path:
    """The state's pickle is {"step": 3, "pad": bytearray(2**36)}: 64 GiB of zeros from a 300-byte file."""
    body = (b"\x80\x02}(" + _pickle_text("step") + b"K\x03" + _pickle_text("pad") + _global("builtins", "bytearray")
            + b"\x8a\x05" + (2**36).to_bytes(5, "little") + b"\x85Ru.")
    return _checkpoint_with_state(folder, _state_zip([("checkpoint.state/data.pkl", body, zipfile.ZIP_STORED)]))


@case("training_state")
def make_state_runs_shell(folder: Path) -> Path:
    body = b"\x80\x02}(" + _pickle_text("step") + b"K\x03" + _pickle_text("x") + _shell_call(folder) + b"Ru."
    return _checkpoint_with_state(folder, _state_zip([("checkpoint.state/data.pkl", body, zipfile.ZIP_STORED)]))


@case("training_state")
def make_state_legacy_protocol0(folder: Path) -> Path:
    """A legacy (not zip) state file: a protocol 0 text pickle whose INST runs a shell."""
    return _checkpoint_with_state(folder, f"(S'touch {folder / MARKER}'\nios\nsystem\np0\n.".encode())


@case("training_state")
def make_state_storage_declares_10e12(folder: Path) -> Path:
    """The state's optimizer holds a tensor over a storage that declares 10**12 bytes; 4 are stored."""
    body = torch_pickle({"step": 3, "optimizer": {"m": _Rebuild(_StorageRef("0", 250_000_000_000), 0, (4,), (1,))}})
    return _checkpoint_with_state(folder, _state_zip([("checkpoint.state/data.pkl", body, zipfile.ZIP_STORED),
                                                      ("checkpoint.state/data/0", bytes(4), zipfile.ZIP_STORED),
                                                      ("checkpoint.state/version", b"3\n", zipfile.ZIP_STORED)]))


@case("training_state")
def make_state_storage_zip_bomb(folder: Path) -> Path:
    """A deflated storage member that inflates 4 MB to 1.5 GiB (torch inflates a storage record whole)."""
    numel = 3 << 28
    body = torch_pickle({"step": 3, "optimizer": {"m": _Rebuild(_StorageRef("0", numel), 0, (numel,), (1,))}})
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = deflate.compress(bytes(16 << 20)) + deflate.flush(zlib.Z_FULL_FLUSH)
    compressed = chunk * (4 * numel // (16 << 20)) + deflate.flush()
    bomb = _zip_of_one(folder / "bomb.zip", "checkpoint.state/data/0", compressed, 4 * numel, 0).read_bytes()
    (folder / "bomb.zip").unlink()
    with zipfile.ZipFile(io.BytesIO(bomb)) as archive:
        info = archive.infolist()[0]
    pickled = _state_zip([("checkpoint.state/data.pkl", body, zipfile.ZIP_STORED)])
    return _checkpoint_with_state(folder, _join_zips(pickled, bomb, info))


def _join_zips(first: bytes, second: bytes, extra: zipfile.ZipInfo) -> bytes:
    """The members of zip ``first`` followed by the one raw member of zip ``second`` (described by ``extra``)."""
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        infos = archive.infolist()
    central_at = struct.unpack_from("<I", first, len(first) - 6)[0]
    second_central_at = struct.unpack_from("<I", second, len(second) - 6)[0]
    body = first[:central_at] + second[:second_central_at]
    central = first[central_at:len(first) - 22]
    entry = bytearray(second[second_central_at:len(second) - 22])
    struct.pack_into("<I", entry, 42, central_at)  # the member now starts after the first zip's members
    central += bytes(entry)
    count = len(infos) + 1
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count, count, len(central), len(body), 0)
    return body + central + end


# -------------------------------------------------- safetensors, .npy and .npz
@case("checkpoint")
def make_st_million_empty_tensors(folder: Path) -> Path:
    """250,000 tensors of shape [0] (a 17 MB header): every reader spent ~15 s checking and showing them."""
    entry = '{"dtype":"F32","shape":[0],"data_offsets":[0,0]}'
    text = "{" + ",".join(f'"t{i}":{entry}' for i in range(250_000)) + "}"
    folder.mkdir(parents=True, exist_ok=True)
    return write_safetensors(folder / "empty_tensors.safetensors", text, b"")


def _npy(path: Path, header: str, data: bytes = bytes(64)) -> Path:
    text = header.encode()
    text += b" " * ((64 - (10 + len(text) + 1) % 64) % 64) + b"\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + data)
    return path


@case("npy")
def make_npy_negative_shape(folder: Path) -> Path:
    """A shape of (-4, -4): numpy's header reader accepts it, and its product is 16."""
    return _npy(folder / "negative.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (-4, -4), }")


@case("npz")
def make_npz_pickled_member(folder: Path) -> Path:
    """An .npz whose object array is a pickle that runs a shell (np.load(allow_pickle=True) would)."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    payload = header.getvalue() + b"\x80\x02" + _shell_call(folder) + b"R."
    path = folder / "pickled.npz"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil.npy", payload)
    return path


def _stored_zip(path: Path, members: list[tuple[str, bytes]], directory: list[tuple[str, int, int]]) -> Path:
    """A zip whose local members are ``members`` (stored) and whose central directory lists ``directory``:
    (name, index of the local member it points at, stored size it declares), written field by field."""
    body, offsets = b"", []
    for name, data in members:
        offsets.append(len(body))
        encoded = name.encode()
        body += struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0x21, zlib.crc32(data), len(data),
                            len(data), len(encoded), 0) + encoded + data
    central = b""
    for name, index, size in directory:
        encoded = name.encode()
        crc = zlib.crc32(body[offsets[index] + 30 + len(encoded):][:size])
        central += struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 0, 0, 0x21, crc, size, size,
                               len(encoded), 0, 0, 0, 0, 0, offsets[index]) + encoded
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(directory), len(directory), len(central), len(body), 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body + central + end)
    return path


def _npy_bytes(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, values)
    return buffer.getvalue()


@case("npz")
def make_npz_one_member_listed_500_times(folder: Path) -> Path:
    """500 directory entries for one stored 1 MB array: a 1 MB file read as 500 MB (1 GB as 500 GB)."""
    data = _npy_bytes(np.ones(1 << 18, dtype=np.float32))
    return _stored_zip(folder / "repeated.npz", [("w.npy", data)], [("w.npy", 0, len(data))] * 500)


@case("npz")
def make_npz_overlapping_members(folder: Path) -> Path:
    """The first array's stored bytes run on over the second member (its header and data): read twice."""
    second = _npy_bytes(np.ones(1024, dtype=np.float32))
    second_span = 30 + len("b.npy") + len(second)  # local header, name, data
    count = (4096 + second_span) // 4  # the first array: 4096 bytes of its own, then the second member's
    header = _npy_bytes(np.ones(count, dtype=np.float32))[:-4 * count]
    return _stored_zip(folder / "overlap.npz", [("a.npy", header + bytes(4096)), ("b.npy", second)],
                       [("a.npy", 0, len(header) + 4 * count), ("b.npy", 1, len(second))])


# ------------------------------------------------- files that a folder gives
def _outside(folder: Path) -> Path:
    """A tiny checkpoint outside the model's folder, whose tensor names must never be shown."""
    outside = folder / "outside"
    outside.mkdir(parents=True, exist_ok=True)
    tiny_checkpoint(outside / "secret.safetensors")
    return outside / "secret.safetensors"


@case("model_folder")
def make_folder_weights_link_out(folder: Path) -> Path:
    """A Hugging Face style folder whose model.safetensors is a symlink to a file outside it."""
    model = folder / "model"
    model.mkdir(parents=True)
    (model / "model.safetensors").symlink_to(_outside(folder).resolve())
    return model


@case("model_folder")
def make_folder_weights_hard_link(folder: Path) -> Path:
    model = folder / "model"
    model.mkdir(parents=True)
    os.link(_outside(folder), model / "model.safetensors")
    return model


def _sharded(folder: Path, index: str, shard: str) -> Path:
    model = folder / "model"
    model.mkdir(parents=True, exist_ok=True)
    (model / index).write_text(json.dumps({"metadata": {}, "weight_map": {"embed.weight": shard}}))
    return model


@case("model_folder")
def make_folder_index_parent(folder: Path) -> Path:
    _outside(folder)
    return _sharded(folder, "model.safetensors.index.json", "../outside/secret.safetensors")


@case("model_folder")
def make_folder_index_absolute(folder: Path) -> Path:
    return _sharded(folder, "model.safetensors.index.json", str(_outside(folder).resolve()))


@case("model_folder")
def make_folder_index_shard_link_out(folder: Path) -> Path:
    model = _sharded(folder, "model.safetensors.index.json", "model-00001-of-00001.safetensors")
    (model / "model-00001-of-00001.safetensors").symlink_to(_outside(folder).resolve())
    return model


@case("model_folder")
def make_folder_bin_index_parent(folder: Path) -> Path:
    _outside(folder)
    return _sharded(folder, "pytorch_model.bin.index.json", "../outside/secret.safetensors")


@case("model_folder")
def make_folder_index_is_a_link_out(folder: Path) -> Path:
    """The index itself is a symlink to an index outside, which names a shard beside it."""
    secret = _outside(folder)
    (secret.parent / "index.json").write_text(json.dumps({"weight_map": {"embed.weight": secret.name}}))
    model = folder / "model"
    model.mkdir(parents=True)
    (model / "model.safetensors.index.json").symlink_to((secret.parent / "index.json").resolve())
    return model


@case("onnx")
def make_onnx_external_hard_link(folder: Path) -> Path:
    """The data file is in the model's folder, but as a hard link of a file outside it."""
    path = _external_model(folder)
    (path.parent / "model.onnx.data").unlink()
    os.link(folder / "secret.bin", path.parent / "model.onnx.data")
    return path


@case("onnx")
def make_onnx_external_backslashes(folder: Path) -> Path:
    """A Windows-style location, ..\\secret.bin: a path that climbs out, whatever the separator."""
    return _point_external(_external_model(folder), "..\\secret.bin")
