"""Runs section: every recorded run in a sortable, filterable table, and their curves overlaid.

The table reads the run store (``effstudio.runs.store``) in the GUI thread: its
queries take milliseconds. Selecting several runs plots one metric of each on
the same axes. From here a run can be renamed, tagged, deleted with its files
(after a confirmation), its config opened in the forms to run it again, or it
can be continued from its last checkpoint. While a run is recording, the table
refreshes itself every few seconds when the section is on screen.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import (
    QAbstractTableModel,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from effstudio.config import ConfigError
from effstudio.engine.run_config import RunConfig
from effstudio.engine.run_plan import RunPlan
from effstudio.gui import theme
from effstudio.gui.metrics import format_duration, format_number
from effstudio.gui.panels.base import Panel, empty_state
from effstudio.registry import UnknownEntryError
from effstudio.runs.store import RunRecord, RunStore, RunStoreError

SORT_ROLE = Qt.ItemDataRole.UserRole + 1
ID_ROLE = Qt.ItemDataRole.UserRole + 2
LIVE_REFRESH_MS = 3000
COLUMNS = ("ID", "Name", "Status", "Model", "Attention", "Task", "Steps", "Final loss", "Val acc", "Started",
           "Duration", "Tags")
# (metric, label in the chooser, y-axis label)
METRICS = (("loss", "Training loss", "loss"), ("val_loss", "Validation loss", "loss"),
           ("val_accuracy", "Validation accuracy", "accuracy (%)"), ("lr", "Learning rate", "learning rate"),
           ("tokens_per_s", "Throughput (tokens/s)", "tokens/s"), ("grad_norm", "Gradient norm", "norm"),
           ("rss_mb", "Memory, process RSS", "MB"), ("cuda_allocated_mb", "Memory, CUDA allocated", "MB"))
SMOOTHED = ("loss", "tokens_per_s", "grad_norm")
RISING = ("val_accuracy",)  # curves that climb: the legend goes to the bottom right, out of their way
PALETTE = (theme.BLUE, theme.ORANGE, theme.GREEN, theme.PURPLE, theme.RED, theme.SKY, "#000000", "#8c6d31")
STATUS_COLOURS = {"running": theme.ACCENT, "finished": theme.OK, "stopped": theme.WARNING, "failed": theme.ERROR,
                  "interrupted": theme.ERROR}


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """Bias-corrected exponential moving average (NaNs stay NaN and are skipped)."""
    out = np.empty_like(values)
    last, scale = 0.0, 1.0
    for i, value in enumerate(values.tolist()):
        if not math.isfinite(value):
            out[i] = np.nan
            continue
        last = weight * last + (1 - weight) * value
        scale *= weight
        out[i] = last / (1 - scale)
    return out


class RunsTableModel(QAbstractTableModel):
    """Run records as rows; DisplayRole is formatted text, SORT_ROLE the raw value to sort by."""

    def __init__(self, parent: Any = None):
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
            return self._text(run, column)
        if role == SORT_ROLE:
            return self._key(run, column)
        if role == ID_ROLE:
            return run.id
        if role == Qt.ItemDataRole.ForegroundRole and column == "Status":
            return QColor(STATUS_COLOURS.get(run.status, theme.TEXT))
        if role == Qt.ItemDataRole.TextAlignmentRole and column in ("ID", "Steps", "Final loss", "Val acc",
                                                                    "Duration"):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            if column == "Status" and run.error:
                return run.error
            if column == "Name":
                return f"{run.run_dir or ''}\n{run.device or ''} \u00b7 recorded from the {run.source or '?'}"
        return None

    @staticmethod
    def _text(run: RunRecord, column: str) -> str:
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

    @staticmethod
    def _key(run: RunRecord, column: str) -> Any:
        numbers = {"ID": run.id, "Steps": run.steps, "Final loss": run.final_loss, "Val acc": run.val_accuracy,
                   "Started": run.started_at, "Duration": run.duration_s}
        if column in numbers:
            value = numbers[column]
            return -math.inf if value is None else float(value)
        return RunsTableModel._text(run, column).lower()


class RunsFilter(QSortFilterProxyModel):
    """Keeps rows whose text contains every word of the filter, and whose status matches."""

    def __init__(self, parent: Any = None):
        super().__init__(parent)
        self.words: list[str] = []
        self.status: str | None = None
        self.setSortRole(SORT_ROLE)

    def set_text(self, text: str) -> None:
        self._refilter(lambda: setattr(self, "words", text.lower().split()))

    def set_status(self, status: str | None) -> None:
        self._refilter(lambda: setattr(self, "status", status))

    def _refilter(self, change: Any) -> None:
        if hasattr(self, "beginFilterChange"):  # Qt 6.9+, where invalidateFilter is deprecated
            self.beginFilterChange()
            change()
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            change()
            self.invalidateFilter()

    def filterAcceptsRow(self, row: int, parent: QModelIndex | QPersistentModelIndex) -> bool:
        model = self.sourceModel()
        run = model.runs[row]
        if self.status is not None and run.status != self.status:
            return False
        haystack = " ".join(RunsTableModel._text(run, c) for c in COLUMNS).lower()
        return all(word in haystack for word in self.words)


class RunsPanel(Panel):
    """The Runs section. ``store_path`` picks a database (tests); by default the user's."""

    open_config = Signal(object)  # RunPlan (a RunConfig and its compression steps): show it in the forms
    inspect_file = Signal(str)  # a file of a run, double-clicked in the Files list
    continue_run = Signal(object, str, str)  # RunConfig, checkpoint path, run folder
    message = Signal(str)

    def __init__(self, store_path: str | Path | None = None, parent: QWidget | None = None):
        super().__init__("Runs", "Every run from the window or the command line, recorded with its settings, "
                                 "curves and files. Select several runs to compare their curves.",
                         scroll=False, parent=parent)
        self.store_path = store_path
        self._store: RunStore | None = None
        self.store_error: str | None = None

        self.filter_edit = QLineEdit(self)
        self.filter_edit.setPlaceholderText("Filter by name, model, attention, task, tag\u2026")
        self.filter_edit.setClearButtonEnabled(True)
        self.status_box = QComboBox(self)
        self.status_box.addItem("All statuses", None)
        for status in ("running", "finished", "stopped", "failed", "interrupted"):
            self.status_box.addItem(status.capitalize(), status)
        self.count_label = QLabel(self)
        self.count_label.setObjectName("description")
        refresh = QPushButton("Refresh", self)
        refresh.clicked.connect(self.refresh)
        top = QHBoxLayout()
        top.setSpacing(8)
        top.addWidget(self.filter_edit, 1)
        top.addWidget(self.status_box)
        top.addWidget(self.count_label)
        top.addWidget(refresh)
        self.body.addLayout(top)

        self.model = RunsTableModel(self)
        self.proxy = RunsFilter(self)
        self.proxy.setSourceModel(self.model)
        self.table = QTableView(self)
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setShowGrid(False)
        self.table.setWordWrap(False)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(26)
        header = self.table.horizontalHeader()
        header.setHighlightSections(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(False)
        for column, width in zip(COLUMNS, (52, 160, 84, 92, 80, 64, 96, 74, 62, 126, 66, 96), strict=True):
            self.table.setColumnWidth(COLUMNS.index(column), width)
        header.setSectionResizeMode(COLUMNS.index("Name"), QHeaderView.ResizeMode.Stretch)
        self.table.doubleClicked.connect(lambda _index: self.open_selected_config())

        self.rename_button = QPushButton("Rename\u2026", self)
        self.tag_button = QPushButton("Tags\u2026", self)
        self.delete_button = QPushButton("Delete\u2026", self)
        self.open_button = QPushButton("Open config in Train", self)
        self.open_button.setToolTip("Load the run's settings into the forms, to run it again or change it")
        self.continue_button = QPushButton("Continue from checkpoint", self)
        self.continue_button.setToolTip("Resume training from the run's last checkpoint, in its folder")
        self.rename_button.clicked.connect(self.rename_selected)
        self.tag_button.clicked.connect(self.tag_selected)
        self.delete_button.clicked.connect(self.delete_selected)
        self.open_button.clicked.connect(self.open_selected_config)
        self.continue_button.clicked.connect(self.continue_selected)
        actions = QHBoxLayout()
        actions.setSpacing(6)
        for button in (self.rename_button, self.tag_button, self.delete_button):
            actions.addWidget(button)
        actions.addStretch(1)
        self.selection_label = QLabel(self)
        self.selection_label.setObjectName("description")
        actions.addWidget(self.selection_label)
        actions.addStretch(1)
        actions.addWidget(self.open_button)
        actions.addWidget(self.continue_button)

        table_box = QWidget(self)
        table_layout = QVBoxLayout(table_box)
        table_layout.setContentsMargins(0, 0, 0, 0)
        table_layout.setSpacing(6)
        table_layout.addWidget(self.table, 1)
        table_layout.addLayout(actions)

        self.metric_box = QComboBox(self)
        for key, label, _axis in METRICS:
            self.metric_box.addItem(label, key)
        self.smooth_box = QCheckBox("Smooth", self)
        self.smooth_box.setChecked(True)
        self.smooth_box.setToolTip("Exponential moving average (0.9) of the training loss, throughput and "
                                   "gradient norm")
        self.plot = pg.PlotWidget(self)
        self.plot.setBackground("w")
        plot_item = self.plot.getPlotItem()
        plot_item.showGrid(x=True, y=True, alpha=0.15)
        plot_item.setLabel("bottom", "step", color=theme.MUTED)
        plot_item.hideButtons()
        font = QFont()
        font.setPointSize(8)
        for name in ("left", "bottom"):
            axis = plot_item.getAxis(name)
            axis.setTickFont(font)
            axis.setTextPen(theme.MUTED)
            axis.setPen(theme.BORDER)
            axis.enableAutoSIPrefix(False)
        plot_item.getAxis("left").setWidth(62)
        self.legend = plot_item.addLegend(offset=(-8, 8), labelTextSize="8pt", labelTextColor=theme.TEXT)
        self.legend.setBrush(pg.mkBrush(255, 255, 255, 215))
        self.legend.setPen(pg.mkPen(theme.BORDER))
        self.curves: dict[int, pg.PlotDataItem] = {}
        self.plot_hint = empty_state("Select runs in the table to compare their curves "
                                     "(Ctrl or Shift + click to pick several).", self)
        self.plot_stack = QStackedWidget(self)
        self.plot_stack.addWidget(self.plot_hint)
        self.plot_stack.addWidget(self.plot)
        plot_controls = QHBoxLayout()
        plot_controls.setSpacing(8)
        plot_controls.addWidget(QLabel("<b>Compare</b>", self))
        plot_controls.addWidget(self.metric_box)
        plot_controls.addWidget(self.smooth_box)
        plot_controls.addStretch(1)
        self.files_list = QListWidget(self)
        self.files_list.setToolTip("The selected run's files: checkpoints and what was made from them (pruned, "
                                   "quantized, distilled, ONNX). Double-click one to inspect it.")
        self.files_list.setAlternatingRowColors(True)
        self.files_list.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # the ends of a name tell files apart
        self.files_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.files_list.itemDoubleClicked.connect(self._inspect_item)
        files_box = QWidget(self)
        files_layout = QVBoxLayout(files_box)
        files_layout.setContentsMargins(0, 0, 0, 0)
        files_layout.setSpacing(4)
        files_layout.addWidget(QLabel("<b>Files</b>", self))
        files_layout.addWidget(self.files_list, 1)
        plot_row = QHBoxLayout()
        plot_row.setSpacing(8)
        plot_row.addWidget(self.plot_stack, 5)
        plot_row.addWidget(files_box, 3)
        plot_box = QWidget(self)
        plot_layout = QVBoxLayout(plot_box)
        plot_layout.setContentsMargins(0, 4, 0, 0)
        plot_layout.setSpacing(6)
        plot_layout.addLayout(plot_controls)
        plot_layout.addLayout(plot_row, 1)

        self.empty = empty_state("No runs recorded yet.\nRuns started here or with `effstudio train` appear "
                                 "in this table, with their settings, curves and files.", self)
        self.splitter = QSplitter(Qt.Orientation.Vertical, self)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(table_box)
        self.splitter.addWidget(plot_box)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([330, 330])
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.empty)
        self.stack.addWidget(self.splitter)
        self.body.addWidget(self.stack, 1)

        self.filter_edit.textChanged.connect(self._filter_changed)
        self.status_box.currentIndexChanged.connect(self._filter_changed)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        self.metric_box.currentIndexChanged.connect(self.plot_selected)
        self.smooth_box.toggled.connect(self.plot_selected)
        self.timer = QTimer(self)
        self.timer.setInterval(LIVE_REFRESH_MS)
        self.timer.timeout.connect(self._live_refresh)
        self._update_buttons()

    # ------------------------------------------------------------------ store
    @property
    def store(self) -> RunStore | None:
        """The store (opened on first use: that marks runs of crashed processes interrupted)."""
        if self._store is None:
            try:
                self._store = RunStore(self.store_path)
                self.store_error = None
            except RunStoreError as err:
                self.store_error = str(err)
                self.empty.setText(f"The run store cannot be opened:\n{err}")
        return self._store

    def close_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def refresh(self) -> None:
        """Re-read the runs, keeping the selection and the sort order."""
        store = self.store
        if store is None:
            self.stack.setCurrentIndex(0)
            return
        selected = self.selected_ids()
        runs = store.list_runs()
        self.model.set_runs(runs)
        self.stack.setCurrentIndex(1 if runs else 0)
        self.select_ids(selected)
        self._update_count()
        if any(r.status == "running" for r in runs):
            self.timer.start()
        else:
            self.timer.stop()
        self.plot_selected()

    def _live_refresh(self) -> None:
        if self.isVisible():
            self.refresh()

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self.refresh()

    # -------------------------------------------------------------- selection
    def selected_ids(self) -> list[int]:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        return [int(self.proxy.data(index, ID_ROLE)) for index in sorted(rows, key=lambda i: i.row())]

    def selected_runs(self) -> list[RunRecord]:
        by_id = {run.id: run for run in self.model.runs}
        return [by_id[i] for i in self.selected_ids() if i in by_id]

    def select_ids(self, run_ids: list[int]) -> None:
        selection = self.table.selectionModel()
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
        self._selection_changed()

    def _filter_changed(self, *_args: Any) -> None:
        self.proxy.set_status(self.status_box.currentData())
        self.proxy.set_text(self.filter_edit.text())
        self._update_count()

    def _update_count(self) -> None:
        shown, total = self.proxy.rowCount(), self.model.rowCount()
        noun = "run" if total == 1 else "runs"
        self.count_label.setText(f"{total} {noun}" if shown == total else f"{shown} of {total} {noun}")

    def _selection_changed(self, *_args: Any) -> None:
        self._update_buttons()
        self.show_files()
        self._offer_model_metrics()
        self.plot_selected()

    def _offer_model_metrics(self) -> None:
        """Add the selected runs' own step metrics (a model's extras, e.g. ponder steps) to the chooser."""
        store = self.store
        if store is None:
            return
        known = {self.metric_box.itemData(i) for i in range(self.metric_box.count())}
        extra = sorted({name for run in self.selected_runs() for name in store.metric_names(run.id)} - known)
        self.metric_box.blockSignals(True)
        for name in extra:
            self.metric_box.addItem(name.replace("_", " ").capitalize(), name)
        self.metric_box.blockSignals(False)

    def _update_buttons(self) -> None:
        runs = self.selected_runs()
        one = len(runs) == 1
        self.rename_button.setEnabled(one)
        self.tag_button.setEnabled(bool(runs))
        self.delete_button.setEnabled(bool(runs) and all(r.status != "running" for r in runs))
        self.open_button.setEnabled(one)
        self.continue_button.setEnabled(one and runs[0].status != "running")
        if not runs:
            self.selection_label.setText("")
        elif one:
            run = runs[0]
            self.selection_label.setText(f"#{run.id} \u00b7 {run.device or '?'} \u00b7 "
                                         f"effstudio {run.effstudio_version or '?'}, torch {run.torch_version or '?'}")
        else:
            self.selection_label.setText(f"{len(runs)} runs selected")

    # ------------------------------------------------------------------- plot
    def selected_metric(self) -> str:
        return str(self.metric_box.currentData())

    def plot_selected(self, *_args: Any) -> None:
        """One curve per selected run (at most len(PALETTE) distinct colours, then they repeat)."""
        runs = self.selected_runs()
        plot_item = self.plot.getPlotItem()
        for curve in self.curves.values():
            plot_item.removeItem(curve)
        self.legend.clear()
        self.curves = {}
        store = self.store
        if not runs or store is None:
            self.plot_stack.setCurrentIndex(0)
            return
        self.plot_stack.setCurrentIndex(1)
        metric, label = self.selected_metric(), self.metric_box.currentText()
        plot_item.setLabel("left", {m: axis for m, _, axis in METRICS}.get(metric, metric), color=theme.MUTED)
        self.smooth_box.setEnabled(metric in SMOOTHED)
        smooth = self.smooth_box.isChecked() and metric in SMOOTHED
        self.legend.anchor(itemPos=(1, 1 if metric in RISING else 0), parentPos=(1, 1 if metric in RISING else 0),
                           offset=(-8, -8 if metric in RISING else 8))
        points = metric in ("val_loss", "val_accuracy")
        missing = []
        for number, run in enumerate(runs):
            series = store.metrics(run.id, [metric]).get(metric)
            if series is None or not len(series):
                missing.append(run.name)
                continue
            values = series.values * (100.0 if metric == "val_accuracy" else 1.0)
            if smooth:
                values = ema(values, 0.9)
            colour = PALETTE[number % len(PALETTE)]
            pen = pg.mkPen(QColor(colour), width=2)
            curve = plot_item.plot(series.steps.astype(np.float64), values, pen=pen, name=f"#{run.id} {run.name}",
                                   symbol="o" if points else None, symbolSize=5, symbolBrush=colour,
                                   symbolPen=None)
            curve.setDownsampling(auto=True, method="mean" if smooth else "peak")
            curve.setClipToView(True)
            self.curves[run.id] = curve
        plot_item.enableAutoRange()
        if missing and not self.curves:
            self.plot_hint.setText(f"No {label.lower()} recorded for the selected runs.")
            self.plot_stack.setCurrentIndex(0)
        else:
            self.plot_hint.setText("Select runs in the table to compare their curves "
                                   "(Ctrl or Shift + click to pick several).")

    # ---------------------------------------------------------------- editing
    def rename_selected(self) -> bool:
        runs = self.selected_runs()
        if len(runs) != 1 or self.store is None:
            return False
        name, ok = QInputDialog.getText(self, "Rename run", f"New name of run #{runs[0].id}:", text=runs[0].name)
        if not ok or not name.strip():
            return False
        self.store.rename(runs[0].id, name)
        self.refresh()
        return True

    def tag_selected(self) -> bool:
        runs = self.selected_runs()
        if not runs or self.store is None:
            return False
        current = ", ".join(runs[0].tags) if len(runs) == 1 else ""
        what = f"run #{runs[0].id}" if len(runs) == 1 else f"{len(runs)} runs"
        text, ok = QInputDialog.getText(self, "Tags", f"Tags of {what}, separated by commas:", text=current)
        if not ok:
            return False
        tags = [t for t in text.split(",") if t.strip()]
        for run in runs:
            self.store.set_tags(run.id, tags)
        self.refresh()
        return True

    def delete_selected(self) -> bool:
        """Delete the selected runs and their files after a confirmation; True when deleted."""
        runs = [r for r in self.selected_runs() if r.status != "running"]
        store = self.store
        if not runs or store is None:
            return False
        files = [path for run in runs for path in store.run_files(run.id)]
        names = ", ".join(f"#{r.id} {r.name}" for r in runs[:5]) + (" \u2026" if len(runs) > 5 else "")
        box = QMessageBox(QMessageBox.Icon.Warning, "Delete runs",
                          f"Delete {len(runs)} run{'s' if len(runs) > 1 else ''} ({names})"
                          f"{f' and {len(files)} file(s): checkpoints, configs, event logs' if files else ''}?\n\n"
                          "This cannot be undone.",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, self)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        if files:
            box.setDetailedText("\n".join(str(p) for p in files))
        if box.exec() != QMessageBox.StandardButton.Yes:
            return False
        kept = []
        for run in runs:
            try:
                kept += store.delete_run(run.id).kept
            except RunStoreError as err:
                self.message.emit(str(err))
        self.refresh()
        self.message.emit(f"Deleted {len(runs)} run(s)" + (f"; could not remove {len(kept)} file(s)" if kept else ""))
        return True

    def show_files(self) -> None:
        """List the files of the one selected run (its artifacts in the run store)."""
        self.files_list.clear()
        runs = self.selected_runs()
        store = self.store
        if len(runs) != 1 or store is None:
            self.files_list.addItem("Select one run to see its files")
            self.files_list.item(0).setFlags(Qt.ItemFlag.NoItemFlags)
            return
        artifacts = store.artifacts(runs[0].id)
        for artifact in artifacts:
            exists = Path(artifact.path).exists()
            text = f"{artifact.kind} \u00b7 {Path(artifact.path).name}" + ("" if exists else " (missing)")
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, artifact.path)
            item.setToolTip(artifact.path + ("" if exists else "\nThe file is no longer there."))
            if not exists:
                item.setForeground(QColor(theme.MUTED))
            self.files_list.addItem(item)
        if not artifacts:
            self.files_list.addItem("No files recorded")
            self.files_list.item(0).setFlags(Qt.ItemFlag.NoItemFlags)

    def _inspect_item(self, item: QListWidgetItem) -> None:
        path = item.data(Qt.ItemDataRole.UserRole)
        if path and Path(path).exists():
            self.inspect_file.emit(path)

    def _config_of(self, run: RunRecord) -> RunConfig | None:
        try:
            return RunConfig.from_dict(run.config)
        except (ConfigError, UnknownEntryError) as err:
            self.message.emit(f"Run #{run.id}'s settings cannot be loaded: {err}")
            return None

    def open_selected_config(self) -> bool:
        runs = self.selected_runs()
        if len(runs) != 1:
            return False
        try:
            plan = RunPlan.from_dict(runs[0].config)
        except (ConfigError, UnknownEntryError) as err:
            self.message.emit(f"Run #{runs[0].id}'s settings cannot be loaded: {err}")
            return False
        self.open_config.emit(plan)
        return True

    def continue_selected(self) -> bool:
        """Ask to continue the run from its last checkpoint (more steps asked for if it had finished)."""
        runs = self.selected_runs()
        store = self.store
        if len(runs) != 1 or store is None:
            return False
        run = runs[0]
        checkpoint = store.last_checkpoint(run.id)
        if checkpoint is None:
            self.message.emit(f"Run #{run.id} has no checkpoint to continue from")
            return False
        config = self._config_of(run)
        if config is None:
            return False
        step = checkpoint.step or 0
        if step >= config.train.steps:
            steps, ok = QInputDialog.getInt(
                self, "Continue run", f"Run #{run.id} ended at step {step}. Train it up to step:",
                value=step + config.train.steps, minValue=step + 1, maxValue=10_000_000)
            if not ok:
                return False
            config = config.with_overrides({"train.steps": steps})
        self.continue_run.emit(config, checkpoint.path, str(Path(checkpoint.path).parent))
        return True
