"""The Benchmark section: live table, plots and summary, failures, Stop, bad settings, JSON, the window."""

from __future__ import annotations

import json
import math
import threading
import time

import numpy as np
import pytest

from effstudio.bench.attention import (
    AttentionBenchSettings,
    BenchDoneEvent,
    BenchRowEvent,
    bench_report,
    case_order,
    summarise,
)
from effstudio.config import fields_of
from effstudio.engine.events import LogEvent
from effstudio.gui import theme
from effstudio.gui.main_window import BENCHMARK, MainWindow
from effstudio.gui.panels.benchmark_panel import BenchmarkPanel, parse_lengths
from effstudio.gui.plots.scaling import LogAxis, format_length
from effstudio.registry import get_registry

SLOPE = {"full": 3.0, "sdpa": 1.0, "local": 2.0}  # fake ms per 1000 tokens


def fake_ms(kind: str, length: int) -> float:
    return round(SLOPE[kind] * length / 1000, 3)


def fake_mb(kind: str, length: int) -> float:
    return round(SLOPE[kind] * length / 100 + 1, 2)


class FakeBench:
    """A stand-in for run_attention_bench: exact numbers, chosen failures, a case that waits for Stop."""

    def __init__(self, failing: dict | None = None, block_at: int | None = None, raise_at: int | None = None):
        self.failing = failing or {}  # (kind, length) -> error
        self.block_at = block_at  # the case (0-based) that runs until a stop is requested
        self.raise_at = raise_at
        self.calls = 0
        self.blocked = threading.Event()

    def __call__(self, settings, control):
        self.calls += 1
        yield LogEvent("info", "fake benchmark")
        rows, started = [], time.perf_counter()
        for kind, length in case_order(settings):
            if len(rows) == self.raise_at:
                raise RuntimeError("the case process broke")
            if len(rows) == self.block_at:
                self.blocked.set()
                deadline = time.monotonic() + 10
                while not control.stop_requested and time.monotonic() < deadline:
                    time.sleep(0.002)
            if control.stop_requested:
                yield BenchDoneEvent("stopped", time.perf_counter() - started,
                                     tuple(summarise(rows, settings.lengths)))
                return
            error = self.failing.get((kind, length))
            if error:
                row = BenchRowEvent(kind, length, None, None, False, error)
            else:
                row = BenchRowEvent(kind, length, fake_ms(kind, length), fake_mb(kind, length), True)
            rows.append(row)
            yield row
        yield BenchDoneEvent("finished", time.perf_counter() - started, tuple(summarise(rows, settings.lengths)))


@pytest.fixture
def make_panel(app, qtbot, settings):
    panels = []

    def make(bench_fn=None):
        panel = BenchmarkPanel(get_registry(), bench_fn=bench_fn, settings=settings)
        qtbot.addWidget(panel)
        panel.resize(1100, 700)
        panel.show()
        panels.append(panel)
        return panel

    yield make
    for panel in panels:
        assert panel.shutdown(10_000)


def configure(panel, kinds=("full", "local", "sdpa"), lengths="64, 128 256", repeats=1, backward=True):
    panel.set_kinds(list(kinds))
    panel.lengths_edit.setText(lengths)
    panel.repeats_spin.setValue(repeats)
    panel.backward_check.setChecked(backward)
    panel.device_box.setCurrentText("cpu")


def run(qtbot, panel, timeout=10_000) -> str:
    with qtbot.waitSignal(panel.run_finished, timeout=timeout) as blocker:
        assert panel.start() is not None
    assert panel.job is None
    return blocker.args[0]


def table_rows(table) -> list[list[str]]:
    return [[table.item(r, c).text() for c in range(table.columnCount())] for r in range(table.rowCount())]


def test_kinds_default_to_every_registered_kind(make_panel):
    panel = make_panel(FakeBench())
    assert panel.checked_kinds() == get_registry().names("attention")
    assert panel.lengths_edit.text() == "1024, 2048, 4096, 8192, 16384"
    assert panel.results.currentIndex() == 0  # the empty state, not blank axes
    assert "No results yet" in panel.results.empty_hint.text()
    assert not panel.save_button.isEnabled() and not panel.stop_button.isEnabled()
    assert panel.progress.format() == "idle"


