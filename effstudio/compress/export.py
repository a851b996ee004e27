"""ONNX export, a parity check against PyTorch, and onnxruntime sessions.

The exporter is torch's TorchScript-based one (``dynamo=False``): it needs no
package beyond ``onnx``. Attention kinds whose fast paths the tracer cannot
follow (custom autograd Functions, chunk loops sized in Python) switch to a
forward of plain tensor operations while exporting (see
``effstudio.attention.base.exporting``), which computes the same function; the
parity check below confirms it for every file. Model types do the same where
their eager forward depends on the data: a mixture of experts runs every expert,
the Universal Transformer runs all its ACT steps, the hierarchical encoder
encodes every segment of its grid. The graph takes ``inputs`` (B,
N) int64 token ids and ``mask`` (B, N) bool (True = real token) and returns
``logits``; batch and sequence length are dynamic axes for every attention
kind (a model with learned positions still accepts at most its ``max_length``
tokens, and BigBird and Reformer graphs carry their random choices only up to
that length). The run config is stored in the file's metadata
properties, so an ONNX file can be evaluated on its task like a checkpoint.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

import effstudio
from effstudio.attention.base import Attention
from effstudio.compress.events import ProgressEvent, ResultEvent
from effstudio.compress.formats import count_params
from effstudio.compress.progress import evaluated, reported
from effstudio.compress.timed import timed_pair, timing_batches
from effstudio.config import ConfigError
from effstudio.engine.checkpoint import atomic_write, write_task_files
from effstudio.engine.data import Batch, eval_batches, make_batch
from effstudio.engine.events import Event, JobControl, LogEvent
from effstudio.engine.loading import (
    CompressError,
    LoadedModel,
    checked_onnx,
    load_checkpoint,
    read_onnx_metadata,
)
from effstudio.engine.objective import correct_and_count, scored_count, task_loss
from effstudio.engine.run_config import RunConfig
from effstudio.models.base import ModelOutput
from effstudio.tasks.base import SavedTaskData, Split, TaskSpec, saved_data_of

if TYPE_CHECKING:  # onnxruntime is imported when a session opens
    from onnxruntime import InferenceSession

OPSET = 17
INPUT_NAMES = ("inputs", "mask")
PARITY_LIMIT = 1e-4


class LogitsOnly(nn.Module):
    """The model as ONNX sees it: (inputs, mask) -> logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.model(inputs, mask).logits


def check_exportable(loaded: LoadedModel) -> None:
    if loaded.kind == "dynamic-int8":
        raise CompressError(f"{loaded.info.path} holds torch dynamic-int8 layers, which ONNX cannot take; export "
                            "the float checkpoint and use `effstudio quantize --method onnx-int8` instead")
    if loaded.task.spec.channels:
        raise CompressError("ONNX export takes token models; image models are not supported yet")


def example_batch(split: Split, spec: TaskSpec, size: int) -> Batch:
    return make_batch(split, torch.arange(min(size, len(split))), spec.pad_id)


def export_onnx(model: nn.Module, config: RunConfig, spec: TaskSpec, example: Batch, path: Path,
                opset: int = OPSET, task_data: SavedTaskData | None = None) -> Path:
    """Write ``model`` as ONNX with dynamic batch and sequence axes (atomically), with what its task keeps
    with every model file (``task_data``: a tokenizer beside it, a label map in its metadata)."""
    model = model.float().eval()
    try:
        for module in model.modules():
            if isinstance(module, Attention):
                module.prepare_export()
    except ConfigError as err:
        raise CompressError(f"attention kind {config.attention_kind!r} cannot be exported to ONNX: {err}") from None
    wrapper = LogitsOnly(model).eval()
    logits_axes = {0: "batch"} if spec.objective == "classify" else {0: "batch", 1: "sequence"}
    dynamic_axes = {"inputs": {0: "batch", 1: "sequence"}, "mask": {0: "batch", 1: "sequence"},
                    "logits": logits_axes}

    def write(tmp: Path) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about Python-level shape checks
            try:
                torch.onnx.export(wrapper, (example.inputs, example.mask), str(tmp), dynamo=False,
                                  input_names=list(INPUT_NAMES), output_names=["logits"],
                                  dynamic_axes=dynamic_axes, opset_version=opset)
            except Exception as err:  # the tracer's own errors name no model part: say which model it was
                raise CompressError(
                    f"model type {config.model_type!r} with attention kind {config.attention_kind!r} cannot be "
                    f"exported to ONNX ({type(err).__name__}: {str(err)[:200]})"
                ) from None
        _add_metadata(tmp, config, spec, {**(task_entries or {}), PARAMS_KEY: str(params)})

    task_entries = write_task_files(Path(path), task_data, config) if task_data is not None else None
    params = count_params(model)
    atomic_write(Path(path), write)
    model.eval()
    return Path(path)


