"""Open any model file or folder: the format is read from the content, not trusted from the name.

:func:`open_model` sniffs the first bytes (zip, pickle, safetensors header,
.npy magic...) and refuses a file whose extension names another format, so a
``.safetensors`` that is really a zip is reported as such instead of being
half-read. Folders are read as sharded safetensors (an index JSON naming the
shards), Hugging Face style folders (config.json beside the weights) or
effstudio run folders.
"""

from __future__ import annotations

import pickletools
import struct
import zipfile
from pathlib import Path
from typing import Any

from effstudio import read_limits
from effstudio.bounded_parse import loads_json
from effstudio.config import ConfigError
from effstudio.inspect.architecture import describe
from effstudio.inspect.task_data import task_notes
from effstudio.inspect.tensors import Inspected, InspectError, TensorRef
from effstudio.paths import escape_reason

EXTENSIONS = {".safetensors": "safetensors", ".pt": "pytorch", ".pth": "pytorch", ".bin": "pytorch",
              ".ckpt": "pytorch", ".onnx": "onnx", ".npy": "npy", ".npz": "npz"}
INSPECTABLE_SUFFIXES = tuple(EXTENSIONS)
# what the bytes say, in words, for messages
_CONTENT_WORDS = {"zip": "a zip archive", "pickle": "a Python pickle", "safetensors": "a safetensors file",
                  "npy": "a NumPy .npy array", "gguf": "a GGUF model (llama.cpp)", "hdf5": "an HDF5 file (Keras)"}
_SUGGEST = {"zip": ".pt (a PyTorch checkpoint) or .npz", "pickle": ".pt", "safetensors": ".safetensors",
            "npy": ".npy"}


_PICKLE_OPCODES = {opcode.code.encode("latin-1") for opcode in pickletools.opcodes}


