"""The attention benchmark says when its times cannot hold: a longer length measured faster."""

from __future__ import annotations

from effstudio.bench.attention import BenchDoneEvent, BenchRowEvent, bench_report, timing_verdict


def row(kind: str, length: int, ms: float | None) -> BenchRowEvent:
    return BenchRowEvent(kind, length, ms, 1.0, ms is not None)


def test_a_longer_length_measured_faster_is_called_out():
    rows = [row("full", 256, 12.0), row("sdpa", 256, 5.0), row("full", 512, 9.0), row("sdpa", 512, 11.0),
            row("full", 1024, None)]
    verdict = timing_verdict(rows)
    assert not verdict.holds
    assert verdict.text == ("full: machine too busy for this comparison to hold: 512 tokens measured faster "
                            "(9 ms) than 256 tokens (12 ms)")
    assert timing_verdict([row("full", 256, 9.0), row("full", 512, 30.0)]).holds


def test_the_report_carries_the_verdict():
    from effstudio.bench.attention import AttentionBenchSettings

    done = BenchDoneEvent("finished", 1.0, (), False, "full: machine too busy")
    report = bench_report(AttentionBenchSettings(kinds=("full",), lengths=(256, 512)), [], done)
    assert report["timing"] == {"holds": False, "verdict": "full: machine too busy"}
