"""Quantization jobs: torch dynamic int8, half-precision weights, onnxruntime int8.

- ``dynamic-int8``: ``torch.ao`` dynamic quantization of the Linear layers
  (int8 weights with one scale per tensor; activations quantized on the fly),
  stored as described in :mod:`effstudio.engine.loading`.
- ``fp16`` / ``bf16``: every weight stored (and evaluated) in half precision.
- ``onnx-int8``: ONNX export, then onnxruntime's dynamic int8 quantization.
- ``onnx-int8-static``: ONNX export, then onnxruntime's static int8
  quantization (QDQ, MatMul/Gemm) calibrated on batches of the task's training
  split.

The quantized model is evaluated on the same validation split as the original.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from effstudio.compress.events import ProgressEvent, ResultEvent
from effstudio.compress.export import (
    LogitsOnly,
    check_exportable,
    copy_metadata,
    example_batch,
    export_onnx,
    onnx_evaluation,
    onnx_params,
    run_session,
    session,
)
from effstudio.compress.formats import count_params, save_dynamic_int8, save_float
from effstudio.compress.progress import evaluated, reported
from effstudio.compress.timed import timed_pair, timing_batches
from effstudio.engine.checkpoint import atomic_write, write_task_files
from effstudio.engine.data import eval_batches
from effstudio.engine.events import Event, JobControl, LogEvent
from effstudio.engine.loading import (
    DTYPES,
    CompressError,
    LoadedModel,
    is_dynamic_quantized,
    load_checkpoint,
    quantize_dynamic_int8,
)
from effstudio.engine.run_plan import QUANTIZE_METHODS
from effstudio.tasks.base import saved_data_of

CALIBRATION_BATCHES = 8
CALIBRATION_BATCH_SIZE = 16


def _accuracy(stage: str, model: nn.Module, loaded: LoadedModel, batch_size: int) -> Generator[Event, None, float]:
    return (yield from evaluated(stage, model, loaded.task.split("val"), loaded.task.spec, batch_size))


def linear_weight_bytes(model: nn.Module) -> int:
    """Bytes of the Linear layers' weights as stored: float tensors, or int8 plus a scale and zero point."""
    total = 0
    for module in model.modules():
        if is_dynamic_quantized(module):
            weight, _ = module._packed_params._weight_bias()
            total += weight.numel() + 4 + 8
        elif isinstance(module, nn.Linear):
            total += module.weight.numel() * module.weight.element_size()
    return total


def check_source(loaded: LoadedModel) -> None:
    if loaded.kind != "float32":
        raise CompressError(f"{loaded.info.path} is already a {loaded.kind} checkpoint; quantize the float32 one")


def quantize_job(checkpoint: Path, method: str, out: Path, control: JobControl | None = None,
                 eval_batch_size: int = 64, calibration_batches: int = CALIBRATION_BATCHES,
                 baseline_accuracy: float | None = None) -> Iterator[Event]:
    """Quantize a float32 checkpoint with ``method``, evaluate both, write ``out``; yields a ResultEvent last.

    ``baseline_accuracy``: the checkpoint's validation accuracy when it is already measured (the
    window's comparison has it), so the original is not evaluated again.
    """
    if method not in QUANTIZE_METHODS:
        raise CompressError(f"unknown quantization method {method!r}; use one of {', '.join(QUANTIZE_METHODS)}")
    out = Path(out)
    wants_onnx = method.startswith("onnx")
    if wants_onnx != (out.suffix.lower() == ".onnx"):
        what = "an .onnx file" if wants_onnx else "a .safetensors checkpoint"
        raise CompressError(f"{method} writes {what}; name the output accordingly (got {out.name})")
    loaded = load_checkpoint(checkpoint)
    check_source(loaded)
    model = loaded.model.eval()
    baseline = baseline_accuracy
    if baseline is None:
        yield LogEvent("info", f"evaluating the original on {loaded.config.task_name} (validation split)")
        baseline = yield from _accuracy("evaluating the original", model, loaded, eval_batch_size)
    else:
        yield LogEvent("info", f"the original's accuracy is already measured ({100 * baseline:.1f}%): not evaluated "
                               "again")
    params = count_params(model)
    if wants_onnx:
        yield from _onnx_int8(loaded, method, out, baseline, params, eval_batch_size, calibration_batches)
        return
    if method == "dynamic-int8":
        yield ProgressEvent("quantizing", 0, 1, 0.0)
        quantized = quantize_dynamic_int8(model)
        accuracy = yield from _accuracy("evaluating the quantized model", quantized, loaded, eval_batch_size)
        save_dynamic_int8(out, quantized, loaded.config, loaded.info.step, task=loaded.task)
    else:
        quantized = copy.deepcopy(model).to(DTYPES["float16" if method == "fp16" else "bfloat16"])
        accuracy = yield from _accuracy("evaluating the quantized model", quantized, loaded, eval_batch_size)
        save_float(out, quantized, loaded.config, loaded.info.step, task=loaded.task)
    details: dict[str, Any] = {
        "linear_weight_bytes_before": linear_weight_bytes(model),
        "linear_weight_bytes_after": linear_weight_bytes(quantized),
    }
    details["linear_weight_ratio"] = details["linear_weight_bytes_before"] / max(details["linear_weight_bytes_after"], 1)
    details["accuracy_drop_points"] = 100 * (baseline - accuracy)
    yield ResultEvent(method, str(out), count_params(quantized), params, out.stat().st_size, accuracy, baseline,
                      details)


