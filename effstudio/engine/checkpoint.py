"""Self-describing checkpoints: safetensors weights plus a weights-only training state, one consistent unit.

Layout of a checkpoint ``NAME`` (a run's is ``checkpoint``) in its folder:

- ``NAME.safetensors``: the weights. The header metadata names the model type, the
  whole run config (JSON), the task, the step and the effstudio version, so
  loading never executes code. A checkpoint that can be resumed also names its
  pair: ``effstudio.pair`` (a random token of this save) and
  ``effstudio.state_sha256`` (the SHA-256 of the training state file's bytes).
- ``NAME.state.pt`` beside it: what resuming needs (optimizer, grad scaler, RNG
  states, ``step`` and the same ``pair`` token) as plain tensors and containers
  that ``torch.load(weights_only=True)`` accepts.

A checkpoint without a training state (a compressed or exported model) is the
weights file alone, written atomically: a temporary file beside it, fsync, rename.

A task that reads the user's data keeps what rebuilds it exactly with every
checkpoint (:class:`~effstudio.tasks.base.SavedTaskData`): header entries
(``effstudio.task.*``: a label map, the data source) and files beside the weights
(``NAME.tokenizer.json``), each written atomically before the save's first step and
bound to the weights by its SHA-256 in ``effstudio.task_files``. A run writes the
same files at every save, so a file already there with those bytes is left alone;
:func:`saved_task_data` reads them back and refuses a file whose hash differs. A path
setting that reads such a file (a tokenizer file) is named in the saved config by the
file beside the weights (:func:`naming_task_files`), so the two move together.

Commit protocol of a checkpoint with a training state (one writer per folder):

1. the state is written to ``.NAME.state.pt.<token>.tmp``, fsynced and hashed;
2. the weights, naming the step, the token and that hash, are written to
   ``.NAME.safetensors.<token>.tmp`` and fsynced;
3. the weights are renamed over ``NAME.safetensors``: the commit point. Before
   it the previous checkpoint is the checkpoint, after it the new one is;
4. the state is renamed over ``NAME.state.pt`` and the folder is fsynced.

So ``NAME.safetensors`` always belongs to a complete pair. A crash, a kill or a
full disk before step 3 leaves the previous pair as it was, plus temporary files
that :func:`recover` removes (at run start and before every save). A crash
between steps 3 and 4 leaves the committed weights with their state still under
its temporary name: :func:`resume_point` reads it there, and :func:`recover`
moves it into place. Resuming checks that both halves carry the same step and
token and that the state's bytes have the hash the weights name; a pair that
does not belong together (the files of two saves, or an old version's
half-finished save) is refused, naming both steps, never trained on silently.

Every write failure (``OSError``, safetensors' ``SafetensorError``, the
``RuntimeError`` of ``torch.save``) becomes one :class:`CheckpointError` whose
message says what failed and which checkpoint is kept.
"""

from __future__ import annotations

import dataclasses
import errno
import glob
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors
import safetensors.torch
import torch
from torch import nn

import effstudio
from effstudio.bounded_parse import loads_json
from effstudio.config import ConfigError, param, parse_typed, with_values
from effstudio.engine.events import LogEvent
from effstudio.engine.run_config import RunConfig
from effstudio.engine.safetensors_header import check_file
from effstudio.engine.torch_file import TorchFileError, load_torch_file
from effstudio.paths import PathError, open_regular_file
from effstudio.read_limits import MAX_TASK_FILE_BYTES
from effstudio.tasks.base import SavedTaskData

FORMAT_VERSION = "1"
STATE_SUFFIX = ".state.pt"
PAIR_KEY = "effstudio.pair"
STATE_HASH_KEY = "effstudio.state_sha256"
CONFIG_KEY = "config"  # the run config as JSON
TASK_FILES_KEY = "effstudio.task_files"  # JSON {name: sha256} of the task's files beside the weights
TASK_KEY_PREFIX = "effstudio.task."
# the points of the commit protocol, in order (see the module docstring)
SAVE_POINTS = ("state_write", "state_synced", "weights_write", "weights_synced", "committed", "completed")
FULL_DISK_BYTES = 1 << 20  # a write that failed with less free space than this failed for want of space

