"""Classification figures from predictions: accuracy, per-class precision / recall / F1, macro-F1, the
confusion matrix, and calibration (reliability bins, expected calibration error, temperature scaling).

Inputs are numpy arrays: ``true`` and ``predicted`` class indices (S,), ``confidence`` the probability the
model gave its predicted class (S,), ``logits`` (S, C).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from effstudio.evaluate.results import ClassFigures, ReliabilityBin

ECE_BINS = 15


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, classes: int) -> list[list[int]]:
    """counts[t][p]: examples of true class t predicted as p."""
    counts = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(true, dtype=np.int64), np.asarray(predicted, dtype=np.int64)), 1)
    return counts.tolist()


def class_figures(confusion: list[list[int]], labels: list[str]) -> list[ClassFigures]:
    """Precision, recall and F1 of every class; 0 where a ratio has nothing to count (no prediction of
    the class, no example of it), as scikit-learn's zero_division=0 does."""
    counts = np.asarray(confusion, dtype=np.float64)
    right = np.diag(counts)
    predicted = counts.sum(axis=0)
    support = counts.sum(axis=1)
    rows = []
    for c, label in enumerate(labels):
        precision = right[c] / predicted[c] if predicted[c] else 0.0
        recall = right[c] / support[c] if support[c] else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append(ClassFigures(label, float(precision), float(recall), float(f1), int(support[c])))
    return rows


def macro_f1(rows: list[ClassFigures]) -> float | None:
    """Mean F1 over the classes that have examples (a class absent from the split says nothing)."""
    present = [row.f1 for row in rows if row.support]
    return float(np.mean(present)) if present else None


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> tuple[float, list[ReliabilityBin]]:
    """(expected calibration error, the non-empty bins): confidences cut into ``bins`` equal-width bins
    over [0, 1]; ECE = sum over bins of (share of examples) * |accuracy - mean confidence|."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=np.float64)
    if not len(confidence):
        return 0.0, []
    edges = np.linspace(0.0, 1.0, bins + 1)
    # bin b holds (edges[b], edges[b + 1]]; a confidence of exactly 0 joins the first bin
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    ece, found = 0.0, []
    for b in range(bins):
        inside = index == b
        count = int(inside.sum())
        if not count:
            continue
        mean_confidence, accuracy = float(confidence[inside].mean()), float(correct[inside].mean())
        ece += count / len(confidence) * abs(accuracy - mean_confidence)
        found.append(ReliabilityBin(float(edges[b]), float(edges[b + 1]), count, mean_confidence, accuracy))
    return float(ece), found


def fit_temperature(logits: np.ndarray, targets: np.ndarray, steps: int = 200) -> float:
    """The temperature T > 0 that minimises the negative log-likelihood of softmax(logits / T) on these
    examples (Guo et al. 2017); fitted as log T so it stays positive."""
    logits_t = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    targets_t = torch.as_tensor(np.asarray(targets), dtype=torch.int64)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_t], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(logits_t / log_t.exp(), targets_t)
        loss.backward()
        return loss

    optimizer.step(closure)
    return float(log_t.detach().exp().clamp(1e-2, 1e2))


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Probabilities (S, C) of logits (S, C) divided by ``temperature``."""
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)
