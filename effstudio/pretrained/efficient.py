"""Make a trained (or imported) model efficient: another attention kind, a longer maximum length.

The blocks own the q/k/v/out projections and an attention kind only mixes the
values (see effstudio.attention.base), so swapping the kind keeps every trained
weight: kernel kinds (Performer, linear) read the same queries and keys through
their feature maps, windowed kinds (Longformer, local, BigBird) the same keys
within their pattern. What a kind owns itself is made new: Linformer's
per-position projections are created for the new length (a Linformer kept as it
is carries its columns over, the new positions reusing the old ones cyclically).
Learned position tables grow by copying (effstudio.models.lengthen), as the
Longformer authors grew RoBERTa's 512 positions to 4,096.

Works on any effstudio model and its run config; the returned config builds the
returned model (same parameter names and shapes), so the converted model is an
ordinary checkpoint for train --init, distill --teacher, compress and compare.

:func:`attention_memory_estimate` says how much memory one layer's attention
needs at a length: from the attention benchmark's measured curves (the last
report the Benchmark section or ``effstudio bench attention`` recorded, scaled to
the model's heads) where the kind was measured, else from the kind's shape.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from effstudio.atomic_file import write_text_atomic
from effstudio.attention.base import Attention, AttentionSpec
from effstudio.attention.sparse import resolved_stride
from effstudio.config import ConfigError, fields_of
from effstudio.engine.run_config import RunConfig
from effstudio.models.lengthen import extend_positions, learned_position_tables
from effstudio.models.transformer import build_attention
from effstudio.paths import data_dir
from effstudio.pretrained.hf_folder import read_json
from effstudio.registry import UnknownEntryError, get_registry

MB = 1024 * 1024
FLOAT_BYTES = 4  # float32


@dataclass
class Efficient:
    model: nn.Module
    config: RunConfig
    notes: list[str]  # "position table 514 -> 4098 rows by copying", "attention full -> longformer"


def current_max_length(config: RunConfig) -> int | None:
    """The longest input the model takes now: its task's max_length setting (None when the task has none)."""
    if any(f.name == "max_length" for f in fields_of(type(config.task))):
        return int(config.task.max_length)
    return None


def efficient_config(config: RunConfig, *, attention: str | None = None,
                     attention_settings: dict[str, Any] | None = None, max_length: int | None = None
                     ) -> RunConfig:
    """The run config of the converted model; bad choices are one ConfigError (nothing is built)."""
    if config.attention_kind is None and (attention is not None or attention_settings):
        raise ConfigError("attention", f"model type {config.model_type!r} has no attention kind to swap")
    overrides: dict[str, Any] = {}
    if attention is not None:
        try:
            get_registry().get("attention", attention)
        except UnknownEntryError as err:  # named with the known ones
            raise ConfigError("attention", str(err)) from None
        overrides["model.attention"] = attention
    new = config.with_overrides(overrides)
    if attention_settings:
        new = new.with_overrides({f"attention.{key}": value for key, value in attention_settings.items()})
    if max_length is not None:
        own = current_max_length(config)
        if own is None:
            raise ConfigError("max_length", f"task {config.task_name!r} has no maximum length to raise "
                                            "(an image model's positions follow its grid)")
        if max_length < own:
            raise ConfigError("max_length", f"a maximum length of {max_length} is below the model's own {own}; "
                                            f"give {own} or more")
        new = new.with_overrides({"task.max_length": max_length})
    return new


