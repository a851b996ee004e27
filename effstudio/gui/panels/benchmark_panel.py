"""Benchmark section: time and peak memory of attention kinds against sequence length.

The panel turns its controls into :class:`AttentionBenchSettings` (a bad value is
shown in the panel, and nothing starts), runs the core's benchmark generator in a
:class:`~effstudio.gui.job.Job` and fills the plots, the results table and the
summary as rows arrive. Stop acts within a case: the core kills the case's child
process as soon as the stop is requested. "Save JSON…" writes the same report as
``effstudio bench attention --json``.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from PySide6.QtCore import QEvent, QObject, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from effstudio.bench.attention import (
    AttentionBenchSettings,
    BenchDoneEvent,
    BenchRowEvent,
    bench_report,
    reference_length,
    run_attention_bench,
    summarise,
)
from effstudio.config import ConfigError
from effstudio.engine.device import available_devices
from effstudio.engine.events import Event, JobControl, LogEvent
from effstudio.gui import settings as keys
from effstudio.gui import theme
from effstudio.gui.icons import action_icon, icon
from effstudio.gui.job import Job
from effstudio.gui.metrics import DASH, format_duration
from effstudio.gui.panels.base import Panel, empty_state
from effstudio.gui.plots.scaling import ScalingPlot, SeriesLegend, format_length
from effstudio.gui.theme import monospace_font
from effstudio.registry import Registry, UnknownEntryError

BenchFn = Callable[[AttentionBenchSettings, JobControl], Iterator[Event]]
BASELINES = ("full", "sdpa")  # the kinds the summary compares against; drawn dashed
DEFAULT_LENGTHS = "1024, 2048, 4096, 8192, 16384"
SETTINGS_KEY = "benchmark/attention"
RESULT_COLUMNS = ("Kind", "Length", "ms", "Peak MB", "Status")
SUMMARY_COLUMNS = ("Kind", "ms", "\u00d7 full", "\u00d7 sdpa", "Mem/full", "Growth")
SUMMARY_TIPS = (
    "Attention kind",
    "Median time of one call at the reference length (ms)",
    "Speed-up against full attention: full's time \u00f7 this kind's (higher is faster)",
    "Speed-up against PyTorch's fused scaled_dot_product_attention (higher is faster)",
    "Peak memory as a share of full attention's (lower is leaner)",
    "How much the time grows from the reference length to the longest length",
)
SIDE_BY_SIDE_WIDTH = 760  # px of results area below which the two tables become tabs
FAILED_BACKGROUND = QColor("#fef2f2")


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


def _cell(value: float | None, digits: int) -> str:
    return DASH if value is None or not math.isfinite(value) else f"{value:,.{digits}f}"


def _times(value: float | None) -> str:
    return DASH if value is None else f"{value:.2f}\u00d7"


class SortItem(QTableWidgetItem):
    """A table cell shown as text and sorted by a key (numbers as numbers, missing values last)."""

    def __init__(self, text: str, key: Any = None):
        super().__init__(text)
        self.key = (1, 0) if key is None else (0, key)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        if isinstance(other, SortItem):
            return self.key < other.key
        return super().__lt__(other)


class BenchmarkPanel(Panel):
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
        self.registry = registry
        self.bench_fn = bench_fn
        self.store = settings
        self.job: Job | None = None
        self.rows: list[BenchRowEvent] = []
        self.done: BenchDoneEvent | None = None
        self.status: str | None = None  # of the last run
        self.run_settings: AttentionBenchSettings | None = None  # resolved, of the last run
        self.error: str | None = None
        self._started_at = 0.0

        controls = self._make_controls()
        results = self._make_results()
        columns = QHBoxLayout()
        columns.setSpacing(14)
        columns.addWidget(controls)
        columns.addWidget(results, 1)
        self.body.addLayout(columns, 1)

        self.clock = QTimer(self)
        self.clock.setInterval(1000)
        self.clock.timeout.connect(self._show_progress)
        self._restore()
        self._update_buttons()

    # ---------------------------------------------------------------- layout
    def _make_controls(self) -> QWidget:
        column = QWidget(self)
        layout = QVBoxLayout(column)
        layout.setContentsMargins(0, 0, 4, 0)
        layout.setSpacing(10)

        kinds_group = QGroupBox("Attention kinds", column)
        kinds_layout = QVBoxLayout(kinds_group)
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
        pick = QHBoxLayout()
        pick.setSpacing(6)
        self.all_button = QPushButton("All", kinds_group)
        self.none_button = QPushButton("None", kinds_group)
        self.all_button.clicked.connect(lambda: self.set_kinds(self.registry.names("attention")))
        self.none_button.clicked.connect(lambda: self.set_kinds([]))
        pick.addWidget(self.all_button)
        pick.addWidget(self.none_button)
        pick.addStretch(1)
        kinds_layout.addLayout(pick)
        layout.addWidget(kinds_group)

        shape_group = QGroupBox("Shape", column)
        shape_layout = QVBoxLayout(shape_group)
        shape_layout.setSpacing(4)
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.setHorizontalSpacing(10)
        form.setVerticalSpacing(6)
        self.lengths_edit = QLineEdit(DEFAULT_LENGTHS, shape_group)
        self.lengths_edit.setObjectName("benchLengths")
        self.lengths_edit.setToolTip("Sequence lengths in tokens, separated by commas or spaces")
        self.lengths_edit.textEdited.connect(lambda _text: self._clear_problem())
        self.batch_spin = self._spin(1, 1024, 1, "Sequences per call", shape_group)
        self.heads_spin = self._spin(1, 256, 4, "Attention heads", shape_group)
        self.head_dim_spin = self._spin(1, 1024, 64, "Width of one head", shape_group)
        self.repeats_spin = self._spin(1, 100, 3, "Timed calls per case after one warm-up; the median "
                                       "is reported", shape_group)
        self.backward_check = QCheckBox("Forward + backward", shape_group)
        self.backward_check.setChecked(True)
        self.backward_check.setToolTip("Time forward and backward passes, or the forward pass only")
        self.device_box = QComboBox(shape_group)
        self.device_box.setObjectName("benchDevice")
        for device in ["auto", *(d for d in available_devices() if d in ("cpu", "cuda"))]:
            self.device_box.addItem(device)
        self.device_box.setToolTip("auto: cuda when there is one, else cpu")
        lengths_label = QLabel("Sequence lengths (tokens)", shape_group)
        lengths_label.setBuddy(self.lengths_edit)
        shape_layout.addWidget(lengths_label)
        shape_layout.addWidget(self.lengths_edit)
        shape_layout.addSpacing(4)
        shape_layout.addLayout(form)
        form.addRow("Batch", self.batch_spin)
        form.addRow("Heads", self.heads_spin)
        form.addRow("Head dim", self.head_dim_spin)
        form.addRow("Repeats", self.repeats_spin)
        form.addRow("Device", self.device_box)
        form.addRow("", self.backward_check)
        layout.addWidget(shape_group)

        run_group = QGroupBox("Run", column)
        run_layout = QVBoxLayout(run_group)
        run_layout.setSpacing(8)
        buttons = QHBoxLayout()
        buttons.setSpacing(6)
        self.run_button = QPushButton(icon("start", "#ffffff"), "Run", run_group)
        self.run_button.setObjectName("primary")
        self.run_button.setToolTip("Measure every chosen kind at every length")
        self.stop_button = QPushButton(action_icon("stop"), "Stop", run_group)
        self.stop_button.setToolTip("Stop now: the running case is ended and not reported")
        for button in (self.run_button, self.stop_button):
            button.setMinimumHeight(30)
            button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            buttons.addWidget(button)
        self.run_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        run_layout.addLayout(buttons)
        self.progress = QProgressBar(run_group)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("idle")
        self.progress.setMinimumHeight(20)
        run_layout.addWidget(self.progress)
        self.progress_label = QLabel("", run_group)
        self.progress_label.setObjectName("description")
        self.progress_label.setWordWrap(True)
        run_layout.addWidget(self.progress_label)
        self.problem = QLabel("", run_group)
        self.problem.setObjectName("benchProblem")
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet(f"color: {theme.ERROR};")
        self.problem.hide()
        run_layout.addWidget(self.problem)
        self.save_button = QPushButton(action_icon("save"), "Save JSON\u2026", self)
        self.save_button.setToolTip("Save settings, rows and summary in the format of "
                                    "`effstudio bench attention --json`")
        self.save_button.clicked.connect(self.save_json_dialog)
        layout.addWidget(run_group)
        layout.addStretch(1)

        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(column)
        scroll.viewport().setAutoFillBackground(False)
        column.setAutoFillBackground(False)
        scroll.setFixedWidth(258)
        return scroll

    def _spin(self, low: int, high: int, value: int, tip: str, parent: QWidget) -> QSpinBox:
        spin = QSpinBox(parent)
        spin.setRange(low, high)
        spin.setValue(value)
        spin.setToolTip(tip)
        spin.setAlignment(Qt.AlignmentFlag.AlignRight)
        return spin

    def _make_results(self) -> QWidget:
        self.time_plot = ScalingPlot("Time per call", "time", "ms", parent=self)
        self.memory_plot = ScalingPlot("Peak memory", "peak memory", "MB", parent=self)
        self.legend = SeriesLegend(self)
        self.legend.follow(self.time_plot)  # both plots draw the same series in the same styles
        plots = QFrame(self)
        plots.setObjectName("benchPlots")
        plots.setStyleSheet(f"QFrame#benchPlots {{ background: white; border: 1px solid {theme.BORDER};"
                            " border-radius: 6px; }")
        plots_layout = QVBoxLayout(plots)
        plots_layout.setContentsMargins(8, 6, 8, 4)
        plots_layout.setSpacing(0)
        plots_layout.addWidget(self.legend)
        side_by_side = QHBoxLayout()
        side_by_side.setSpacing(8)
        side_by_side.addWidget(self.time_plot)
        side_by_side.addWidget(self.memory_plot)
        plots_layout.addLayout(side_by_side, 1)

        waiting = QFrame(self)
        waiting.setObjectName("benchEmpty")
        waiting.setStyleSheet(f"QFrame#benchEmpty {{ background: white; border: 1px solid {theme.BORDER};"
                              " border-radius: 6px; }")
        waiting_layout = QVBoxLayout(waiting)
        waiting_layout.addStretch(1)
        self.empty_hint = empty_state(
            "No results yet.\n\nPick attention kinds and sequence lengths, then press Run. Time and peak "
            "memory against length appear here as each case finishes: one line per kind on log-log axes, "
            "a table of every case and a summary against full and sdpa.\n\nFor a quick first look, try "
            "lengths 256, 512, 1024. The same benchmark runs headless: effstudio bench attention.", waiting)
        self.empty_hint.setMaximumWidth(560)
        self.empty_hint.setMinimumHeight(190)  # wrapped text: room for every line
        waiting_layout.addWidget(self.empty_hint, 0, Qt.AlignmentFlag.AlignHCenter)
        waiting_layout.addStretch(2)

        self.table = QTableWidget(0, len(RESULT_COLUMNS), self)
        self.table.setObjectName("benchResults")
        self._style_table(self.table, RESULT_COLUMNS, stretch=4)
        self.table.setSortingEnabled(True)
        results_box = self._titled("Results", self.table, self.save_button)

        self.summary_title = QLabel("<b>Summary</b>", self)
        self.summary_table = QTableWidget(0, len(SUMMARY_COLUMNS), self)
        self.summary_table.setObjectName("benchSummary")
        self._style_table(self.summary_table, SUMMARY_COLUMNS, stretch=None)
        self.summary_note = QLabel("", self)
        self.summary_note.setObjectName("description")
        self.summary_note.setWordWrap(True)
        summary_box = QWidget(self)
        summary_layout = QVBoxLayout(summary_box)
        summary_layout.setContentsMargins(0, 0, 0, 0)
        summary_layout.setSpacing(4)
        self.summary_title.setMinimumHeight(self.save_button.sizeHint().height())
        for column, tip in enumerate(SUMMARY_TIPS):
            self.summary_table.horizontalHeaderItem(column).setToolTip(tip)
        title_row = QHBoxLayout()
        title_row.addWidget(self.summary_title)
        title_row.addStretch(1)
        summary_layout.addLayout(title_row)
        summary_layout.addWidget(self.summary_table, 1)
        summary_layout.addWidget(self.summary_note)

        # side by side when there is room, else as two tabs (see _arrange_tables)
        self.results_box, self.summary_box = results_box, summary_box
        self.tables_split = QSplitter(Qt.Orientation.Horizontal, self)
        self.tables_split.setChildrenCollapsible(False)
        self.tables_split.addWidget(results_box)
        self.tables_split.addWidget(summary_box)
        self.tables_split.setStretchFactor(0, 1)  # a wider window widens the results; the summary keeps its width
        self.tables_split.setStretchFactor(1, 0)
        self.tables_split.setSizes([450, 350])
        self.tables_tabs = QTabWidget(self)
        self.tables_tabs.setDocumentMode(True)
        self.tables = QStackedWidget(self)
        self.tables.addWidget(self.tables_split)
        self.tables.addWidget(self.tables_tabs)
        vertical = QSplitter(Qt.Orientation.Vertical, self)
        vertical.setChildrenCollapsible(False)
        vertical.addWidget(plots)
        vertical.addWidget(self.tables)
        vertical.setStretchFactor(0, 4)
        vertical.setStretchFactor(1, 3)
        vertical.setSizes([400, 300])
        self.splitter = vertical
        self.results_stack = QStackedWidget(self)
        self.results_stack.addWidget(waiting)
        self.results_stack.addWidget(vertical)
        self.results_stack.installEventFilter(self)  # its width decides how the tables are arranged
        return self.results_stack

    def _fit_summary_width(self) -> None:
        """Widen the summary beside the results until every column shows in full."""
        table = self.summary_table
        header = table.horizontalHeader()
        needed = sum(max(header.sectionSizeHint(c), table.sizeHintForColumn(c)) for c in range(table.columnCount()))
        needed += 2 * table.frameWidth() + table.verticalScrollBar().sizeHint().width() + 2
        sizes = self.tables_split.sizes()
        if self.tables_side_by_side() and len(sizes) == 2 and sizes[1] < needed < sum(sizes) - 300:
            self.tables_split.setSizes([sum(sizes) - needed, needed])

    def tables_side_by_side(self) -> bool:
        return self.tables.currentWidget() is self.tables_split

    def _arrange_tables(self) -> None:
        """Results and summary side by side on a wide panel, as tabs on a narrow one."""
        wide = self.results_stack.width() >= SIDE_BY_SIDE_WIDTH
        if wide == self.tables_side_by_side():
            return
        if wide:
            self.tables_tabs.clear()
            self.tables_split.addWidget(self.results_box)
            self.tables_split.addWidget(self.summary_box)
            self.tables_split.setSizes([self.results_stack.width() - 350, 350])
            self._fit_summary_width()
            self.results_box.show()  # a tab page left hidden stays hidden after the move
            self.summary_box.show()
            self.tables.setCurrentWidget(self.tables_split)
        else:
            self.tables_tabs.addTab(self.results_box, "Results")
            self.tables_tabs.addTab(self.summary_box, "Summary")
            self.tables.setCurrentWidget(self.tables_tabs)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if watched is self.results_stack and event.type() == QEvent.Type.Resize:
            self._arrange_tables()
        return super().eventFilter(watched, event)

    def _titled(self, title: str, widget: QWidget, button: QWidget) -> QWidget:
        box = QWidget(self)
        layout = QVBoxLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(QLabel(f"<b>{title}</b>", box))
        top.addStretch(1)
        top.addWidget(button)
        layout.addLayout(top)
        layout.addWidget(widget, 1)
        return box

    def _style_table(self, table: QTableWidget, columns: tuple[str, ...], stretch: int | None) -> None:
        """Read-only rows; columns fit their contents, ``stretch`` (if any) takes the rest."""
        table.setHorizontalHeaderLabels(list(columns))
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        table.setAlternatingRowColors(True)
        table.setWordWrap(False)
        table.setTextElideMode(Qt.TextElideMode.ElideRight)
        table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        table.verticalHeader().hide()
        table.verticalHeader().setDefaultSectionSize(22)
        header = table.horizontalHeader()
        header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
        for column in range(len(columns)):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        if stretch is not None:
            header.setSectionResizeMode(stretch, QHeaderView.ResizeMode.Stretch)
        header.setStretchLastSection(False)
        header.setHighlightSections(False)
        header.setSortIndicator(-1, Qt.SortOrder.AscendingOrder)  # rows stay in the order they ran

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
        settings = AttentionBenchSettings(
            kinds=tuple(kinds), lengths=parse_lengths(self.lengths_edit.text()), batch=self.batch_spin.value(),
            heads=self.heads_spin.value(), head_dim=self.head_dim_spin.value(),
            backward=self.backward_check.isChecked(), device=self.device_box.currentText(),
            repeats=self.repeats_spin.value())
        try:
            return settings.resolved(self.registry)
        except UnknownEntryError as err:
            raise ConfigError("kinds", str(err)) from None

    def _show_problem(self, err: ConfigError) -> None:
        self.problem.setText(f"Cannot run: {err.field}: {err.message}")
        self.problem.show()
        self._mark_invalid(self.lengths_edit, err.field == "lengths")
        self._mark_invalid(self.kind_list, err.field == "kinds")
        (self.lengths_edit if err.field == "lengths" else self.kind_list).setFocus()
        self.message.emit(f"Benchmark: {err.field}: {err.message}")

    def _clear_problem(self) -> None:
        if self.problem.isVisible() or self.problem.text():
            self.problem.hide()
            self.problem.setText("")
        self._mark_invalid(self.lengths_edit, False)
        self._mark_invalid(self.kind_list, False)

    @staticmethod
    def _mark_invalid(widget: QWidget, invalid: bool) -> None:
        if bool(widget.property("invalid")) == invalid:
            return
        widget.setProperty("invalid", invalid)
        widget.setStyleSheet(f"border: 1px solid {theme.ERROR}; background: #fef2f2;" if invalid else "")

    # ------------------------------------------------------------------ runs
    @property
    def running(self) -> bool:
        return self.job is not None

    def start(self) -> Job | None:
        """Run the benchmark with the controls' settings; None (and the reason shown) when they are bad."""
        if self.job is not None:
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
        job = Job(lambda control: bench_fn(settings, control), "effstudio-benchmark", self)
        job.event.connect(self._on_event)
        job.failed.connect(self._on_failed)
        job.finished.connect(self._on_finished)
        job.ended.connect(self._on_ended)
        self.job = job
        self._reset_views(settings)
        self._started_at = time.monotonic()
        self.clock.start()
        self._update_buttons()
        self._show_progress()
        self.run_started.emit()
        job.start()
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
        if self.job is None:
            return True
        return self.job.shutdown(timeout_ms)

    def _reset_views(self, settings: AttentionBenchSettings) -> None:
        order = self.registry.names("attention")
        for plot in (self.time_plot, self.memory_plot):
            plot.reset(settings.kinds, settings.lengths, palette_order=order, dashed=BASELINES)
        self.results_stack.setCurrentIndex(1)
        self.table.setSortingEnabled(False)
        self.table.setRowCount(0)
        self.table.setSortingEnabled(True)
        self.progress.setRange(0, len(settings.kinds) * len(settings.lengths))
        self.progress.setValue(0)
        self._show_summary()

    # ---------------------------------------------------------- job signals
    def _on_event(self, event: Any) -> None:
        if isinstance(event, BenchRowEvent):
            self.add_row(event)
        elif isinstance(event, BenchDoneEvent):
            self.done = event
            self._show_summary()
        elif isinstance(event, LogEvent) and event.level != "info":
            self.message.emit(f"Benchmark: {event.message}")

    def add_row(self, row: BenchRowEvent) -> None:
        self.rows.append(row)
        self.time_plot.add_point(row.attention, row.length, row.ms if row.ok else None)
        self.memory_plot.add_point(row.attention, row.length, row.peak_mb if row.ok else None)
        self.results_stack.setCurrentIndex(1)
        self._append_table_row(row)
        self._show_summary()
        self._show_progress()

    def _append_table_row(self, row: BenchRowEvent) -> None:
        table = self.table
        table.setSortingEnabled(False)
        index = table.rowCount()
        table.insertRow(index)
        skipped = (row.error or "").startswith("skipped")
        if row.ok:
            status = "ok"
        elif skipped:
            status = "skipped"
        else:
            status = row.error or "failed"
        cells = (
            SortItem(row.attention, row.attention),
            SortItem(f"{row.length:,}", row.length),
            SortItem(_cell(row.ms, 2), row.ms),
            SortItem(_cell(row.peak_mb, 1), row.peak_mb),
            SortItem(status, (not row.ok, status)),
        )
        numeric = QFont(monospace_font())
        for column, item in enumerate(cells):
            if column in (1, 2, 3):
                item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                item.setFont(numeric)
            if not row.ok:
                item.setBackground(FAILED_BACKGROUND)
            table.setItem(index, column, item)
        colour = theme.OK if row.ok else (theme.MUTED if skipped else theme.ERROR)
        cells[4].setForeground(QColor(colour))
        cells[4].setToolTip(row.error or "measured")
        cells[0].setToolTip(row.error or "")
        table.setSortingEnabled(True)
        table.scrollToItem(cells[0])

    def _on_failed(self, message: str) -> None:
        self.error = message
        self.problem.setText(f"The benchmark failed: {message}")
        self.problem.show()
        self.message.emit(f"Benchmark failed: {message}")

    def _on_finished(self, status: str) -> None:
        # the core's final event knows best (a stop after the last case still finished every case)
        self.status = self.done.status if self.done is not None and status != "failed" else status

    def _on_ended(self) -> None:
        job, self.job = self.job, None
        if job is not None:
            job.deleteLater()
        self.clock.stop()
        status = self.status or "failed"
        self.status = status
        self._update_buttons()
        self._show_progress()
        seconds = self.done.seconds if self.done is not None else time.monotonic() - self._started_at
        failed = sum(1 for r in self.rows if not r.ok)
        text = f"Benchmark {status} in {format_duration(seconds)}: {len(self.rows)} cases"
        if failed:
            text += f", {failed} failed"
        self.message.emit(text)
        self.run_finished.emit(status)

    # ---------------------------------------------------------------- views
    def _update_buttons(self) -> None:
        running = self.job is not None
        stopping = running and self.job.control.stop_requested
        self.run_button.setEnabled(not running)
        self.stop_button.setEnabled(running and not stopping)
        self.save_button.setEnabled(not running and bool(self.rows))
        for widget in (self.kind_list, self.all_button, self.none_button, self.lengths_edit, self.batch_spin,
                       self.heads_spin, self.head_dim_spin, self.repeats_spin, self.backward_check,
                       self.device_box):
            widget.setEnabled(not running)

    def next_case(self) -> tuple[str, int] | None:
        """The case running now: the core runs all kinds at one length before the next."""
        settings = self.run_settings
        if settings is None or len(self.rows) >= len(settings.kinds) * len(settings.lengths):
            return None
        index = len(self.rows)
        return settings.kinds[index % len(settings.kinds)], settings.lengths[index // len(settings.kinds)]

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
        summary = self.summary()
        table = self.summary_table
        table.setRowCount(len(summary))
        if self.run_settings is not None:
            reference = reference_length(self.run_settings.lengths)
            self.summary_title.setText(f"<b>Summary</b> at {reference:,} tokens")
        else:
            self.summary_title.setText("<b>Summary</b>")
        fastest = min((e["ms"] for e in summary if e["ms"] is not None), default=None)
        numeric = QFont(monospace_font())
        for index, entry in enumerate(summary):
            cells = (entry["kind"], _cell(entry["ms"], 2), _times(entry["speedup_vs_full"]),
                     _times(entry["speedup_vs_sdpa"]), _cell(entry["memory_vs_full"], 2),
                     _times(entry["growth"]))
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                    item.setFont(numeric)
                if entry["ms"] is not None and entry["ms"] == fastest and column in (0, 1):
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                table.setItem(index, column, item)
        self._fit_summary_width()
        reached = any(entry["ms"] is not None for entry in summary)
        if summary and not reached and self.job is not None:
            self.summary_note.setText(f"Filled in once the cases at {summary[0]['length']:,} tokens have run.")
        elif summary:
            first = summary[0]
            growth = (f" Growth: time at {format_length(first['longest'])} \u00f7 time at "
                      f"{format_length(first['length'])}." if first["longest"] > first["length"] else "")
            self.summary_note.setText("\u00d7 full, \u00d7 sdpa: speed-up (higher is faster). Mem/full: peak "
                                      f"memory \u00f7 full's (lower is leaner).{growth}")
        else:
            self.summary_note.setText("Speed-ups and memory against full and sdpa appear here as "
                                      "cases finish." if self.job is not None or self.rows else "")

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
            self.problem.setText(f"Cannot save {path}: {err.strerror or err}")
            self.problem.show()
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
        if self.store is None:
            return
        values = {"kinds": self.checked_kinds(), "lengths": self.lengths_edit.text(),
                  "batch": self.batch_spin.value(), "heads": self.heads_spin.value(),
                  "head_dim": self.head_dim_spin.value(), "repeats": self.repeats_spin.value(),
                  "backward": self.backward_check.isChecked(), "device": self.device_box.currentText()}
        self.store.setValue(SETTINGS_KEY, json.dumps(values))

    def _restore(self) -> None:
        """The controls of the last run; a kind no longer registered or a device now missing is left out."""
        if self.store is None:
            return
        text = self.store.value(SETTINGS_KEY, "")
        try:
            values = json.loads(text) if isinstance(text, str) and text else {}
        except ValueError:
            return
        if not isinstance(values, dict):
            return
        try:
            if isinstance(values.get("kinds"), list) and values["kinds"]:
                self.set_kinds([k for k in values["kinds"] if isinstance(k, str)])
            if isinstance(values.get("lengths"), str):
                self.lengths_edit.setText(values["lengths"])
            for key, spin in (("batch", self.batch_spin), ("heads", self.heads_spin),
                              ("head_dim", self.head_dim_spin), ("repeats", self.repeats_spin)):
                if isinstance(values.get(key), int):
                    spin.setValue(values[key])
            if isinstance(values.get("backward"), bool):
                self.backward_check.setChecked(values["backward"])
            index = self.device_box.findText(str(values.get("device", "")))
            if index >= 0:
                self.device_box.setCurrentIndex(index)
        except (TypeError, ValueError):
            return