def _add_metadata(path: Path, config: RunConfig, spec: TaskSpec, extra: dict[str, str] | None = None) -> None:
    import onnx

    proto = onnx.load(str(path))
    entries = {"effstudio.format": "1", "effstudio.version": effstudio.__version__, "model_type": config.model_type,
               "task": config.task_name, "config": json.dumps(config.to_dict()), **(extra or {})}
    for prop in list(proto.metadata_props):
        if prop.key in entries:
            proto.metadata_props.remove(prop)
    for key, value in entries.items():
        item = proto.metadata_props.add()
        item.key, item.value = key, value
    onnx.save(proto, str(path))


def copy_metadata(source: Path, target: Path, extra: dict[str, str] | None = None) -> None:
    """Carry an exported file's effstudio metadata over to a derived one (a quantized copy)."""
    import onnx

    metadata = read_onnx_metadata(source)
    metadata.update(extra or {})
    proto = onnx.load(str(target))
    del proto.metadata_props[:]
    for key, value in metadata.items():
        item = proto.metadata_props.add()
        item.key, item.value = key, value
    onnx.save(proto, str(target))


PARAMS_KEY = "effstudio.params"  # the exported model's parameter count, as count_params gives it


def onnx_params(path: Path) -> int:
    """The parameters of the model a graph was exported from (recorded at export), else its initializers' size."""
    return onnx_param_counts(path)[0]


def onnx_param_counts(path: Path) -> tuple[int, str]:
    """(parameters, what the count is) of an ONNX file.

    The graph's initializers hold the parameters and also every constant the exporter kept: a
    buffer (Performer's random projection, a position table) or a tensor it folded from them. An
    export records the model's own count, so the graph is counted as its checkpoint is; for a file
    without it the initializers are counted, and the note says so.
    """
    proto = checked_onnx(Path(path))
    stored = int(sum(math.prod(t.dims) for t in proto.graph.initializer))
    recorded = {p.key: p.value for p in proto.metadata_props}.get(PARAMS_KEY, "")
    if not recorded.isdigit():
        return stored, (f"{stored:,} values in the graph's initializers: buffers and constants the exporter folded "
                        "are counted with the parameters (the file does not record its model's count)")
    params = int(recorded)
    if stored == params:
        return params, "the parameters of the exported model; the graph's initializers hold exactly these"
    return params, (f"the parameters of the exported model, counted as in its checkpoint; the graph's initializers "
                    f"hold {stored:,} values ({stored - params:+,}): constants that are not parameters (buffers such "
                    "as a random projection or a position table, tensors the exporter folded, quantization "
                    "scales) or weights stored once that the model shares")


