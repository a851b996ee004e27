"""Any model file as something to evaluate: an effstudio checkpoint (trained, pruned, half precision,
int8, distilled) or an exported ``.onnx``, with the task it is evaluated on.

Both give logits for a batch and a pooled representation per example (the mean over real tokens of the
final normalised hidden states of a PyTorch model; an ONNX graph exposes only its logits, so there the
representation is the softmax of the logits).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import safetensors
import safetensors.torch
import torch
from torch import nn

from effstudio.engine.build import build_task
from effstudio.engine.checkpoint import CheckpointError, atomic_write, task_data_beside
from effstudio.engine.data import Batch
from effstudio.engine.loading import CompressError, config_of_file, load_checkpoint
from effstudio.engine.onnx_model import OnnxFileError, load_checked
from effstudio.engine.run_config import RunConfig
from effstudio.evaluate.events import EvaluateError
from effstudio.models.lengthen import extend_positions
from effstudio.tasks.base import Task, TaskSpec

TEMPERATURE_KEY = "effstudio.temperature"


@dataclass
class Evaluable:
    """A model file ready to run: ``model`` (PyTorch) or ``session`` (onnxruntime), and its task."""

    path: Path
    task: Task
    config: RunConfig | None
    model: nn.Module | None = None
    session: Any = None
    stored_temperature: float | None = None  # fitted earlier and kept in the checkpoint's header
    extended: bool = False  # a learned position table was grown to reach a longer length

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def spec(self) -> TaskSpec:
        return self.task.spec

    def logits(self, batch: Batch) -> np.ndarray:
        """(B, C) for classification, (B, N, V) for language modelling; float32."""
        if self.session is not None:
            feeds = {"inputs": batch.inputs.numpy(), "mask": batch.mask.numpy()}
            names = {i.name for i in self.session.get_inputs()}  # a graph that never reads the mask has no mask input
            try:
                out = self.session.run(["logits"], {k: v for k, v in feeds.items() if k in names})[0]
            except Exception as err:  # onnxruntime's own error types: a shape the graph was not exported for
                raise RuntimeError(f"onnxruntime: {str(err).splitlines()[0][-300:]}") from None
            return np.asarray(out, dtype=np.float32)
        with torch.inference_mode():
            return self.model(batch.inputs, batch.mask).logits.float().numpy()

    def logits_and_pooled(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        """The logits and one vector per example (B, D) summarising what the model made of it."""
        norm = getattr(self.model, "norm", None) if self.model is not None else None
        if not isinstance(norm, nn.LayerNorm):
            logits = self.logits(batch)
            flat = logits if logits.ndim == 2 else logits.mean(axis=1)
            shifted = np.exp(flat - flat.max(axis=-1, keepdims=True))
            return logits, shifted / shifted.sum(axis=-1, keepdims=True)
        seen: list[torch.Tensor] = []
        hook = norm.register_forward_hook(lambda _module, _inputs, output: seen.append(output))
        try:
            logits = self.logits(batch)
        finally:
            hook.remove()
        hidden = seen[-1].float()  # (B, N', d): a summary token may make N' = N + 1
        mask = batch.mask if batch.mask.dim() == 2 and batch.mask.shape[1] == hidden.shape[1] else None
        if mask is None:
            pooled = hidden.mean(dim=1)
        else:
            real = mask.unsqueeze(-1).float()  # (B, N, 1)
            pooled = (hidden * real).sum(dim=1) / real.sum(dim=1).clamp(min=1.0)
        return logits, pooled.numpy()

    def lengthened(self, length: int) -> bool:
        """Grow learned position tables to ``length`` rows (by copying); True when one had to grow."""
        if self.model is None:
            return False
        grown = extend_positions(self.model, length)
        self.extended = self.extended or bool(grown)
        return bool(grown)

    def learned_length(self) -> int | None:
        """The rows of the model's learned position table: the longest input it can read, or None."""
        table = getattr(self.model, "positions", None) if self.model is not None else None
        return table.num_embeddings if isinstance(table, nn.Embedding) else None


def _task_config(config: RunConfig, task_name: str | None, settings: Mapping[str, Any]) -> RunConfig:
    """The run config with the task asked for (default: the file's) and its settings changed."""
    keys = {key if key.startswith("task.") else f"task.{key}": value for key, value in settings.items()}
    if task_name is not None and task_name != config.task_name:
        other = RunConfig.create(config.model_type, task_name, keys)
        return dataclasses.replace(config, task_name=task_name, task=other.task)
    return config.with_overrides(keys) if keys else config


