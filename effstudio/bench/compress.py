"""Compression benchmark: the compression lab's targets measured on one model.

A d_model=256 Transformer (2 blocks, 8 heads, sdpa) is trained briefly on
ListOps (fixed seed, sequences of 64 to 128 tokens), then:

- dynamic int8 (torch.ao) against float32 eager: batch-1 latency (p50) on the
  longest validation example, Linear weight bytes, accuracy;
- onnxruntime (float32) against eager PyTorch: batch-1 latency, the largest
  absolute logit difference on two batches of other shapes than the traced one;
  also at batch 1 on shorter prefixes of the same example, for context;
- structured pruning of half the heads and half the feed-forward neurons of
  every block (no fine-tuning): measured wall-clock latency at batch 1 and 32;
- distillation on the digits images: a ViT teacher (d_model 128, 4 blocks)
  trained for ``distill_steps``, and a student with a fifth of its
  parameters (d_model 64, 3 blocks) distilled for as many steps: parameter
  ratio and accuracy ratio on the validation split, beside the same student
  trained on the labels alone (alpha 0) for context. ListOps is no test of
  distillation: a briefly trained model there barely beats the majority class.

Latencies are timed as ``effstudio compare`` and the Compress section's table
time them (:mod:`effstudio.compress.timed`): the float32 model, int8, onnxruntime
and the pruned model all together, alternately, batch 1 on the longest
validation example (or ``length`` tokens) and batch 32 on the 32 longest at that
length, medians of the passes after a warm-up, with ``threads`` CPU threads for
both PyTorch and onnxruntime (default 1, so that other processes on a shared
machine disturb the figures least). ``timing`` in the report gives every
variant's spread (p95 / p50) and a verdict: the machine was too busy for the
comparison to hold when a spread is too wide, or when a longer prefix measured
faster than a shorter one.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from effstudio.compress.distill import DistillSettings, distill_job
from effstudio.compress.export import (
    example_batch,
    export_onnx,
    parity,
    parity_batches,
    run_session,
    session,
)
from effstudio.compress.formats import count_params
from effstudio.compress.prune import structured_prune
from effstudio.compress.quantize import linear_weight_bytes
from effstudio.compress.timed import check_length, timed_pair, timing_batches
from effstudio.engine.data import Batch, eval_batches
from effstudio.engine.events import DoneEvent
from effstudio.engine.loading import load_checkpoint, quantize_dynamic_int8
from effstudio.engine.objective import evaluate
from effstudio.engine.run_config import RunConfig
from effstudio.engine.timing import (
    Timing,
    Verdict,
    comparison_verdict,
    ordering_verdict,
    time_alternately,
)
from effstudio.engine.trainer import train
from effstudio.models.structure import blocks_of, ff_width
from effstudio.tasks.base import Split

TARGETS = {"int8_speedup_b1": 1.7, "int8_linear_ratio": 3.5, "int8_accuracy_drop_points": 0.5,
           "onnx_speedup_b1": 1.5, "onnx_max_abs_diff": 1e-4, "pruned_speedup": 1.5,
           "student_param_ratio": 0.25, "student_accuracy_ratio": 0.97}
SHORTER_LENGTHS = (16, 32, 64)  # onnxruntime against eager also at these lengths (the target is at the longest)
STUDENT = ("model.d_model=64", "model.layers=3", "model.heads=4", "model.dropout=0.0", "train.lr=3e-3")
CPU = torch.device("cpu")


def bench_config(steps: int) -> RunConfig:
    return RunConfig.create("transformer", "listops", {
        "model.d_model": 256, "model.layers": 2, "model.heads": 8, "model.attention": "sdpa",
        "model.dropout": 0.0,
        "task.train_size": 4000, "task.val_size": 500, "task.min_length": 64, "task.max_length": 128,
        "train.steps": steps, "train.batch_size": 32, "train.lr": 1e-3, "train.warmup_steps": min(30, steps // 5),
        "train.eval_every": steps, "train.attention_every": 0, "train.device": "cpu", "train.seed": 0,
    })


def distill_teacher_config(steps: int) -> RunConfig:
    return RunConfig.create("vit", "digits", {
        "model.d_model": 128, "model.layers": 4, "model.heads": 4, "model.dropout": 0.0,
        "train.steps": steps, "train.lr": 2e-3, "train.eval_every": steps, "train.attention_every": 0,
        "train.device": "cpu", "train.seed": 0,
    })


def _forward(model: torch.nn.Module) -> Callable[[Batch], object]:
    def run(batch: Batch) -> object:
        with torch.inference_mode():
            return model(batch.inputs, batch.mask)
    return run


def timing_report(b1: dict[str, Timing], b32: dict[str, Timing], by_length: dict[int, dict[str, float]],
                  length: int) -> dict[str, Any]:
    """Every variant's p50, p95 and spread, and whether the comparison holds: no spread too wide, and no
    longer prefix measured faster than a shorter one (eager PyTorch and onnxruntime)."""
    spread = comparison_verdict({**{f"{name} at batch 1": t for name, t in b1.items()},
                                 **{f"{name} at batch 32": t for name, t in b32.items()}})
    verdicts = [spread]
    for runtime, key, full in (("eager PyTorch", "eager_ms", b1["float32"].p50_ms),
                               ("onnxruntime", "onnx_ms", b1["onnxruntime"].p50_ms)):
        order = ordering_verdict([(n, v[key]) for n, v in by_length.items()] + [(length, full)])
        verdicts.append(order if order.holds else Verdict(False, f"{runtime}: {order.text}"))
    failed = [v for v in verdicts if not v.holds]
    return {
        "length_b1": length, "length_b32": length,
        "b1": {name: {"p50_ms": t.p50_ms, "p95_ms": t.p95_ms, "spread": t.spread} for name, t in b1.items()},
        "b32": {name: {"p50_ms": t.p50_ms, "p95_ms": t.p95_ms, "spread": t.spread} for name, t in b32.items()},
        "holds": not failed,
        "verdict": "; ".join(v.text for v in failed) if failed else spread.text,
    }


def measure_compress(train_steps: int = 300, distill_steps: int = 800, threads: int = 1,
                     folder: Path | None = None, length: int | None = None) -> dict[str, Any]:
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))
    try:
        with tempfile.TemporaryDirectory(prefix="effstudio-bench-compress-") as tmp:
            return _measure(train_steps, distill_steps, Path(folder) if folder else Path(tmp), length)
    finally:
        torch.set_num_threads(previous_threads)


def _measure(train_steps: int, distill_steps: int, folder: Path, length: int | None = None) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    config = bench_config(train_steps)
    started = time.perf_counter()
    done = None
    for event in train(config, out_dir=folder / "teacher"):
        if isinstance(event, DoneEvent):
            done = event
    if done is None or done.checkpoint is None:
        raise RuntimeError("the benchmark model did not train")
    train_s = time.perf_counter() - started
    loaded = load_checkpoint(done.checkpoint)
    model, spec = loaded.model, loaded.task.spec
    val = loaded.task.split("val")
    check_length(length, loaded.task)
    one, many, length = timing_batches(val, spec.pad_id, length)

    def accuracy(m: torch.nn.Module) -> float:
        return evaluate(m, val, spec.pad_id, spec.objective, 64, CPU)[1]

    base_acc = accuracy(model)
    counts = torch.bincount(val.targets.flatten()[val.targets.flatten() >= 0])
    majority = float(counts.max()) / float(counts.sum())
    report: dict[str, Any] = {
        "model": {"d_model": 256, "layers": 2, "heads": 8, "attention": "sdpa", "task": "listops",
                  "train_steps": train_steps, "train_s": round(train_s, 1), "params": count_params(model),
                  "accuracy": base_acc, "majority_class_accuracy": majority, "timing_length_b1": int(one.inputs.shape[1]),
                  "timing_length_b32": int(many.inputs.shape[1]), "threads": torch.get_num_threads()},
    }

    # the variants, made first, then timed together as the comparison table times them
    q = quantize_dynamic_int8(model)
    path = export_onnx(model, loaded.config, spec, example_batch(val, spec, 2), folder / "model.onnx")
    sess = session(path)
    pruned = load_checkpoint(done.checkpoint)
    original = [(int(b.heads), ff_width(b.mlp)) for b in blocks_of(pruned.model)]
    structured_prune(pruned.model, pruned, 0.5, True, True, "magnitude", original)
    pm = pruned.model.eval()
    variants = {"float32": _forward(model), "dynamic-int8": _forward(q),
                "onnxruntime": lambda batch: run_session(sess, batch.inputs, batch.mask), "pruned": _forward(pm)}
    b1 = time_alternately({name: (lambda f=f: f(one)) for name, f in variants.items()}, repeats=30, warmup=3)
    b32 = time_alternately({name: (lambda f=f: f(many)) for name, f in variants.items()}, repeats=10, warmup=1,
                           rounds=5)
    fp_ms = b1["float32"].p50_ms

    q_acc = accuracy(q)
    report["dynamic_int8"] = {
        "fp32_ms_b1": fp_ms, "int8_ms_b1": b1["dynamic-int8"].p50_ms, "speedup_b1": fp_ms / b1["dynamic-int8"].p50_ms,
        "linear_ratio": linear_weight_bytes(model) / linear_weight_bytes(q),
        "accuracy_fp32": base_acc, "accuracy_int8": q_acc, "accuracy_drop_points": 100 * (base_acc - q_acc)}

    # shorter inputs (prefixes of the same example): where per-operator overhead, not matrix maths, dominates
    by_length = {}
    for prefix in (n for n in SHORTER_LENGTHS if n < length):
        part = Batch(one.inputs[:, :prefix], one.mask[:, :prefix], one.targets)
        eager, ort = timed_pair(lambda p=part: variants["float32"](p), lambda p=part: variants["onnxruntime"](p))
        by_length[prefix] = {"eager_ms": eager.p50_ms, "onnx_ms": ort.p50_ms, "speedup": eager.p50_ms / ort.p50_ms}
    report["onnx"] = {"eager_ms_b1": fp_ms, "onnx_ms_b1": b1["onnxruntime"].p50_ms,
                      "speedup_b1": fp_ms / b1["onnxruntime"].p50_ms, "speedup_b1_by_length": by_length,
                      "max_abs_diff": parity(model, sess, parity_batches(val, spec))}

    # structured pruning: half the heads and half the neurons of every block
    report["pruned"] = {"heads": [int(b.heads) for b in blocks_of(pm)], "ff": [ff_width(b.mlp)
                                                                              for b in blocks_of(pm)],
                        "params": count_params(pm), "ms_b1": b1["pruned"].p50_ms, "full_ms_b1": fp_ms,
                        "speedup_b1": fp_ms / b1["pruned"].p50_ms, "ms_b32": b32["pruned"].p50_ms,
                        "full_ms_b32": b32["float32"].p50_ms,
                        "speedup_b32": b32["float32"].p50_ms / b32["pruned"].p50_ms,
                        "accuracy_no_finetune": accuracy(pm)}
    report["timing"] = timing_report(b1, b32, by_length, length)

    report["distill"] = _measure_distill(folder / "distill", distill_steps)
    report["targets"] = _verdicts(report)
    return report


def _measure_distill(folder: Path, steps: int) -> dict[str, Any]:
    teacher = None
    for event in train(distill_teacher_config(steps), out_dir=folder / "teacher"):
        if isinstance(event, DoneEvent):
            teacher = event
    if teacher is None or teacher.checkpoint is None:
        raise RuntimeError("the distillation teacher did not train")
    results = {}
    for alpha in (0.5, 0.0):  # distilled, and the same student from the labels alone
        settings = DistillSettings("vit", STUDENT, steps=steps, temperature=2.0, alpha=alpha)
        for event in distill_job(teacher.checkpoint, settings, folder / f"student-alpha{alpha}.safetensors"):
            if event.kind == "result":
                results[alpha] = event
    result, alone = results[0.5], results[0.0]
    loaded = load_checkpoint(teacher.checkpoint)
    student = load_checkpoint(result.path).model
    val = loaded.task.split("val")
    return {"task": "digits", "model": "vit", "steps": steps, "student_params": result.params,
            "teacher_params": result.baseline_params, "param_ratio": result.details["param_ratio"],
            "student_accuracy": result.accuracy, "teacher_accuracy": result.baseline_accuracy,
            "accuracy_ratio": result.details["accuracy_ratio"], "student_alone_accuracy": alone.accuracy,
            "agreement": _agreement(loaded.model, student, val, loaded.task.spec.pad_id)}


def _agreement(a: torch.nn.Module, b: torch.nn.Module, split: Split, pad_id: int) -> float:
    """Share of validation predictions on which two models agree."""
    same = total = 0
    with torch.inference_mode():
        for batch in eval_batches(split, pad_id, 64):
            pa, pb = a(batch.inputs, batch.mask).logits.argmax(-1), b(batch.inputs, batch.mask).logits.argmax(-1)
            same += int((pa == pb).sum())
            total += pa.numel()
    return same / max(total, 1)


def _verdicts(r: dict[str, Any]) -> dict[str, dict[str, Any]]:
    got = {
        "int8_speedup_b1": (r["dynamic_int8"]["speedup_b1"], ">="),
        "int8_linear_ratio": (r["dynamic_int8"]["linear_ratio"], ">="),
        "int8_accuracy_drop_points": (r["dynamic_int8"]["accuracy_drop_points"], "<="),
        "onnx_speedup_b1": (r["onnx"]["speedup_b1"], ">="),
        "onnx_max_abs_diff": (r["onnx"]["max_abs_diff"], "<="),
        "pruned_speedup": (max(r["pruned"]["speedup_b1"], r["pruned"]["speedup_b32"]), ">="),
        "student_param_ratio": (r["distill"]["param_ratio"], "<="),
        "student_accuracy_ratio": (r["distill"]["accuracy_ratio"] or 0.0, ">="),
    }
    return {name: {"value": value, "target": f"{op} {TARGETS[name]}",
                   "met": value >= TARGETS[name] if op == ">=" else value <= TARGETS[name]}
            for name, (value, op) in got.items()}


def format_report(report: dict[str, Any]) -> str:
    m = report["model"]
    lines = [f"model: d_model 256, 2 blocks, 8 heads, sdpa, ListOps; {m['params']:,} parameters, trained "
             f"{m['train_steps']} steps in {m['train_s']} s, accuracy {m['accuracy']:.3f} (majority class "
             f"{m['majority_class_accuracy']:.3f}); "
             f"{m['threads']} thread(s); batch 1 at {m['timing_length_b1']} tokens, batch 32 at "
             f"{m['timing_length_b32']}, every variant timed alternately",
             f"timing {'holds' if report['timing']['holds'] else 'DOES NOT HOLD'}: {report['timing']['verdict']}", "",
             f"{'target':<28} {'measured':>12} {'goal':>10}  met"]
    for name, verdict in report["targets"].items():
        value = verdict["value"]
        shown = f"{value:.2e}" if abs(value) < 1e-2 and value != 0 else f"{value:.3f}"
        lines.append(f"{name:<28} {shown:>12} {verdict['target']:>10}  {'yes' if verdict['met'] else 'NO'}")
    d, o, p, dist = report["dynamic_int8"], report["onnx"], report["pruned"], report["distill"]
    lines += ["", f"int8: {d['fp32_ms_b1']:.2f} ms -> {d['int8_ms_b1']:.2f} ms at batch 1; accuracy "
                  f"{d['accuracy_fp32']:.3f} -> {d['accuracy_int8']:.3f}",
              f"onnx: {o['eager_ms_b1']:.2f} ms -> {o['onnx_ms_b1']:.2f} ms at batch 1; speed-up at shorter "
              "lengths: " + ", ".join(f"{n} tokens {v['speedup']:.2f}x" for n, v in o["speedup_b1_by_length"].items()),
              f"pruned (heads {p['heads']}, ff {p['ff']}): batch 1 {p['full_ms_b1']:.2f} -> {p['ms_b1']:.2f} ms, "
              f"batch 32 {p['full_ms_b32']:.1f} -> {p['ms_b32']:.1f} ms",
              f"distill (ViT on digits, {dist['steps']} steps): student {dist['student_params']:,} of "
              f"{dist['teacher_params']:,} parameters, accuracy {dist['student_accuracy']:.3f} (teacher "
              f"{dist['teacher_accuracy']:.3f}; the student from labels alone {dist['student_alone_accuracy']:.3f}), "
              f"agrees with the teacher on {100 * dist['agreement']:.1f}% of validation examples"]
    return "\n".join(lines)