def session(path: Path, threads: int | None = None) -> InferenceSession:
    import onnxruntime as ort

    checked_onnx(Path(path))  # onnxruntime would read any external data file a model names

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # idle pool threads would spin for the next call and starve PyTorch timed next to them
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_session(sess: InferenceSession, inputs: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    feeds = {"inputs": inputs.numpy().astype(np.int64), "mask": mask.numpy()}
    names = {i.name for i in sess.get_inputs()}  # a graph that never reads the mask has no mask input
    return sess.run(["logits"], {name: value for name, value in feeds.items() if name in names})[0]


def onnx_evaluation(sess: InferenceSession, split: Split, spec: TaskSpec,
                    batch_size: int) -> Generator[int, None, tuple[float, float]]:
    """:func:`evaluate_onnx` batch by batch: yields the examples done so far, returns (mean loss, accuracy)."""
    total_loss, correct, count, done = 0.0, 0, 0, 0
    for batch in eval_batches(split, spec.pad_id, batch_size):
        output = ModelOutput(logits=torch.from_numpy(run_session(sess, batch.inputs, batch.mask)))
        n = scored_count(batch.targets)
        total_loss += float(task_loss(output, batch.targets, spec.objective)) * n
        right, scored = correct_and_count(output, batch.targets)
        correct += right
        count += scored
        done += batch.targets.shape[0]
        yield done
    return (total_loss / count, correct / count) if count else (float("nan"), float("nan"))


def evaluate_onnx(sess: InferenceSession, split: Split, spec: TaskSpec, batch_size: int) -> tuple[float, float]:
    """(mean loss, accuracy) of an onnxruntime session over a split, as ``evaluate`` does for a module."""
    steps = onnx_evaluation(sess, split, spec, batch_size)
    while True:
        try:
            next(steps)
        except StopIteration as finished:
            return finished.value


def parity(model: nn.Module, sess: InferenceSession, batches: list[Batch]) -> float:
    """Largest absolute difference of logits between PyTorch and onnxruntime over ``batches``."""
    worst = 0.0
    with torch.no_grad():
        for batch in batches:
            expected = model(batch.inputs, batch.mask).logits.float().numpy()
            got = run_session(sess, batch.inputs, batch.mask)
            worst = max(worst, float(np.abs(expected - got).max()))
    return worst


def parity_batches(split: Split, spec: TaskSpec) -> list[Batch]:
    """Batches of different sizes and lengths, so the dynamic axes are exercised."""
    first = example_batch(split, spec, 8)
    shorter = max(1, first.inputs.shape[1] // 2)
    single = Batch(first.inputs[:1, :shorter], first.mask[:1, :shorter], first.targets[:1])
    return [first, single]


def export_job(checkpoint: Path, out: Path, check: bool = True, control: JobControl | None = None,
               eval_batch_size: int = 64, baseline_accuracy: float | None = None) -> Iterator[Event]:
    """Export a checkpoint to ONNX; with ``check``, parity, accuracy and latency against PyTorch.

    ``baseline_accuracy``: the checkpoint's accuracy on the validation split when it is already
    measured (the window's comparison has it), so it is not evaluated again.
    """
    out = Path(out)
    if out.suffix.lower() != ".onnx":
        raise CompressError(f"the ONNX file name must end in .onnx (got {out.name})")
    loaded = load_checkpoint(checkpoint)
    check_exportable(loaded)
    model = loaded.model.float().eval()
    spec = loaded.task.spec
    val = loaded.task.split("val")
    yield LogEvent("info", f"exporting {checkpoint} ({loaded.config.model_type}, attention "
                           f"{loaded.config.attention_kind}) to {out}")
    yield ProgressEvent("exporting to ONNX", 0, 1, 0.0)
    export_onnx(model, loaded.config, spec, example_batch(val, spec, 2), out, task_data=saved_data_of(loaded.task))
    details: dict[str, Any] = {"opset": OPSET, "dynamic_axes": ["batch", "sequence"]}
    accuracy = baseline = None
    if check and not (control and control.stop_requested):
        sess = session(out)
        details["max_abs_diff"] = parity(model, sess, parity_batches(val, spec))
        details["parity_ok"] = details["max_abs_diff"] <= PARITY_LIMIT
        yield LogEvent("info" if details["parity_ok"] else "warning", parity_text(details["max_abs_diff"]))
        if not details["parity_ok"]:
            yield LogEvent("warning", f"the ONNX graph differs from PyTorch by more than {PARITY_LIMIT:g} "
                                      f"({loaded.config.model_type}, attention {loaded.config.attention_kind!r}): "
                                      "part of the model did not trace faithfully; do not use this file")
        baseline = baseline_accuracy
        if baseline is None:
            baseline = yield from evaluated("evaluating the checkpoint", model, val, spec, eval_batch_size)
        accuracy = (yield from reported("evaluating the ONNX file", onnx_evaluation(sess, val, spec, eval_batch_size),
                                        len(val)))[1]
        one, _, length = timing_batches(val, spec.pad_id)
        yield ProgressEvent(f"timing PyTorch and onnxruntime alternately ({length} tokens)", 0, 1, 0.0)
        with torch.inference_mode():
            torch_ms, onnx_ms = timed_pair(lambda: model(one.inputs, one.mask),
                                           lambda: run_session(sess, one.inputs, one.mask), repeats=10)
        details["latency_ms_torch_b1"] = torch_ms.p50_ms
        details["latency_ms_onnx_b1"] = onnx_ms.p50_ms
        details["timing_length"] = length
    params = count_params(model)
    yield ResultEvent("onnx", str(out), params, params, out.stat().st_size, accuracy, baseline, details)


def parity_text(max_abs_diff: float) -> str:
    """The ONNX check in one line, as the log, the status and the comparison table give it."""
    verdict = "passed" if max_abs_diff <= PARITY_LIMIT else "FAILED"
    return f"ONNX check {verdict}: max |PyTorch - onnxruntime| = {max_abs_diff:.2e} (limit {PARITY_LIMIT:g})"
