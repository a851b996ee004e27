"""Inspect section: open any model file or folder and look at every tensor in it, safely.

Opening, statistics, pictures and diffs each run as a :class:`~effstudio.gui.job.Job`
in a worker thread over the Qt-free :mod:`effstudio.inspect` core, so a
multi-gigabyte file never freezes the window: the summary appears as soon as
the header is read, and each tensor's statistics fill the tree as they arrive.
A file that cannot be read (refused pickle, truncated, wrong extension...)
shows its reason in a banner; the section and the window keep working.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from effstudio.engine.events import JobControl
from effstudio.gui import theme
from effstudio.gui.job import Job
from effstudio.gui.metrics import MetricStrip
from effstudio.gui.panels.base import Panel, empty_state
from effstudio.gui.plots.tensor_view import TensorView
from effstudio.gui.theme import monospace_font
from effstudio.inspect import Inspected, InspectError, open_model
from effstudio.inspect.diff import (
    CheckpointDiff,
    DiffDoneEvent,
    TensorChangeEvent,
    compare_names,
    iter_diff,
)
from effstudio.inspect.report import format_bytes, format_count
from effstudio.inspect.stats import (
    StatsDoneEvent,
    TensorPictureEvent,
    TensorStats,
    TensorStatsEvent,
    iter_picture,
    iter_stats,
)
from effstudio.inspect.tensors import TensorRef

FILE_FILTER = ("Model files (*.safetensors *.pt *.pth *.bin *.ckpt *.onnx *.npy *.npz);;"
               "Index files (*.index.json);;All files (*)")
COLUMNS = ("Name", "Shape", "Dtype", "Elements", "Bytes", "Min", "Max", "Mean", "Std", "Zeros %")
NAME, SHAPE, DTYPE, ELEMENTS, BYTES, MIN, MAX, MEAN, STD, ZEROS = range(len(COLUMNS))
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
NAME_ROLE = Qt.ItemDataRole.UserRole + 2  # full tensor name on leaves, None on module rows
MISSING = -1e308  # sorts unknown numbers first
DIFF_COLUMNS = ("Name", "Change", "Shape A", "Shape B", "Relative change", "Max |\u0394|", "Zeros % A", "Zeros % B")
DIFF_ORDER = {"added": 0, "removed": 1, "reshaped": 2, "error": 3, "changed": 4, "unchanged": 5}
STATUS_COLOURS = {"added": theme.OK, "removed": theme.ERROR, "reshaped": theme.WARNING, "changed": theme.ACCENT,
                  "unchanged": theme.MUTED}


@dataclass(frozen=True)
class Opened:
    path: str
    inspected: Inspected | None
    error: str | None = None


def open_job(path: Path) -> Callable[[JobControl], Iterator[Opened]]:
    def run(control: JobControl) -> Iterator[Opened]:
        try:
            yield Opened(str(path), open_model(path))
        except InspectError as err:
            yield Opened(str(path), None, str(err))

    return run


def natural_key(text: str) -> str:
    """A sort key that puts layer.2 before layer.10."""
    return re.sub(r"\d+", lambda m: m.group(0).zfill(12), text)


def number_text(value: float | None) -> str:
    return "\u2013" if value is None else f"{value:.4g}"


def _item(text: str, sort: Any, align_right: bool = False) -> QStandardItem:
    item = QStandardItem(text)
    item.setEditable(False)
    item.setData(sort, SORT_ROLE)
    if align_right:
        item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
    return item


class TensorFilter(QSortFilterProxyModel):
    """Shows tensors whose full name contains the filter text, with the module rows above them."""

    def __init__(self, parent: Any = None):
        super().__init__(parent)
        self.setRecursiveFilteringEnabled(True)
        self.setSortRole(SORT_ROLE)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.text = ""

    def set_text(self, text: str) -> None:
        if hasattr(self, "beginFilterChange"):  # Qt >= 6.9: invalidateFilter() is deprecated
            self.beginFilterChange()
            self.text = text.strip().lower()
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self.text = text.strip().lower()
            self.invalidateFilter()

    def filterAcceptsRow(self, row: int, parent: QModelIndex) -> bool:  # noqa: N802 - Qt's name
        if not self.text:
            return True
        index = self.sourceModel().index(row, NAME, parent)
        name = index.data(NAME_ROLE)
        return bool(name) and self.text in name.lower()


class TensorTree(QStandardItemModel):
    """Tensors grouped by module path; module rows add up elements and bytes."""

    def __init__(self, parent: Any = None):
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels(list(COLUMNS))
        self.leaves: dict[str, list[QStandardItem]] = {}

    def fill(self, tensors: list[TensorRef]) -> None:
        self.removeRows(0, self.rowCount())
        self.leaves = {}
        tree: dict[str, Any] = {}
        for tensor in tensors:
            node = tree
            parts = tensor.name.split(".")
            for part in parts[:-1]:
                node = node.setdefault(part + ".", {})
            node[parts[-1]] = tensor
        self._add(self.invisibleRootItem(), tree)

    def _add(self, parent: QStandardItem, node: dict[str, Any]) -> tuple[int, int]:
        total_elements = total_bytes = 0
        for key in sorted(node, key=natural_key):
            value = node[key]
            if isinstance(value, TensorRef):
                row = self._leaf(key, value)
                total_elements += value.numel
                total_bytes += value.nbytes
            else:
                label, child = key[:-1], value
                while len(child) == 1 and not isinstance(next(iter(child.values())), TensorRef):
                    only = next(iter(child))  # one sub-module only: show "attention.self" as one row
                    label, child = f"{label}.{only[:-1]}", child[only]
                row = [_item(label, natural_key(label))] + [_item("", "") for _ in COLUMNS[1:]]
                row[NAME].setData(None, NAME_ROLE)
                font = QFont()
                font.setBold(True)
                row[NAME].setFont(font)
                elements, nbytes = self._add(row[NAME], child)
                row[ELEMENTS].setText(format_count(elements))
                row[ELEMENTS].setData(elements, SORT_ROLE)
                row[BYTES].setText(format_bytes(nbytes))
                row[BYTES].setData(nbytes, SORT_ROLE)
                for column in (ELEMENTS, BYTES):
                    row[column].setForeground(QBrush(QColor(theme.MUTED)))
                    row[column].setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                total_elements += elements
                total_bytes += nbytes
            parent.appendRow(row)
        return total_elements, total_bytes

    def _leaf(self, label: str, tensor: TensorRef) -> list[QStandardItem]:
        shape = "\u00d7".join(map(str, tensor.shape)) or "scalar"
        row = [_item(label, natural_key(label)), _item(shape, tensor.numel), _item(tensor.dtype, tensor.dtype),
               _item(f"{tensor.numel:,}", tensor.numel, True), _item(format_bytes(tensor.nbytes), tensor.nbytes, True)]
        row += [_item("", MISSING, True) for _ in range(MIN, ZEROS + 1)]
        row[NAME].setData(tensor.name, NAME_ROLE)
        row[NAME].setToolTip(tensor.name)
        self.leaves[tensor.name] = row
        return row

    def set_stats(self, name: str, stats: TensorStats | None, error: str | None = None) -> None:
        row = self.leaves.get(name)
        if row is None:
            return
        if error is not None:
            row[MIN].setText("error")
            row[MIN].setForeground(QBrush(QColor(theme.ERROR)))
            for item in row:
                item.setToolTip(error)
            return
        assert stats is not None
        values = (stats.min, stats.max, stats.mean, stats.std)
        for column, value in zip((MIN, MAX, MEAN, STD), values, strict=True):
            row[column].setText(number_text(value))
            row[column].setData(MISSING if value is None else value, SORT_ROLE)
        sparsity = stats.sparsity
        row[ZEROS].setText("\u2013" if sparsity is None else f"{sparsity:.1f}")
        row[ZEROS].setData(MISSING if sparsity is None else sparsity, SORT_ROLE)
        if stats.nonfinite:
            row[MIN].setForeground(QBrush(QColor(theme.WARNING)))
            row[MIN].setToolTip(f"{stats.nonfinite:,} NaN or infinite values, left out of the statistics")


class InspectPanel(Panel):
    opened = Signal(str)  # a path that opened: for the recent-files menu
    open_in_lab = Signal(str)  # an effstudio checkpoint whose settings the user wants in the forms
    message = Signal(str)  # a line for the status bar

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Inspect", "Drop a model file or folder anywhere on the window, or open one.",
                         scroll=False, parent=parent)
        self.inspected: Inspected | None = None
        self.stats: dict[str, TensorStats] = {}
        self.diff: CheckpointDiff | None = None
        self.state = "empty"  # empty | opening | ready | failed
        self.stats_done = False
        self.diff_done = False
        self._jobs: list[Job] = []
        self._stats_job: Job | None = None
        self._picture_job: Job | None = None
        self._diff_job: Job | None = None
        self._generation = 0  # bumped per opened file: events of older jobs are ignored
        self._selected: str | None = None

        self.open_button = QPushButton("Open file\u2026", self)
        self.open_button.clicked.connect(self.open_file_dialog)
        self.folder_button = QPushButton("Open folder\u2026", self)
        self.folder_button.clicked.connect(self.open_folder_dialog)
        self.compare_button = QPushButton("Compare with\u2026", self)
        self.compare_button.setToolTip("Diff against another checkpoint: tensors added, removed, reshaped, and "
                                       "the relative change of each")
        self.compare_button.clicked.connect(self.compare_dialog)
        self.lab_button = QPushButton("Open in lab", self)
        self.lab_button.setObjectName("primary")
        self.lab_button.setToolTip("Load this effstudio checkpoint's run settings into the Model, Data and Train "
                                   "sections, to train it further or compare settings")
        self.lab_button.clicked.connect(self._open_in_lab)
        self.resume_button = QPushButton("Copy resume command", self)
        self.resume_button.setToolTip("Copy `effstudio train --resume PATH`: continues this exact run headless")
        self.resume_button.clicked.connect(self.copy_resume_command)
        self.progress = QProgressBar(self)
        self.progress.setFixedWidth(160)
        self.progress.setTextVisible(True)
        self.progress.setFormat("statistics %v/%m")
        self.progress.hide()
        toolbar = QHBoxLayout()
        toolbar.setSpacing(8)
        for button in (self.open_button, self.folder_button, self.compare_button):
            toolbar.addWidget(button)
        toolbar.addStretch(1)
        toolbar.addWidget(self.progress)
        toolbar.addWidget(self.resume_button)
        toolbar.addWidget(self.lab_button)
        self.body.addLayout(toolbar)

        self.error_banner = QLabel(self)
        self.error_banner.setObjectName("inspectError")
        self.error_banner.setWordWrap(True)
        self.error_banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_banner.setStyleSheet(f"QLabel#inspectError {{ background: #fef2f2; border: 1px solid #fecaca;"
                                        f" border-radius: 6px; color: {theme.ERROR}; padding: 8px 10px; }}")
        self.error_banner.hide()
        self.body.addWidget(self.error_banner)

        self.empty = QWidget(self)
        empty_layout = QVBoxLayout(self.empty)
        empty_layout.addStretch(1)
        empty_layout.addWidget(empty_state(
            "Drop a checkpoint or a model folder here to see everything in it.\n\n"
            "safetensors (also sharded folders) \u00b7 PyTorch .pt .pth .bin .ckpt \u00b7 ONNX \u00b7 NumPy .npy .npz "
            "\u00b7 Hugging Face folders with config.json\n\n"
            "Files are only read, never run: a pickle that would execute code is refused.", self.empty))
        empty_layout.addStretch(2)

        self.summary = MetricStrip(names=("format", "size", "tensors", "parameters", "dtypes"), parent=self)
        self.architecture = QLabel(self)
        self.architecture.setTextFormat(Qt.TextFormat.RichText)
        self.architecture.setWordWrap(True)
        self.architecture.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.notes = QLabel(self)
        self.notes.setObjectName("description")
        self.notes.setWordWrap(True)

        self.filter = QLineEdit(self)
        self.filter.setPlaceholderText("Filter tensors by name (e.g. attention, layer.3., bias)")
        self.filter.setClearButtonEnabled(True)
        self.filter.textChanged.connect(self._filter_changed)
        self.model = TensorTree(self)
        self.proxy = TensorFilter(self)
        self.proxy.setSourceModel(self.model)
        self.tree = QTreeView(self)
        self.tree.setObjectName("tensorTree")
        self.tree.setModel(self.proxy)
        self.tree.setSortingEnabled(True)
        self.tree.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # file order until a header is clicked
        self.tree.setAlternatingRowColors(True)
        self.tree.setUniformRowHeights(True)
        self.tree.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.tree.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setMinimumSectionSize(44)
        for column, width in ((NAME, 240), (SHAPE, 84), (DTYPE, 64), (ELEMENTS, 84), (BYTES, 70), (MIN, 64),
                              (MAX, 64), (MEAN, 76), (STD, 64), (ZEROS, 58)):
            self.tree.setColumnWidth(column, width)
        self.tree.selectionModel().currentRowChanged.connect(self._current_changed)
        tree_box = QWidget(self)
        tree_layout = QVBoxLayout(tree_box)
        tree_layout.setContentsMargins(0, 0, 0, 0)
        tree_layout.setSpacing(6)
        tree_layout.addWidget(self.filter)
        tree_layout.addWidget(self.tree, 1)
        self.tensor_view = TensorView(self)
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.setChildrenCollapsible(False)
        splitter.addWidget(tree_box)
        splitter.addWidget(self.tensor_view)
        splitter.setStretchFactor(0, 5)
        splitter.setStretchFactor(1, 2)
        splitter.setSizes([850, 360])
        self.splitter = splitter

        self.diff_summary = QLabel("Compare this file with another checkpoint of the same model (before and after "
                                   "pruning, fine-tuning, quantization\u2026): use \u201cCompare with\u2026\u201d.", self)
        self.diff_summary.setWordWrap(True)
        self.diff_summary.setTextFormat(Qt.TextFormat.RichText)
        self.diff_model = QStandardItemModel(0, len(DIFF_COLUMNS), self)
        self.diff_model.setHorizontalHeaderLabels(list(DIFF_COLUMNS))
        self.diff_proxy = QSortFilterProxyModel(self)
        self.diff_proxy.setSourceModel(self.diff_model)
        self.diff_proxy.setSortRole(SORT_ROLE)
        self.diff_proxy.setFilterKeyColumn(1)
        self.show_unchanged = QCheckBox("Show unchanged tensors", self)
        self.show_unchanged.toggled.connect(self._unchanged_toggled)
        self._unchanged_toggled(False)
        self.diff_table = QTreeView(self)
        self.diff_table.setObjectName("diffTable")
        self.diff_table.setRootIsDecorated(False)
        self.diff_table.setModel(self.diff_proxy)
        self.diff_table.setSortingEnabled(True)
        self.diff_table.setAlternatingRowColors(True)
        self.diff_table.setUniformRowHeights(True)
        self.diff_table.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.diff_table.header().setStretchLastSection(False)
        self.diff_table.sortByColumn(1, Qt.SortOrder.AscendingOrder)  # added, removed, reshaped, changed first
        diff_box = QWidget(self)
        diff_layout = QVBoxLayout(diff_box)
        diff_layout.setContentsMargins(0, 6, 0, 0)
        diff_top = QHBoxLayout()
        diff_top.addWidget(self.diff_summary, 1)
        diff_top.addWidget(self.show_unchanged, 0, Qt.AlignmentFlag.AlignBottom)
        diff_layout.addLayout(diff_top)
        diff_layout.addWidget(self.diff_table, 1)

        self.details = QPlainTextEdit(self)
        self.details.setObjectName("inspectDetails")
        self.details.setReadOnly(True)
        self.details.setFont(monospace_font())

        self.tabs = QTabWidget(self)
        self.tabs.addTab(splitter, "Tensors")
        self.tabs.addTab(diff_box, "Diff")
        self.tabs.addTab(self.details, "Details")

        content = QWidget(self)
        content_layout = QVBoxLayout(content)
        content_layout.setContentsMargins(0, 0, 0, 0)
        content_layout.setSpacing(8)
        content_layout.addWidget(self.summary)
        content_layout.addWidget(self.architecture)
        content_layout.addWidget(self.notes)
        content_layout.addWidget(self.tabs, 1)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.empty)
        self.stack.addWidget(content)
        self.body.addWidget(self.stack, 1)
        self._update_buttons()

    # ------------------------------------------------------------------ jobs
    def _start(self, fn: Callable[[JobControl], Iterator[Any]], on_event: Callable[[Any], None],
               name: str) -> Job:
        job = Job(fn, name=f"effstudio-inspect-{name}", parent=self)
        generation = self._generation
        job.event.connect(lambda event: on_event(event) if generation == self._generation else None)
        job.failed.connect(lambda message: self._job_failed(message) if generation == self._generation else None)
        job.ended.connect(lambda: self._job_ended(job))
        self._jobs.append(job)
        job.start()
        return job

    def _job_ended(self, job: Job) -> None:
        if job in self._jobs:
            self._jobs.remove(job)
        job.deleteLater()
        self._update_buttons()

    def _job_failed(self, message: str) -> None:
        self.show_error(f"Unexpected error while reading: {message}")

    def _stop_jobs(self) -> None:
        for job in self._jobs:
            job.stop()

    @property
    def busy(self) -> bool:
        return bool(self._jobs)

    def shutdown(self, timeout_ms: int = 30_000) -> bool:
        """Stop every job and wait for its thread; True when all ended."""
        ended = True
        for job in list(self._jobs):
            ended = job.shutdown(timeout_ms) and ended
        return ended

    # ------------------------------------------------------------------ open
    def open(self, path: str | Path) -> Job:
        """Start reading a file or folder; the result arrives as the section fills (or a banner says why not)."""
        path = Path(path)
        self._generation += 1
        self._stop_jobs()
        self.state = "opening"
        self.stats_done = False
        self.error_banner.hide()
        self.subtitle.setText(f"Opening {path}\u2026")
        self._update_buttons()
        return self._start(open_job(path), self._on_opened, "open")

    def _on_opened(self, event: Opened) -> None:
        if event.inspected is None:
            self.show_error(event.error or "cannot be read")
            self.message.emit(f"Cannot inspect {(event.error or '').split('. ')[0]}")
            return
        self.show_inspected(event.inspected)
        self.opened.emit(event.path)
        self.message.emit(f"Inspecting {Path(event.path).name}: {len(event.inspected.tensors):,} tensors")

    def show_error(self, message: str) -> None:
        self.state = "failed"
        self.inspected = None
        self.stats = {}
        self.model.fill([])
        self.tensor_view.show_message("")
        self.error_banner.setText(f"<b>This file cannot be inspected.</b><br>{_escape(message)}")
        self.error_banner.show()
        self.subtitle.setText("Drop a model file or folder anywhere on the window, or open one.")
        self.stack.setCurrentIndex(0)
        self._update_buttons()

    def show_inspected(self, inspected: Inspected) -> None:
        self.inspected = inspected
        self.stats = {}
        self.state = "ready"
        self.diff = None
        self.error_banner.hide()
        self.subtitle.setText(str(inspected.path))
        tiles = self.summary.tiles
        tiles["format"].set_text(inspected.format)
        tiles["size"].set_text(format_bytes(inspected.file_bytes))
        tiles["tensors"].set_text(f"{len(inspected.tensors):,}")
        tiles["parameters"].set_text(format_count(inspected.params))
        tiles["parameters"].setToolTip(f"{inspected.params:,} parameters")
        dtypes = inspected.dtypes()
        tiles["dtypes"].set_text(", ".join(list(dtypes)[:3]) + ("\u2026" if len(dtypes) > 3 else "") or "\u2013")
        tiles["dtypes"].setToolTip("\n".join(f"{name}: {count} tensors" for name, count in dtypes.items()))
        self.architecture.setText(f"<span style='font-size:14px'><b>{_escape(inspected.architecture)}</b></span>")
        self.notes.setText(" \u00b7 ".join(inspected.notes))
        self.notes.setVisible(bool(inspected.notes))
        self.model.fill(inspected.tensors)
        self.tree.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
        self._expand_first_levels()
        self.tree.resizeColumnToContents(NAME)
        self.tree.setColumnWidth(NAME, min(max(self.tree.columnWidth(NAME) + 12, 200), 420))
        self.details.setPlainText(details_text(inspected))
        self._reset_diff()
        self.tensor_view.show_message("Select a tensor in the tree to see its histogram and heatmap.")
        self.stack.setCurrentIndex(1)
        self.tabs.setCurrentIndex(0)
        self.progress.setRange(0, max(len(inspected.tensors), 1))
        self.progress.setValue(0)
        self.progress.setVisible(bool(inspected.tensors))
        self._stats_job = self._start(lambda control: iter_stats(inspected, control), self._on_stats, "stats")
        self._update_buttons()
        first = self._first_leaf()
        if first is not None:
            self.tree.setCurrentIndex(first)

    def _expand_first_levels(self) -> None:
        total = len(self.model.leaves)
        self.tree.expandToDepth(1 if total <= 400 else 0)

    def _first_leaf(self) -> QModelIndex | None:
        index = self.proxy.index(0, 0)
        while index.isValid() and self.proxy.hasChildren(index):
            self.tree.expand(index)
            index = self.proxy.index(0, 0, index)
        return index if index.isValid() else None

    def _on_stats(self, event: Any) -> None:
        if isinstance(event, TensorStatsEvent):
            stats = event.stats
            if stats is not None:
                self.stats[event.name] = stats
            self.model.set_stats(event.name, stats, event.error)
            self.progress.setValue(event.index + 1)
        elif isinstance(event, StatsDoneEvent):
            self.stats_done = event.status == "finished"
            self.progress.hide()
            if event.status == "finished":
                self.message.emit(f"Statistics of {event.tensors:,} tensors in {event.seconds:.1f} s")

    # -------------------------------------------------------------- selection
    def _filter_changed(self, text: str) -> None:
        self.proxy.set_text(text)
        if text:
            self.tree.expandAll()

    def select_tensor(self, name: str) -> bool:
        row = self.model.leaves.get(name)
        if row is None:
            return False
        index = self.proxy.mapFromSource(self.model.indexFromItem(row[NAME]))
        if not index.isValid():
            return False
        self.tree.scrollTo(index)
        self.tree.setCurrentIndex(index)
        return True

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        name = current.siblingAtColumn(NAME).data(NAME_ROLE) if current.isValid() else None
        if not name or self.inspected is None:
            return
        self.show_tensor(name)

    def show_tensor(self, name: str) -> None:
        if self.inspected is None:
            return
        tensor = self.inspected.tensor(name)
        self._selected = name
        if self._picture_job is not None:
            self._picture_job.stop()
        self.tensor_view.show_loading(name, tensor.shape, tensor.dtype)
        stats = self.stats.get(name)
        self._picture_job = self._start(lambda control: iter_picture(tensor, stats, control),
                                        self._on_picture, "picture")

    def _on_picture(self, event: TensorPictureEvent) -> None:
        if event.name != self._selected or self.inspected is None:
            return
        tensor = self.inspected.tensor(event.name)
        self.tensor_view.set_picture(event, tensor.shape, tensor.dtype)

    # ------------------------------------------------------------------- diff
    def _reset_diff(self) -> None:
        self.diff = None
        self.diff_done = False
        self.diff_model.removeRows(0, self.diff_model.rowCount())
        self.diff_summary.setText("Compare this file with another checkpoint of the same model (before and "
                                  "after pruning, fine-tuning, quantization\u2026): use \u201cCompare with\u2026\u201d.")

    def compare_with(self, path: str | Path) -> Job | None:
        """Diff the open file (A) against another (B); the Diff tab fills as tensors are compared."""
        if self.inspected is None:
            return None
        path = Path(path)
        if self._diff_job is not None:
            self._diff_job.stop()
        self._reset_diff()
        self.tabs.setCurrentIndex(1)
        self.diff_summary.setText(f"Opening {_escape(str(path))}\u2026")
        base = self.inspected
        self._diff_job = self._start(lambda control: self._diff_events(base, path, control), self._on_diff, "diff")
        return self._diff_job

    @staticmethod
    def _diff_events(base: Inspected, path: Path, control: JobControl) -> Iterator[Any]:
        try:
            other = open_model(path)
        except InspectError as err:
            yield Opened(str(path), None, str(err))
            return
        diff = compare_names(base, other)
        yield diff
        yield from iter_diff(diff, control)

    def _on_diff(self, event: Any) -> None:
        if isinstance(event, Opened):
            self.diff_summary.setText(f"<span style='color:{theme.ERROR}'><b>Cannot compare:</b> "
                                      f"{_escape(event.error or '')}</span>")
        elif isinstance(event, CheckpointDiff):
            self.diff = event
            self._fill_diff_structure(event)
        elif isinstance(event, TensorChangeEvent):
            change = event.change
            if change.error:
                status = "error"
            else:
                status = "changed" if change.changed else "unchanged"
            row = self._diff_row(change.name, status, change.shape, change.shape)
            row[4].setText(number_text(change.relative_change) if change.error is None else change.error)
            row[4].setData(MISSING if change.relative_change is None else change.relative_change, SORT_ROLE)
            row[5].setText(number_text(change.max_abs_change))
            row[5].setData(MISSING if change.max_abs_change is None else change.max_abs_change, SORT_ROLE)
            for column, value in ((6, change.sparsity_a), (7, change.sparsity_b)):
                row[column].setText("\u2013" if value is None else f"{value:.1f}")
                row[column].setData(MISSING if value is None else value, SORT_ROLE)
            self.diff_model.appendRow(row)
        elif isinstance(event, DiffDoneEvent) and self.diff is not None:
            self.diff_done = event.status == "finished"
            self._show_diff_summary()

    def _diff_row(self, name: str, status: str, shape_a: tuple[int, ...] | None,
                  shape_b: tuple[int, ...] | None) -> list[QStandardItem]:
        def shape(value: tuple[int, ...] | None) -> str:
            return "\u2013" if value is None else ("\u00d7".join(map(str, value)) or "scalar")

        rank = f"{DIFF_ORDER.get(status, 9)}"
        row = [_item(name, natural_key(name)), _item(status, rank), _item(shape(shape_a), shape(shape_a)),
               _item(shape(shape_b), shape(shape_b))]
        row += [_item("", MISSING, True) for _ in range(4)]
        row[1].setForeground(QBrush(QColor(STATUS_COLOURS.get(status, theme.ERROR))))
        return row

    def _unchanged_toggled(self, shown: bool) -> None:
        self.diff_proxy.setFilterRegularExpression("" if shown else "^(?!unchanged$)")

    def _fill_diff_structure(self, diff: CheckpointDiff) -> None:
        for tensor in diff.added:
            self.diff_model.appendRow(self._diff_row(tensor.name, "added", None, tensor.shape))
        for tensor in diff.removed:
            self.diff_model.appendRow(self._diff_row(tensor.name, "removed", tensor.shape, None))
        for a, b in diff.reshaped:
            self.diff_model.appendRow(self._diff_row(a.name, "reshaped", a.shape, b.shape))
        self._show_diff_summary()

    def _show_diff_summary(self) -> None:
        diff = self.diff
        if diff is None:
            return
        summary = diff.summary()
        parts = [f"<span style='color:{STATUS_COLOURS[key]}'><b>{count}</b> {key}</span>"
                 for key, count in summary.items()]
        pending = len(diff.common) - len(diff.compared)
        if pending > 0:
            parts.append(f"{pending} still to compare\u2026")
        changes = [c.relative_change for c in diff.compared if c.relative_change is not None and c.changed]
        if changes:
            parts.append(f"median relative change {sorted(changes)[len(changes) // 2]:.3g}")
        self.diff_summary.setText(f"A: {_escape(diff.a)}<br>B: {_escape(diff.b)}<br>" + " \u00b7 ".join(parts))

    # -------------------------------------------------------------- dialogs
    def _start_dir(self) -> str:
        return str(self.inspected.path.parent) if self.inspected is not None else str(Path.home())

    def open_file_dialog(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Inspect a model file", self._start_dir(), FILE_FILTER)
        if name:
            self.open(name)

    def open_folder_dialog(self) -> None:
        name = QFileDialog.getExistingDirectory(self, "Inspect a model folder", self._start_dir())
        if name:
            self.open(name)

    def compare_dialog(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Compare with", self._start_dir(), FILE_FILTER)
        if name:
            self.compare_with(name)

    # ------------------------------------------------------------ lab actions
    def _update_buttons(self) -> None:
        loaded = self.inspected is not None
        effstudio_checkpoint = loaded and self.inspected.is_effstudio  # type: ignore[union-attr]
        self.compare_button.setEnabled(loaded)
        self.lab_button.setVisible(bool(effstudio_checkpoint))
        self.resume_button.setVisible(bool(effstudio_checkpoint))

    def _open_in_lab(self) -> None:
        if self.inspected is not None and self.inspected.is_effstudio:
            self.open_in_lab.emit(str(self.inspected.files[0]))

    def copy_resume_command(self) -> str | None:
        if self.inspected is None or not self.inspected.is_effstudio:
            return None
        import shlex

        text = f"effstudio train --resume {shlex.quote(str(self.inspected.files[0]))}"
        QApplication.clipboard().setText(text)
        self.message.emit(f"Copied: {text}")
        return text


def _escape(text: str) -> str:
    import html

    return html.escape(text)


def details_text(inspected: Inspected) -> str:
    lines = [f"Path: {inspected.path}", f"Format: {inspected.format}",
             f"Size: {format_bytes(inspected.file_bytes)} ({inspected.file_bytes:,} bytes)",
             f"Tensors: {len(inspected.tensors):,}, {inspected.params:,} parameters",
             f"Architecture: {inspected.architecture}"]
    if len(inspected.files) > 1 or inspected.files != [inspected.path]:
        lines += ["", "Files read:"] + [f"  {path}" for path in inspected.files]
    if inspected.notes:
        lines += ["", "Notes:"] + [f"  {note}" for note in inspected.notes]
    graph = inspected.graph
    if graph:
        lines += ["", "ONNX graph:", f"  producer: {graph['producer'] or '-'}, IR version {graph['ir_version']}",
                  "  opset: " + ", ".join(f"{d} {v}" for d, v in graph["opset"].items())]
        for key in ("inputs", "outputs"):
            lines.append(f"  {key}:")
            lines += [f"    {v['name']}: {v['dtype']} {v['shape']}" for v in graph[key]]
        lines.append(f"  operators ({graph['nodes']} nodes):")
        lines += [f"    {op:<24} {count}" for op, count in graph["operators"].items()]
    if inspected.metadata:
        lines += ["", "Metadata:"]
        for key, value in inspected.metadata.items():
            if key == "config" and value.startswith("{"):
                try:
                    value = json.dumps(json.loads(value), indent=2).replace("\n", "\n    ")
                except (ValueError, RecursionError):  # shown as it is stored
                    pass
            lines.append(f"  {key}: {value}")
    if inspected.config:
        lines += ["", "config.json:", json.dumps(inspected.config, indent=2)]
    return "\n".join(lines)
