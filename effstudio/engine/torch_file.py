"""PyTorch files (``torch.save``'s zip or legacy format) read only as plain tensors, within the limits.

Every reader of such a file in effstudio (the inspector's .pt reader, resume's
training state ``checkpoint.state.pt``) goes through :func:`load_torch_file`, so
one file gets one verdict:

1. the archive is checked as PyTorch's own reader will read it: the folder of
   the first entry is its root, ``<root>/data.pkl`` the pickle it loads (looked
   up without regard to case), every member's declared size within the
   inflation limits (torch inflates a compressed member whole);
2. every pickle (every ``.pkl`` member, duplicates included; the five pickles
   of a legacy file) is scanned (:mod:`effstudio.engine.pickle_scan`), at most
   :data:`read_limits.MAX_PICKLE_BYTES` for the whole file, and a file that
   imports or calls anything but tensor-rebuilding functions is refused, naming it;
3. only then ``torch.load(weights_only=True)`` reads it, PyTorch's restricted
   unpickler, which refuses such files on its own as well.

Whether a file is a zip is decided as PyTorch decides it (its first four bytes),
so the scan always reads the pickle that torch will unpickle.
"""

from __future__ import annotations

import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

from effstudio import read_limits
from effstudio.engine.pickle_scan import PickleTooLarge, Scan, disallowed, scan_pickles
from effstudio.engine.zip_members import InflationBudget, layout_problem

_ZIP_MAGIC = b"PK\x03\x04"  # torch.serialization._is_zipfile: a zip is a file that starts with a local header
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class TorchFileError(ValueError):
    """A PyTorch file that effstudio refuses or cannot read; the message starts with the file's name."""


def _fail(path: Path, reason: str) -> TorchFileError:
    return TorchFileError(f"{path.name}: {reason}")


def is_torch_zip(path: Path) -> bool:
    """Whether torch.load reads ``path`` as a zip archive (otherwise as a legacy pickle file)."""
    with open(path, "rb") as handle:
        return handle.read(4) == _ZIP_MAGIC


def _zip_pickles(path: Path, archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    """Every pickle member, after checking that the one torch.load reads exists and that all fit the limits."""
    infos = archive.infolist()
    layout = layout_problem(archive)
    if layout is not None:
        raise _fail(path, f"refused: {layout}")
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
    if not any(n.lower() == loaded.lower() and not info.is_dir() for n, info in zip(names, infos, strict=True)):
        raise _fail(path, f"a zip archive without {loaded}, the pickle PyTorch would load (the data.pkl in the "
                          f"folder of the first entry, {root!r}): not a PyTorch checkpoint")
    pickles = [info for info in infos if info.filename.lower().endswith(".pkl")]
    budget = InflationBudget()
    pickle_bytes = 0
    limit = read_limits.MAX_PICKLE_BYTES
    for info in infos:  # before anything is inflated: the declared sizes
        problem = None
        if info in pickles:
            pickle_bytes += info.file_size
            if pickle_bytes > limit:
                whole = "" if pickle_bytes == info.file_size else f" (with the pickles before it, {pickle_bytes:,})"
                problem = (f"the pickle {info.filename} declares {info.file_size:,} bytes{whole}, more than the "
                           f"{limit:,} effstudio reads (MAX_PICKLE_BYTES)")
        problem = problem or budget.problem(info)  # torch would inflate a compressed storage whole
        if problem is not None:
            raise _fail(path, f"refused: {problem}")
    return pickles


def _scan(path: Path) -> Scan:
    scan = Scan()
    if not is_torch_zip(path):
        with open(path, "rb") as stream:
            return scan_pickles(stream)
    with zipfile.ZipFile(path) as archive:
        root = archive.infolist()[0].filename.partition("/")[0]
        for info in _zip_pickles(path, archive):
            with archive.open(info) as stream:
                found = scan_pickles(stream, max_pickles=1)
            scan += found
            if info.filename.lower() == f"{root}/data.pkl".lower():
                _check_storage_sizes(path, archive, root, found.persistent_ids)
    return scan


def _element_size(storage_type: object) -> int | None:
    """Bytes per element of a storage class named in a pickle (``torch.FloatStorage``: 4); None if unknown."""
    import torch

    module, name = storage_type if isinstance(storage_type, tuple) and len(storage_type) == 2 else ("", "")
    if module != "torch" or not name.endswith("Storage"):
        return None
    with warnings.catch_warnings():  # the typed storage classes are deprecated; their dtype is what torch.load uses
        warnings.simplefilter("ignore")
        dtype = getattr(getattr(torch, name, None), "dtype", None)
    return torch._utils._element_size(dtype) if isinstance(dtype, torch.dtype) else None


def _check_storage_sizes(path: Path, archive: zipfile.ZipFile, root: str, persistent_ids: list[object]) -> None:
    """Each storage's declared size must be its record's: PyTorch checks it when it copies a storage, but a
    memory-mapped load takes the declared size and reads past the record into the archive's other bytes."""
    records = {info.filename: info.file_size for info in archive.infolist()}
    for pid in persistent_ids:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage" and isinstance(pid[2], str)
                and type(pid[4]) is int):
            continue
        size = _element_size(pid[1])
        stored = records.get(f"{root}/data/{pid[2]}")
        if size is None or stored is None:
            continue  # torch.load gives its own verdict on a storage it does not know or cannot find
        if pid[4] * size != stored:
            raise _fail(path, f"refused: storage {pid[2]!r} declares {pid[4] * size:,} bytes but its record "
                              f"{root}/data/{pid[2]} holds {stored:,}")