def make_efficient(model: nn.Module, config: RunConfig, *, attention: str | None = None,
                   attention_settings: dict[str, Any] | None = None, max_length: int | None = None) -> Efficient:
    """A converted copy of ``model`` (the original is left as it is) and the run config that builds it."""
    new_config = efficient_config(config, attention=attention, attention_settings=attention_settings,
                                  max_length=max_length)
    model = copy.deepcopy(model)
    notes: list[str] = []
    old_length = current_max_length(config)
    grow = 0 if max_length is None or old_length is None else max_length - old_length
    specs = {id(m): m.spec for m in model.modules() if isinstance(m, Attention)}  # before lengthening
    if grow:
        rows_before = learned_position_tables(model)
        grown = extend_positions(model, max_length)
        rows_after = learned_position_tables(model)
        notes += [f"position table {name}: {rows_before[name]} -> {rows_after[name]} rows by copying"
                  for name in grown]
        if hasattr(model, "max_length"):
            model.max_length = max_length  # a sinusoidal model has no table, only this bound
        notes.append(f"maximum length {old_length} -> {max_length}")

    kind_changed = new_config.attention_kind != config.attention_kind
    if kind_changed or new_config.attention != config.attention or grow:
        entry = get_registry().get("attention", new_config.attention_kind)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.train.seed)  # new per-kind parameters are the same on every run
            swapped = _swap_attention(model, specs, entry, new_config.attention, old_length, grow, kind_changed)
        if kind_changed:
            notes.append(f"attention {config.attention_kind} -> {new_config.attention_kind} in {swapped} "
                         "layers; q/k/v/out weights kept")
        _note_shared_keys(model, notes)
    model_config = getattr(model, "config", None)
    if model_config is not None and type(model_config) is type(new_config.model):
        model.config = new_config.model  # the model's own record of its kind
    return Efficient(model=model.eval(), config=new_config, notes=notes)


def _swap_attention(model: nn.Module, specs: dict[int, AttentionSpec], entry: Any, settings: Any,
                    old_length: int | None, grow: int, kind_changed: bool) -> int:
    """Replace every self-attention module (a block's ``attention``) by one of the new kind and length.

    Cross-attention (seq2seq's ``cross``) is left alone. Returns how many were replaced.
    """
    swapped = 0
    for block in list(model.modules()):
        old = block._modules.get("attention")
        if not isinstance(old, Attention):
            continue
        spec = specs[id(old)]
        if grow and old_length is not None and spec.max_length in (old_length, old_length + 1):
            spec = dataclasses.replace(spec, max_length=spec.max_length + grow)  # a summary token adds 1
        new = build_attention(entry, settings, spec)
        if not kind_changed:
            _carry_parameters(old, new)
        block.attention = new
        _match_key_projection(block, new)
        swapped += 1
    return swapped


def _carry_parameters(old: nn.Module, new: nn.Module) -> None:
    """The old module's parameters and buffers into the new one of the same kind; one that grew along its
    last axis (Linformer's per-position columns) takes the old columns, repeated cyclically."""
    old_state = old.state_dict()
    state = new.state_dict()
    for name, value in state.items():
        before = old_state.get(name)
        if before is None or before.dim() != value.dim():
            continue
        if before.shape == value.shape:
            state[name] = before
        elif before.shape[:-1] == value.shape[:-1]:
            cycle = torch.arange(value.shape[-1]) % before.shape[-1]
            state[name] = before[..., cycle]
    new.load_state_dict(state)


def _match_key_projection(block: nn.Module, attention: Attention) -> None:
    """A kind that reads keys from the queries (Reformer) needs no key projection; another one does:
    it starts as a copy of the query projection, which is what the shared space computed."""
    if not hasattr(block, "k") or not hasattr(block, "q"):
        return
    if attention.shares_qk and block.k is not None:
        block.k = None
    elif not attention.shares_qk and block.k is None:
        block.k = copy.deepcopy(block.q)


def _note_shared_keys(model: nn.Module, notes: list[str]) -> None:
    blocks = [m for m in model.modules() if isinstance(m._modules.get("attention"), Attention) and hasattr(m, "k")]
    if blocks and all(b.k is None for b in blocks):
        notes.append("keys read from the queries (shared query/key space): key projections dropped")


def parameter_count(model: nn.Module) -> int:
    """Distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


# ------------------------------------------------------------------ memory estimates
@dataclass(frozen=True)
class MemoryEstimate:
    mb: float
    source: str  # "measured" (scaled from the benchmark's curve) or "estimated" (from the kind's shape)


def measured_curves_path() -> Path:
    """Where the last attention benchmark report is recorded (the ``bench attention --json`` record)."""
    return data_dir() / "bench" / "attention-latest.json"


def record_attention_report(report: dict[str, Any]) -> None:
    """Keep a finished attention benchmark's report for the estimates (best effort: a failure is ignored)."""
    path = measured_curves_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(path, json.dumps(report))
    except OSError:
        pass


def measured_curves(path: Path | None = None) -> dict[str, Any] | None:
    """The recorded attention benchmark report, or None when there is none (or it cannot be read)."""
    try:
        report = read_json(path or measured_curves_path(), "benchmark report")  # a regular file, a bounded read
    except ConfigError:
        return None
    return report if isinstance(report.get("rows"), list) else None


