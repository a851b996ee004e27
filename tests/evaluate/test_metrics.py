"""Evaluation figures against small cases computed by hand."""

import math

import numpy as np
import pytest

from effstudio.evaluate import divergence, metrics


def test_three_class_confusion_and_per_class_figures():
    true = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    predicted = np.array([0, 0, 1, 1, 2, 2, 2, 2, 0])
    confusion = metrics.confusion_matrix(true, predicted, 3)
    assert confusion == [[2, 1, 0], [0, 1, 1], [1, 0, 3]]
    rows = metrics.class_figures(confusion, ["a", "b", "c"])
    # class a: precision 2/3 (column 2+0+1), recall 2/3; b: 1/2, 1/2; c: 3/4, 3/4
    assert [(r.label, r.support) for r in rows] == [("a", 3), ("b", 2), ("c", 4)]
    assert [round(r.precision, 6) for r in rows] == [round(2 / 3, 6), 0.5, 0.75]
    assert [round(r.recall, 6) for r in rows] == [round(2 / 3, 6), 0.5, 0.75]
    assert metrics.macro_f1(rows) == pytest.approx((2 / 3 + 0.5 + 0.75) / 3)


def test_a_class_never_predicted_has_zero_precision_and_an_absent_class_is_left_out_of_macro_f1():
    confusion = metrics.confusion_matrix(np.array([0, 0, 1]), np.array([0, 0, 0]), 3)
    rows = metrics.class_figures(confusion, ["x", "y", "z"])
    assert rows[1].precision == 0.0 and rows[1].recall == 0.0 and rows[1].f1 == 0.0
    assert rows[2].support == 0
    # x: precision 2/3, recall 1 -> F1 0.8; y: 0; z has no example and does not count
    assert metrics.macro_f1(rows) == pytest.approx(0.4)


def test_expected_calibration_error_of_known_probabilities():
    # bin (0.8, 0.8667]: four predictions at 0.85, three right -> |0.75 - 0.85| = 0.1
    # bin (0.2667, 0.3333]: two at 0.3, none right -> |0 - 0.3| = 0.3
    confidence = np.array([0.85, 0.85, 0.85, 0.85, 0.3, 0.3])
    correct = np.array([1, 1, 1, 0, 0, 0])
    ece, bins = metrics.reliability(confidence, correct)
    assert ece == pytest.approx(4 / 6 * 0.1 + 2 / 6 * 0.3)
    assert [(b.count, round(b.accuracy, 3)) for b in bins] == [(2, 0.0), (4, 0.75)]
    assert bins[0].low == pytest.approx(4 / 15) and bins[1].high == pytest.approx(13 / 15)


def test_a_perfectly_calibrated_set_has_zero_ece():
    confidence = np.full(10, 0.7)
    correct = np.array([1] * 7 + [0] * 3)
    assert metrics.reliability(confidence, correct)[0] == pytest.approx(0.0)


def test_temperature_softens_overconfident_logits():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 3, 400)
    logits = rng.normal(size=(400, 3))
    right = rng.random(400) < 0.6
    logits[np.arange(400), np.where(right, targets, (targets + 1) % 3)] += 2.0
    scaled = logits * 5  # far too confident for 60% accuracy
    temperature = metrics.fit_temperature(scaled, targets)
    assert temperature > 2

    def nll(t):
        p = metrics.softmax(scaled, t)
        return -np.mean(np.log(p[np.arange(400), targets]))

    assert nll(temperature) < nll(1.0)
    assert nll(temperature) <= min(nll(temperature * 1.1), nll(temperature / 1.1)) + 1e-6


def test_psi_of_two_known_histograms():
    reference = np.array([50, 30, 20])  # shares 0.5, 0.3, 0.2
    current = np.array([30, 30, 40])  # shares 0.3, 0.3, 0.4
    expected = (0.3 - 0.5) * math.log(0.3 / 0.5) + 0 + (0.4 - 0.2) * math.log(0.4 / 0.2)
    assert divergence.psi(reference, current) == pytest.approx(expected)
    assert divergence.psi(reference, reference * 3) == pytest.approx(0.0)


def test_jensen_shannon_is_zero_for_equal_and_one_for_disjoint_histograms():
    assert divergence.jensen_shannon(np.array([1, 2, 3]), np.array([2, 4, 6])) == pytest.approx(0.0)
    assert divergence.jensen_shannon(np.array([5, 0]), np.array([0, 7])) == pytest.approx(1.0)


def test_quantile_bins_count_values_beyond_the_reference_range_in_the_end_bins():
    edges = divergence.quantile_edges(np.arange(100), bins=4)
    counts = divergence.binned(np.array([-5, 10, 60, 1000]), edges)
    assert counts.tolist() == [2, 0, 1, 1]


def test_mmd_permutation_test_separates_shifted_samples_only():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(60, 4)), rng.normal(size=(60, 4))
    assert divergence.mmd_test(a, b)[1] > 0.05
    assert divergence.mmd_test(a, b + 1.0)[1] < 0.01


def test_pca_projection_keeps_the_direction_of_largest_spread():
    rng = np.random.default_rng(2)
    a = np.column_stack([rng.normal(scale=10, size=50), rng.normal(size=50), np.zeros(50)])
    ref, cur = divergence.pca_2d(a[:30], a[30:])
    assert ref.shape == (30, 2) and cur.shape == (20, 2)
    assert np.std(np.concatenate([ref, cur])[:, 0]) > 5 * np.std(np.concatenate([ref, cur])[:, 1])