# Called as fault_hook(point, file, step) at each of SAVE_POINTS: a test or the fault benchmark
# (effstudio bench faults) breaks or kills a save there. None in normal use.
FaultHook = Callable[[str, Path, int], None]
fault_hook: FaultHook | None = None


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read or written; the message says why and what to do."""


@dataclass(frozen=True)
class CheckpointInfo:
    path: Path
    config: RunConfig
    step: int
    version: str
    metadata: dict[str, str]


def state_path(weights_path: Path) -> Path:
    return weights_path.with_name(weights_path.stem + STATE_SUFFIX)


# what the writers (os, safetensors, torch.save, onnx) raise when the bytes do not reach the disk
WRITE_FAILURES = (OSError, RuntimeError, safetensors.SafetensorError)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, fsync it, rename over ``path``.

    A write that fails (a full disk, a read-only folder) raises one CheckpointError
    naming ``path`` and the reason, and leaves whatever was at ``path`` untouched.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as err:
        raise CheckpointError(f"could not write {path}: {_reason(err, _free_bytes(path.parent))}") from err
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        free = _free_bytes(path.parent)  # measured before the temporary file gives its space back
        tmp.unlink(missing_ok=True)
        if isinstance(err, WRITE_FAILURES) and not isinstance(err, CheckpointError):
            kept = "the file there is kept" if path.exists() else "nothing was written"
            raise CheckpointError(f"could not write {path}: {_reason(err, free)}; {kept}") from err
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    path: Path,
    model: nn.Module,
    config: RunConfig,
    step: int,
    train_state: dict[str, Any] | None = None,
    extra_metadata: dict[str, str] | None = None,
    task_data: SavedTaskData | None = None,
) -> Path:
    """Write weights (and the training state, if given, as one committed pair); return the weights path.

    ``extra_metadata`` adds header entries (a pruned structure, a storage dtype); ``task_data``
    what the task keeps with its checkpoints (see the module docstring).
    Any failure raises CheckpointError and leaves the previous checkpoint as it was.
    """
    path = Path(path)
    metadata = checkpoint_metadata(config, step, extra_metadata)
    model = getattr(model, "_orig_mod", model)  # a torch.compile wrapper saves its original module
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if task_data is not None:
            metadata.update(write_task_files(path, task_data, config))
        if train_state is None:
            atomic_write(path, lambda tmp: _write_weights(model, tmp, metadata))
        else:
            recover(path)  # an interrupted save is completed first: it is the previous checkpoint to keep
            _commit_pair(path, model, metadata, {**train_state, "step": step}, step)
    except _SaveFailed as failed:
        reason = _reason(failed.cause, failed.free_bytes)
        if failed.pending is not None:
            raise CheckpointError(f"the checkpoint of step {step} was written to {path} but its training state "
                                  f"could not be moved into place ({reason}); the next save or resume completes "
                                  f"it from {failed.pending.name}") from failed.cause
        raise CheckpointError(f"could not save the checkpoint of step {step} to {path}: {reason}; "
                              f"{_kept(path)}") from failed.cause
    except CheckpointError:
        raise
    except Exception as err:  # OSError, SafetensorError, torch.save's RuntimeError: all mean "not written"
        reason = _reason(err, _free_bytes(path.parent))
        raise CheckpointError(f"could not save the checkpoint of step {step} to {path}: {reason}; "
                              f"{_kept(path)}") from err
    return path


class _SaveFailed(Exception):
    """A save failed: its cause, the free space when it failed (before its temporary files were removed),
    and, when the weights were already committed, the training state still under its temporary name."""

    def __init__(self, cause: Exception, free_bytes: int | None, pending: Path | None):
        super().__init__(str(cause))
        self.cause, self.free_bytes, self.pending = cause, free_bytes, pending


def _write_weights(model: nn.Module, file: Path, metadata: dict[str, str]) -> None:
    # save_model drops duplicates of shared tensors (tied embeddings) and restores them on load
    safetensors.torch.save_model(model, str(file), metadata=metadata)


def _commit_pair(path: Path, model: nn.Module, metadata: dict[str, str], state: dict[str, Any], step: int) -> None:
    """Steps 1-4 of the commit protocol (module docstring); temporary files are removed on failure,
    except a committed save's state, which completes the checkpoint."""
    token = secrets.token_hex(8)
    state_tmp, weights_tmp = pending_state_path(path, token), _temporary_path(path, token)
    committed = False
    try:
        torch.save({**state, "pair": token}, state_tmp)
        _at("state_write", state_tmp, step)
        _fsync_file(state_tmp)
        _at("state_synced", state_tmp, step)
        paired = {**metadata, PAIR_KEY: token, STATE_HASH_KEY: _sha256(state_tmp)}
        _write_weights(model, weights_tmp, paired)
        _at("weights_write", weights_tmp, step)
        _fsync_file(weights_tmp)
        _at("weights_synced", weights_tmp, step)
        os.replace(weights_tmp, path)
        committed = True
        _fsync_dir(path.parent)
        _at("committed", path, step)
        os.replace(state_tmp, state_path(path))
        _at("completed", path, step)
        _fsync_dir(path.parent)
    except BaseException as err:
        free = _free_bytes(path.parent)  # measured before the partial files give their space back
        # a Ctrl+C handled right after the commit rename returned, before the flag was set: the file
        # in place says whether this save is the checkpoint now, and then its state must stay
        committed = committed or (_header_metadata(path) or {}).get(PAIR_KEY) == token
        weights_tmp.unlink(missing_ok=True)
        if not committed:
            state_tmp.unlink(missing_ok=True)
        if not isinstance(err, Exception):  # interrupted (Ctrl+C): nothing half-written stays behind either
            raise
        raise _SaveFailed(err, free, state_tmp if committed and state_tmp.exists() else None) from err