def sniff(path: Path) -> str | None:
    """What the first bytes say the file is: zip, pickle, safetensors, npy, gguf, hdf5, or None."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:6] == b"\x93NUMPY":
        return "npy"
    if head[:4] == b"GGUF":
        return "gguf"
    if head[:4] == b"\x89HDF":
        return "hdf5"
    if len(head) >= 10 and head[8:10] in (b"{\"", b"{}", b"{ ", b"{\n"):
        (length,) = struct.unpack("<Q", head[:8])
        if length >= 2:
            return "safetensors"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    return None


def _starts_like_a_pickle(path: Path) -> bool:
    """The first byte is a pickle opcode: a protocol 0 or 1 pickle (text, no PROTO opcode) may start so."""
    with open(path, "rb") as handle:
        return handle.read(1) in _PICKLE_OPCODES


def _fits_length(path: Path, size: int) -> bool:
    """The first 8 bytes, as a safetensors header length, fit the file (a pickle's opcodes never do)."""
    with open(path, "rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8).ljust(8, b"\xff"))
    return 8 + length <= size


def _head_hex(path: Path) -> str:
    with open(path, "rb") as handle:
        return handle.read(8).hex(" ")


def _zip_kind(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except zipfile.BadZipFile as err:
        raise InspectError(f"{path.name}: the zip archive is damaged or truncated ({err})") from None
    if names and all(n.endswith(".npy") for n in names):
        return "npz"
    if any(n.endswith("data.pkl") for n in names):
        return "pytorch"
    raise InspectError(f"{path.name}: a zip archive that is neither a PyTorch checkpoint (no data.pkl) "
                       "nor a NumPy .npz (members other than .npy arrays)")


def _read_file(path: Path) -> Inspected:
    size = path.stat().st_size
    if size == 0:
        raise InspectError(f"{path.name}: the file is empty (0 bytes)")
    expected = EXTENSIONS.get(path.suffix.lower())
    content = sniff(path)
    if content in ("gguf", "hdf5"):
        raise InspectError(f"{path.name}: {_CONTENT_WORDS[content]}; this format is not supported")
    kind = {"safetensors": "safetensors", "npy": "npy", "pickle": "pytorch-legacy"}.get(content or "")
    if expected == "safetensors" and (content is None or (content == "pickle" and _fits_length(path, size))):
        kind = "safetensors"  # a header the sniffer does not recognise: the header check says what is wrong
    if content == "zip":
        kind = _zip_kind(path)
    if kind is None and expected == "pytorch" and _starts_like_a_pickle(path):
        kind = "pytorch-legacy"  # a protocol 0 or 1 pickle has no magic bytes: PyTorch's reader gives the verdict
    if kind is None:
        if expected in (None, "onnx"):
            kind = "onnx"
        else:
            raise InspectError(f"{path.name}: not a {expected} file: its first bytes match no known format "
                               f"({_head_hex(path)}); the file is damaged or of another kind")
    family = "pytorch" if kind.startswith("pytorch") else kind
    if expected is not None and family != expected:
        words = _CONTENT_WORDS.get(content or "", kind)
        raise InspectError(f"{path.name}: the extension says {path.suffix} but the file is {words}. "
                           f"Rename it to {_SUGGEST.get(content or '', 'its real extension')} to inspect it.")
    if kind == "safetensors":
        from effstudio.inspect.safetensors_file import read_safetensors

        return read_safetensors(path)
    if kind.startswith("pytorch"):
        from effstudio.inspect.pytorch_file import read_pytorch

        return read_pytorch(path, is_zip=kind == "pytorch")
    if kind == "npy":
        from effstudio.inspect.numpy_file import read_npy

        return read_npy(path)
    if kind == "npz":
        from effstudio.inspect.numpy_file import read_npz

        return read_npz(path)
    from effstudio.inspect.onnx_file import read_onnx

    if expected is None:  # no extension to go by, no magic bytes: ONNX is the last guess
        try:
            return read_onnx(path)
        except InspectError:
            raise InspectError(f"{path.name}: not a format effstudio reads (safetensors, PyTorch, ONNX, NumPy); "
                               f"first bytes {_head_hex(path)}") from None
    return read_onnx(path)


def _read_json(path: Path) -> Any:
    size = path.stat().st_size
    if size > read_limits.MAX_JSON_BYTES:
        raise InspectError(f"{path.name} holds {size:,} bytes, more than the {read_limits.MAX_JSON_BYTES:,} "
                           "effstudio reads of a JSON index or config (MAX_JSON_BYTES)")
    with open(path, "rb") as handle:  # read no more than was checked, should the file grow meanwhile
        data = handle.read(read_limits.MAX_JSON_BYTES + 1)
    try:
        return loads_json(data, source=path, field=path.name, max_bytes=read_limits.MAX_JSON_BYTES)
    except ConfigError as err:
        raise InspectError(f"{path.name} is {err.message}") from None


def _own_file(folder: Path, path: Path) -> Path:
    """``path``, a file found in ``folder``, if it is the folder's own (see paths.escape_reason)."""
    reason = escape_reason(path, folder)
    if reason is not None:
        raise InspectError(f"{path.name} in {folder} {reason}; refused, nothing of it was read")
    return path


def _read_sharded(folder: Path, index_path: Path) -> Inspected:
    index = _read_json(_own_file(folder, index_path))
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise InspectError(f"{index_path.name}: no weight_map naming the shards")
    shards: dict[str, list[str]] = {}
    for name, shard in weight_map.items():
        shards.setdefault(str(shard), []).append(str(name))
    parts: list[Inspected] = []
    for shard in shards:
        shard_path = folder / shard
        if not shard_path.is_file():
            raise InspectError(f"{index_path.name} names the shard {shard}, which is missing from {folder}")
        reason = escape_reason(shard_path, folder)
        if reason is not None:
            raise InspectError(f"{index_path.name}: shard {shard!r} {reason}; refused, nothing of it was read")
        parts.append(_read_file(shard_path.resolve()))
    tensors: list[TensorRef] = []
    notes = [f"{len(parts)} shards listed in {index_path.name}"]
    for shard, part in zip(shards, parts, strict=True):
        held = {t.name for t in part.tensors}
        missing = [n for n in shards[shard] if n not in held]
        if missing:
            notes.append(f"{shard} lacks {len(missing)} tensors the index puts there (e.g. {missing[0]!r})")
        tensors += part.tensors
    formats = {p.format for p in parts}
    merged = Inspected(folder, f"{formats.pop()}-sharded" if len(formats) == 1 else "sharded",
                       sum(p.file_bytes for p in parts), tensors, metadata=parts[0].metadata, notes=notes,
                       files=[p.path for p in parts], keepalive=[p.keepalive for p in parts])
    for part in parts:
        merged.notes += part.notes
    return merged


def _weights_in(folder: Path) -> Inspected:
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (folder / index_name).is_file():
            return _read_sharded(folder, folder / index_name)
    indexes = sorted(folder.glob("*.index.json"))
    if indexes:
        return _read_sharded(folder, indexes[0])
    for pattern in ("model.safetensors", "checkpoint.safetensors", "*.safetensors", "pytorch_model.bin",
                    "*.pt", "*.pth", "*.bin", "*.ckpt", "model.onnx", "*.onnx", "*.npz", "*.npy"):
        found = sorted(p for p in folder.glob(pattern) if p.is_file() and not p.name.endswith(".state.pt"))
        if found:
            inspected = _read_file(_own_file(folder, found[0]))
            if len(found) > 1:
                inspected.notes.append(f"the folder holds {len(found)} such files; showing {found[0].name}")
            return inspected
    raise InspectError(f"{folder}: no model weights found in this folder (looked for .safetensors, "
                       ".pt/.pth/.bin/.ckpt, .onnx, .npz and .npy files)")


def _read_folder(folder: Path) -> Inspected:
    inspected = _weights_in(folder)
    config_path = folder / "config.json"
    if config_path.is_file():
        try:
            config = _read_json(_own_file(folder, config_path))
            if isinstance(config, dict):
                inspected.config = config
        except InspectError as err:
            inspected.notes.append(f"config.json cannot be read: {err}")
    inspected.path = folder
    return inspected


def open_model(path: str | Path) -> Inspected:
    """Open a model file or folder for inspection; InspectError with a clear reason when it cannot be."""
    path = Path(path).expanduser()
    try:
        if path.is_dir():
            inspected = _read_folder(path)
        elif path.is_file():
            inspected = _read_file(path)
        elif path.exists():
            raise InspectError(f"{path} is neither a file nor a folder")
        else:
            raise InspectError(f"{path} does not exist")
    except PermissionError as err:
        raise InspectError(f"{path}: permission denied ({err.filename})") from None
    except OSError as err:
        raise InspectError(f"{path}: {err.strerror or err}") from None
    except MemoryError:
        raise InspectError(f"{path}: not enough memory to read this file") from None
    except InspectError:
        raise
    except Exception as err:  # a reader met a case it does not know: still a message, never a crash
        raise InspectError(f"{path.name}: cannot be read ({type(err).__name__}: {err})") from None
    inspected.architecture = describe(inspected)
    if inspected.format == "safetensors":
        inspected.notes += task_notes(inspected.files[0] if inspected.files else inspected.path, inspected.metadata)
    return inspected