def test_rows_fill_the_table_the_plots_and_the_summary(make_panel, qtbot):
    fake = FakeBench()
    panel = make_panel(fake)
    configure(panel)
    assert run(qtbot, panel) == "finished"

    settings = panel.run_settings
    assert settings.kinds == ("full", "local", "sdpa") and settings.lengths == (64, 128, 256)  # registry order
    assert settings.repeats == 1 and settings.device == "cpu" and settings.backward
    rows = table_rows(panel.results.table)
    assert len(rows) == 9
    assert rows[0] == ["full", "64", "0.19", "2.9", "ok"]  # 3.0 * 0.064 ms, 3.0 * 0.64 + 1 MB
    assert rows[8] == ["sdpa", "256", "0.26", "3.6", "ok"]
    assert [r[0] for r in rows[:4]] == ["full", "full", "full", "local"]  # in the order they ran

    for plot, value in ((panel.results.time_plot, fake_ms), (panel.results.memory_plot, fake_mb)):
        assert plot.series_names() == ["full", "local", "sdpa"]
        for kind in ("full", "local", "sdpa"):
            xs, ys = plot.data(kind)
            assert xs.tolist() == [64, 128, 256]
            assert ys.tolist() == [value(kind, n) for n in (64, 128, 256)]
            cx, cy = plot.curves[kind].getData()  # drawn as log10 on log-log axes
            np.testing.assert_allclose(cx, np.log10([64, 128, 256]))
            np.testing.assert_allclose(cy, np.log10(ys))
    assert panel.results.legend.texts() == ["full", "local", "sdpa"]
    assert panel.results.time_plot.style("full")[2] and not panel.results.time_plot.style("local")[2]  # baselines dashed
    assert len({panel.results.time_plot.colour(k) for k in ("full", "local", "sdpa")}) == 3

    summary = table_rows(panel.results.summary_table)
    assert "256 tokens" in panel.results.summary_title.text()  # 4096 is not measured: the longest length
    assert summary[0] == ["full", "0.77", "1.00\u00d7", "0.33\u00d7", "1.00", "\u2014"]
    assert summary[1][:4] == ["local", "0.51", "1.50\u00d7", "0.50\u00d7"]
    assert summary[2][:4] == ["sdpa", "0.26", "3.00\u00d7", "1.00\u00d7"]
    assert panel.summary() == list(panel.done.summary)

    assert panel.progress.value() == panel.progress.maximum() == 9
    assert panel.progress.format() == "finished \u00b7 9 of 9 cases"
    assert panel.save_button.isEnabled() and panel.run_button.isEnabled()
    assert not panel.stop_button.isEnabled()
    assert fake.calls == 1


def test_rows_arrive_live(make_panel, qtbot):
    fake = FakeBench(block_at=4)
    panel = make_panel(fake)
    configure(panel)
    panel.start()
    qtbot.waitUntil(lambda: len(panel.rows) == 4, timeout=5_000)
    assert panel.results.table.rowCount() == 4
    assert panel.results.time_plot.data("full")[0].tolist() == [64, 128, 256]  # a kind at a time
    assert panel.results.time_plot.data("local")[0].tolist() == [64]
    assert panel.progress.value() == 4 and panel.progress.format() == "4 of 9 cases"
    assert panel.next_case() == ("local", 128)
    assert "Measuring local at 128 tokens on cpu" in panel.progress_label.text()
    # the summary compares kinds at the reference length (here the longest): full has reached it, local not
    summary = table_rows(panel.results.summary_table)
    assert summary[0][:3] == ["full", "0.77", "1.00\u00d7"] and summary[1][:3] == ["local", "\u2014", "\u2014"]
    assert not panel.run_button.isEnabled() and not panel.lengths_edit.isEnabled()
    assert not panel.save_button.isEnabled()
    with qtbot.waitSignal(panel.run_finished, timeout=5_000):
        panel.stop()