def attention_memory_estimate(config: RunConfig, attention: str, length: int) -> float | None:
    """MB one layer's attention needs at ``length`` tokens, batch 1 (from bench curves where measured)."""
    estimate = attention_memory(config, attention, length)
    return None if estimate is None else estimate.mb


def attention_memory(config: RunConfig, attention: str, length: int,
                     settings: Any = None, report: dict[str, Any] | None = None) -> MemoryEstimate | None:
    """:func:`attention_memory_estimate` with where the figure comes from; ``settings`` are the kind's
    (default: the config's when it is that kind, else the kind's defaults)."""
    heads = getattr(config.model, "heads", None)
    width = getattr(config.model, "d_model", None)
    if not heads or not width or length < 1:
        return None
    report = measured_curves() if report is None else report
    measured = _from_curve(report, attention, length, heads) if report else None
    if measured is not None:
        return MemoryEstimate(measured, "measured")
    if settings is None:
        settings = (config.attention if attention == config.attention_kind
                    else get_registry().get("attention", attention).default_config())
    keys = keys_per_query(attention, settings, length, width // heads)
    if keys is None:
        return None
    head_dim = width // heads
    # scores and probabilities (H, N, keys) plus q, k, v and the output (H, N, D each), float32
    elements = heads * length * (2 * keys + 4 * head_dim)
    return MemoryEstimate(elements * FLOAT_BYTES / MB, "estimated")


def keys_per_query(kind: str, settings: Any, length: int, head_dim: int) -> int | None:
    """How many scores per query a kind keeps at once (its N x keys working set); None if unknown."""
    value = {f.name: getattr(settings, f.name) for f in fields_of(type(settings))} if settings is not None else {}
    if kind == "full":
        return length
    if kind == "sdpa":
        return 0  # fused kernels never hold the N x N scores
    if kind in ("longformer", "local"):
        return min(length, 2 * int(value.get("window", 0)) * int(value.get("dilation", 1)) + 1)
    if kind == "linformer":
        return int(value.get("k", 0))
    if kind == "performer":
        return int(value.get("features", head_dim))
    if kind == "linear":
        return head_dim
    if kind == "bigbird":
        blocks = int(value.get("window_blocks", 0)) + int(value.get("random_blocks", 0)) \
            + 2 * int(value.get("global_blocks", 0))
        return min(length, blocks * int(value.get("block_size", 0)))
    if kind == "reformer":
        return min(length, 2 * int(value.get("n_hashes", 1)) * int(value.get("bucket_size", 0)))
    if kind == "sparse" and settings is not None:
        stride = resolved_stride(settings, length)
        return min(length, 2 * int(value.get("local_span", stride)) + math.ceil(length / stride))
    return None


def _from_curve(report: dict[str, Any], kind: str, length: int, heads: int) -> float | None:
    """The kind's measured peak MB at ``length``, interpolated on log-log axes between the nearest measured
    lengths (extrapolated from the last two), scaled from the benchmark's batch and heads to 1 and ``heads``."""
    points = sorted((int(r["length"]), float(r["peak_mb"])) for r in report.get("rows", [])
                    if isinstance(r, dict) and r.get("kind") == kind and r.get("ok")
                    and isinstance(r.get("length"), int) and isinstance(r.get("peak_mb"), (int, float))
                    and r["peak_mb"] > 0 and r["length"] > 0)
    if not points:
        return None
    settings = report.get("settings") if isinstance(report.get("settings"), dict) else {}
    scale = heads / max(int(settings.get("heads", heads) or heads), 1) / max(int(settings.get("batch", 1) or 1), 1)
    if len(points) == 1:
        (n0, mb0), = points
        return mb0 * scale * (length / n0) ** (2 if kind == "full" else 1)
    below = [p for p in points if p[0] <= length]
    above = [p for p in points if p[0] >= length]
    if below and above:
        (n0, mb0), (n1, mb1) = below[-1], above[0]
    else:
        (n0, mb0), (n1, mb1) = (points[:2] if not below else points[-2:])
    if n0 == n1:
        return mb0 * scale
    slope = math.log(mb1 / mb0) / math.log(n1 / n0)
    return mb0 * (length / n0) ** slope * scale