def check_same_task(path: Path, trained: TaskSpec, asked: TaskSpec) -> None:
    """The data must speak the model's language: same vocabulary, same labels (lengths may differ)."""
    if trained.is_image != asked.is_image:
        raise EvaluateError(f"{path.name} reads {'images' if trained.is_image else 'token sequences'}; task "
                            f"{asked.name!r} gives {'images' if asked.is_image else 'token sequences'}")
    if trained.vocab != asked.vocab:
        extra = [t for t in asked.vocab if t not in set(trained.vocab)]
        how = (f"{len(extra)} of the data's {len(asked.vocab)} tokens are not in the model's vocabulary of "
               f"{len(trained.vocab)} (e.g. {extra[0]!r})" if extra else
               f"the data's vocabulary has {len(asked.vocab)} tokens in another order than the model's "
               f"{len(trained.vocab)}")
        raise EvaluateError(f"{path.name} was trained on {trained.name!r}; the data of {asked.name!r} does not fit "
                            f"it: {how}")
    if trained.objective != asked.objective or trained.num_classes != asked.num_classes:
        raise EvaluateError(f"{path.name} was trained on {trained.name!r} ({trained.objective}, "
                            f"{trained.num_classes} classes); task {asked.name!r} is {asked.objective} with "
                            f"{asked.num_classes} classes")
    if trained.class_names and asked.class_names and trained.class_names != asked.class_names:
        missing = sorted(set(asked.class_names) - set(trained.class_names))
        raise EvaluateError(f"{path.name} was trained on the labels {', '.join(trained.class_names[:8])}; the data "
                            f"has {', '.join(missing[:8]) or 'them in another order'}")


def open_model_file(path: Path, *, task: str | None = None, settings: Mapping[str, Any] | None = None,
                    apply_temperature: bool = False) -> Evaluable:
    """The file, loaded for evaluation, with its task (``task`` and ``settings`` change the data it is
    evaluated on); EvaluateError with one line on a file that does not fit."""
    path = Path(path)
    settings = settings or {}
    if not path.is_file():
        raise EvaluateError(f"{path}: no such file")
    try:
        if path.suffix.lower() == ".onnx":
            return _open_onnx(path, task, settings)
        loaded = load_checkpoint(path)
    except (CheckpointError, CompressError, OnnxFileError) as err:
        raise EvaluateError(str(err)) from None
    asked = _task_config(loaded.config, task, settings)
    data_task = loaded.task if asked == loaded.config else build_task(
        asked, saved=task_data_beside(path, loaded.info.metadata) if asked.task_name == loaded.config.task_name
        else None)
    check_same_task(path, loaded.task.spec, data_task.spec)
    stored = loaded.info.metadata.get(TEMPERATURE_KEY)
    temperature = _temperature(path, stored) if stored is not None else None
    if apply_temperature and temperature is None:
        raise EvaluateError(f"{path.name} keeps no temperature; fit one with `effstudio evaluate "
                            f"{path.name} --store-temperature` first")
    return Evaluable(path, data_task, asked, model=loaded.model, stored_temperature=temperature)


def _temperature(path: Path, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.01 <= value <= 100:
        raise EvaluateError(f"{path}: header metadata {TEMPERATURE_KEY}: {text[:20]!r} is not a temperature "
                            "between 0.01 and 100")
    return value


def _open_onnx(path: Path, task: str | None, settings: Mapping[str, Any]) -> Evaluable:
    import onnxruntime as ort

    try:
        config, metadata = config_of_file(path)
    except CompressError as err:
        if "without an effstudio run config" not in str(err):
            raise EvaluateError(str(err)) from None
        if task is None:
            raise EvaluateError(f"{path.name} is an ONNX file without effstudio metadata; name its task with "
                                "--task (and its settings with --set)") from None
        config, metadata = RunConfig.create("transformer", task), {}
    asked = _task_config(config, task, settings)
    try:
        data_task = build_task(asked, saved=task_data_beside(path, metadata) if metadata else None)
    except CheckpointError as err:
        raise EvaluateError(str(err)) from None
    if metadata:
        check_same_task(path, build_task(config, saved=task_data_beside(path, metadata)).spec, data_task.spec)
    try:
        load_checked(path)  # onnxruntime would read any external data file a model names
    except OnnxFileError as err:
        raise EvaluateError(str(err)) from None
    options = ort.SessionOptions()
    options.log_severity_level = 4  # failures are reported as exceptions, not printed
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return Evaluable(path, data_task, asked, session=session)


def store_temperature(path: Path, temperature: float) -> None:
    """Write ``temperature`` into the checkpoint's header (the file is rewritten atomically; weights, the
    training state beside it and the task files keep their bindings)."""
    with safetensors.safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 - not a dict
    metadata[TEMPERATURE_KEY] = repr(float(temperature))
    atomic_write(path, lambda file: safetensors.torch.save_file(tensors, str(file), metadata=metadata))