def test_failed_cases_show_in_the_table_plots_and_legend(make_panel, qtbot):
    failing = {("full", 256): "out of memory (> 10 MB)", ("sdpa", 128): "timed out (> 1 s)"}
    panel = make_panel(FakeBench(failing))
    configure(panel)
    assert run(qtbot, panel) == "finished"
    rows = table_rows(panel.results.table)
    assert rows[2] == ["full", "256", "\u2014", "\u2014", "out of memory (> 10 MB)"]
    assert rows[7] == ["sdpa", "128", "\u2014", "\u2014", "timed out (> 1 s)"]
    status = panel.results.table.item(2, 4)
    assert status.foreground().color().name() == theme.ERROR
    assert status.toolTip() == "out of memory (> 10 MB)"
    assert panel.results.table.item(0, 4).foreground().color().name() == theme.OK

    xs, ys = panel.results.time_plot.data("full")
    assert xs.tolist() == [64, 128, 256] and ys[:2].tolist() == [0.192, 0.384] and math.isnan(ys[2])
    assert np.isnan(panel.results.memory_plot.data("sdpa")[1]).tolist() == [False, True, False]
    assert np.isnan(panel.results.time_plot.curves["sdpa"].getData()[1]).tolist() == [False, True, False]  # a gap
    assert panel.results.time_plot.failed_lengths("full") == [256]
    assert panel.results.legend.texts() == ["full \u2014 failed at 256", "local", "sdpa \u2014 failed at 128"]
    assert "1 failed" not in panel.progress_label.text() and "2 failed" in panel.progress_label.text()
    report = panel.report()
    assert report["errors"] == [{"kind": "full", "length": 256, "error": "out of memory (> 10 MB)"},
                                {"kind": "sdpa", "length": 128, "error": "timed out (> 1 s)"}]


def test_stop_acts_within_a_case(make_panel, qtbot):
    fake = FakeBench(block_at=2)
    panel = make_panel(fake)
    configure(panel)
    job = panel.start()
    assert fake.blocked.wait(5)
    assert panel.stop_button.isEnabled()
    with qtbot.waitSignal(panel.run_finished, timeout=5_000) as blocker:
        panel.stop_button.click()
        assert job.control.stop_requested
        assert not panel.stop_button.isEnabled()
        assert panel.progress.format().startswith("stopping")
    assert blocker.args == ["stopped"]
    assert panel.status == "stopped" and panel.done.status == "stopped"
    assert len(panel.rows) == 2 and panel.results.table.rowCount() == 2
    assert panel.progress.format() == "stopped \u00b7 2 of 9 cases"
    assert panel.report()["status"] == "stopped"
    assert panel.run_button.isEnabled() and panel.save_button.isEnabled()


@pytest.mark.parametrize(("lengths", "message"), [
    ("abc", "lengths: 'abc' is not a whole number of tokens"),
    ("1024, 2k", "lengths: '2k' is not a whole number of tokens"),
    ("", "lengths: give one or more sequence lengths"),
    ("64, 0", "lengths: lengths must be positive, got 0"),
])
def test_a_bad_lengths_entry_is_shown_and_starts_nothing(make_panel, lengths, message):
    fake = FakeBench()
    panel = make_panel(fake)
    configure(panel, lengths=lengths)
    assert panel.start() is None
    assert panel.job is None and fake.calls == 0 and panel.run_settings is None
    assert panel.problem.isVisible()
    assert message in panel.problem.text()
    assert panel.lengths_edit.property("invalid") is True
    assert panel.results.currentIndex() == 0
    panel.lengths_edit.setText("64")
    panel.lengths_edit.textEdited.emit("64")  # typing clears the message
    assert not panel.problem.isVisible() and panel.lengths_edit.property("invalid") is False


def test_an_empty_kind_selection_is_shown_and_starts_nothing(make_panel):
    fake = FakeBench()
    panel = make_panel(fake)
    configure(panel)
    panel.none_button.click()
    assert panel.checked_kinds() == []
    assert panel.start() is None
    assert fake.calls == 0
    assert "kinds: pick at least one attention kind" in panel.problem.text()
    panel.all_button.click()
    assert panel.checked_kinds() == get_registry().names("attention")
    assert not panel.problem.isVisible()


