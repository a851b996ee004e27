"""Process-group set-up for runs under torchrun (one process per device).

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; without them a run is a single
process and nothing here does anything. gloo is used on CPU, nccl on CUDA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def average(self, value: float, device: torch.device) -> float:
        """The mean of a scalar over all processes (for logging the global loss)."""
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return float(tensor) / self.world_size


def context_from_env() -> DistContext:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    return DistContext(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world_size)


def init_process_group(context: DistContext, device: torch.device) -> None:
    if context.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def local_device(context: DistContext, device: torch.device) -> torch.device:
    """Under torchrun each process takes the CUDA device of its local rank."""
    if context.enabled and device.type == "cuda":
        torch.cuda.set_device(context.local_rank)
        return torch.device("cuda", context.local_rank)
    return device
