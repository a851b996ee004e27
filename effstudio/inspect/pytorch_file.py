"""PyTorch files (.pt, .pth, .bin, .ckpt), zip or legacy, read only as plain tensors.

Reading a PyTorch file means unpickling it, and a pickle can run any code. The
file is read by :func:`effstudio.engine.torch_file.load_torch_file`, the one
reader of such files (resume reads its training state with it too): the pickles
are scanned within the limits before ``torch.load(weights_only=True)`` reads them.

Zip-format files are memory-mapped (``mmap=True``): tensors stay on disk until
read. Legacy files are read into memory. Checkpoints that wrap the weights
(Lightning's ``state_dict``, ``model``, ``module``...) are unwrapped, and a
``module.`` prefix left by DataParallel is removed.
"""

from __future__ import annotations

import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from effstudio import read_limits
from effstudio.engine.torch_file import TorchFileError, load_torch_file
from effstudio.inspect.tensors import Inspected, InspectError, TensorRef

if TYPE_CHECKING:
    import torch

# keys under which training scripts keep the weights, most specific first
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network", "weights", "params",
                "ema", "model_ema", "ema_state_dict")


def _is_tensor(value: Any) -> bool:
    import torch

    return isinstance(value, torch.Tensor)


def _flatten(value: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    if _is_tensor(value):
        out[prefix or "tensor"] = value
    elif isinstance(value, dict):
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _flatten(item, f"{prefix}.{index}" if prefix else str(index), out)


def _count_tensors(value: Any) -> int:
    found: dict[str, torch.Tensor] = {}
    _flatten(value, "", found)
    return len(found)


def unwrap(obj: Any) -> tuple[dict[str, torch.Tensor], dict[str, str], list[str]]:
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
    tensors: dict[str, torch.Tensor] = {}
    _flatten(weights, "", tensors)
    for prefix in ("module.", "_orig_mod."):
        if tensors and all(name.startswith(prefix) for name in tensors):
            tensors = {name[len(prefix):]: t for name, t in tensors.items()}
            notes.append(f"removed the {prefix!r} prefix from every name")
    return tensors, metadata, notes


def _raw_array(tensor: torch.Tensor) -> tuple[str, Callable[[], np.ndarray]] | None:
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


def _view_problem(tensor: torch.Tensor, repeated_so_far: int) -> tuple[str | None, int]:
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
    try:
        obj, mapped = load_torch_file(path, mmap=True)
        # pages of a mapped file may be released after reading; not when torch rewrote them in memory
        mapped = mapped and _native_byte_order(path)
    except TorchFileError as err:
        raise InspectError(str(err)) from None
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