def task_file_path(weights_path: Path, name: str) -> Path:
    """Where the task file ``name`` of the checkpoint ``weights_path`` lies: ``<stem>.<name>`` beside it."""
    if not _TASK_FILE_NAME.fullmatch(name):
        raise CheckpointError(f"{weights_path}: {name!r} is not a task file name (letters, digits, '.', '_', '-')")
    return weights_path.with_name(f"{weights_path.stem}.{name}")


_TASK_FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")


def write_task_files(path: Path, data: SavedTaskData, config: RunConfig) -> dict[str, str]:
    """Write ``data``'s files beside the model file ``path`` (atomically; a file already there with the same
    bytes is kept) and return the header entries that name them and carry its metadata, with the ``config``
    entry of ``config`` as the file names it (:func:`naming_task_files`)."""
    hashes = {}
    for name, content in data.files.items():
        target = task_file_path(path, name)
        digest = hashlib.sha256(content).hexdigest()
        if not (target.is_file() and _sha256(target) == digest):
            atomic_write(target, lambda tmp, content=content: tmp.write_bytes(content))
        hashes[name] = digest
    entries = {key: value for key, value in data.metadata.items() if key.startswith(TASK_KEY_PREFIX)}
    config_entry = json.dumps(naming_task_files(config, path, data).to_dict())
    return {**entries, TASK_FILES_KEY: json.dumps(hashes, sort_keys=True), CONFIG_KEY: config_entry}


