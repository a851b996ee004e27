"""Two-sample statistics for drift: population stability index and Jensen-Shannon divergence of two
histograms, maximum mean discrepancy with a permutation p-value, and a 2-D PCA projection."""

from __future__ import annotations

import math

import numpy as np

PSI_FLOOR = 1e-4  # an empty bin counts as this share, so a bin empty on one side gives a large, finite term


def shares(counts: np.ndarray, floor: float = 0.0) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    share = counts / total if total else np.full(len(counts), 1.0 / max(len(counts), 1))
    return np.maximum(share, floor) if floor else share


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index of two histograms over the same bins: sum (q - p) ln(q / p), with p the
    reference's and q the current's shares (empty bins floored at PSI_FLOOR). 0.1-0.25 is a moderate
    shift by the usual reading, above 0.25 a large one."""
    p, q = shares(reference, PSI_FLOOR), shares(current, PSI_FLOOR)
    return float(np.sum((q - p) * np.log(q / p)))


def jensen_shannon(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits, 0 (same shares) to 1 (no bin in common)."""
    p, q = shares(reference), shares(current)
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        inside = a > 0
        return float(np.sum(a[inside] * np.log2(a[inside] / m[inside])))

    return (kl(p) + kl(q)) / 2


def chi_square_quantile(degrees: int, z: float = 3.09) -> float:
    """The chi-square quantile of ``degrees`` degrees of freedom at the normal quantile ``z`` (3.09: 99.9%),
    by the Wilson-Hilferty approximation (within a few percent from 2 degrees on)."""
    k = max(degrees, 1)
    return k * (1 - 2 / (9 * k) + z * math.sqrt(2 / (9 * k))) ** 3


def noise_floor(bins: int, n: int, m: int) -> float:
    """What PSI reaches by chance alone for two samples of sizes n and m of ONE distribution over ``bins``
    bins, 99.9 times in 1000: PSI is the symmetric Kullback-Leibler divergence, and n m / (n + m) times
    it is about chi-square with bins - 1 degrees of freedom. Jensen-Shannon in bits is about PSI / (8 ln 2)."""
    if n < 1 or m < 1:
        return math.inf
    return chi_square_quantile(bins - 1) * (1 / n + 1 / m)


def quantile_edges(reference: np.ndarray, bins: int = 10) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (duplicates dropped): values below the first edge fall in
    the first bin, above the last in the last, so a current sample beyond the reference's range still counts."""
    inner = np.quantile(np.asarray(reference, dtype=np.float64), np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(inner)


def binned(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of ``values`` in the len(edges) + 1 bins the inner ``edges`` make."""
    return np.bincount(np.searchsorted(edges, np.asarray(values, dtype=np.float64), side="right"),
                       minlength=len(edges) + 1)


def _rbf(x: np.ndarray) -> np.ndarray:
    """Gaussian kernel matrix of the rows of x, bandwidth by the median heuristic."""
    squares = np.sum(x * x, axis=1)
    distances = np.maximum(squares[:, None] + squares[None, :] - 2 * x @ x.T, 0.0)  # (S, S)
    positive = distances[distances > 0]
    bandwidth = float(np.median(positive)) if len(positive) else 1.0
    return np.exp(-distances / bandwidth)


def _mmd2(kernel: np.ndarray, first: np.ndarray) -> float:
    """Unbiased MMD^2 of the two groups of a kernel matrix; ``first`` marks the first group's rows."""
    a, b = first, ~first
    n, m = int(a.sum()), int(b.sum())
    kaa, kbb, kab = kernel[np.ix_(a, a)], kernel[np.ix_(b, b)], kernel[np.ix_(a, b)]
    within_a = (kaa.sum() - np.trace(kaa)) / (n * (n - 1))
    within_b = (kbb.sum() - np.trace(kbb)) / (m * (m - 1))
    return float(within_a + within_b - 2 * kab.mean())


def mmd_test(reference: np.ndarray, current: np.ndarray, permutations: int = 200,
             seed: int = 0) -> tuple[float, float]:
    """(MMD^2, permutation p-value) of two samples of vectors (rows); the p-value is the share of random
    relabellings of the pooled rows whose MMD^2 reaches the observed one (with the observed counted)."""
    reference, current = np.asarray(reference, np.float64), np.asarray(current, np.float64)
    if len(reference) < 2 or len(current) < 2:
        return 0.0, 1.0
    pooled = np.concatenate([reference, current])
    kernel = _rbf(pooled)
    first = np.zeros(len(pooled), dtype=bool)
    first[: len(reference)] = True
    observed = _mmd2(kernel, first)
    rng = np.random.default_rng(seed)
    reached = sum(_mmd2(kernel, rng.permutation(first)) >= observed for _ in range(permutations))
    return observed, (reached + 1) / (permutations + 1)


def pca_2d(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both samples projected on the first two principal axes of the pooled rows: (S_ref, 2), (S_cur, 2)."""
    pooled = np.concatenate([reference, current]).astype(np.float64)
    centred = pooled - pooled.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    projected = centred @ axes[:2].T
    if projected.shape[1] < 2:  # one feature: a zero second axis
        projected = np.pad(projected, ((0, 0), (0, 2 - projected.shape[1])))
    return projected[: len(reference)], projected[len(reference):]
