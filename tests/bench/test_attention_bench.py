"""The attention scaling benchmark: settings, the summary's arithmetic, and real child-process cases.

Real cases are tiny (lengths 32 and 64, one repeat): each still starts a fresh
process, which is what the benchmark is about.
"""

from __future__ import annotations

import json

import pytest

from effstudio.bench.attention import (
    AttentionBenchSettings,
    BenchDoneEvent,
    BenchRowEvent,
    run_attention_bench,
    summarise,
)
from effstudio.cli import main
from effstudio.config import ConfigError
from effstudio.engine.events import JobControl
from effstudio.registry import UnknownEntryError

TINY = {"lengths": (32, 64), "heads": 2, "head_dim": 8, "repeats": 1, "device": "cpu"}


def run(settings: AttentionBenchSettings, control: JobControl | None = None):
    events = list(run_attention_bench(settings, control))
    rows = [e for e in events if isinstance(e, BenchRowEvent)]
    assert isinstance(events[-1], BenchDoneEvent)
    return rows, events[-1]


def test_settings_spell_out_kinds_and_sort_lengths() -> None:
    settings = AttentionBenchSettings(lengths=(64, 32, 64), device="cpu").resolved()
    assert settings.lengths == (32, 64)
    assert {"full", "sdpa", "local"} <= set(settings.kinds)


@pytest.mark.parametrize("given,field", [
    ({"lengths": ()}, "lengths"),
    ({"lengths": (0, 32)}, "lengths"),
    ({"heads": 0}, "heads"),
    ({"timeout_s": 0.0}, "timeout_s"),
    ({"device": "tpu"}, "device"),
])
def test_bad_settings_name_their_field(given: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        AttentionBenchSettings(**given).resolved()
    assert err.value.field == field


def test_unknown_kind_is_refused_with_the_known_ones() -> None:
    with pytest.raises(UnknownEntryError, match="available: .*sdpa"):
        AttentionBenchSettings(kinds=("sdpa", "nope"), device="cpu").resolved()


def row(kind: str, length: int, ms: float | None, mb: float | None = 10.0) -> BenchRowEvent:
    return BenchRowEvent(kind, length, ms, mb if ms is not None else None, ms is not None)


def test_summary_compares_at_4096_and_measures_growth() -> None:
    rows = [row("full", 4096, 400.0, 800.0), row("sdpa", 4096, 100.0, 50.0), row("local", 4096, 20.0, 40.0),
            row("full", 16384, None), row("sdpa", 16384, 1600.0), row("local", 16384, 80.0, 160.0)]
    summary = {s["kind"]: s for s in summarise(rows, (4096, 16384))}
    local = summary["local"]
    assert local["length"] == 4096 and local["longest"] == 16384
    assert local["speedup_vs_full"] == 20.0 and local["speedup_vs_sdpa"] == 5.0
    assert local["memory_vs_full"] == 0.05 and local["growth"] == 4.0
    assert summary["full"]["growth"] is None  # its longest case failed


def test_the_growth_comes_with_the_range_of_its_quartiles() -> None:
    rows = [BenchRowEvent("local", 4096, 20.0, 40.0, True, None, 19.0, 25.0, 50),
            BenchRowEvent("local", 16384, 80.0, 160.0, True, None, 76.0, 95.0, 12),
            row("sdpa", 4096, 100.0), row("sdpa", 16384, 1600.0)]  # rows without quartiles
    summary = {s["kind"]: s for s in summarise(rows, (4096, 16384))}
    assert summary["local"]["growth"] == 4.0
    assert summary["local"]["growth_range"] == [3.04, 5.0]  # 76 / 25 and 95 / 19
    assert summary["sdpa"]["growth_range"] is None
    assert summarise(rows, (4096,))[0]["growth_range"] is None


def test_summary_uses_the_longest_length_without_4096() -> None:
    summary = summarise([row("full", 64, 4.0), row("local", 64, 1.0)], (32, 64))
    assert summary[1]["length"] == 64 and summary[1]["speedup_vs_full"] == 4.0
    assert summary[1]["growth"] is None


def test_real_cases_run_in_child_processes() -> None:
    rows, done = run(AttentionBenchSettings(kinds=("full", "sdpa"), backward=True, **TINY))
    assert [(r.attention, r.length) for r in rows] == [("full", 32), ("full", 64), ("sdpa", 32), ("sdpa", 64)]
    assert all(r.ok and r.ms > 0 and r.peak_mb >= 0 for r in rows)
    assert done.status == "finished"
    assert [s["kind"] for s in done.summary] == ["full", "sdpa"]


def test_a_case_over_the_memory_limit_fails_and_longer_lengths_are_skipped() -> None:
    # a child process with torch loaded holds far more than 1 MB: the watcher stops it
    rows, done = run(AttentionBenchSettings(kinds=("full",), max_mb=1.0, **TINY))
    assert [r.ok for r in rows] == [False, False]
    assert rows[0].error.startswith("out of memory") and rows[0].ms is None
    assert rows[1].error.startswith("skipped: out of memory")
    assert done.status == "finished"


def test_a_stop_request_ends_the_job_as_stopped() -> None:
    control = JobControl()
    control.stop()
    rows, done = run(AttentionBenchSettings(kinds=("full",), **TINY), control)
    assert rows == [] and done.status == "stopped"


def test_cli_writes_rows_with_the_contract_fields(tmp_path, capsys) -> None:
    out = tmp_path / "bench.json"
    code = main(["bench", "attention", "--kinds", "sdpa", "--lengths", "32", "--heads", "2", "--head-dim", "8",
                 "--repeats", "1", "--no-backward", "--device", "cpu", "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["rows"] and set(report["rows"][0]) == {"kind", "length", "ms", "peak_mb", "ok", "ms_q1", "ms_q3", "calls"}
    first = report["rows"][0]
    assert first["kind"] == "sdpa" and first["ok"] is True
    assert first["ms_q1"] <= first["ms"] <= first["ms_q3"]
    assert first["calls"] > 1  # a call of a few microseconds: timed again until a second is measured
    assert report["settings"]["backward"] is False
    table = capsys.readouterr().out
    assert "sdpa" in table and "peak MB" in table


def test_cli_refuses_a_bad_length_list(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "attention", "--lengths", "1k,2k"])
    assert exit_info.value.code == 2
    assert "comma-separated list of int" in capsys.readouterr().err
