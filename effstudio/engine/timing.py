"""Latency readings that can be compared: variants timed alternately in one process, with their spread,
and a verdict on whether the machine was quiet enough for the comparison to hold.

Timing one variant minutes after another compares two machine states, not two models: a busy
neighbour process can double a median. :func:`time_alternately` therefore runs every variant of a
comparison in short turns, round after round (the order rotates, so none always runs first), and
keeps every pass. The spread of a variant's passes (p95 / p50) says how disturbed its figures
were; :func:`comparison_verdict` turns it into one plain sentence, and :func:`ordering_verdict`
catches the other sign of a busy machine in a scaling series: a larger input measured faster
than a smaller one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

BUSY_SPREAD = 1.5  # p95 above 1.5x p50: the passes disagree more than any speed-up worth reporting
ORDER_SLACK = 0.05  # a larger input may measure up to 5% faster than a smaller one (timer noise)


@dataclass(frozen=True)
class Timing:
    """Milliseconds of one variant's timed passes."""

    p50_ms: float
    p95_ms: float
    passes: int

    @property
    def spread(self) -> float:
        """p95 / p50: 1.0 for perfectly steady passes."""
        return self.p95_ms / self.p50_ms if self.p50_ms > 0 else math.inf

    @classmethod
    def of(cls, samples_ms: Sequence[float]) -> Timing:
        return cls(float(np.percentile(samples_ms, 50)), float(np.percentile(samples_ms, 95)), len(samples_ms))


@dataclass(frozen=True)
class Verdict:
    """Whether a comparison holds; ``text`` says so in one sentence, with the figure behind it."""

    holds: bool
    text: str


def timing_rounds(runs: Mapping[str, Callable[[], object]], repeats: int = 20, warmup: int = 2, rounds: int = 5,
                  stop: Callable[[], bool] = lambda: False) -> Generator[int, None, dict[str, Timing]]:
    """Time every ``runs`` entry ``repeats`` times, in ``rounds`` alternating turns, after ``warmup`` passes each.

    Yields the rounds done after each one (for a progress bar) and returns the timings. ``stop`` is
    asked between turns: a stopped timing returns what it has, possibly nothing.
    """
    names = list(runs)
    for _ in range(warmup):
        for name in names:
            runs[name]()
    rounds = max(1, min(rounds, repeats))
    per_turn = [repeats // rounds + (1 if r < repeats % rounds else 0) for r in range(rounds)]
    samples: dict[str, list[float]] = {name: [] for name in names}
    for index, count in enumerate(per_turn):
        order = names[index % len(names):] + names[:index % len(names)] if names else names
        for name in order:
            if stop():
                return {n: Timing.of(s) for n, s in samples.items() if s}
            run = runs[name]
            for _ in range(count):
                start = time.perf_counter()
                run()
                samples[name].append((time.perf_counter() - start) * 1000)
        yield index + 1
    return {name: Timing.of(s) for name, s in samples.items() if s}


def time_alternately(runs: Mapping[str, Callable[[], object]], repeats: int = 20, warmup: int = 2,
                     rounds: int = 5, stop: Callable[[], bool] = lambda: False) -> dict[str, Timing]:
    """:func:`timing_rounds` without its progress."""
    steps = timing_rounds(runs, repeats, warmup, rounds, stop)
    while True:
        try:
            next(steps)
        except StopIteration as finished:
            return finished.value


def comparison_verdict(timings: Mapping[str, Timing], limit: float = BUSY_SPREAD) -> Verdict:
    """Too busy when some variant's p95 is more than ``limit`` times its p50."""
    if not timings:
        return Verdict(False, "nothing was timed")
    name, worst = max(((n, t) for n, t in timings.items()), key=lambda item: item[1].spread)
    if worst.spread > limit:
        return Verdict(False, f"machine too busy for this comparison to hold: the p95 of {name} is "
                              f"{worst.spread:.2f}x its p50 (steady timings stay under {limit:g}x); measure again "
                              "on a quieter machine")
    return Verdict(True, f"steady: every p95 is within {worst.spread:.2f}x of its p50 (limit {limit:g}x)")


def ordering_verdict(series: Sequence[tuple[int, float]], what: str = "tokens",
                     slack: float = ORDER_SLACK) -> Verdict:
    """A scaling series ``(size, ms)``: too busy when a larger size measured clearly faster than a smaller one."""
    ordered = sorted(series)
    for (small, small_ms), (large, large_ms) in zip(ordered, ordered[1:], strict=False):
        if large > small and large_ms < small_ms * (1 - slack):
            return Verdict(False, f"machine too busy for this comparison to hold: {large} {what} measured faster "
                                  f"({large_ms:.3g} ms) than {small} {what} ({small_ms:.3g} ms)")
    return Verdict(True, "larger inputs never measured faster than smaller ones")
