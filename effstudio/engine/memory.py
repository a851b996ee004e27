"""Memory readings: process RSS and, on CUDA, the caching allocator's counters."""

from __future__ import annotations

import psutil
import torch

_process = psutil.Process()
MB = 1024 * 1024


def rss_mb() -> float:
    return _process.memory_info().rss / MB


def cuda_memory_mb(device: torch.device) -> tuple[float, float, float] | None:
    """(allocated, reserved, peak allocated) in MB on a CUDA device, else None."""
    if device.type != "cuda":
        return None
    return (
        torch.cuda.memory_allocated(device) / MB,
        torch.cuda.memory_reserved(device) / MB,
        torch.cuda.max_memory_allocated(device) / MB,
    )
