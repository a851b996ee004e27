"""effstudio's attention kinds side by side with independent implementations of the same patterns.

For each kind whose peer package is installed, both compute forward+backward
on the same inputs (and, where the peer has weights, projections or random
features, the same ones), B=1, H=4, D=64, float32, on ``threads`` threads:

- local: ``local-attention``'s LocalAttention, exact window of 64 on each side;
- longformer: Hugging Face's LongformerSelfAttention (one-sided window 64,
  global token 0); effstudio's side applies the layer's own q, k, v projections
  before its kind, so both do the same work; the global projections are set to
  the local ones, which is what effstudio's kind computes;
- reformer: ``reformer-pytorch``'s LSHAttention, buckets of 64, 2 rounds, no
  attention across buckets, duplicates counted once (its chunks do not start
  at bucket boundaries and it draws its own rotations: timed, not compared, max_abs_diff None);
- performer: ``performer-pytorch``'s FastAttention, 256 features, with
  effstudio's kind given the peer's projection (the peer adds 1e-4 to every
  feature, so the outputs differ by about that: compared, not required equal;
  queries and keys are scaled by 1/4 so that the logits are of a moderate size).

Times are medians of ``repeats`` calls after a warm-up, the two sides timed
alternately in one process so that a busier machine slows both. Peak memory
is measured for each side in a fresh process of its own (the kernel's
high-water mark, above the inputs), as ``bench attention`` does.

The peers are imported only here and only when this benchmark runs.
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

BATCH, HEADS, HEAD_DIM = 1, 4, 64
WINDOW, BUCKET, HASHES, FEATURES = 64, 64, 2, 256
EXACT_TOLERANCE = 1e-5


@dataclass(frozen=True)
class Peer:
    kind: str
    name: str  # what the rows call the peer
    module: str  # the package's import name
    install: str  # how to install it
    exact: bool  # same semantics: max_abs_diff must stay within EXACT_TOLERANCE
    comparable: bool = True  # same inputs give comparable outputs (else max_abs_diff is None)


PEERS = (
    Peer("local", "local-attention (exact window)", "local_attention", "pip install local-attention", True),
    Peer("longformer", "transformers LongformerSelfAttention", "transformers", "pip install transformers", True),
    Peer("reformer", "reformer-pytorch LSHAttention", "reformer_pytorch", "pip install reformer-pytorch", False,
         comparable=False),
    Peer("performer", "performer-pytorch FastAttention", "performer_pytorch", "pip install performer-pytorch", False),
    Peer("linear", "fast-transformers LinearAttention", "fast_transformers",
         "pip install --no-build-isolation pytorch-fast-transformers (compiles C++ extensions against the "
         "installed torch: needs a C++ compiler; it also builds CUDA ones whenever nvcc is on PATH, which then "
         "needs CUDA_HOME)", False),
)

SETTINGS = {
    "batch": BATCH, "heads": HEADS, "head_dim": HEAD_DIM, "dtype": "float32", "pass": "forward+backward",
    "local": f"window {WINDOW} each side, exact", "longformer": f"window {WINDOW} each side, global token 0, "
    "q/k/v projections included on both sides", "reformer": f"bucket {BUCKET}, {HASHES} rounds, no cross-bucket "
    "attention, duplicates counted once", "performer": f"{FEATURES} features, the peer's projection",
    "linear": "elu(x) + 1 features on both sides; the peer adds 1e-6 to every denominator",
    "ratio": "peer_ms / effstudio_ms (above 1: effstudio faster)",
}


def installed(peer: Peer) -> bool:
    return importlib.util.find_spec(peer.module) is not None


# -------------------------------------------------------------------- cases
# A case is (effstudio, peer): two functions of no argument returning (out, inputs); out's
# backward with a fixed gradient is the forward+backward that is timed.
Case = tuple[Callable[[], torch.Tensor], Callable[[], torch.Tensor], list[torch.Tensor]]


def _kind(name: str, length: int, **config: Any) -> torch.nn.Module:
    from dataclasses import replace

    from effstudio.attention.base import AttentionSpec
    from effstudio.registry import get_registry

    entry = get_registry().get("attention", name)
    spec = AttentionSpec(dim=HEADS * HEAD_DIM, heads=HEADS, max_length=max(length, 2 * WINDOW + 2))
    return entry.factory(replace(entry.default_config(), **config), spec)


def _heads(generator: torch.Generator, length: int, count: int = 3) -> list[torch.Tensor]:
    return [torch.randn(BATCH, HEADS, length, HEAD_DIM, generator=generator).requires_grad_() for _ in range(count)]


def local_case(length: int, generator: torch.Generator) -> Case:
    from local_attention import LocalAttention

    q, k, v = _heads(generator, length)
    ours = _kind("local", length, window=WINDOW)
    peer = LocalAttention(window_size=WINDOW, causal=False, look_backward=1, look_forward=1,
                          exact_windowsize=True, autopad=True)
    return (lambda: ours(q, k, v)[0]), (lambda: peer(q, k, v)), [q, k, v]


def longformer_case(length: int, generator: torch.Generator) -> Case:
    from transformers import LongformerConfig
    from transformers.models.longformer.modeling_longformer import LongformerSelfAttention

    dim = HEADS * HEAD_DIM
    config = LongformerConfig(hidden_size=dim, num_attention_heads=HEADS, attention_window=[2 * WINDOW],
                              attention_probs_dropout_prob=0.0)
    peer = LongformerSelfAttention(config, layer_id=0)
    with torch.no_grad():
        for name in ("query", "key", "value"):
            layer, twin = getattr(peer, name), getattr(peer, name + "_global")
            layer.weight.copy_(torch.randn(dim, dim, generator=generator) * dim**-0.5)
            layer.bias.copy_(torch.randn(dim, generator=generator) * 0.1)
            twin.load_state_dict(layer.state_dict())
    ours = _kind("longformer", length, window=WINDOW, global_tokens="0")
    hidden = torch.randn(BATCH, length, dim, generator=generator).requires_grad_()
    mask = torch.zeros(BATCH, length)
    mask[:, 0] = 10000.0  # the layer's convention: > 0 global, 0 local, < 0 padding

    def split(x: torch.Tensor) -> torch.Tensor:
        return x.view(BATCH, length, HEADS, HEAD_DIM).transpose(1, 2)  # (B, H, N, D)

    def effstudio() -> torch.Tensor:
        q, k, v = (split(torch.nn.functional.linear(hidden, layer.weight, layer.bias))
                   for layer in (peer.query, peer.key, peer.value))
        out = ours(q, k, v)[0]  # (B, H, N, D)
        return out.transpose(1, 2).reshape(BATCH, length, dim)

    def hugging_face() -> torch.Tensor:
        return peer(hidden, attention_mask=mask, is_index_masked=mask < 0, is_index_global_attn=mask > 0,
                    is_global_attn=True)[0]

    return effstudio, hugging_face, [hidden]


def reformer_case(length: int, generator: torch.Generator) -> Case:
    from reformer_pytorch.reformer_pytorch import LSHAttention

    qk, v = _heads(generator, length, 2)
    ours = _kind("reformer", length, n_hashes=HASHES, bucket_size=BUCKET)
    peer = LSHAttention(bucket_size=BUCKET, n_hashes=HASHES, causal=False, attend_across_buckets=False,
                        allow_duplicate_attention=False)

    def flat(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(BATCH * HEADS, length, HEAD_DIM)

    def reformer_pytorch() -> torch.Tensor:
        return peer(flat(qk), flat(v))[0].view(BATCH, HEADS, length, HEAD_DIM)

    return (lambda: ours(qk, qk, v)[0]), reformer_pytorch, [qk, v]


def performer_case(length: int, generator: torch.Generator) -> Case:
    from performer_pytorch import FastAttention

    q, k, v = _heads(generator, length)
    with torch.no_grad():  # logits of a moderate size, where the peer's 1e-4 per feature is a small bias
        q.mul_(0.25)
        k.mul_(0.25)
    ours = _kind("performer", length, features=FEATURES)
    peer = FastAttention(dim_heads=HEAD_DIM, nb_features=FEATURES, causal=False)
    with torch.no_grad():
        ours.projection.copy_(peer.projection_matrix)
    ours.eval()  # no redraw counting: the projection stays the peer's
    return (lambda: ours(q, k, v)[0]), (lambda: peer(q, k, v)), [q, k, v]


def linear_case(length: int, generator: torch.Generator) -> Case:
    from fast_transformers.attention import LinearAttention
    from fast_transformers.masking import FullMask, LengthMask

    q, k, v = _heads(generator, length)
    ours = _kind("linear", length)
    peer = LinearAttention(HEAD_DIM)  # elu(x) + 1 features, as effstudio's; 1e-6 added to the denominator
    everything = FullMask(length, device=q.device)
    lengths = LengthMask(torch.full((BATCH,), length, dtype=torch.long), max_len=length)

    def fast_transformers() -> torch.Tensor:
        queries, keys, values = (x.transpose(1, 2) for x in (q, k, v))  # the peer's (B, N, H, D)
        return peer(queries, keys, values, everything, lengths, lengths).transpose(1, 2)  # (B, H, N, D)

    return (lambda: ours(q, k, v)[0]), fast_transformers, [q, k, v]


CASES: dict[str, Callable[[int, torch.Generator], Case]] = {
    "local": local_case, "longformer": longformer_case, "reformer": reformer_case, "performer": performer_case,
    "linear": linear_case,
}


def _build(kind: str, length: int) -> tuple[Callable[[], torch.Tensor], Callable[[], torch.Tensor],
                                            list[torch.Tensor], torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    ours, peer, inputs = CASES[kind](length, generator)
    with torch.no_grad():
        shape = ours().shape
    grad = torch.randn(shape, generator=generator)
    return ours, peer, inputs, grad


def _step(fn: Callable[[], torch.Tensor], inputs: list[torch.Tensor], grad: torch.Tensor) -> torch.Tensor:
    for tensor in inputs:
        tensor.grad = None
    out = fn()
    out.backward(grad)
    return out


# ------------------------------------------------------------------- memory
def _memory_child(kind: str, length: int, side: int, threads: int, queue: Any) -> None:
    from effstudio.engine.memory import PeakMemory

    torch.set_num_threads(threads)
    fns = _build(kind, min(length, 256))  # pages in the code and starts the thread pool
    _step(fns[side], fns[2], fns[3])
    fns = _build(kind, length)
    memory = PeakMemory(torch.device("cpu"))
    for _ in range(2):
        _step(fns[side], fns[2], fns[3])
    queue.put(memory.peak_mb())


def peak_mb(kind: str, length: int, side: int, threads: int) -> float:
    """Peak memory of one side (0 effstudio, 1 the peer) in a fresh process, above its inputs."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_memory_child, args=(kind, length, side, threads, queue), daemon=True)
    child.start()
    try:
        return round(queue.get(timeout=900), 1)
    finally:
        child.join()


