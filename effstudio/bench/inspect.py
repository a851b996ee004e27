"""Inspector benchmark: time to a summary, time to every tensor's statistics, memory growth.

It writes its own synthetic safetensors file (float32 matrices with a few
pruned-to-zero ones, streamed to disk one tensor at a time) in a temporary
folder, asks the OS to drop the file from its cache (where it can, so the
figures are for a file read from disk, as after a download), then measures:

- ``summary_s``: open the file and describe it (format, sizes, parameters, architecture);
- ``stats_s``: min/max/mean/std/sparsity of every tensor, in chunks, from the memory map;
- ``stats_warm_s``: the same again, the file now in the OS cache;
- ``peak_rss_growth_mb``: the process's peak resident memory during the statistics
  above what it used before them, from the kernel's high-water mark (reset first
  where the OS allows; see :class:`effstudio.engine.memory.PeakMemory`).
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from effstudio.engine.memory import PeakMemory
from effstudio.inspect import open_model
from effstudio.inspect.report import summary_record
from effstudio.inspect.stats import all_stats

MB = 1024 * 1024
COLUMNS = 1024


def write_synthetic(path: Path, size_mb: float, tensors: int, seed: int = 0) -> int:
    """A safetensors file of about ``size_mb`` MiB in ``tensors`` float32 matrices; returns its size."""
    rows = max(1, int(size_mb * MB / 4 / COLUMNS / tensors))
    per_tensor = rows * COLUMNS * 4
    header: dict[str, Any] = {"__metadata__": {"made_by": "effstudio bench inspect"}}
    for index in range(tensors):
        name = f"layers.{index // 4}.{('attn.q_proj', 'attn.k_proj', 'mlp.up', 'mlp.down')[index % 4]}.weight"
        header[name] = {"dtype": "F32", "shape": [rows, COLUMNS],
                        "data_offsets": [index * per_tensor, (index + 1) * per_tensor]}
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    rng = np.random.default_rng(seed)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(text)))
        handle.write(text)
        for index in range(tensors):
            block = rng.standard_normal((rows, COLUMNS), dtype=np.float32)
            if index % 10 == 3:
                block[np.abs(block) < 0.5] = 0.0  # a pruned matrix: about 38 % zeros
            handle.write(block.tobytes())
        handle.flush()
        os.fsync(handle.fileno())
    return path.stat().st_size


def _drop_from_cache(path: Path) -> bool:
    if not hasattr(os, "posix_fadvise"):
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def measure_inspect(size_mb: float = 100, tensors: int = 100, folder: Path | None = None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="effstudio-bench-inspect-", dir=folder) as tmp:
        path = Path(tmp) / "synthetic.safetensors"
        file_bytes = write_synthetic(path, size_mb, tensors)
        cold = _drop_from_cache(path)

        start = time.perf_counter()
        inspected = open_model(path)
        summary = summary_record(inspected)
        summary_s = time.perf_counter() - start

        memory = PeakMemory(torch.device("cpu"))
        start = time.perf_counter()
        stats = all_stats(inspected)
        stats_s = time.perf_counter() - start
        peak_mb = memory.peak_mb()

        start = time.perf_counter()
        all_stats(inspected)
        stats_warm_s = time.perf_counter() - start
        inspected.close()
        del inspected
    failed = [name for name, value in stats.items() if isinstance(value, str)]
    return {
        "file_mb": round(file_bytes / MB, 1), "tensors": len(stats), "params": summary["params"],
        "cache": "cold" if cold else "warm", "summary_s": round(summary_s, 4), "stats_s": round(stats_s, 3),
        "stats_warm_s": round(stats_warm_s, 3), "peak_rss_growth_mb": round(peak_mb, 1),
        "stats_mb_per_s": round(file_bytes / MB / stats_s, 1) if stats_s > 0 else None, "failed": failed,
    }
