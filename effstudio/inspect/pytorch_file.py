"""PyTorch files (.pt, .pth, .bin, .ckpt), zip or legacy, read only as plain tensors.

Reading a PyTorch file means unpickling it, and a pickle can run any code. So:

1. the pickle's opcodes are scanned (:mod:`effstudio.inspect.pickle_scan`) and a
   file that imports anything but tensor-rebuilding functions and plain
   containers is refused, naming what it would call;
2. only then ``torch.load(weights_only=True)`` reads it, PyTorch's restricted
   unpickler, which refuses such files on its own as well.

Zip-format files are memory-mapped (``mmap=True``): tensors stay on disk until
read. Legacy files are read into memory. Checkpoints that wrap the weights
(Lightning's ``state_dict``, ``model``, ``module``...) are unwrapped, and a
``module.`` prefix left by DataParallel is removed.
"""

from __future__ import annotations

import re
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from effstudio.inspect.pickle_scan import disallowed, pickle_globals
from effstudio.inspect.tensors import Inspected, InspectError, TensorRef

# keys under which training scripts keep the weights, most specific first
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "weights", "params",
                "ema", "model_ema", "ema_state_dict")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _fail(path: Path, reason: str) -> InspectError:
    return InspectError(f"{path.name}: {reason}")


def _zip_pickle_name(path: Path, archive: zipfile.ZipFile) -> str:
    names = archive.namelist()
    if any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names):
        raise _fail(path, "this is a TorchScript module (it carries compiled code), not a checkpoint of weights; "
                          "effstudio only reads plain tensors. Save model.state_dict() to inspect the weights.")
    pickles = [n for n in names if n.endswith("data.pkl")]
    if not pickles:
        raise _fail(path, "a zip archive without the data.pkl of a PyTorch checkpoint")
    return pickles[0]


def check_pickle(path: Path, is_zip: bool) -> None:
    """Refuse a file whose pickle would import anything but tensor-rebuilding functions."""
    try:
        if is_zip:
            with zipfile.ZipFile(path) as archive, archive.open(_zip_pickle_name(path, archive)) as stream:
                found = pickle_globals(stream, max_pickles=1)
        else:
            with open(path, "rb") as stream:
                found = pickle_globals(stream)
    except zipfile.BadZipFile as err:
        raise _fail(path, f"the zip archive is damaged or truncated ({err})") from None
    except (ValueError, EOFError) as err:
        raise _fail(path, f"the pickle inside is damaged or truncated ({err})") from None
    bad = disallowed(found)
    if bad:
        shown = ", ".join(bad[:6]) + (f" and {len(bad) - 6} more" if len(bad) > 6 else "")
        raise _fail(path, f"refused: unpickling this file would call {shown}. A checkpoint of plain tensors never "
                          "needs that; the file could run any code when loaded (with torch.load(weights_only="
                          "False), for instance). effstudio never executes code from a file. If it is a whole "
                          "model saved with torch.save(model) and you trust its source, re-save "
                          "model.state_dict() to inspect it.")


def _torch_error(path: Path, err: Exception) -> InspectError:
    text = _ANSI.sub("", str(err))
    detail = next((line.strip() for line in text.splitlines() if "WeightsUnpickler error" in line), "")
    if "Weights only load failed" in text:
        reason = detail.split("error:", 1)[-1].strip() or "it holds objects other than tensors"
        return _fail(path, f"refused by PyTorch's safe loader (weights_only=True): {reason}. "
                           "effstudio never executes code from a file.")
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(err).__name__)
    if "central directory" in first or "zip archive" in first:
        return _fail(path, f"the zip archive is damaged or truncated ({first})")
    return _fail(path, f"PyTorch cannot read it ({type(err).__name__}: {first})")


def _load(path: Path, is_zip: bool) -> tuple[Any, bool]:
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if is_zip:
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True), True
            except RuntimeError as err:
                if "mmap" not in str(err):
                    raise
        return torch.load(path, map_location="cpu", weights_only=True), False


