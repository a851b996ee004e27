"""`drift()`: does new data still look like what the model was trained on?

Signals, each with the threshold above which it says drift:

- ``length_psi`` / ``length_js``: input lengths, binned at the reference's deciles (token tasks);
- ``token_psi`` / ``token_js``: token frequencies over the reference's most frequent tokens plus one
  bin for all others (images: pixel intensities in 16 bins);
- ``unknown_rate``: share of the current tokens the model has no id for (or its tokenizer's [UNK]),
  beyond the reference's own rate;
- ``predicted_class_psi``: the distribution of the model's predicted classes (classification);
- ``mmd_p_value``: a permutation test of maximum mean discrepancy between the model's pooled
  representations of the two samples; it says drift when the p-value is BELOW its threshold.

PSI thresholds are 0.2 (between the usual "moderate" 0.1 and "large" 0.25), Jensen-Shannon 0.05 bits, each
raised to what two samples of their sizes from one distribution reach by chance one time in a thousand
(small samples give large PSI by chance alone): see :func:`divergence.noise_floor`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from effstudio.engine.events import Event, JobControl
from effstudio.evaluate import divergence
from effstudio.evaluate.data_file import read_data_file
from effstudio.evaluate.events import Drifted, DriftProgress, EvaluateError
from effstudio.evaluate.model_file import Evaluable, open_model_file
from effstudio.evaluate.predict import predict_classes
from effstudio.evaluate.results import DriftReport, DriftSignal
from effstudio.tasks.base import Split

PSI_THRESHOLD = 0.2
JS_THRESHOLD = 0.05
UNKNOWN_THRESHOLD = 0.01  # one token in a hundred more than the reference's rate
MMD_ALPHA = 0.01
TOP_TOKENS = 50
PIXEL_BINS = 16
MAX_REPRESENTATIONS = 300  # examples per sample in the MMD test and the PCA picture
SPLITS = ("train", "val", "test")


def _sample(model: Evaluable, source: str | Path) -> tuple[Split, float]:
    """A split named by the task or read from a file, and its unknown-token rate."""
    if isinstance(source, str) and source in SPLITS:
        split = model.task.split(source)
        if not len(split):
            raise EvaluateError(f"the {source} split of task {model.spec.name!r} is empty")
        return split, 0.0
    path = Path(source)
    if not path.is_file():
        raise EvaluateError(f"{source}: neither a split (train, val, test) nor an existing data file")
    found = read_data_file(path, model.task, labelled=False)
    return found.split, found.unknown_rate


def token_histograms(reference: Split, current: Split, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts over the reference's TOP_TOKENS most frequent tokens, then one bin for every other token."""
    ref_ids = reference.inputs[reference.inputs != pad_id].numpy()
    cur_ids = current.inputs[current.inputs != pad_id].numpy()
    size = int(max(ref_ids.max(initial=0), cur_ids.max(initial=0))) + 1
    ref_counts = np.bincount(ref_ids, minlength=size)
    cur_counts = np.bincount(cur_ids, minlength=size)
    top = np.argsort(-ref_counts, kind="stable")[:TOP_TOKENS]
    other = np.ones(size, dtype=bool)
    other[top] = False
    return (np.append(ref_counts[top], ref_counts[other].sum()), np.append(cur_counts[top], cur_counts[other].sum()))


def pixel_histograms(reference: Split, current: Split) -> tuple[np.ndarray, np.ndarray]:
    edges = np.linspace(0, 1, PIXEL_BINS + 1)
    return (np.histogram(reference.inputs.numpy(), edges)[0], np.histogram(current.inputs.numpy(), edges)[0])


def _signal(name: str, value: float, threshold: float, below: bool = False) -> DriftSignal:
    return DriftSignal(name, float(value), threshold, bool(value < threshold if below else value > threshold))


