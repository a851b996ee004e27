"""Process-group set-up for runs under torchrun (one process per device).

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; without them a run is a single
process and nothing here does anything. gloo is used on CPU, nccl on CUDA.

``train.batch_size`` is the global batch: each of the N processes takes
batch_size / N examples of every step (``data.MicroBatchIndices``). The ranks
hold different numbers of targets (an lm example scores each of its tokens),
so the trainer weights every micro-batch's loss by its share of the targets of
the whole step, summed over the ranks (``DistContext.sum``, before the first
backward), and undoes the 1/N of DistributedDataParallel's gradient averaging:
N processes then train exactly like one process with the same settings (up to
float rounding).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from effstudio.config import ConfigError

LEAVE_TIMEOUT_S = 60  # how long a rank that is done waits for the others before leaving the group


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

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Each value summed over all processes, in one all-reduce (float64: counts stay exact)."""
        if not self.enabled:
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every process when ``flag`` is true on any (a stop must end all ranks at the same step)."""
        if not self.enabled:
            return flag
        tensor = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
        return bool(tensor.item() > 0)

    def check_batch(self, batch_size: int, grad_accum: int) -> None:
        """The global batch must split evenly over processes and micro-batches, so that every
        micro-batch has examples and the ranks have the same work."""
        if self.enabled and batch_size % (self.world_size * grad_accum):
            raise ConfigError("train.batch_size", f"the global batch of {batch_size} does not split evenly over "
                                                  f"{self.world_size} processes x {grad_accum} micro-batches; use a "
                                                  f"multiple of {self.world_size * grad_accum}")


def context_from_env() -> DistContext:
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    return DistContext(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world_size)


TORCHRUN_VARIABLES = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "GROUP_RANK")


def leave_process_group() -> None:
    """End this process's part in the job's process group (every rank calls it after training).

    The ranks meet first: a rank that tears its gloo connections down while a peer still uses them can
    abort at exit ("terminate called without an active exception"). A peer that never comes (it failed)
    is waited for at most LEAVE_TIMEOUT_S; the group is destroyed either way.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    with suppress(RuntimeError):  # a peer that failed or left: nothing to wait for
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=timedelta(seconds=LEAVE_TIMEOUT_S))
        else:
            dist.barrier()
    dist.destroy_process_group()


@contextmanager
def single_process() -> Iterator[None]:
    """Within: a run started here is a single process, not a rank of the torchrun job.

    After a torchrun training, rank 0 alone runs the compression steps; their
    fine-tuning must not wait for ranks that have already finished.
    """
    saved = {name: os.environ.pop(name) for name in TORCHRUN_VARIABLES if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def init_process_group(context: DistContext, device: torch.device) -> None:
    if context.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def local_device(context: DistContext, device: torch.device) -> torch.device:
    """Under torchrun each process takes the CUDA device of its local rank."""
    if context.enabled and device.type == "cuda":
        torch.cuda.set_device(context.local_rank)
        return torch.device("cuda", context.local_rank)
    return device