# -------------------------------------------------------------------- a row
def compare(kind: str, length: int, *, repeats: int, threads: int, memory: bool = True) -> dict[str, Any]:
    """One row: both sides timed alternately, their outputs compared, their peaks measured apart."""
    torch.set_num_threads(threads)
    peer = next(p for p in PEERS if p.kind == kind)
    ours, theirs, inputs, grad = _build(kind, length)
    diff = (_step(ours, inputs, grad) - _step(theirs, inputs, grad)).abs().max().item() if peer.comparable else None
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for side, fn in enumerate((ours, theirs)):
            start = time.perf_counter()
            _step(fn, inputs, grad)
            times[side].append(1000 * (time.perf_counter() - start))
    ours_ms, peer_ms = (statistics.median(t) for t in times)
    return {
        "kind": kind, "peer": peer.name, "length": length,
        "effstudio_ms": round(ours_ms, 2), "peer_ms": round(peer_ms, 2), "ratio": round(peer_ms / ours_ms, 3),
        "effstudio_peak_mb": peak_mb(kind, length, 0, threads) if memory else None,
        "peer_peak_mb": peak_mb(kind, length, 1, threads) if memory else None,
        "max_abs_diff": None if diff is None else float(f"{diff:.3g}"), "exact": peer.exact,
        "spread_ms": [round(min(times[0]), 2), round(max(times[0]), 2), round(min(times[1]), 2),
                      round(max(times[1]), 2)],
    }


def measure_peers(lengths: tuple[int, ...] = (4096, 16384), *, repeats: int = 5, threads: int = 2,
                  kinds: tuple[str, ...] | None = None, memory: bool = True,
                  on_row: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Every installed peer at every length: {"settings", "rows", "missing", "problems"}."""
    rows, missing, problems = [], [], []
    for peer in PEERS:
        if kinds is not None and peer.kind not in kinds:
            continue
        if peer.kind not in CASES or not installed(peer):
            missing.append({"kind": peer.kind, "peer": peer.name, "install": peer.install})
            continue
        for length in lengths:
            row = compare(peer.kind, length, repeats=repeats, threads=threads, memory=memory)
            if peer.exact and row["max_abs_diff"] > EXACT_TOLERANCE:
                problems.append(f"{peer.kind} at {length}: outputs differ by {row['max_abs_diff']:g}")
            rows.append(row)
            if on_row is not None:
                on_row(row)
    settings = {**SETTINGS, "threads": threads, "repeats": repeats, "lengths": list(lengths)}
    return {"settings": settings, "rows": rows, "missing": missing, "problems": problems}
