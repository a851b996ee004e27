"""Benchmark section: time and peak memory of attention kinds against sequence length.

The panel turns its controls into :class:`AttentionBenchSettings` (the kinds as a
check list, the lengths as text, the other settings drawn by ConfigForm from their
declarations; a bad value is shown in the panel, and nothing starts), runs the
core's benchmark generator as a job (:class:`~effstudio.gui.job.JobHost`) and
fills :class:`BenchResults` (plots, every case, the summary) as rows arrive. Stop acts within a case: the core kills the case's child
process as soon as the stop is requested. "Save JSON…" writes the same report as
``effstudio bench attention --json``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from effstudio.bench.attention import (
    AttentionBenchSettings,
    BenchDoneEvent,
    BenchRowEvent,
    bench_report,
    case_order,
    run_attention_bench,
    summarise,
)
from effstudio.config import ConfigError
from effstudio.engine.device import available_devices
from effstudio.engine.events import Event, JobControl, LogEvent
from effstudio.gui import settings as keys
from effstudio.gui.forms.config_form import ConfigForm
from effstudio.gui.icons import action_icon
from effstudio.gui.job import Job, JobHost
from effstudio.gui.metrics import format_duration
from effstudio.gui.panels.base import Panel, hbox, side_column
from effstudio.gui.panels.bench_results import BenchResults
from effstudio.gui.panels.run_controls import RunGroup
from effstudio.pretrained.efficient import record_attention_report
from effstudio.registry import Registry, UnknownEntryError

BenchFn = Callable[[AttentionBenchSettings, JobControl], Iterator[Event]]
DEFAULT_LENGTHS = ", ".join(map(str, AttentionBenchSettings.lengths))
FORM_FIELDS = ("batch", "heads", "head_dim", "repeats", "device", "backward")  # the others keep their defaults
SETTINGS_KEY = "benchmark/attention"


def parse_lengths(text: str) -> tuple[int, ...]:
    """ "1024, 2048 4096" -> (1024, 2048, 4096); raises ConfigError naming the bad entry."""
    words = [w for w in re.split(r"[,;\s]+", text.strip()) if w]
    if not words:
        raise ConfigError("lengths", "give one or more sequence lengths, e.g. 1024, 2048, 4096")
    lengths = []
    for word in words:
        try:
            value = int(word.replace("_", ""))
        except ValueError:
            raise ConfigError("lengths", f"{word!r} is not a whole number of tokens") from None
        if value < 1:
            raise ConfigError("lengths", f"lengths must be positive, got {value}")
        lengths.append(value)
    return tuple(lengths)


class BenchmarkPanel(JobHost, Panel):
    """Controls on the left; plots, results and summary on the right."""

    run_started = Signal()
    run_finished = Signal(str)  # "finished" | "stopped" | "failed", once the thread has ended
    message = Signal(str)  # a line for the status bar

    def __init__(self, registry: Registry, *, bench_fn: BenchFn | None = None,
                 settings: QSettings | None = None, parent: QWidget | None = None):
        super().__init__("Benchmark", "Time and peak memory of each attention kind as the sequence grows. "
                         "Every case runs in its own process; one that runs out of memory or time is "
                         "marked failed and longer lengths of that kind are skipped.",
                         scroll=False, parent=parent)
        self.init_jobs()
        self.registry = registry
        self.bench_fn = bench_fn
        self.store = settings
        self.rows: list[BenchRowEvent] = []
        self.done: BenchDoneEvent | None = None
        self.status: str | None = None  # of the last run
        self.run_settings: AttentionBenchSettings | None = None  # resolved, of the last run
        self.error: str | None = None
        self._started_at = 0.0
        self._reporting = False  # a run has started and its end is not reported yet

        columns = QHBoxLayout()
        columns.setSpacing(14)
        columns.addWidget(self._make_controls())
        self.results = BenchResults(self.save_button, self)
        columns.addWidget(self.results, 1)
        self.body.addLayout(columns, 1)

        self.clock = QTimer(self)
        self.clock.setInterval(1000)
        self.clock.timeout.connect(self._show_progress)
        self._restore()
        self._update_buttons()

    # ---------------------------------------------------------------- layout
    def _make_controls(self) -> QWidget:
        scroll, layout = side_column(self, 258)
        column = scroll.widget()

        kinds_layout = QVBoxLayout(kinds_group := QGroupBox("Attention kinds", column))
        kinds_layout.setSpacing(6)
        self.kind_list = QListWidget(kinds_group)
        self.kind_list.setObjectName("benchKinds")
        self.kind_list.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.kind_list.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        for entry in self.registry.all("attention"):
            item = QListWidgetItem(entry.name, self.kind_list)
            item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked)
            item.setToolTip(entry.description)
        rows = max(3, min(self.kind_list.count(), 10))
        self.kind_list.setFixedHeight(rows * self.kind_list.sizeHintForRow(0) + 2 * self.kind_list.frameWidth() + 2)
        self.kind_list.itemChanged.connect(lambda _item: self._clear_problem())
        kinds_layout.addWidget(self.kind_list)
        self.all_button = QPushButton("All", kinds_group)
        self.none_button = QPushButton("None", kinds_group)
        self.all_button.clicked.connect(lambda: self.set_kinds(self.registry.names("attention")))
        self.none_button.clicked.connect(lambda: self.set_kinds([]))
        kinds_layout.addLayout(hbox(self.all_button, self.none_button, None, spacing=6))
        layout.addWidget(kinds_group)

        shape_layout = QVBoxLayout(shape_group := QGroupBox("Shape", column))
        shape_layout.setSpacing(4)
        self.lengths_edit = QLineEdit(DEFAULT_LENGTHS, shape_group)
        self.lengths_edit.setObjectName("benchLengths")
        self.lengths_edit.setToolTip("Sequence lengths in tokens, separated by commas or spaces")
        self.lengths_edit.textEdited.connect(lambda _text: self._clear_problem())
        lengths_label = QLabel("Sequence lengths (tokens)", shape_group)
        lengths_label.setBuddy(self.lengths_edit)
        devices = ["auto", *(d for d in available_devices() if d in ("cpu", "cuda"))]
        self.form = ConfigForm(AttentionBenchSettings, fields=FORM_FIELDS, choices={"device": devices},
                               parent=shape_group)
        (self.batch_spin, self.heads_spin, self.head_dim_spin, self.repeats_spin, self.device_box,
         self.backward_check) = map(self.form.editor, FORM_FIELDS)
        self.device_box.setObjectName("benchDevice")
        shape_layout.addWidget(lengths_label)
        shape_layout.addWidget(self.lengths_edit)
        shape_layout.addSpacing(4)
        shape_layout.addWidget(self.form)
        layout.addWidget(shape_group)

        self.run_group = RunGroup("Measure every chosen kind at every length", "benchProblem", column)
        run = self.run_group
        self.run_button, self.stop_button, self.progress = run.run_button, run.stop_button, run.progress
        self.progress_label, self.problem = run.status_label, run.problem
        self.stop_button.setToolTip("Stop now: the running case is ended and not reported")
        self.run_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.save_button = QPushButton(action_icon("save"), "Save JSON\u2026", self)
        self.save_button.setToolTip("Save settings, rows and summary in the format of "
                                    "`effstudio bench attention --json`")
        self.save_button.clicked.connect(self.save_json_dialog)
        layout.addWidget(run)
        layout.addStretch(1)
        return scroll

    # ------------------------------------------------------------- controls
    def checked_kinds(self) -> list[str]:
        return [self.kind_list.item(i).text() for i in range(self.kind_list.count())
                if self.kind_list.item(i).checkState() == Qt.CheckState.Checked]

    def set_kinds(self, kinds: list[str] | tuple[str, ...]) -> None:
        wanted = set(kinds)
        for i in range(self.kind_list.count()):
            item = self.kind_list.item(i)
            item.setCheckState(Qt.CheckState.Checked if item.text() in wanted else Qt.CheckState.Unchecked)

    def build_settings(self) -> AttentionBenchSettings:
        """The settings the controls describe, resolved and checked; raises ConfigError naming the field."""
        kinds = self.checked_kinds()
        if not kinds:
            raise ConfigError("kinds", "pick at least one attention kind")
        lengths = parse_lengths(self.lengths_edit.text())
        settings = dataclasses.replace(self.form.config(), kinds=tuple(kinds), lengths=lengths)
        try:
            return settings.resolved(self.registry)
        except UnknownEntryError as err:
            raise ConfigError("kinds", str(err)) from None

    def _show_problem(self, err: ConfigError) -> None:
        self.run_group.show_problem(f"Cannot run: {err.field}: {err.message}")
        _mark_invalid(self.lengths_edit, err.field == "lengths")
        _mark_invalid(self.kind_list, err.field == "kinds")
        (self.lengths_edit if err.field == "lengths" else self.kind_list).setFocus()
        self.message.emit(f"Benchmark: {err.field}: {err.message}")

    def _clear_problem(self) -> None:
        self.run_group.clear_problem()
        _mark_invalid(self.lengths_edit, False)
        _mark_invalid(self.kind_list, False)

    # ------------------------------------------------------------------ runs
    @property
    def job(self) -> Job | None:
        """The run in progress until its final status has arrived."""
        return self.job_of()

    @property
    def running(self) -> bool:
        return self.busy

    def start(self) -> Job | None:
        """Run the benchmark with the controls' settings; None (and the reason shown) when they are bad."""
        if self.busy:
            return None
        try:
            settings = self.build_settings()
        except ConfigError as err:
            self._show_problem(err)
            return None
        self._clear_problem()
        self._save()
        self.run_settings, self.rows, self.done, self.status, self.error = settings, [], None, None, None
        bench_fn = self.bench_fn or (lambda s, control: run_attention_bench(s, control, self.registry))
        self._reset_views(settings)
        self._started_at = time.monotonic()
        self._reporting = True
        self.clock.start()
        job = self.start_job(lambda control: bench_fn(settings, control), on_event=self._on_event,
                             on_failed=self._on_failed, on_finished=self._on_finished)
        self._show_progress()
        self.run_started.emit()
        return job

    def stop(self) -> None:
        if self.job is None or self.job.control.stop_requested:
            return
        self.job.stop()
        self._update_buttons()
        self._show_progress()

    def shutdown(self, timeout_ms: int = 30_000) -> bool:
        """Stop a run and wait for its thread (the window is closing); True when it has ended."""
        self.clock.stop()
        return super().shutdown(timeout_ms)

    def _reset_views(self, settings: AttentionBenchSettings) -> None:
        self.results.reset(settings, self.registry.names("attention"))
        self.progress.setRange(0, len(settings.kinds) * len(settings.lengths))
        self.progress.setValue(0)
        self._show_summary()

    # ---------------------------------------------------------- job signals
    def _on_event(self, event: Event) -> None:
        if isinstance(event, BenchRowEvent):
            self.add_row(event)
        elif isinstance(event, BenchDoneEvent):
            self.done = event
            self._show_summary()
        elif isinstance(event, LogEvent) and event.level != "info":
            self.message.emit(f"Benchmark: {event.message}")

    def add_row(self, row: BenchRowEvent) -> None:
        self.rows.append(row)
        self.results.add_row(row)
        self._show_summary()
        self._show_progress()

    def _on_failed(self, message: str) -> None:
        self.error = message
        self.run_group.show_problem(f"The benchmark failed: {message}")
        self.message.emit(f"Benchmark failed: {message}")

    def _on_finished(self, status: str) -> None:
        # the core's final event knows best (a stop after the last case still finished every case)
        self.status = self.done.status if self.done is not None and status != "failed" else status
        report = self.report()
        if report is not None and any(row["ok"] for row in report["rows"]):
            record_attention_report(report)  # the Make efficient panel's memory estimates read these curves

    def jobs_changed(self) -> None:
        self._update_buttons()
        if self._reporting and self.job is None and not self.busy:  # the final status is in, the thread ended
            self._reporting = False
            self._report_end()

    def _report_end(self) -> None:
        self.clock.stop()
        self._show_progress()
        seconds = self.done.seconds if self.done is not None else time.monotonic() - self._started_at
        failed = sum(1 for r in self.rows if not r.ok)
        text = f"Benchmark {self.status} in {format_duration(seconds)}: {len(self.rows)} cases"
        if failed:
            text += f", {failed} failed"
        self.message.emit(text)
        self.run_finished.emit(self.status)

    # ---------------------------------------------------------------- views
    def _update_buttons(self) -> None:
        running = self.busy
        self.run_button.setEnabled(not running)
        self.stop_button.setEnabled(self.job is not None and not self.job.control.stop_requested)
        self.save_button.setEnabled(not running and bool(self.rows))
        for widget in (self.kind_list, self.all_button, self.none_button, self.lengths_edit, self.form):
            widget.setEnabled(not running)

    def next_case(self) -> tuple[str, int] | None:
        """The case running now, in the core's order."""
        if self.run_settings is None:
            return None
        order = case_order(self.run_settings)
        return order[len(self.rows)] if len(self.rows) < len(order) else None

    def _show_progress(self) -> None:
        total = self.progress.maximum()
        done = len(self.rows)
        self.progress.setValue(min(done, total))
        if self.job is None:
            if self.status is None:
                self.progress.setFormat("idle")
                self.progress_label.setText("")
                return
            self.progress.setFormat(f"{self.status} \u00b7 {done} of {total} cases")
            failed = sum(1 for r in self.rows if not r.ok)
            seconds = self.done.seconds if self.done is not None else None
            parts = [f"took {format_duration(seconds)}"] if seconds is not None else []
            if self.run_settings is not None:
                parts.append(f"on {self.run_settings.device}")
            if failed:
                parts.append(f"{failed} failed")
            self.progress_label.setText(" \u00b7 ".join(parts))
            return
        elapsed = format_duration(time.monotonic() - self._started_at)
        if self.job.control.stop_requested:
            self.progress.setFormat(f"stopping \u00b7 {done} of {total} cases")
            self.progress_label.setText(f"Stopping\u2026 \u00b7 {elapsed} elapsed")
            return
        self.progress.setFormat(f"{done} of {total} cases")
        case = self.next_case()
        now = f"Measuring {case[0]} at {case[1]:,} tokens" if case else "Finishing"
        device = self.run_settings.device if self.run_settings is not None else ""
        self.progress_label.setText(f"{now} on {device} \u00b7 {elapsed} elapsed")

    def summary(self) -> list[dict[str, Any]]:
        """The core's summary: the final one when the run has ended, else one of the rows so far."""
        if self.done is not None:
            return list(self.done.summary)
        if self.run_settings is None or not self.rows:
            return []
        return summarise(self.rows, self.run_settings.lengths)

    def _show_summary(self) -> None:
        lengths = self.run_settings.lengths if self.run_settings is not None else None
        self.results.show_summary(self.summary(), lengths, running=self.job is not None)

    # ---------------------------------------------------------------- files
    def report(self) -> dict[str, Any] | None:
        """The ``--json`` report of the last run, or None before any run."""
        if self.run_settings is None:
            return None
        status = self.status if self.status == "failed" else None
        return bench_report(self.run_settings, self.rows, self.done, status=status)

    def save_json(self, path: str | Path) -> bool:
        report = self.report()
        if report is None:
            return False
        path = Path(path)
        try:
            path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        except OSError as err:
            self.run_group.show_problem(f"Cannot save {path}: {err.strerror or err}")
            return False
        self.message.emit(f"Saved the benchmark results to {path}")
        return True

    def save_json_dialog(self) -> None:
        folder = Path.home()
        if self.store is not None:
            folder = Path(keys.read_str(self.store, keys.LAST_DIR, str(folder)))
        name, _ = QFileDialog.getSaveFileName(self, "Save benchmark results",
                                              str(folder / "attention-bench.json"), "JSON (*.json)")
        if name:
            if self.store is not None:
                self.store.setValue(keys.LAST_DIR, str(Path(name).parent))
            self.save_json(name)

    # ------------------------------------------------------------- settings
    def _save(self) -> None:
        if self.store is not None:
            values = {"kinds": self.checked_kinds(), "lengths": self.lengths_edit.text(), **self.form.values()}
            self.store.setValue(SETTINGS_KEY, json.dumps(values))

    def _restore(self) -> None:
        """The controls of the last run; a kind no longer registered or a device now missing is left out."""
        text = self.store.value(SETTINGS_KEY, "") if self.store is not None else ""
        try:
            values = json.loads(text) if isinstance(text, str) and text else {}
        except ValueError:
            return
        if not isinstance(values, dict):
            return
        if isinstance(values.get("kinds"), list) and values["kinds"]:
            self.set_kinds([k for k in values["kinds"] if isinstance(k, str)])
        if isinstance(values.get("lengths"), str):
            self.lengths_edit.setText(values["lengths"])
        offered = [self.device_box.itemData(i) for i in range(self.device_box.count())]
        self.form.set_values({name: value for name, value in values.items() if name in self.form.specs
                              and isinstance(value, self.form.specs[name].type)
                              and (name != "device" or value in offered)})


def _mark_invalid(widget: QWidget, invalid: bool) -> None:
    """Drawn by the theme's [invalid="true"] rule."""
    if bool(widget.property("invalid")) != invalid:
        widget.setProperty("invalid", invalid)
        widget.style().unpolish(widget)
        widget.style().polish(widget)