def _is_tensor(value: Any) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if _is_tensor(value):
        out[prefix or "tensor"] = value
    elif isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _flatten(item, f"{prefix}.{index}" if prefix else str(index), out)


def _count_tensors(value: Any) -> int:
    found: dict[str, Any] = {}
    _flatten(value, "", found)
    return len(found)


def unwrap(obj: Any) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """(tensors by dotted name, scalar metadata, notes) of whatever torch.load returned."""
    notes: list[str] = []
    metadata: dict[str, str] = {}
    weights = obj
    if isinstance(obj, dict) and not any(_is_tensor(v) for v in obj.values()):
        for key, value in obj.items():
            if isinstance(value, (str, int, float, bool)) and len(str(value)) <= 200:
                metadata[str(key)] = str(value)
        for key in WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, dict) and _count_tensors(inner):
                weights = inner
                others = [str(k) for k, v in obj.items() if k != key and _count_tensors(v)]
                notes.append(f"weights unwrapped from the checkpoint's {key!r} entry"
                             + (f" (also holds tensors in: {', '.join(others[:4])})" if others else ""))
                break
    tensors: dict[str, Any] = {}
    _flatten(weights, "", tensors)
    for prefix in ("module.", "_orig_mod."):
        if tensors and all(name.startswith(prefix) for name in tensors):
            tensors = {name[len(prefix):]: t for name, t in tensors.items()}
            notes.append(f"removed the {prefix!r} prefix from every name")
    return tensors, metadata, notes


def _raw_array(tensor: Any) -> tuple[str, Any] | None:
    """(canonical dtype, a function giving the raw numpy array) or None for unreadable tensors."""
    import torch

    t = tensor.detach()
    if t.is_quantized:
        t = t.int_repr()
    if t.layout != torch.strided:
        return None
    name = str(t.dtype).removeprefix("torch.")
    views = {"bfloat16": (torch.int16, np.uint16), "float8_e4m3fn": (torch.uint8, np.uint8),
             "float8_e5m2": (torch.uint8, np.uint8)}
    if name in views:
        torch_view, numpy_view = views[name]
        return name, lambda: t.view(torch_view).numpy().view(numpy_view)
    if name not in ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8", "uint16",
                    "uint32", "uint64", "bool", "complex64", "complex128"):
        return None
    return name, t.numpy


def _native_byte_order(path: Path) -> bool:
    """True when the zip's tensors are stored in this machine's byte order (torch swaps others in memory)."""
    with zipfile.ZipFile(path) as archive:
        records = [n for n in archive.namelist() if n.endswith("/byteorder")]
        stored = archive.read(records[0]).decode("ascii", "replace").strip() if records else "little"
    return stored == sys.byteorder


def read_pytorch(path: Path, is_zip: bool) -> Inspected:
    check_pickle(path, is_zip)
    try:
        obj, mapped = _load(path, is_zip)
        # pages of a mapped file may be released after reading; not when torch rewrote them in memory
        mapped = mapped and _native_byte_order(path)
    except InspectError:
        raise
    except Exception as err:  # torch raises many types for damaged files
        raise _torch_error(path, err) from None
    found, metadata, notes = unwrap(obj)
    tensors: list[TensorRef] = []
    skipped = 0
    for name, tensor in found.items():
        raw = _raw_array(tensor)
        if raw is None:
            skipped += 1
            continue
        dtype, loader = raw
        tensors.append(TensorRef(name, tuple(int(d) for d in tensor.shape), dtype, loader,
                                 mapped=mapped and tensor.is_contiguous()))
    if skipped:
        notes.append(f"skipped {skipped} tensors of layouts or types effstudio cannot read")
    if not tensors and not found:
        notes.append("the file holds no tensors")
    return Inspected(path, "pytorch" if is_zip else "pytorch-legacy", path.stat().st_size, tensors,
                     metadata=metadata, notes=notes, files=[path], keepalive=[obj])