def test_lengths_are_parsed_sorted_and_deduplicated(make_panel):
    assert parse_lengths("1024, 2048;4096  8_192") == (1024, 2048, 4096, 8192)
    panel = make_panel(FakeBench())
    configure(panel, lengths="256,64 64")
    assert panel.build_settings().lengths == (64, 256)


def test_an_exception_in_the_job_ends_as_failed(make_panel, qtbot):
    panel = make_panel(FakeBench(raise_at=1))
    configure(panel)
    assert run(qtbot, panel) == "failed"
    assert panel.error == "RuntimeError: the case process broke"
    assert "The benchmark failed: RuntimeError: the case process broke" in panel.problem.text()
    assert len(panel.rows) == 1
    assert panel.report()["status"] == "failed"
    assert panel.run_button.isEnabled()


def test_save_json_writes_the_cli_report(make_panel, qtbot, tmp_path):
    panel = make_panel(FakeBench({("sdpa", 256): "out of memory (> 10 MB)"}))
    configure(panel, backward=False)
    run(qtbot, panel)
    path = tmp_path / "bench.json"
    assert panel.save_json(path)
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved == json.loads(json.dumps(bench_report(panel.run_settings, panel.rows, panel.done)))
    assert list(saved) == ["settings", "status", "rows", "summary", "errors", "timing"]
    assert saved["status"] == "finished"
    assert saved["settings"]["kinds"] == ["full", "local", "sdpa"] and saved["settings"]["backward"] is False
    no_quartiles = {"ms_q1": None, "ms_q3": None, "calls": None}  # the fake job's rows have none
    assert saved["rows"][0] == {"kind": "full", "length": 64, "ms": 0.192, "peak_mb": 2.92, "ok": True, **no_quartiles}
    assert saved["rows"][8] == {"kind": "sdpa", "length": 256, "ms": None, "peak_mb": None, "ok": False,
                                **no_quartiles}
    assert saved["errors"] == [{"kind": "sdpa", "length": 256, "error": "out of memory (> 10 MB)"}]
    assert [e["kind"] for e in saved["summary"]] == ["full", "local", "sdpa"]


def test_the_controls_are_remembered(make_panel, qtbot):
    panel = make_panel(FakeBench())
    configure(panel, kinds=("sdpa", "local"), lengths="64, 128", repeats=2, backward=False)
    panel.heads_spin.setValue(2)
    run(qtbot, panel)
    again = make_panel(FakeBench())
    assert again.checked_kinds() == ["local", "sdpa"]  # registry order
    assert again.lengths_edit.text() == "64, 128"
    assert (again.repeats_spin.value(), again.heads_spin.value()) == (2, 2)
    assert not again.backward_check.isChecked() and again.device_box.currentText() == "cpu"


def test_log_axes_label_lengths_and_values():
    assert [format_length(n) for n in (64, 1000, 1024, 16384)] == ["64", "1,000", "1k", "16k"]
    axis = LogAxis("left")
    levels = axis.tickValues(math.log10(0.9), math.log10(600), 300)
    values = [round(10 ** v, 6) for _, ticks in levels for v in ticks]
    assert sorted(values) == [1, 2, 5, 10, 20, 50, 100, 200, 500]
    assert axis.tickStrings([0.0, 3.0, -1.0], 1, 1.0) == ["1", "1,000", "0.1"]
    lengths = LogAxis("bottom", powers_of_two=True)
    (_, ticks), = lengths.tickValues(math.log10(60), math.log10(300), 400)
    assert lengths.tickStrings(ticks, 1, 1) == ["64", "128", "256"]