def check_torch_file(path: Path) -> None:
    """Refuse a file whose pickles are too large, or would import or call anything but what rebuilds tensors."""
    try:
        scan = _scan(path)
    except TorchFileError:
        raise
    except zipfile.BadZipFile as err:
        raise _fail(path, f"the zip archive is damaged or truncated ({err})") from None
    except PickleTooLarge as err:
        raise _fail(path, f"refused: {err}") from None
    except (ValueError, EOFError) as err:
        raise _fail(path, f"the pickle inside is damaged or truncated ({err})") from None
    except (NotImplementedError, RuntimeError) as err:  # a compression method or encryption zipfile cannot read
        raise _fail(path, f"a zip member cannot be read ({err}); PyTorch writes plain or deflated members") from None
    bad = disallowed(scan)
    if bad:
        shown = ", ".join(bad[:6]) + (f" and {len(bad) - 6} more" if len(bad) > 6 else "")
        raise _fail(path, f"refused: unpickling this file would call {shown}. A checkpoint of plain tensors never "
                          "needs that; the file could run any code when loaded (with torch.load(weights_only="
                          "False), for instance). effstudio never executes code from a file. If it is a whole "
                          "model saved with torch.save(model) and you trust its source, re-save "
                          "model.state_dict() to inspect it.")


def _torch_error(path: Path, err: Exception) -> TorchFileError:
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
    return _fail(path, f"PyTorch cannot read it ({type(err).__name__}: {first[:300]})")


def load_torch_file(path: Path, mmap: bool = False) -> tuple[Any, bool]:
    """(what ``torch.load(weights_only=True)`` returns, whether it is memory-mapped), after
    :func:`check_torch_file`. ``mmap`` maps a zip file's tensors where torch can. TorchFileError otherwise."""
    import torch

    check_torch_file(path)
    zipped = is_torch_zip(path)
    try:
        with warnings.catch_warnings():  # torch warns on stderr about pickle protocols: the scan has read them
            warnings.simplefilter("ignore")
            if mmap and zipped:
                try:
                    return torch.load(path, map_location="cpu", weights_only=True, mmap=True), True
                except RuntimeError as err:
                    if "mmap" not in str(err):
                        raise
            return torch.load(path, map_location="cpu", weights_only=True), False
    except MemoryError:
        raise _fail(path, "not enough memory to read it") from None
    except Exception as err:  # torch raises many types for damaged files
        raise _torch_error(path, err) from None