def naming_task_files(config: RunConfig, path: Path, data: SavedTaskData) -> RunConfig:
    """``config`` as the model file ``path`` names it: each path setting of its task whose file the task
    keeps beside the model (the task config's ``task_files``: a tokenizer file) names that file by its
    name alone, so the file travels with the model and is read from beside it wherever both are moved."""
    kept = getattr(type(config.task), "task_files", {})
    named = {f"task.{setting}": task_file_path(path, name).name for setting, name in kept.items()
             if getattr(config.task, setting) and name in data.files}
    return config.with_overrides(named) if named else config


def task_settings_but_kept_files(config: RunConfig) -> Any:
    """The task settings of ``config`` with the settings that name a kept task file blanked: the model
    files of one run each name their own copy of its tokenizer, whose sameness their hashes say."""
    kept = getattr(type(config.task), "task_files", {})
    return dataclasses.replace(config.task, **{setting: "" for setting in kept}) if kept else config.task


def saved_task_data(info: CheckpointInfo) -> SavedTaskData | None:
    """What the task of the checkpoint ``info`` kept with it, its files checked against the header's hashes;
    None for a checkpoint of a task that keeps nothing."""
    return task_data_beside(info.path, info.metadata)


def task_data_beside(path: Path, metadata: dict[str, str]) -> SavedTaskData | None:
    """What a task kept with the model file ``path`` (a checkpoint, an ONNX file) whose metadata is ``metadata``."""
    path = Path(path)
    entries = {key: value for key, value in metadata.items() if key.startswith(TASK_KEY_PREFIX)}
    text = metadata.get(TASK_FILES_KEY)
    if text is None and not entries:
        return None
    try:
        hashes = parse_typed(TASK_FILES_KEY, dict[str, str],
                             loads_json(text or "{}", source=path, field=TASK_FILES_KEY))
    except ConfigError as err:
        raise CheckpointError(f"{path}: header metadata {err.field}: {err.message}") from None
    files = {}
    for name, digest in hashes.items():
        file = task_file_path(path, name)
        try:
            with open_regular_file(file, what="task file") as handle:
                content = handle.read(MAX_TASK_FILE_BYTES + 1)
        except (PathError, OSError):
            raise CheckpointError(f"{path} was saved with {file.name} beside it (what its task was built "
                                  f"with), and it is missing or unreadable; keep the two files together") from None
        if len(content) > MAX_TASK_FILE_BYTES or hashlib.sha256(content).hexdigest() != digest:
            raise CheckpointError(f"{file} does not belong to {path}: its SHA-256 differs from the one the "
                                  "checkpoint names (replaced or edited since); restore the file saved with it")
        files[name] = content
    return SavedTaskData(entries, files)


def _at(point: str, file: Path, step: int) -> None:
    if fault_hook is not None:
        fault_hook(point, file, step)


def _temporary_path(path: Path, token: str) -> Path:
    """Where a save writes ``path`` before renaming it: a hidden name that :func:`recover` recognises."""
    return path.with_name(f".{path.name}.{token}.tmp")


def pending_state_path(weights_path: Path, token: str) -> Path:
    """The training state of the save ``token`` before it is renamed into place."""
    return _temporary_path(state_path(weights_path), token)


