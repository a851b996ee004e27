"""`evaluate()`: where a model fails, how it holds up on longer and perturbed inputs, and whether its
confidence can be trusted, as a generator of events (one Evaluated per file).

Stages per file: predictions on the split; per-class figures and the confusion matrix; calibration
(reliability bins and ECE at the model's own temperature, a temperature fitted on the validation
split); accuracy by length bucket; robustness curves; length generalisation last (growing a learned
position table changes the model, so everything else is measured first).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from effstudio.engine.events import Event, JobControl, LogEvent
from effstudio.evaluate import metrics
from effstudio.evaluate.data_file import label_names, read_data_file, refuse_unknown_tokens
from effstudio.evaluate.events import Evaluated, EvaluateError, EvaluateProgress
from effstudio.evaluate.lengths import by_length, can_lengthen, longer_task
from effstudio.evaluate.model_file import Evaluable, open_model_file
from effstudio.evaluate.perturb import RATES, perturbations_for, perturbed
from effstudio.evaluate.predict import accuracy_of, predict_classes, predict_tokens
from effstudio.evaluate.results import Evaluation, ExampleRow, LengthPoint, RobustnessPoint
from effstudio.tasks.base import Split

FACTORS = (1, 2, 4, 8)
MISTAKES = 20  # most confident mistakes listed
ROBUSTNESS_EXAMPLES = 256  # examples perturbed per point (the first of the split)
SPLITS = ("val", "test")


def evaluate(files: Sequence[Path], *, task: str | None = None, settings: Mapping[str, Any] | None = None,
             split: str = "val", factors: Sequence[int] = FACTORS, extend_positions: bool = False,
             robustness: bool = True, calibrate: bool = True, apply_temperature: bool = False,
             control: JobControl | None = None) -> Iterator[Event]:
    """Evaluate every file on ``split`` ("val", "test" or a data file); yields EvaluateProgress events,
    LogEvent warnings and one Evaluated per file. Bad input raises EvaluateError before a file is measured."""
    control = control or JobControl()
    opened = [open_model_file(Path(f), task=task, settings=settings, apply_temperature=apply_temperature)
              for f in files]
    if not opened:
        raise EvaluateError("name at least one model file to evaluate")
    for model in opened:
        if control.stop_requested:
            return
        yield from _evaluate_one(model, split, factors, extend_positions, robustness, calibrate, apply_temperature,
                                 control)


@dataclass
class _Job:
    model: Evaluable
    split_name: str
    control: JobControl

    def progress(self, stage: str, done: int, total: int) -> EvaluateProgress:
        return EvaluateProgress(str(self.model.path), stage, done, total)


def split_of(model: Evaluable, split: str) -> tuple[Split, list[str]]:
    """The split to evaluate on and the warnings reading it gave."""
    if split in SPLITS:
        data = model.task.split(split)
        if not len(data):
            raise EvaluateError(f"{model.name}: the {split} split of task {model.spec.name!r} is empty; "
                                "nothing to evaluate")
        return data, []
    path = Path(split)
    if not path.is_file():
        raise EvaluateError(f"--split {split}: neither val, test nor an existing data file")
    found = read_data_file(path, model.task)
    refuse_unknown_tokens(path, found, model.task)
    return found.split, found.warnings(path)


def _evaluate_one(model: Evaluable, split_name: str, factors: Sequence[int], extend: bool, robustness: bool,
                  calibrate: bool, apply_temperature: bool, control: JobControl) -> Iterator[Event]:
    spec = model.spec
    if spec.objective == "seq2seq":
        raise EvaluateError(f"{model.name}: an encoder-decoder (seq2seq) model is evaluated by `effstudio compare`; "
                            "evaluate reads classification and language-modelling models")
    job = _Job(model, split_name, control)
    split, warnings = split_of(model, split_name)
    for line in warnings:
        yield LogEvent("warning", line)
    yield job.progress("predicting", 0, len(split))
    labels = label_names(model.task) if spec.objective == "classify" else []
    evaluation = Evaluation(model.name, spec.name, split_name, len(split), labels, None, None)
    if spec.objective == "classify":
        yield from _classification(job, split, evaluation, calibrate, apply_temperature)
    else:
        tokens = predict_tokens(model, split)
        count = tokens.scored.sum()
        evaluation.accuracy = float(tokens.correct.sum() / count) if count else None
        evaluation.by_length = by_length(tokens.lengths, tokens.correct, tokens.loss, tokens.scored)
    if robustness and not control.stop_requested:
        yield from _robustness(job, split, evaluation)
    if factors and can_lengthen(spec.name) and model.config is not None and not control.stop_requested:
        yield from _length_generalisation(job, evaluation, factors, extend)
    yield Evaluated(str(model.path), evaluation, tuple(warnings))


def _classification(job: _Job, split: Split, evaluation: Evaluation, calibrate: bool,
                    apply_temperature: bool) -> Iterator[Event]:
    model = job.model
    found = predict_classes(model, split)
    temperature = model.stored_temperature if apply_temperature else 1.0
    probabilities = metrics.softmax(found.logits, temperature or 1.0)  # (S, C)
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    labelled = found.targets >= 0
    true, guess = found.targets[labelled], predicted[labelled]
    correct = true == guess
    classes = model.spec.num_classes
    evaluation.accuracy = float(correct.mean()) if len(true) else None
    evaluation.confusion = metrics.confusion_matrix(true, guess, classes)
    evaluation.per_class = metrics.class_figures(evaluation.confusion, evaluation.labels)
    evaluation.macro_f1 = metrics.macro_f1(evaluation.per_class)
    evaluation.ece, evaluation.reliability = metrics.reliability(confidence[labelled], correct)
    evaluation.by_length = by_length(found.lengths[labelled], correct.astype(np.float64))
    evaluation.predictions = [(int(t), int(p), round(float(c), 6))
                              for t, p, c in zip(found.targets, predicted, confidence, strict=True)]
    wrong = np.flatnonzero(labelled & (predicted != found.targets))
    worst = wrong[np.argsort(-confidence[wrong], kind="stable")][:MISTAKES]
    evaluation.mistakes = [ExampleRow(int(i), example_text(model, split, int(i)), evaluation.labels[found.targets[i]],
                                      evaluation.labels[predicted[i]], float(confidence[i])) for i in worst]
    if calibrate:
        yield job.progress("calibrating", 0, 1)
        if job.split_name == "val":
            logits, targets = found.logits[labelled], true
        else:
            val = predict_classes(model, model.task.split("val"))
            logits, targets = val.logits, val.targets
        evaluation.temperature = metrics.fit_temperature(logits, targets) if len(targets) else None
    elif apply_temperature:
        evaluation.temperature = model.stored_temperature


def example_text(model: Evaluable, split: Split, index: int) -> str:
    """An example as a person reads it: its decoded tokens (an image: its size)."""
    inputs = split.inputs[index]
    if inputs.is_floating_point():
        return f"image {tuple(inputs.shape)}"
    ids = [int(i) for i in inputs if int(i) != model.spec.pad_id]
    tokenizer = getattr(model.task, "tokenizer", None)
    return tokenizer.decode(ids) if tokenizer is not None else " ".join(model.task.decode(ids))


def _robustness(job: _Job, split: Split, evaluation: Evaluation) -> Iterator[Event]:
    model = job.model
    subset = Split(split.inputs[:ROBUSTNESS_EXAMPLES], split.targets[:ROBUSTNESS_EXAMPLES], split.aligned)
    kinds = perturbations_for(model.spec)
    total = len(kinds) * len(RATES)
    clean: float | None = None  # rate 0 is the same for every kind: measured once
    for k, perturbation in enumerate(kinds):
        for r, rate in enumerate(RATES):
            if job.control.stop_requested:
                return
            yield job.progress(f"robustness {perturbation}", k * len(RATES) + r, total)
            if rate == 0 and clean is not None:
                accuracy = clean
            else:
                accuracy, _ = accuracy_of(model, perturbed(subset, model.spec, perturbation, rate))
                clean = accuracy if rate == 0 else clean
            if accuracy is not None:
                evaluation.robustness.append(RobustnessPoint(perturbation, rate, accuracy))


def _length_generalisation(job: _Job, evaluation: Evaluation, factors: Sequence[int],
                           extend: bool) -> Iterator[Event]:
    model = job.model
    trained = model.spec.max_length
    for n, factor in enumerate(sorted(set(factors))):
        if job.control.stop_requested:
            return
        yield job.progress(f"length x{factor}", n, len(factors))
        task = model.task if factor == 1 else longer_task(model.config, factor)
        split = task.split(job.split_name if factor == 1 and job.split_name in SPLITS else "test")
        length = int(split.inputs.shape[1])
        learned = model.learned_length()
        if learned is not None and length > learned:
            if not extend:
                evaluation.length_generalisation.append(LengthPoint(factor, trained * factor, None, None, False))
                yield LogEvent("info", f"{model.name}: learned positions end at {learned}; length x{factor} "
                                       "needs them extended (extend_positions)")
                continue
            model.lengthened(length)
        try:
            accuracy, bits = accuracy_of(model, split)
        except (RuntimeError, ValueError) as err:  # a kind sized for the trained length (BigBird), a fixed ONNX graph
            yield LogEvent("info", f"{model.name}: length x{factor} cannot run: {str(err).splitlines()[0]}")
            accuracy, bits = None, None
        # growing a table is kept for the longer factors: every point from the first growth on is marked
        evaluation.length_generalisation.append(LengthPoint(factor, trained * factor, accuracy, bits, model.extended))


@dataclass
class ExampleDetail:
    """One evaluated example, for the window: its tokens (or image), labels and the model's attention."""

    index: int
    tokens: list[str]
    text: str
    image: np.ndarray | None  # (C, H, W) float32 for image tasks
    label: str
    predicted: str
    confidence: float
    attention: np.ndarray | None  # (N, N) last layer, mean over heads; None when the model gives none