def test_a_real_benchmark_runs_end_to_end(make_panel, qtbot):
    panel = make_panel()  # the core's run_attention_bench: one child process per case
    configure(panel, kinds=("full", "sdpa"), lengths="64, 128", repeats=1, backward=False)
    assert run(qtbot, panel, timeout=120_000) == "finished"
    assert [(r.attention, r.length) for r in panel.rows] == [("full", 64), ("full", 128), ("sdpa", 64),
                                                             ("sdpa", 128)]
    assert all(r.ok and r.ms > 0 and r.peak_mb >= 0 for r in panel.rows), [r.error for r in panel.rows]
    assert panel.results.table.rowCount() == 4
    assert [row[4] for row in table_rows(panel.results.table)] == ["ok"] * 4
    spread = panel.results.table.item(0, 2).toolTip()  # the median's spread over the case's calls
    assert spread.startswith(f"median of {panel.rows[0].calls} calls; the middle half took ")
    assert panel.results.time_plot.data("sdpa")[0].tolist() == [64, 128]
    assert panel.done.status == "finished" and [e["kind"] for e in panel.done.summary] == ["full", "sdpa"]
    assert panel.done.summary[0]["speedup_vs_full"] == 1.0
    assert panel.report()["settings"]["backward"] is False


# ------------------------------------------------------------------ the window
def test_the_benchmark_section_is_in_the_sidebar(window):
    names = [window.sidebar.item(i).text() for i in range(window.sidebar.count())]
    assert names[BENCHMARK] == "Benchmark"
    window.show_section(BENCHMARK)
    assert window.stack.currentWidget() is window.benchmark_panel
    assert window.benchmark_panel.isVisible()
    assert not window.sidebar.item(BENCHMARK).icon().isNull()


def test_closing_the_window_mid_benchmark_stops_it(app, qtbot, settings, tmp_path):
    fake = FakeBench(block_at=1)
    win = MainWindow(settings, out_dir=tmp_path / "run", restore=False, isolate=False, bench_fn=fake)
    qtbot.addWidget(win)
    win.show()
    win.show_section(BENCHMARK)
    configure(win.benchmark_panel)
    job = win.benchmark_panel.start()
    assert fake.blocked.wait(5)
    assert job.running
    win.close()
    assert job.control.stop_requested
    assert not job.running  # closing waited for the thread
    assert job.status == "stopped"


def test_benchmark_messages_reach_the_status_bar_and_log(app, qtbot, settings, tmp_path):
    win = MainWindow(settings, out_dir=tmp_path / "run", restore=False, isolate=False, bench_fn=FakeBench())
    qtbot.addWidget(win)
    configure(win.benchmark_panel, lengths="64")
    run(qtbot, win.benchmark_panel)
    assert win.status.currentMessage().startswith("Benchmark finished in 0:00: 3 cases")
    assert "Benchmark finished" in win.log.text()
    win.close()


def test_the_shape_controls_are_drawn_from_the_settings_declarations(make_panel):
    panel = make_panel(FakeBench())
    specs = {spec.name: spec for spec in fields_of(AttentionBenchSettings)}
    assert "kinds" not in specs and "lengths" not in specs  # the check list and the text field
    assert panel.form.field_names() == ["batch", "heads", "head_dim", "repeats", "device", "backward"]
    for name, high in (("batch", 1024), ("heads", 256), ("head_dim", 1024), ("repeats", 100)):
        spin = panel.form.editor(name)
        assert (spin.minimum(), spin.maximum()) == (1, high) == (specs[name].min, specs[name].max)
        assert spin.value() == specs[name].default
    assert "median" in panel.repeats_spin.toolTip()
    assert panel.backward_check.isChecked()
    devices = [panel.device_box.itemData(i) for i in range(panel.device_box.count())]
    assert devices[0] == "auto" and "cpu" in devices and "mps" not in devices
    panel.heads_spin.setValue(8)
    assert panel.build_settings().heads == 8


def test_the_summary_growth_tells_its_quartile_range(make_panel):
    panel = make_panel(FakeBench())
    entry = {"kind": "local", "length": 4096, "ms": 20.0, "peak_mb": 40.0, "speedup_vs_full": 20.0,
             "speedup_vs_sdpa": 5.0, "memory_vs_full": 0.05, "longest": 16384, "growth": 4.0,
             "growth_range": [3.04, 5.0]}
    panel.results.show_summary([entry, {**entry, "kind": "sdpa", "growth_range": None}], (4096, 16384), False)
    table = panel.results.summary_table
    assert table.item(0, 5).text() == "4.00\u00d7"
    assert table.item(0, 5).toolTip() == "3.04\u00d7 to 5.00\u00d7 by the quartiles of the two cases' calls"
    assert table.item(1, 5).toolTip() == ""