def _fsync_file(file: Path) -> None:
    with open(file, "rb+") as handle:
        os.fsync(handle.fileno())


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with open(file, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _reason(err: BaseException, free: int | None) -> str:
    """One line saying why a write failed; torch.save's error on a full disk does not say so itself."""
    lines = str(err).strip().splitlines()
    text = lines[0][:200] if lines else ""
    nearly_full = free is not None and free < FULL_DISK_BYTES
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        reason = err.strerror or "No space left on device"
    elif "No space left on device" in text or nearly_full:
        reason = "No space left on device"
    elif isinstance(err, OSError):
        reason = err.strerror or text
    else:
        reason = f"{type(err).__name__}: {text}" if text else type(err).__name__
    return f"{reason} ({free // 1024} KiB free)" if nearly_full else reason


def _header_metadata(path: Path) -> dict[str, str] | None:
    """A safetensors file's header metadata, without checking anything else; None if unreadable."""
    try:
        with safetensors.safe_open(str(path), framework="pt") as handle:
            return handle.metadata() or {}
    except Exception:  # nothing there, or not a safetensors file
        return None


def _header_step(path: Path) -> str | None:
    metadata = _header_metadata(path)
    return None if metadata is None else metadata.get("step", "?")


def _kept(path: Path) -> str:
    step = _header_step(path)
    return "no earlier checkpoint was there" if step is None else f"the checkpoint of step {step} is kept"


def clean_stale_temporaries(folder: Path, names: Iterable[str]) -> list[Path]:
    """Remove the temporary files an interrupted write of each of ``names`` left in ``folder``.

    Only hidden ``.NAME.*.tmp`` files (the pattern of :func:`atomic_write` and of a save)
    are touched; a file that cannot be removed is left.
    """
    removed = []
    for name in names:
        for stale in Path(folder).glob(f".{glob.escape(name)}.*.tmp"):
            try:
                stale.unlink()
            except OSError:
                continue
            removed.append(stale)
    return removed


def recover(path: Path) -> list[LogEvent]:
    """Finish what an interrupted save of the checkpoint ``path`` left, and say what was done.

    A state left under its temporary name by a save interrupted after its commit
    point is moved into place; every other temporary file of the checkpoint (its task
    files' included) is removed.
    """
    path = Path(path)
    notes = []
    pending = _pending_state(path)
    if pending is not None and _sha256(pending[0]) == pending[1]:
        try:
            os.replace(pending[0], state_path(path))
            _fsync_dir(path.parent)
        except OSError as err:
            raise CheckpointError(f"cannot complete the interrupted save of {path}: moving {pending[0].name} "
                                  f"into place failed ({err.strerror or err})") from None
        notes.append(LogEvent("warning", f"completed the save of step {_header_step(path)} that was interrupted after "
                                         f"its weights were written: its training state is now in place"))
    removed = clean_stale_temporaries(path.parent, (path.name, state_path(path).name, *_task_file_names(path)))
    if removed:
        notes.append(LogEvent("info", f"removed {len(removed)} temporary file(s) left by an interrupted save "
                                      f"in {path.parent}"))
    return notes


def _task_file_names(path: Path) -> list[str]:
    """The names of the task files the header of ``path`` binds to it (``checkpoint.tokenizer.json``); a
    header that names none, or none readable, gives none."""
    text = (_header_metadata(path) or {}).get(TASK_FILES_KEY)
    try:
        names = loads_json(text, source=path, field=TASK_FILES_KEY) if text else {}
    except ConfigError:
        return []
    if not isinstance(names, dict):
        return []
    return [f"{path.stem}.{name}" for name in names if isinstance(name, str) and _TASK_FILE_NAME.fullmatch(name)]


def _pending_state(path: Path) -> tuple[Path, str] | None:
    """(the state file named by ``path``'s header but not yet in place, its expected hash), if there is one."""
    metadata = _header_metadata(path) or {}  # no checkpoint, or not one of ours: nothing to complete
    token, digest = metadata.get(PAIR_KEY), metadata.get(STATE_HASH_KEY)
    if not token or not digest or not _is_token(token):
        return None
    pending = pending_state_path(path, token)
    return (pending, digest) if pending.is_file() else None


def _is_token(token: str) -> bool:
    """A token read from a file names a file: only our own hex tokens may (no path separators, no dots)."""
    return 0 < len(token) <= 64 and all(c in "0123456789abcdef" for c in token)


def checkpoint_metadata(config: RunConfig, step: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The header entries that make a safetensors file an effstudio checkpoint."""
    return {
        "effstudio.format": FORMAT_VERSION,
        "effstudio.version": effstudio.__version__,
        "model_type": config.model_type,
        "task": config.task_name,
        "step": str(step),
        CONFIG_KEY: json.dumps(config.to_dict()),
        **(extra or {}),
    }


@dataclass(frozen=True)
class _HeaderValues:
    """The scalar header entries, parsed and checked like any setting (the header stores text)."""

    step: int = param(0, min=0)


def header_step(metadata: dict[str, str]) -> int:
    """The header's ``step``, parsed and checked like a setting; a bad one is a ConfigError on ``step``."""
    return with_values(_HeaderValues(), {"step": metadata.get("step", "0")}).step


def read_info(path: str | Path) -> CheckpointInfo:
    """Read and check the header of an effstudio checkpoint without loading weights.

    Every value read from the header goes through the config layer's validation; a bad one is a
    CheckpointError naming the file and the field (``step``, ``config: model.d_model``).
    """
    path = Path(path)
    try:
        open_regular_file(path, what="checkpoint").close()
    except PathError as err:
        raise CheckpointError(str(err)) from None
    check_file(path, CheckpointError)  # the same verdict as `effstudio inspect` on a damaged header
    try:
        with safetensors.safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as err:  # safetensors raises its own error types for bad headers
        raise CheckpointError(f"{path} is not a readable safetensors file ({err})") from None
    if "effstudio.format" not in metadata or CONFIG_KEY not in metadata:
        raise CheckpointError(f"{path} is a safetensors file but not an effstudio checkpoint "
                              "(no effstudio metadata); use `effstudio inspect` to look inside it")
    try:
        config = RunConfig.from_json(metadata[CONFIG_KEY], source=path)
        step = header_step(metadata)
    except ConfigError as err:
        raise CheckpointError(f"{path}: header metadata {err.field}: {err.message}") from None
    return CheckpointInfo(path, config, step, metadata.get("effstudio.version", "?"), metadata)


def load_weights(model: nn.Module, path: Path) -> None:
    check_file(path, CheckpointError)
    try:
        missing, unexpected = safetensors.torch.load_model(model, str(path), strict=False)
    except Exception as err:
        raise CheckpointError(f"cannot load weights from {path}: {err}") from None
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not match the model: missing {sorted(missing)[:5]}, unexpected {sorted(unexpected)[:5]}"
        )


@dataclass(frozen=True)
class ResumePoint:
    """A verified checkpoint pair: its training state, the file it came from, and what was unusual."""

    path: Path
    step: int
    state: dict[str, Any]
    state_file: Path
    note: LogEvent | None = None


def has_training_state(path: Path) -> bool:
    """Whether the checkpoint ``path`` has a training state beside it (in place, or pending after its commit)."""
    return state_path(path).is_file() or _pending_state(path) is not None


def resume_point(path: str | Path) -> ResumePoint:
    """The training state of the checkpoint ``path``, after checking that both halves belong together.

    The weights' step and pair token must be the state's, and the state's bytes must
    have the hash the weights name (see the module docstring). The state of a save
    interrupted after its commit point is read from its temporary name, with a note.
    A pair that does not belong together raises CheckpointError naming both steps.
    """
    path = Path(path)
    info = read_info(path)
    token, digest = info.metadata.get(PAIR_KEY), info.metadata.get(STATE_HASH_KEY)
    in_place = state_path(path)
    if token is None:  # written before checkpoints were paired: the steps must agree
        state = _load_state(in_place)
        if _state_step(state) != info.step or "pair" in state:
            why = "its step differs" if "pair" not in state else "the weights name no pair token"
            raise _mismatch(path, info.step, in_place, _state_step(state), why)
        _check_fields(path, info.version, in_place, state)
        return ResumePoint(path, info.step, state, in_place)
    pending = _pending_state(path)
    if pending is not None and _sha256(pending[0]) == digest:
        state = _checked_state(path, info.step, token, pending[0])
        _check_fields(path, info.version, pending[0], state)
        note = LogEvent("warning", f"the save of step {info.step} was interrupted after its weights were written; "
                                   f"its training state is read from {pending[0].name}")
        return ResumePoint(path, info.step, state, pending[0], note)
    if not in_place.is_file():
        raise CheckpointError(f"cannot resume from {path}: its training state {in_place.name} is missing")
    if _sha256(in_place) != digest:
        state, unreadable = _load_state_or_why(in_place)
        if state is None:
            why = f"it is damaged, cut short or refused: {unreadable}"
        elif state.get("pair") != token:
            why = "it belongs to another save"
        else:
            why = "its bytes differ from the ones saved with these weights"
        raise _mismatch(path, info.step, in_place, _state_step(state), why)
    state = _checked_state(path, info.step, token, in_place)
    _check_fields(path, info.version, in_place, state)
    return ResumePoint(path, info.step, state, in_place)


def _checked_state(path: Path, step: int, token: str, state_file: Path) -> dict[str, Any]:
    state = _load_state(state_file)
    if state.get("pair") != token or _state_step(state) != step:
        raise _mismatch(path, step, state_file, _state_step(state), "its pair token or step differs")
    return state


def _check_fields(path: Path, version: str, state_file: Path, state: dict[str, Any]) -> None:
    """What resuming reads from a state must be there, of its kind: a state written by another version
    of effstudio (or by hand) that lacks one is refused naming it, not a KeyError halfway through."""
    optimizer, rng = state.get("optimizer"), state.get("rng_cpu")
    problems = []
    if not (isinstance(optimizer, dict) and isinstance(optimizer.get("state"), dict)
            and isinstance(optimizer.get("param_groups"), list)):
        problems.append("optimizer" if "optimizer" not in state else "optimizer (not an optimizer's state)")
    if not (isinstance(rng, torch.Tensor) and rng.dtype == torch.uint8 and rng.dim() == 1):
        problems.append("rng_cpu" if "rng_cpu" not in state else "rng_cpu (not a random generator's state)")
    if problems:
        raise CheckpointError(f"cannot resume from {path}: its training state {state_file.name} (effstudio "
                              f"{version}) lacks {', '.join(problems)}; start a new run from the weights with "
                              f"`effstudio train --init {path}`")


def _mismatch(path: Path, step: int, state_file: Path, state_step: int | None, why: str) -> CheckpointError:
    shown = "an unreadable step" if state_step is None else f"step {state_step}"
    return CheckpointError(f"cannot resume from {path}: its weights are at step {step} but its training state "
                           f"{state_file.name} is at {shown} ({why}), and no consistent checkpoint is left to fall "
                           f"back to; start a new run from the weights with `effstudio train --init {path}`")


def _state_step(state: dict[str, Any] | None) -> int | None:
    step = None if state is None else state.get("step")
    return step if isinstance(step, int) and not isinstance(step, bool) else None


def _load_state(state_file: Path) -> dict[str, Any]:
    """The training state, read within the same limits and scan as any PyTorch file (``effstudio inspect``)."""
    try:
        state, _ = load_torch_file(state_file)
    except TorchFileError as err:
        raise CheckpointError(f"cannot read training state {state_file.parent / str(err)}") from None
    except OSError as err:
        raise CheckpointError(f"cannot read training state {state_file}: {err.strerror or err}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{state_file} is not an effstudio training state (it holds a "
                              f"{type(state).__name__}, not a dict)")
    return state


def _load_state_or_why(state_file: Path) -> tuple[dict[str, Any] | None, str]:
    """(the state, "") or (None, why it cannot be read: a limit it exceeds, what its pickle would call)."""
    try:
        return _load_state(state_file), ""
    except CheckpointError as err:
        return None, str(err).removeprefix(f"cannot read training state {state_file.parent}/")


def load_train_state(path: Path) -> dict[str, Any]:
    """The verified training state of the checkpoint ``path`` (see :func:`resume_point`)."""
    return resume_point(path).state