def examples_of(file: Path, evaluation: Evaluation, index: int, *,
                settings: Mapping[str, Any] | None = None) -> ExampleDetail:
    """The example ``index`` of the split ``evaluation`` was measured on, with the model's attention map."""
    model = open_model_file(Path(file), task=evaluation.task, settings=settings)
    split, _ = split_of(model, evaluation.split)
    if not 0 <= index < len(split):
        raise EvaluateError(f"example {index} is outside the split's {len(split)} examples")
    true, predicted, confidence = evaluation.predictions[index] if index < len(evaluation.predictions) else (0, 0, 0.0)
    inputs = split.inputs[index: index + 1]
    attention = None
    if inputs.is_floating_point():
        tokens, image = [], inputs[0].numpy()
    else:
        real = inputs[0] != model.spec.pad_id
        ids = [int(i) for i in inputs[0][real]]
        tokens, image = model.task.decode(ids), None
        if model.model is not None:
            with torch.inference_mode():
                output = model.model(inputs[:, : len(ids)], torch.ones(1, len(ids), dtype=torch.bool),
                                     need_weights=True)
            if output.attentions:
                attention = output.attentions[-1][0].float().mean(dim=0).numpy()  # (N, N)
    labels = evaluation.labels
    return ExampleDetail(index, tokens, example_text(model, split, index), image,
                         labels[true] if labels else "", labels[predicted] if labels else "", confidence, attention)
