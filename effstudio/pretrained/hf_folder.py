"""Reading a Hugging Face model folder as it is on disk: config.json, the weights, the tokenizer.

Nothing is downloaded and nothing in the folder is executed. The weights are read with
the engine's safety rules, the same ones `effstudio inspect` applies:

- ``model.safetensors``: the header is checked (sizes, offsets, layout) before a byte of
  data is read (engine.safetensors_header);
- ``pytorch_model.bin``: the pickle is scanned for anything but tensor rebuilding and read
  with ``torch.load(weights_only=True)`` (engine.torch_file);
- a sharded checkpoint's index (``model.safetensors.index.json`` or
  ``pytorch_model.bin.index.json``) names its shards, each a plain file name in the
  folder; a missing one is named.

The path given may be the folder, or a weights file beside its config.json (what a
person drops on the window). JSON files are read within read_limits.MAX_JSON_BYTES.
A missing tokenizer is not an error: the caller imports the weights and warns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from effstudio.bounded_parse import loads_json
from effstudio.config import ConfigError
from effstudio.engine.safetensors_header import check_file
from effstudio.engine.torch_file import TorchFileError, load_torch_file
from effstudio.paths import PathError, escape_reason, open_regular_file
from effstudio.read_limits import MAX_JSON_BYTES, MAX_SHARDS
from effstudio.tasks.tokenizer import TextTokenizer, TokenizerError

CONFIG = "config.json"
SAFETENSORS = "model.safetensors"
PICKLE = "pytorch_model.bin"
INDEX_SUFFIX = ".index.json"
PREPROCESSOR = "preprocessor_config.json"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json")
MERGES = "merges.txt"  # read beside vocab.json


class FolderError(ConfigError):
    """The folder cannot be imported: one line naming the file and why."""

    def __init__(self, message: str, source: Path | str):
        super().__init__("path", message, str(source))


@dataclass
class HFFolder:
    """What a Hugging Face folder holds, read and checked."""

    path: Path  # the folder
    config: dict[str, Any]  # config.json
    weights: dict[str, torch.Tensor]  # name -> tensor, every shard's
    weight_files: list[Path]
    tokenizer: TextTokenizer | None
    tokenizer_problem: str | None  # why there is no tokenizer, when there is none
    preprocessor: dict[str, Any] | None  # preprocessor_config.json (image models' normalisation)


def folder_of(path: Path) -> tuple[Path, Path | None]:
    """(the model folder, the weights file named) for a folder or a weights file inside one."""
    path = Path(path).expanduser()
    if path.is_dir():
        return path, None
    if path.is_file():
        return path.parent, path
    raise FolderError("no such folder or file", path)


def own_file(path: Path, folder: Path) -> Path:
    """``path`` when it is the folder's own file: not a link (symbolic or hard) to a file elsewhere."""
    reason = escape_reason(path, folder)
    if reason is not None:
        raise FolderError(reason, path)
    return path