class _Calibration:
    """onnxruntime's CalibrationDataReader protocol over the task's training batches."""

    def __init__(self, loaded: LoadedModel, batches: int, batch_size: int):
        spec = loaded.task.spec
        split = loaded.task.split("train")
        self.feeds = []
        for index, batch in enumerate(eval_batches(split, spec.pad_id, batch_size)):
            if index >= batches:
                break
            self.feeds.append({"inputs": batch.inputs.numpy(), "mask": batch.mask.numpy()})
        self.used = 0
        self._iter = iter(self.feeds)

    def get_next(self) -> dict[str, Any] | None:
        feed = next(self._iter, None)
        if feed is not None:
            self.used += 1
        return feed

    def rewind(self) -> None:
        self._iter = iter(self.feeds)


def _onnx_int8(loaded: LoadedModel, method: str, out: Path, baseline: float, params: int,
               eval_batch_size: int, calibration_batches: int) -> Iterator[Event]:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    check_exportable(loaded)
    spec = loaded.task.spec
    val = loaded.task.split("val")
    details: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="effstudio-onnx-") as folder:
        fp32 = Path(folder) / "model.onnx"
        yield LogEvent("info", "exporting to ONNX (float32)")
        export_onnx(loaded.model, loaded.config, spec, example_batch(val, spec, 2), fp32)

        def write(tmp: Path) -> None:
            if method == "onnx-int8":
                quantize_dynamic(str(fp32), str(tmp), weight_type=QuantType.QInt8)
            else:
                reader = _Calibration(loaded, calibration_batches, CALIBRATION_BATCH_SIZE)
                quantize_static(str(fp32), str(tmp), reader, quant_format=QuantFormat.QDQ,
                                op_types_to_quantize=["MatMul", "Gemm"],
                                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
                details["calibration_batches"] = reader.used
                details["calibration_batch_size"] = CALIBRATION_BATCH_SIZE
            copy_metadata(fp32, tmp, {"effstudio.quantization": method, **task_entries})

        task_data = saved_data_of(loaded.task)
        task_entries = write_task_files(out, task_data, loaded.config) if task_data is not None else {}
        yield LogEvent("info", f"quantizing with onnxruntime ({method})")
        yield ProgressEvent(f"quantizing with onnxruntime ({method})", 0, 1, 0.0)
        atomic_write(out, write)
        float_bytes = fp32.stat().st_size
    sess = session(out)
    accuracy = (yield from reported("evaluating the quantized model", onnx_evaluation(sess, val, spec, eval_batch_size),
                                    len(val)))[1]
    one, _, length = timing_batches(val, spec.pad_id)
    wrapper = LogitsOnly(loaded.model).eval()
    yield ProgressEvent(f"timing PyTorch and onnxruntime alternately ({length} tokens)", 0, 1, 0.0)
    with torch.inference_mode():
        torch_ms, int8_ms = timed_pair(lambda: wrapper(one.inputs, one.mask),
                                       lambda: run_session(sess, one.inputs, one.mask))
    details["latency_ms_onnx_int8_b1"] = int8_ms.p50_ms
    details["latency_ms_torch_b1"] = torch_ms.p50_ms
    details["timing_length"] = length
    details["onnx_float_bytes"] = float_bytes
    details["accuracy_drop_points"] = 100 * (baseline - accuracy)
    yield ResultEvent(method, str(out), onnx_params(out), params, out.stat().st_size, accuracy, baseline, details)
