"""Alternate timing, its spread and the verdicts on whether a comparison holds."""

import pytest

from effstudio.engine.timing import Timing, comparison_verdict, ordering_verdict, time_alternately


def test_variants_are_timed_in_alternating_turns_after_their_warm_up():
    calls = []
    runs = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    timings = time_alternately(runs, repeats=6, warmup=1, rounds=3)
    assert calls[:3] == ["a", "b", "c"]  # the warm-up, one pass each
    turns = calls[3:]
    assert len(turns) == 18 and all(turns.count(name) == 6 for name in "abc")
    # turns of 2 passes each; the first variant of a round rotates, so none always runs first
    assert turns[:6] == ["a", "a", "b", "b", "c", "c"]
    assert turns[6:12] == ["b", "b", "c", "c", "a", "a"]
    assert turns[12:] == ["c", "c", "a", "a", "b", "b"]
    assert {t.passes for t in timings.values()} == {6}


def test_a_stopped_timing_returns_what_it_has():
    runs = {"a": lambda: None, "b": lambda: None}
    asked = []

    def stop() -> bool:
        asked.append(True)
        return len(asked) > 1  # stop after the first turn

    timings = time_alternately(runs, repeats=10, warmup=0, rounds=5, stop=stop)
    assert list(timings) == ["a"] and timings["a"].passes == 2


def test_percentiles_and_spread():
    timing = Timing.of([10.0] * 19 + [30.0])
    assert timing.p50_ms == 10.0
    assert timing.p95_ms == pytest.approx(11.0)  # numpy's linear interpolation between the 19th and 20th pass
    assert timing.spread == pytest.approx(1.1)


def test_a_wide_spread_says_the_machine_was_too_busy():
    steady = comparison_verdict({"original": Timing(10.0, 12.0, 20), "int8": Timing(5.0, 6.5, 20)})
    assert steady.holds and "1.30x" in steady.text
    busy = comparison_verdict({"original": Timing(361.0, 1014.0, 20), "int8": Timing(5.0, 6.0, 20)})
    assert not busy.holds
    assert busy.text.startswith("machine too busy for this comparison to hold")
    assert "original" in busy.text and "2.81x" in busy.text


def test_a_longer_input_measured_faster_says_the_machine_was_too_busy():
    verdict = ordering_verdict([(512, 8.0), (256, 10.0), (1024, 30.0)])
    assert not verdict.holds
    assert "512 tokens measured faster (8 ms) than 256 tokens (10 ms)" in verdict.text
    assert ordering_verdict([(256, 10.0), (512, 9.8), (1024, 30.0)]).holds  # within the 5% of timer noise
