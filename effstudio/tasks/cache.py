"""Disk cache for generated task splits: one safetensors file per (config, generator version).

Generating a data set can take seconds; every run, the GUI preview and the tests
would pay for it again. The file lives at ``task_cache_dir(task) / <key>.safetensors``
where the key hashes the task's config and its generator version, so a change to
either gives a new file instead of silently reusing stale data. safetensors is
used instead of ``torch.save`` so that loading a cache file never unpickles code.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from effstudio.atomic_file import write_atomic
from effstudio.paths import task_cache_dir

log = logging.getLogger(__name__)

SUFFIX = ".safetensors"
KEY_LENGTH = 16  # hex characters: 64 bits, plenty for a handful of configs per task


def _identity(config: Mapping[str, Any], version: int) -> str:
    """Canonical text for a config and generator version (sorted keys: dict order must not matter)."""
    return json.dumps({"config": dict(config), "version": version}, sort_keys=True, default=str)


def cache_key(config: Mapping[str, Any], version: int) -> str:
    """A short, stable hash of the config dict and the generator version."""
    return hashlib.sha256(_identity(config, version).encode("utf-8")).hexdigest()[:KEY_LENGTH]


def cache_path(task_name: str, config: Mapping[str, Any], version: int) -> Path:
    return task_cache_dir(task_name) / f"{cache_key(config, version)}{SUFFIX}"


def _read(
    path: Path, identity: str, expected_keys: Collection[str] | None
) -> dict[str, torch.Tensor]:
    """Load a cache file; raise ValueError when it is not the file we expect."""
    with safe_open(str(path), framework="pt") as f:
        # The identity in the metadata guards against a hash collision or a hand-copied file.
        if (f.metadata() or {}).get("identity") != identity:
            raise ValueError("cache file was written for a different config")
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    if expected_keys is not None and set(tensors) != set(expected_keys):
        raise ValueError(f"cache file holds {sorted(tensors)}, expected {sorted(expected_keys)}")
    return tensors


def _write_atomic(path: Path, tensors: Mapping[str, torch.Tensor], identity: str) -> None:
    """Write via a temp file in the same folder and os.replace, so readers never see half a file.

    The tensors are written straight to the file: a task's encoded splits can be hundreds of megabytes,
    and a copy of them in memory (or of the whole file as bytes) would double or triple the peak."""
    write_atomic(path, lambda temporary: save_file({k: _standalone(v) for k, v in tensors.items()}, str(temporary),
                                                   {"identity": identity}))


def _standalone(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` itself when it owns its whole storage; else a copy. safetensors refuses tensors that are
    not contiguous or that share memory with another (a view into a larger tensor)."""
    tensor = tensor.detach()
    whole = tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size()
    return tensor if tensor.is_contiguous() and whole and tensor.storage_offset() == 0 else tensor.clone()


def load_or_create(
    task_name: str,
    config: Mapping[str, Any],
    version: int,
    generate: Callable[[], Mapping[str, torch.Tensor]],
    *,
    expected_keys: Collection[str] | None = None,
) -> dict[str, torch.Tensor]:
    """The cached tensors for this config, generating and storing them when missing.

    An unreadable or corrupt cache file is logged and regenerated, never fatal; a cache
    folder that cannot be written only costs the regeneration next time.
    ``expected_keys`` (tensor names) lets a task refuse a file missing some split.
    """
    identity = _identity(config, version)
    path = cache_path(task_name, config, version)
    if path.exists():
        try:
            return _read(path, identity, expected_keys)
        except Exception as err:  # any failure to read means "not cached"; regenerate below
            log.warning(
                "regenerating %s data: cache file %s is unusable (%s)", task_name, path, err
            )
    tensors = dict(generate())
    try:
        _write_atomic(path, tensors, identity)
    except OSError as err:
        log.warning(
            "could not write %s cache file %s (%s); data will be regenerated next time",
            task_name,
            path,
            err,
        )
    return tensors
