"""The Runs section's table: one row per recorded run, sortable by value, filtered by words and status."""

from __future__ import annotations

import math
import time
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QItemSelectionModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from effstudio.gui import theme
from effstudio.gui.metrics import format_duration, format_number
from effstudio.gui.tables import RIGHT, SORT_ROLE, read_only_rows, refilter
from effstudio.runs.store import RunRecord

ID_ROLE = Qt.ItemDataRole.UserRole + 2
COLUMNS = ("ID", "Name", "Status", "Model", "Attention", "Task", "Steps", "Final loss", "Val acc", "Started",
           "Duration", "Tags")
WIDTHS = (52, 160, 84, 92, 80, 64, 96, 74, 62, 126, 66, 96)
NUMBER_COLUMNS = ("ID", "Steps", "Final loss", "Val acc", "Duration")  # right-aligned
STATUS_COLOURS = {"running": theme.ACCENT, "finished": theme.OK, "stopped": theme.WARNING, "failed": theme.ERROR,
                  "interrupted": theme.ERROR}


def cell_text(run: RunRecord, column: str) -> str:
    if column == "ID":
        return str(run.id)
    if column == "Name":
        return run.name
    if column == "Status":
        return run.status
    if column == "Model":
        return run.model_type
    if column == "Attention":
        return run.attention or "\u2014"
    if column == "Task":
        return run.task
    if column == "Steps":
        return f"{run.steps:,} / {run.total_steps:,}" if run.total_steps else f"{run.steps:,}"
    if column == "Final loss":
        return format_number(run.final_loss)
    if column == "Val acc":
        return "\u2014" if run.val_accuracy is None else f"{100 * run.val_accuracy:.1f}%"
    if column == "Started":
        return time.strftime("%Y-%m-%d %H:%M", time.localtime(run.started_at))
    if column == "Duration":
        return format_duration(run.duration_s)
    return ", ".join(run.tags)


def sort_key(run: RunRecord, column: str) -> Any:
    """Numbers sort as numbers (missing ones first), the rest as lower-case text."""
    numbers = {"ID": run.id, "Steps": run.steps, "Final loss": run.final_loss, "Val acc": run.val_accuracy,
               "Started": run.started_at, "Duration": run.duration_s}
    if column in numbers:
        value = numbers[column]
        return -math.inf if value is None else float(value)
    return cell_text(run, column).lower()


class RunsTableModel(QAbstractTableModel):
    """Run records as rows; DisplayRole is formatted text, SORT_ROLE the raw value to sort by."""

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.runs: list[RunRecord] = []

    def set_runs(self, runs: list[RunRecord]) -> None:
        self.beginResetModel()
        self.runs = list(runs)
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.runs)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        run, column = self.runs[index.row()], COLUMNS[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return cell_text(run, column)
        if role == SORT_ROLE:
            return sort_key(run, column)
        if role == ID_ROLE:
            return run.id
        if role == Qt.ItemDataRole.ForegroundRole and column == "Status":
            return QColor(STATUS_COLOURS.get(run.status, theme.TEXT))
        if role == Qt.ItemDataRole.TextAlignmentRole and column in NUMBER_COLUMNS:
            return int(RIGHT)
        if role == Qt.ItemDataRole.ToolTipRole:
            if column == "Status" and run.error:
                return run.error
            if column == "Name":
                return f"{run.run_dir or ''}\n{run.device or ''} \u00b7 recorded from the {run.source or '?'}"
        return None


class RunsFilter(QSortFilterProxyModel):
    """Keeps rows whose text contains every word of the filter, and whose status matches."""

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.words: list[str] = []
        self.status: str | None = None
        self.setSortRole(SORT_ROLE)

    def set_text(self, text: str) -> None:
        refilter(self, lambda: setattr(self, "words", text.lower().split()))

    def set_status(self, status: str | None) -> None:
        refilter(self, lambda: setattr(self, "status", status))

    def filterAcceptsRow(self, row: int, parent: QModelIndex | QPersistentModelIndex) -> bool:
        run = self.sourceModel().runs[row]
        if self.status is not None and run.status != self.status:
            return False
        haystack = " ".join(cell_text(run, c) for c in COLUMNS).lower()
        return all(word in haystack for word in self.words)


class RunsTable(QTableView):
    """The runs, newest first until a header is clicked; several can be selected."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.records = RunsTableModel(self)
        self.proxy = RunsFilter(self)
        self.proxy.setSourceModel(self.records)
        self.setModel(self.proxy)
        self.setSortingEnabled(True)
        self.sortByColumn(0, Qt.SortOrder.DescendingOrder)
        read_only_rows(self)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setShowGrid(False)
        self.verticalHeader().setDefaultSectionSize(26)
        header = self.horizontalHeader()
        header.setHighlightSections(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(False)
        for column, width in enumerate(WIDTHS):
            self.setColumnWidth(column, width)
        header.setSectionResizeMode(COLUMNS.index("Name"), QHeaderView.ResizeMode.Stretch)

    def selected_ids(self) -> list[int]:
        rows = self.selectionModel().selectedRows() if self.selectionModel() else []
        return [int(self.proxy.data(index, ID_ROLE)) for index in sorted(rows, key=lambda i: i.row())]

    def select_ids(self, run_ids: list[int]) -> None:
        """Select the rows of ``run_ids`` without a selectionChanged signal (the caller updates itself)."""
        selection = self.selectionModel()
        selection.blockSignals(True)
        try:
            selection.clearSelection()
            wanted = set(run_ids)
            for row in range(self.proxy.rowCount()):
                index = self.proxy.index(row, 0)
                if int(self.proxy.data(index, ID_ROLE)) in wanted:
                    selection.select(index, QItemSelectionModel.SelectionFlag.Select
                                     | QItemSelectionModel.SelectionFlag.Rows)
        finally:
            selection.blockSignals(False)
