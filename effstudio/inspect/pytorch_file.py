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

from effstudio import read_limits
from effstudio.inspect.pickle_scan import PickleTooLarge, disallowed, pickle_globals
from effstudio.inspect.tensors import Inspected, InspectError, TensorRef
from effstudio.inspect.zip_members import InflationBudget

# keys under which training scripts keep the weights, most specific first
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "weights", "params",
                "ema", "model_ema", "ema_state_dict")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _fail(path: Path, reason: str) -> InspectError:
    return InspectError(f"{path.name}: {reason}")


def _zip_pickles(path: Path, archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """Every pickle member, after checking that the one torch.load reads exists and that all fit the limits.

    PyTorch's zip reader takes the folder of the archive's *first* entry as the
    archive root and loads ``<root>/data.pkl`` (looked up without regard to
    case); other members are never unpickled by it. Every ``.pkl`` member is
    scanned all the same, duplicates included, so no name can hide one.
    """
    infos = archive.infolist()
    if not infos:
        raise _fail(path, "an empty zip archive, not a PyTorch checkpoint")
    root, slash, _ = infos[0].filename.partition("/")
    if not slash:
        raise _fail(path, f"not a PyTorch checkpoint: its first entry {infos[0].filename!r} is not inside a folder, "
                          "and PyTorch reads the archive from the first entry's folder")
    names = [info.filename for info in infos]
    if any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names):
        raise _fail(path, "this is a TorchScript module (it carries compiled code), not a checkpoint of weights; "
                          "effstudio only reads plain tensors. Save model.state_dict() to inspect the weights.")
    loaded = f"{root}/data.pkl"
    if not any(n.lower() == loaded.lower() for n in names):
        raise _fail(path, f"a zip archive without {loaded}, the pickle PyTorch would load (the data.pkl in the "
                          f"folder of the first entry, {root!r}): not a PyTorch checkpoint")
    pickles = [info for info in infos if info.filename.lower().endswith(".pkl")]
    budget = InflationBudget()
    for info in infos:  # before anything is inflated: the declared sizes
        if info in pickles and info.file_size > read_limits.MAX_PICKLE_BYTES:
            problem: str | None = (f"the pickle {info.filename} declares {info.file_size:,} bytes, more than the "
                                   f"{read_limits.MAX_PICKLE_BYTES:,} effstudio reads (MAX_PICKLE_BYTES)")
        else:
            problem = budget.problem(info)  # torch would inflate a compressed storage whole
        if problem is not None:
            raise _fail(path, f"refused: {problem}")
    return pickles


def check_pickle(path: Path, is_zip: bool) -> None:
    """Refuse a file whose pickles would import anything but tensor-rebuilding functions, or are too large."""
    found: list[tuple[str, str]] = []
    try:
        if is_zip:
            with zipfile.ZipFile(path) as archive:
                for info in _zip_pickles(path, archive):
                    with archive.open(info) as stream:
                        found += pickle_globals(stream, max_pickles=1)
        else:
            with open(path, "rb") as stream:
                found = pickle_globals(stream)
    except zipfile.BadZipFile as err:
        raise _fail(path, f"the zip archive is damaged or truncated ({err})") from None
    except PickleTooLarge as err:
        raise _fail(path, f"refused: {err}") from None
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
    if "not resizable" in first or "does not match expected size" in first or "wrong byte size" in first:
        return _fail(path, f"refused: a tensor's shape, strides or offset reach beyond the bytes stored for it "
                           f"(PyTorch: {first})")
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


def _view_problem(tensor: Any, repeated_so_far: int) -> tuple[str | None, int]:
    """(why the tensor's elements are not read, or None; elements of repeating views in the file so far).

    A strided view may show each stored element many times (``expand``, stride
    0): 10**12 elements over one float. Its extent is compared with the bytes
    really stored, and the views larger than their storage are read only up to
    :data:`read_limits.MAX_REPEATED_VIEW_ELEMENTS` elements for the whole file,
    so that ten thousand views just under the limit cannot add up to hours.
    """
    numel = tensor.numel()
    if numel == 0:
        return None, repeated_so_far
    stored = tensor.untyped_storage().nbytes() // max(tensor.element_size(), 1)
    last = tensor.storage_offset() + sum((size - 1) * abs(stride) for size, stride in
                                         zip(tensor.shape, tensor.stride(), strict=True))
    if tensor.storage_offset() < 0 or last >= stored:
        return (f"its shape {list(tensor.shape)}, strides {list(tensor.stride())} and offset "
                f"{tensor.storage_offset()} reach element {last:,} of a storage of {stored:,}"), repeated_so_far
    if numel <= stored:
        return None, repeated_so_far
    limit = read_limits.MAX_REPEATED_VIEW_ELEMENTS
    if repeated_so_far + numel > limit:
        earlier = f" (with the {repeated_so_far:,} of such views before it)" if repeated_so_far else ""
        return (f"a view of {numel:,} elements (strides {list(tensor.stride())}) repeating a storage of "
                f"{stored:,}{earlier}; effstudio reads such views up to {limit:,} elements in a file "
                "(MAX_REPEATED_VIEW_ELEMENTS)"), repeated_so_far
    return None, repeated_so_far + numel


def _refusal(path: Path, name: str, problem: str):
    def load() -> np.ndarray:
        raise InspectError(f"{path.name}: tensor {name!r} is not read: {problem}")

    return load


def _native_byte_order(path: Path) -> bool:
    """True when the zip's tensors are stored in this machine's byte order (torch swaps others in memory)."""
    with zipfile.ZipFile(path) as archive:
        records = [n for n in archive.namelist() if n.endswith("/byteorder")]
        stored = "little"
        if records:
            with archive.open(records[0]) as record:
                stored = record.read(16).decode("ascii", "replace").strip()  # "little" or "big"
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
    repeated = 0  # elements of views that repeat their storage, read so far
    for name, tensor in found.items():
        raw = _raw_array(tensor)
        if raw is None:
            skipped += 1
            continue
        dtype, loader = raw
        problem, repeated = _view_problem(tensor, repeated)
        if problem is not None:
            loader = _refusal(path, name, problem)
        tensors.append(TensorRef(name, tuple(int(d) for d in tensor.shape), dtype, loader,
                                 mapped=mapped and tensor.is_contiguous()))
    if skipped:
        notes.append(f"skipped {skipped} tensors of layouts or types effstudio cannot read")
    if not tensors and not found:
        notes.append("the file holds no tensors")
    return Inspected(path, "pytorch" if is_zip else "pytorch-legacy", path.stat().st_size, tensors,
                     metadata=metadata, notes=notes, files=[path], keepalive=[obj])
