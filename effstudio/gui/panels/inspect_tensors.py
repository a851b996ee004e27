"""The Inspect section's tensor table: every tensor of a file in a tree of modules, filtered by name.

Module rows add up the elements and bytes of what they hold; each tensor row
gets its statistics (min, max, mean, std, zeros) as they arrive from the job.
"""

from __future__ import annotations

import re
from typing import Any

from PySide6.QtCore import QModelIndex, QObject, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLineEdit,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from effstudio.gui import theme
from effstudio.gui.tables import MISSING, RIGHT, SORT_ROLE, refilter, set_number, sort_item
from effstudio.inspect.report import format_bytes, format_count
from effstudio.inspect.stats import TensorStats
from effstudio.inspect.tensors import TensorRef

COLUMNS = ("Name", "Shape", "Dtype", "Elements", "Bytes", "Min", "Max", "Mean", "Std", "Zeros %")
NAME, SHAPE, DTYPE, ELEMENTS, BYTES, MIN, MAX, MEAN, STD, ZEROS = range(len(COLUMNS))
WIDTHS = (240, 84, 64, 84, 70, 64, 64, 76, 64, 58)
NAME_ROLE = Qt.ItemDataRole.UserRole + 2  # full tensor name on leaves, None on module rows


def natural_key(text: str) -> str:
    """A sort key that puts layer.2 before layer.10."""
    return re.sub(r"\d+", lambda m: m.group(0).zfill(12), text)


def shape_text(shape: tuple[int, ...]) -> str:
    return "\u00d7".join(map(str, shape)) or "scalar"


class TensorFilter(QSortFilterProxyModel):
    """Shows tensors whose full name contains the filter text, with the module rows above them."""

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.setRecursiveFilteringEnabled(True)
        self.setSortRole(SORT_ROLE)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.text = ""

    def set_text(self, text: str) -> None:
        refilter(self, lambda: setattr(self, "text", text.strip().lower()))

    def filterAcceptsRow(self, row: int, parent: QModelIndex) -> bool:  # noqa: N802 - Qt's name
        if not self.text:
            return True
        name = self.sourceModel().index(row, NAME, parent).data(NAME_ROLE)
        return bool(name) and self.text in name.lower()


class TensorTree(QStandardItemModel):
    """Tensors grouped by module path; module rows add up elements and bytes."""

    def __init__(self, parent: QObject | None = None):
        super().__init__(0, len(COLUMNS), parent)
        self.setHorizontalHeaderLabels(list(COLUMNS))
        self.leaves: dict[str, list[QStandardItem]] = {}

    def fill(self, tensors: list[TensorRef]) -> None:
        self.removeRows(0, self.rowCount())
        self.leaves = {}
        tree: dict[str, Any] = {}  # "module." -> sub-tree, last name part -> TensorRef
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
                row = [sort_item(label, natural_key(label))] + [sort_item("", "") for _ in COLUMNS[1:]]
                row[NAME].setData(None, NAME_ROLE)
                font = QFont()
                font.setBold(True)
                row[NAME].setFont(font)
                elements, nbytes = self._add(row[NAME], child)
                for column, text, total in ((ELEMENTS, format_count(elements), elements),
                                            (BYTES, format_bytes(nbytes), nbytes)):
                    row[column].setText(text)
                    row[column].setData(total, SORT_ROLE)
                    row[column].setForeground(QBrush(QColor(theme.MUTED)))
                    row[column].setTextAlignment(RIGHT)
                total_elements += elements
                total_bytes += nbytes
            parent.appendRow(row)
        return total_elements, total_bytes

    def _leaf(self, label: str, tensor: TensorRef) -> list[QStandardItem]:
        row = [sort_item(label, natural_key(label)), sort_item(shape_text(tensor.shape), tensor.numel),
               sort_item(tensor.dtype, tensor.dtype), sort_item(f"{tensor.numel:,}", tensor.numel, True),
               sort_item(format_bytes(tensor.nbytes), tensor.nbytes, True)]
        row += [sort_item("", MISSING, True) for _ in range(MIN, ZEROS + 1)]
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
        for column, value in zip((MIN, MAX, MEAN, STD), (stats.min, stats.max, stats.mean, stats.std), strict=True):
            set_number(row[column], value)
        set_number(row[ZEROS], stats.sparsity, ".1f")
        if stats.nonfinite:
            row[MIN].setForeground(QBrush(QColor(theme.WARNING)))
            row[MIN].setToolTip(f"{stats.nonfinite:,} NaN or infinite values, left out of the statistics")


class TensorTable(QWidget):
    """A filter line above the tensor tree; ``selected`` gives the full name of the tensor the user picks."""

    selected = Signal(str)
    unlisted = Signal()  # the filter hid the selected tensor

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
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
        for column, width in enumerate(WIDTHS):
            self.tree.setColumnWidth(column, width)
        self.tree.selectionModel().currentRowChanged.connect(self._current_changed)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        layout.addWidget(self.filter)
        layout.addWidget(self.tree, 1)

    def fill(self, tensors: list[TensorRef]) -> None:
        """Show ``tensors`` in file order, the first levels open, and select the first one."""
        self.model.fill(tensors)
        self.tree.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
        self.tree.expandToDepth(1 if len(self.model.leaves) <= 400 else 0)
        self.tree.resizeColumnToContents(NAME)
        self.tree.setColumnWidth(NAME, min(max(self.tree.columnWidth(NAME) + 12, 200), 420))

    def select_first(self) -> None:
        index = self.proxy.index(0, 0)
        while index.isValid() and self.proxy.hasChildren(index):
            self.tree.expand(index)
            index = self.proxy.index(0, 0, index)
        if index.isValid():
            self.tree.setCurrentIndex(index)

    def select(self, name: str) -> bool:
        """Show and select the tensor ``name``; False when it is not in the tree or filtered out."""
        row = self.model.leaves.get(name)
        if row is None:
            return False
        index = self.proxy.mapFromSource(self.model.indexFromItem(row[NAME]))
        if not index.isValid():
            return False
        self.tree.scrollTo(index)
        self.tree.setCurrentIndex(index)
        return True

    def current_name(self) -> str | None:
        """The full name of the selected tensor (None: nothing, or a module row)."""
        index = self.tree.currentIndex()
        return index.siblingAtColumn(NAME).data(NAME_ROLE) if index.isValid() else None

    def listed(self, name: str) -> bool:
        """Whether tensor ``name`` is in the tree and passes the filter."""
        row = self.model.leaves.get(name)
        return row is not None and self.proxy.mapFromSource(self.model.indexFromItem(row[NAME])).isValid()

    def _filter_changed(self, text: str) -> None:
        shown = self.current_name()
        self.proxy.set_text(text)
        if text:
            self.tree.expandAll()
        current = self.current_name()
        if shown is not None and (current is None or not self.listed(current)):
            self.tree.selectionModel().clear()
            self.unlisted.emit()

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        name = current.siblingAtColumn(NAME).data(NAME_ROLE) if current.isValid() else None
        if name:
            self.selected.emit(name)

