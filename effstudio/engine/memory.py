"""Memory readings: process RSS, the peak memory of a computation (resident, or of the tensors it allocates) and,
on CUDA, the caching allocator's counters."""

from __future__ import annotations

import gc
import sys
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import psutil
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

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


# ------------------------------------------------------------- peak memory, CPU
def _linux_status_kb(name: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise OSError(f"{name} is missing from /proc/self/status")


def _reset_peak_rss() -> None:
    """Lower the kernel's high-water mark to the current RSS, where the OS allows it.

    Linux (>= 4.0) does this through /proc/self/clear_refs. Elsewhere the mark
    keeps any earlier peak (the imports'), see :func:`_peak_rss`.
    """
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as clear:
                clear.write("5")
        except OSError:
            pass  # a locked-down /proc: the mark is then an upper bound, as on other systems


def _peak_rss() -> int:
    """The process's peak resident memory in bytes, as the kernel counts it (no sampling)."""
    if sys.platform.startswith("linux"):
        return _linux_status_kb("VmHWM") * 1024
    if sys.platform == "win32":
        return psutil.Process().memory_info().peak_wset
    import resource  # not on Windows

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB on the BSDs


class PeakMemory:
    """Peak memory of what runs after construction, above what was in use at construction.

    CPU: the baseline is the RSS right before the first computation (the inputs
    and the module already exist), the peak is the kernel's high-water mark after
    the last one. A sampling thread would miss short spikes and compete with the
    computation for the CPU; the high-water mark misses nothing. Where it cannot
    be reset (macOS, Windows, a locked /proc) it may still hold an earlier,
    higher peak from start-up, so the figure can only be too high, never too low,
    and only by start-up's transient slack (a few MB), not by the computation.

    CUDA: the caching allocator's own peak counter, reset here; cached but unused
    blocks do not count, so this is the memory the computation really needed.
    """

    def __init__(self, device: torch.device):
        self.device = device
        gc.collect()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            self.baseline = torch.cuda.memory_allocated(device)
        else:
            self.baseline = psutil.Process().memory_info().rss
            _reset_peak_rss()

    def peak_mb(self) -> float:
        if self.device.type == "cuda":
            peak = torch.cuda.max_memory_allocated(self.device)
        else:
            peak = _peak_rss()
        return max(0, peak - self.baseline) / MB


# --------------------------------------------------- tensor memory of a computation
class TensorPeak(TorchDispatchMode):
    """Peak bytes of the tensors that PyTorch operators allocate inside the ``with`` block.

    Every operator's outputs are seen on their way out; a storage counts once however many views
    share it, from the moment an operator returns it until the last tensor on it is freed. Storages
    that existed before the block (weights, inputs, views of them) never count. What a fused
    kernel allocates for itself and frees before returning is not seen, nor memory outside
    PyTorch's tensors. Unlike the process's resident memory this does not depend on what the
    allocator kept from earlier work, so it measures the computation, not the process's history.
    """

    def __init__(self, existing: Iterable[torch.Tensor] = ()):
        super().__init__()
        self._existing = {t.untyped_storage().data_ptr() for t in existing}
        self._live: dict[int, list[int]] = {}  # storage address -> [bytes, tensors on it]
        self.live_bytes = 0
        self.peak_bytes = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        out = func(*args, **(kwargs or {}))
        inputs = {a.untyped_storage().data_ptr() for a in tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)
                  and not a.is_quantized}
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor) and not tensor.is_quantized:
                self._track(tensor, inputs)
        return out

    def _track(self, tensor: torch.Tensor, inputs: set[int]) -> None:
        storage = tensor.untyped_storage()
        address = storage.data_ptr()
        if address == 0 or address in self._existing:
            return
        entry = self._live.get(address)
        if entry is None:
            if address in inputs:  # an alias of an operand allocated before the block started
                return
            entry = self._live[address] = [storage.nbytes(), 0]
            self.live_bytes += entry[0]
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        entry[1] += 1
        weakref.finalize(tensor, self._release, address)

    def _release(self, address: int) -> None:
        entry = self._live.get(address)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del self._live[address]
            self.live_bytes -= entry[0]

    @property
    def peak_mb(self) -> float:
        return self.peak_bytes / MB


def forward_peak_mb(run: Callable[[], object], existing: Iterable[torch.Tensor]) -> float:
    """Peak MB of the tensors ``run()`` allocates (see :class:`TensorPeak`), its result freed before returning."""
    with TensorPeak(existing) as peak:
        result = run()
        del result
    return peak.peak_mb
