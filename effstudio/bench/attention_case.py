"""One case of the attention benchmark, measured in a fresh process.

The parent (:mod:`effstudio.bench.attention`) starts this as
``effstudio bench attention-case ARGS`` and reads the one JSON line it prints::

    {"ok": true, "ms": 12.5, "ms_q1": 12.1, "ms_q3": 13.0, "calls": 80, "peak_mb": 270.1}
    {"ok": false, "error": "...", "out_of_memory": false}

A fresh process per case is what makes the memory figure honest on the CPU: the
process's peak resident memory then belongs to this one computation, with no
allocator caches or freed-but-kept pages left over from other kinds or lengths.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from effstudio.attention.base import AttentionSpec
from effstudio.bench.attention_floor import FLOORS, build_floor
from effstudio.config import ConfigError
from effstudio.engine.memory import PeakMemory
from effstudio.registry import get_registry

PRIME_LENGTH = 256  # tokens of the short run before the baseline
WARMUP_S = 0.5  # warm-up calls until this much time has passed: the first calls of a process are slower
MIN_TIMED_S = 1.0  # timed calls: at least --repeats, and more until this much time is measured
MAX_CALLS = 200  # timed calls at most


# ----------------------------------------------------------------- the case
def measure(kind: str, length: int, *, batch: int, heads: int, head_dim: int, backward: bool,
            causal: bool, device: str, repeats: int) -> dict[str, Any]:
    """Median milliseconds of ``repeats`` runs after one warm-up, and the peak memory above baseline."""
    dev = torch.device(device)
    spec = AttentionSpec(dim=heads * head_dim, heads=heads, causal=causal, max_length=length)
    if kind in FLOORS:
        if causal:
            raise ConfigError("causal", f"{kind} is the floor of bidirectional attention only")
        attention = build_floor(kind, spec).to(dev)
    else:
        entry = get_registry().get("attention", kind)
        attention = entry.factory(entry.default_config(), spec).to(dev)
    attention.train(backward)  # forward only is inference: no dropout, no autograd graph
    sync: Callable[[], None] = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)

    def inputs(n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(0)
        return tuple(torch.randn(batch, heads, n, head_dim, generator=generator).to(dev).requires_grad_(backward)
                     for _ in range(3))  # (B, H, N, D)

    def run(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        for tensor in (q, k, v):
            tensor.grad = None
        keys = q if attention.shares_qk else k  # such kinds read their keys from the queries, as in a block
        out, _ = attention(q, keys, v)  # (B, H, N, D)
        if backward:
            out.sum().backward()
        sync()

    times = []
    with torch.set_grad_enabled(backward):
        # a short run first pages in the code this kind uses and starts the thread pools, so the
        # baseline below holds them: what is measured is the memory of the computation itself
        run(*inputs(min(length, PRIME_LENGTH)))
        q, k, v = inputs(length)
        memory = PeakMemory(dev)
        # warm-up: kernels chosen, caches filled, the allocator's heap grown to its steady size (the
        # first few calls of a process run up to half again as long); the memory is the first call's
        warm_until = time.perf_counter() + WARMUP_S
        run(q, k, v)
        peak_mb = memory.peak_mb()  # of one call: later calls add only the allocator's fragmentation
        while time.perf_counter() < warm_until:
            run(q, k, v)
        while len(times) < repeats or (sum(times) < MIN_TIMED_S and len(times) < MAX_CALLS):
            start = time.perf_counter()
            run(q, k, v)
            times.append(time.perf_counter() - start)
    q1, median, q3 = statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else times * 3
    return {"ok": True, "ms": 1000 * median, "ms_q1": 1000 * q1, "ms_q3": 1000 * q3, "calls": len(times),
            "peak_mb": peak_mb}


def _failure(err: BaseException) -> dict[str, Any]:
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return {"ok": False, "error": "out of memory (CUDA)", "out_of_memory": True}
    if isinstance(err, MemoryError) or "can't allocate memory" in message:  # the CPU allocator's RuntimeError
        return {"ok": False, "error": f"out of memory: {message}", "out_of_memory": True}
    if isinstance(err, ConfigError):
        return {"ok": False, "error": message, "out_of_memory": False}
    return {"ok": False, "error": f"{type(err).__name__}: {message}", "out_of_memory": False}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="effstudio bench attention-case",
                                     description="Measure one attention case; prints one JSON line.")
    parser.add_argument("--kind", required=True)
    parser.add_argument("--length", type=int, required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--heads", type=int, required=True)
    parser.add_argument("--head-dim", type=int, required=True)
    parser.add_argument("--backward", action=argparse.BooleanOptionalAction, required=True)
    parser.add_argument("--causal", action=argparse.BooleanOptionalAction, required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--repeats", type=int, required=True)
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = measure(args.kind, args.length, batch=args.batch, heads=args.heads, head_dim=args.head_dim,
                         backward=args.backward, causal=args.causal, device=args.device, repeats=args.repeats)
    except Exception as err:  # a failed case is a result to report, never a crash
        result = _failure(err)
    print(json.dumps(result), flush=True)
    return 0
