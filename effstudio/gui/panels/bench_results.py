"""The Benchmark section's results: log-log plots of time and memory, every case, and a summary.

It shows what it is given (rows as they arrive, the core's summary) and knows
nothing of jobs or settings; the panel drives it. The tables stand side by side on
a wide panel and become two tabs on a narrow one.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QResizeEvent
from PySide6.QtWidgets import (
    QFrame,
    QHeaderView,
    QLabel,
    QSplitter,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from effstudio.bench.attention import AttentionBenchSettings, BenchRowEvent, reference_length
from effstudio.gui import theme
from effstudio.gui.metrics import DASH
from effstudio.gui.panels.base import description_label, empty_state, hbox
from effstudio.gui.plots.scaling import ScalingPlot, SeriesLegend, format_length
from effstudio.gui.tables import RIGHT, SortItem, fill_table, fixed_text, read_only_rows
from effstudio.gui.theme import monospace_font

BASELINES = ("full", "sdpa")  # the kinds the summary compares against; drawn dashed
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


def _times(value: float | None) -> str:
    return DASH if value is None else f"{value:.2f}\u00d7"


class BenchResults(QStackedWidget):
    """An empty state until the first run; then the plots above the cases and the summary.

    ``title_button`` (the panel's Save button) stands at the right of the cases' title.
    """

    def __init__(self, title_button: QWidget, parent: QWidget | None = None):
        super().__init__(parent)
        self.time_plot = ScalingPlot("Time per call", "time", "ms", parent=self)
        self.memory_plot = ScalingPlot("Peak memory", "peak memory", "MB", parent=self)
        self.legend = SeriesLegend(self)
        self.legend.follow(self.time_plot)  # both plots draw the same series in the same styles
        plots_layout = QVBoxLayout(plots := QFrame(self))
        plots.setObjectName("benchPlots")
        plots_layout.setContentsMargins(8, 6, 8, 4)
        plots_layout.setSpacing(0)
        plots_layout.addWidget(self.legend)
        plots_layout.addLayout(hbox(self.time_plot, self.memory_plot, spacing=8), 1)

        waiting_layout = QVBoxLayout(waiting := QFrame(self))
        waiting.setObjectName("benchEmpty")
        self.empty_hint = empty_state(
            "No results yet.\n\nPick attention kinds and sequence lengths, then press Run. Time and peak "
            "memory against length appear here as each case finishes: one line per kind on log-log axes, "
            "a table of every case and a summary against full and sdpa.\n\nFor a quick first look, try "
            "lengths 256, 512, 1024. The same benchmark runs headless: effstudio bench attention.", waiting)
        self.empty_hint.setMaximumWidth(560)
        self.empty_hint.setMinimumHeight(190)  # wrapped text: room for every line
        waiting_layout.addStretch(1)
        waiting_layout.addWidget(self.empty_hint, 0, Qt.AlignmentFlag.AlignHCenter)
        waiting_layout.addStretch(2)

        self.table = _table("benchResults", RESULT_COLUMNS, stretch=4, parent=self)
        self.table.setSortingEnabled(True)
        self.summary_table = _table("benchSummary", SUMMARY_COLUMNS, stretch=None, parent=self)
        for column, tip in enumerate(SUMMARY_TIPS):
            self.summary_table.horizontalHeaderItem(column).setToolTip(tip)
        self.summary_title = QLabel("<b>Summary</b>", self)
        self.summary_title.setMinimumHeight(title_button.sizeHint().height())
        self.summary_note = description_label(self)
        self.results_box = _titled(QLabel("<b>Results</b>", self), self.table, title_button, parent=self)
        self.summary_box = _titled(self.summary_title, self.summary_table, None, self.summary_note, parent=self)

        # side by side when there is room, else as two tabs (see _arrange_tables)
        self.tables_split = QSplitter(Qt.Orientation.Horizontal, self)
        self.tables_split.setChildrenCollapsible(False)
        self.tables_split.addWidget(self.results_box)
        self.tables_split.addWidget(self.summary_box)
        self.tables_split.setStretchFactor(0, 1)  # a wider window widens the results; the summary keeps its width
        self.tables_split.setStretchFactor(1, 0)
        self.tables_split.setSizes([450, 350])
        self.tables_tabs = QTabWidget(self)
        self.tables_tabs.setDocumentMode(True)
        self.tables = QStackedWidget(self)
        self.tables.addWidget(self.tables_split)
        self.tables.addWidget(self.tables_tabs)
        self.splitter = QSplitter(Qt.Orientation.Vertical, self)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(plots)
        self.splitter.addWidget(self.tables)
        self.splitter.setStretchFactor(0, 4)
        self.splitter.setStretchFactor(1, 3)
        self.splitter.setSizes([400, 300])
        self.addWidget(waiting)
        self.addWidget(self.splitter)

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
        wide = self.width() >= SIDE_BY_SIDE_WIDTH
        if wide == self.tables_side_by_side():
            return
        if wide:
            self.tables_tabs.clear()
            self.tables_split.addWidget(self.results_box)
            self.tables_split.addWidget(self.summary_box)
            self.tables_split.setSizes([self.width() - 350, 350])
            self._fit_summary_width()
            self.results_box.show()  # a tab page left hidden stays hidden after the move
            self.summary_box.show()
            self.tables.setCurrentWidget(self.tables_split)
        else:
            self.tables_tabs.addTab(self.results_box, "Results")
            self.tables_tabs.addTab(self.summary_box, "Summary")
            self.tables.setCurrentWidget(self.tables_tabs)

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._arrange_tables()  # the width decides how the tables are arranged

    def reset(self, settings: AttentionBenchSettings, palette_order: list[str]) -> None:
        """Empty plots for every case of a new run, and an empty table."""
        for plot in (self.time_plot, self.memory_plot):
            plot.reset(settings.kinds, settings.lengths, palette_order=palette_order, dashed=BASELINES)
        self.setCurrentIndex(1)
        fill_table(self.table, [])

    def add_row(self, row: BenchRowEvent) -> None:
        """One case: a point on both plots and a line in the table (failed cases tinted)."""
        self.time_plot.add_point(row.attention, row.length, row.ms if row.ok else None)
        self.memory_plot.add_point(row.attention, row.length, row.peak_mb if row.ok else None)
        self.setCurrentIndex(1)
        skipped = (row.error or "").startswith("skipped")
        if row.ok:
            status = "ok"
        elif skipped:
            status = "skipped"
        else:
            status = row.error or "failed"
        cells = (
            SortItem(row.attention, row.attention),
            SortItem(f"{row.length:,}", row.length, align_right=True),
            SortItem(fixed_text(row.ms, 2), row.ms, align_right=True),
            SortItem(fixed_text(row.peak_mb, 1), row.peak_mb, align_right=True),
            SortItem(status, (not row.ok, status)),
        )
        numeric = QFont(monospace_font())
        for item in cells[1:4]:
            item.setFont(numeric)
        if not row.ok:
            for item in cells:
                item.setBackground(QColor(theme.ERROR_BACKGROUND))
        colour = theme.OK if row.ok else (theme.MUTED if skipped else theme.ERROR)
        cells[4].setForeground(QColor(colour))
        cells[4].setToolTip(row.error or "measured")
        cells[0].setToolTip(row.error or "")
        if row.calls and row.ms_q1 is not None and row.ms_q3 is not None:
            cells[2].setToolTip(f"median of {row.calls} calls; the middle half took "
                                f"{row.ms_q1:.2f} to {row.ms_q3:.2f} ms")
        fill_table(self.table, [cells], append=True)
        self.table.scrollToItem(cells[0])

    def show_summary(self, summary: list[dict[str, Any]], lengths: tuple[int, ...] | None, running: bool) -> None:
        """The core's summary of a run of ``lengths`` (None before any run); ``running`` while cases remain."""
        table = self.summary_table
        table.setRowCount(len(summary))
        if lengths is not None:
            self.summary_title.setText(f"<b>Summary</b> at {reference_length(lengths):,} tokens")
        else:
            self.summary_title.setText("<b>Summary</b>")
        fastest = min((e["ms"] for e in summary if e["ms"] is not None), default=None)
        numeric = QFont(monospace_font())
        for index, entry in enumerate(summary):
            cells = (entry["kind"], fixed_text(entry["ms"], 2), _times(entry["speedup_vs_full"]),
                     _times(entry["speedup_vs_sdpa"]), fixed_text(entry["memory_vs_full"], 2),
                     _times(entry["growth"]))
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if column:
                    item.setTextAlignment(RIGHT)
                    item.setFont(numeric)
                if column == 5 and entry.get("growth_range"):
                    low, high = entry["growth_range"]
                    item.setToolTip(f"{low:.2f}\u00d7 to {high:.2f}\u00d7 by the quartiles of the two cases' calls")
                if entry["ms"] is not None and entry["ms"] == fastest and column in (0, 1):
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
                table.setItem(index, column, item)
        self._fit_summary_width()
        reached = any(entry["ms"] is not None for entry in summary)
        if summary and not reached and running:
            self.summary_note.setText(f"Filled in once the cases at {summary[0]['length']:,} tokens have run.")
        elif summary:
            first = summary[0]
            growth = (f" Growth: time at {format_length(first['longest'])} \u00f7 time at "
                      f"{format_length(first['length'])}." if first["longest"] > first["length"] else "")
            self.summary_note.setText("\u00d7 full, \u00d7 sdpa: speed-up (higher is faster). Mem/full: peak "
                                      f"memory \u00f7 full's (lower is leaner).{growth}")
        else:
            self.summary_note.setText("Speed-ups and memory against full and sdpa appear here as "
                                      "cases finish." if running or self.table.rowCount() else "")


def _titled(title: QLabel, widget: QWidget, button: QWidget | None, below: QWidget | None = None, *,
            parent: QWidget) -> QWidget:
    """A title (and a button at its right) above ``widget``, and ``below`` under it."""
    box = QWidget(parent)
    layout = QVBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(4)
    layout.addLayout(hbox(title, None, button, spacing=4))
    layout.addWidget(widget, 1)
    if below is not None:
        layout.addWidget(below)
    return box


def _table(name: str, columns: tuple[str, ...], stretch: int | None, parent: QWidget) -> QTableWidget:
    """Read-only rows; columns fit their contents, ``stretch`` (if any) takes the rest."""
    table = QTableWidget(0, len(columns), parent)
    table.setObjectName(name)
    table.setHorizontalHeaderLabels(list(columns))
    read_only_rows(table)
    table.setTextElideMode(Qt.TextElideMode.ElideRight)
    table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    table.verticalHeader().setDefaultSectionSize(22)
    header = table.horizontalHeader()
    header.setDefaultAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    if stretch is not None:
        header.setSectionResizeMode(stretch, QHeaderView.ResizeMode.Stretch)
    header.setStretchLastSection(False)
    header.setHighlightSections(False)
    header.setSortIndicator(-1, Qt.SortOrder.AscendingOrder)  # rows stay in the order they ran
    return table