def read_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object file, within the size limit; a missing or broken one is a FolderError naming it."""
    try:
        with open_regular_file(path, what=what) as handle:
            data = handle.read(MAX_JSON_BYTES + 1)
    except PathError as err:
        raise FolderError(err.reason, path) from None
    except OSError as err:
        raise FolderError(f"cannot read it: {err.strerror or err}", path) from None
    if len(data) > MAX_JSON_BYTES:
        raise FolderError(f"larger than the limit of {MAX_JSON_BYTES:,} bytes for a {what} file", path)
    try:
        value = loads_json(data, source=path, field=what, max_bytes=MAX_JSON_BYTES)
    except ConfigError as err:
        raise FolderError(err.message, path) from None
    if not isinstance(value, dict):
        raise FolderError(f"a {what} file holds a JSON object, not {type(value).__name__}", path)
    return value


def read_folder(path: Path) -> HFFolder:
    """Read config.json, every weights file and the tokenizer of the folder ``path`` (or of the weights file)."""
    folder, named = folder_of(path)
    config_path = folder / CONFIG
    if not config_path.is_file():
        raise FolderError(f"no {CONFIG} here: a Hugging Face model folder has one beside its weights", folder)
    config = read_json(own_file(config_path, folder), CONFIG)
    files = [own_file(file, folder) for file in weight_files(folder, named)]
    weights: dict[str, torch.Tensor] = {}
    for file in files:
        weights.update(read_weights(file))
    tokenizer, problem = read_tokenizer(folder)
    preprocessor = (read_json(own_file(folder / PREPROCESSOR, folder), PREPROCESSOR)
                    if (folder / PREPROCESSOR).is_file() else None)
    return HFFolder(folder, config, weights, files, tokenizer, problem, preprocessor)


def weight_files(folder: Path, named: Path | None) -> list[Path]:
    """The weights files to read: the one named, else the folder's single file or its index's shards."""
    if named is not None and named.name != CONFIG:
        return shards(named) if named.name.endswith(INDEX_SUFFIX) else [named]
    for name in (SAFETENSORS, SAFETENSORS + INDEX_SUFFIX, PICKLE, PICKLE + INDEX_SUFFIX):
        if (folder / name).is_file():
            return shards(folder / name) if name.endswith(INDEX_SUFFIX) else [folder / name]
    raise FolderError(f"no weights here: expected {SAFETENSORS}, {PICKLE} or a sharded index "
                      f"({SAFETENSORS}{INDEX_SUFFIX})", folder)


def shards(index_path: Path) -> list[Path]:
    """The shard files an index names, in order of first mention; each must be a file in the index's folder
    (whether it is the folder's own is read_folder's check, as for every weights file)."""
    index = read_json(own_file(index_path, index_path.parent), "shard index")
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, Mapping) or not weight_map:
        raise FolderError("a shard index maps tensor names to shard files under \"weight_map\"; it has none",
                          index_path)
    names: dict[str, None] = {}  # in order of first mention
    for tensor, shard in weight_map.items():
        if not isinstance(shard, str) or not shard or "/" in shard or "\\" in shard or shard in (".", ".."):
            raise FolderError(f"tensor {str(tensor)[:80]!r} is mapped to {str(shard)[:80]!r}, not a file name "
                              "in this folder", index_path)
        names[shard] = None
        if len(names) > MAX_SHARDS:
            raise FolderError(f"names more than the limit of {MAX_SHARDS:,} shards", index_path)
    missing = [name for name in names if not (index_path.parent / name).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FolderError(f"shard {missing[0]} is missing{more}: the index names {len(names)} shards", index_path)
    return [index_path.parent / name for name in names]


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """One weights file's tensors, read with the engine's safety rules (see the module docstring)."""
    if path.suffix == ".safetensors":
        check_file(path, _Refused)
        try:
            return safetensors.torch.load_file(str(path))
        except Exception as err:  # safetensors raises its own types for damaged files
            raise FolderError(f"cannot read it: {' '.join(str(err).split())[:200]}", path) from None
    try:
        state, _ = load_torch_file(path)
    except TorchFileError as err:
        raise FolderError(str(err).removeprefix(f"{path.name}: "), path) from None
    except OSError as err:
        raise FolderError(f"cannot read it: {err.strerror or err}", path) from None
    if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise FolderError("holds no mapping of tensor names to tensors (a state dict)", path)
    return dict(state)


class _Refused(FolderError):
    """check_file's verdict on a damaged safetensors header (its message names the file)."""

    def __init__(self, message: str):
        super().__init__(message.split(": ", 1)[-1], message.split(": ", 1)[0])


def read_tokenizer(folder: Path) -> tuple[TextTokenizer | None, str | None]:
    """(the folder's tokenizer, None), or (None, why there is none): tokenizer.json, a WordPiece
    vocab.txt, or a byte-level BPE vocab.json with merges.txt."""
    present = [name for name in (*TOKENIZER_FILES, MERGES) if (folder / name).is_file()]
    if not set(present) & set(TOKENIZER_FILES):
        return None, f"no tokenizer file ({', '.join(TOKENIZER_FILES)}) in {folder}"
    for name in present:  # every file the tokenizer may read must be the folder's own
        reason = escape_reason(folder / name, folder)
        if reason is not None:
            return None, f"{name} {reason}"
    try:
        return TextTokenizer.load(folder), None
    except TokenizerError as err:
        return None, str(err)