def _histogram_signals(name: str, reference: np.ndarray, current: np.ndarray) -> list[DriftSignal]:
    """PSI and Jensen-Shannon of two histograms, thresholds raised to the samples' noise floor."""
    floor = divergence.noise_floor(int((np.asarray(reference) + np.asarray(current) > 0).sum()),
                                   int(np.sum(reference)), int(np.sum(current)))
    return [_signal(f"{name}_psi", divergence.psi(reference, current), max(PSI_THRESHOLD, floor)),
            _signal(f"{name}_js", divergence.jensen_shannon(reference, current),
                    max(JS_THRESHOLD, floor / (8 * np.log(2))))]


def drift_signals(model: Evaluable, reference: Split, current: Split, unknown: tuple[float, float],
                  seed: int = 0) -> tuple[list[DriftSignal], float, float, np.ndarray, np.ndarray]:
    """(signals, MMD^2, p-value, reference representations, current representations)."""
    spec = model.spec
    signals = []
    if spec.is_image:
        ref_hist, cur_hist = pixel_histograms(reference, current)
    else:
        ref_len = (reference.inputs != spec.pad_id).sum(dim=1).numpy()
        cur_len = (current.inputs != spec.pad_id).sum(dim=1).numpy()
        edges = divergence.quantile_edges(ref_len)
        ref_bins, cur_bins = divergence.binned(ref_len, edges), divergence.binned(cur_len, edges)
        signals += _histogram_signals("length", ref_bins, cur_bins)
        ref_hist, cur_hist = token_histograms(reference, current, spec.pad_id)
        signals.append(_signal("unknown_rate", max(0.0, unknown[1] - unknown[0]), UNKNOWN_THRESHOLD))
    what = "pixel" if spec.is_image else "token"
    signals += _histogram_signals(what, ref_hist, cur_hist)
    ref_pred = predict_classes(model, _head(reference, MAX_REPRESENTATIONS), pooled=True)
    cur_pred = predict_classes(model, _head(current, MAX_REPRESENTATIONS), pooled=True)
    if spec.objective == "classify":
        classes = spec.num_classes
        ref_counts = np.bincount(ref_pred.logits.argmax(axis=1), minlength=classes)
        cur_counts = np.bincount(cur_pred.logits.argmax(axis=1), minlength=classes)
        signals.append(_histogram_signals("predicted_class", ref_counts, cur_counts)[0])
    mmd, p_value = divergence.mmd_test(ref_pred.pooled, cur_pred.pooled, seed=seed)
    signals.append(_signal("mmd_p_value", p_value, MMD_ALPHA, below=True))
    return signals, mmd, p_value, ref_pred.pooled, cur_pred.pooled


def _head(split: Split, n: int) -> Split:
    return Split(split.inputs[:n], split.targets[:n], split.aligned)


def drift(checkpoint: Path, *, reference: str | Path, current: Path, control: JobControl | None = None,
          seed: int = 0) -> Iterator[Event]:
    """Compare ``current`` (a data file) with ``reference`` (a split name or a data file) through the model
    of ``checkpoint``; yields DriftProgress events and one Drifted."""
    control = control or JobControl()
    model = open_model_file(Path(checkpoint))
    yield DriftProgress("reading", 0, 3)
    ref_split, ref_unknown = _sample(model, reference)
    cur_split, cur_unknown = _sample(model, current)
    if control.stop_requested:
        return
    yield DriftProgress("representations", 1, 3)
    yield Drifted(drift_report(model, ref_split, cur_split, (ref_unknown, cur_unknown), seed))


def drift_report(model: Evaluable, reference: Split, current: Split, unknown: tuple[float, float] = (0.0, 0.0),
                 seed: int = 0) -> DriftReport:
    signals, mmd, p_value, ref_vectors, cur_vectors = drift_signals(model, reference, current, unknown, seed)
    ref_xy, cur_xy = divergence.pca_2d(ref_vectors, cur_vectors)
    return DriftReport(signals, mmd, p_value, any(s.drift for s in signals),
                       [tuple(map(float, p)) for p in ref_xy], [tuple(map(float, p)) for p in cur_xy])
