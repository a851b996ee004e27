"""The Inspect section's Diff tab: how another checkpoint differs from the open one, tensor by tensor.

:func:`diff_events` is the job (open file B, match names, compare each common
tensor); :class:`DiffView` shows its events as they arrive: tensors added,
removed and reshaped first, then each compared one with its relative change.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QModelIndex, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QSplitter,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from effstudio.engine.events import Event, JobControl
from effstudio.gui import theme
from effstudio.gui.panels.inspect_tensors import natural_key, shape_text
from effstudio.gui.plots.diff_picture import DiffPicture
from effstudio.gui.tables import MISSING, SORT_ROLE, set_number, sort_item
from effstudio.inspect import Inspected, InspectError, open_model
from effstudio.inspect.diff import (
    CheckpointDiff,
    DiffDoneEvent,
    TensorChangeEvent,
    compare_names,
    iter_diff,
)
from effstudio.inspect.tensors import TensorRef

COLUMNS = ("Name", "Change", "Shape A", "Shape B", "Relative change", "Max |\u0394|", "Zeros % A", "Zeros % B")
RELATIVE, MAX_CHANGE, ZEROS_A, ZEROS_B = range(4, 8)
ORDER = {"added": 0, "removed": 1, "reshaped": 2, "error": 3, "changed": 4, "unchanged": 5}
STATUS_COLOURS = {"added": theme.OK, "removed": theme.ERROR, "reshaped": theme.WARNING, "changed": theme.ACCENT,
                  "unchanged": theme.MUTED}
PICTURE_HINT = ("Click a tensor of both files in the table to see its two histograms overlaid and a heatmap "
                "of the difference B \u2212 A.")
HINT = ("Compare this file with another checkpoint of the same model (before and after pruning, fine-tuning, "
        "quantization\u2026): use \u201cCompare with\u2026\u201d.")


@dataclass(frozen=True)
class CannotCompare:
    """File B could not be read: why."""

    error: str


def diff_events(base: Inspected, path: Path, control: JobControl) -> Iterator[CannotCompare | CheckpointDiff | Event]:
    """Open ``path`` and compare it with ``base``: a CheckpointDiff, then its TensorChangeEvents and DiffDoneEvent."""
    try:
        other = open_model(path)
    except InspectError as err:
        yield CannotCompare(str(err))
        return
    diff = compare_names(base, other)
    yield diff
    yield from iter_diff(diff, control)


def _shape(value: tuple[int, ...] | None) -> str:
    return "\u2013" if value is None else shape_text(value)


class DiffView(QWidget):
    """A summary line above a table of changed tensors (unchanged ones hidden unless asked for); beside
    it the two histograms and the difference of the tensor clicked (``tensor_clicked`` asks the panel's
    job for them; ``picture`` draws them)."""

    tensor_clicked = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.diff: CheckpointDiff | None = None
        self.done = False  # the last diff compared every common tensor
        self.summary = QLabel(HINT, self)
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        self.model = QStandardItemModel(0, len(COLUMNS), self)
        self.model.setHorizontalHeaderLabels(list(COLUMNS))
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(self.model)
        self.proxy.setSortRole(SORT_ROLE)
        self.proxy.setFilterKeyColumn(1)
        self.show_unchanged = QCheckBox("Show unchanged tensors", self)
        self.show_unchanged.toggled.connect(self._unchanged_toggled)
        self._unchanged_toggled(False)
        self.table = QTreeView(self)
        self.table.setObjectName("diffTable")
        self.table.setRootIsDecorated(False)
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.setAlternatingRowColors(True)
        self.table.setUniformRowHeights(True)
        self.table.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.table.setColumnWidth(0, 300)  # the name stays readable beside the picture
        self.table.header().setStretchLastSection(False)
        self.table.sortByColumn(1, Qt.SortOrder.AscendingOrder)  # added, removed, reshaped, changed first
        self.table.selectionModel().currentRowChanged.connect(self._current_changed)
        self.picture = DiffPicture(self)
        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(self.table)
        self.splitter.addWidget(self.picture)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setSizes([700, 460])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 6, 0, 0)
        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(self.show_unchanged, 0, Qt.AlignmentFlag.AlignBottom)
        layout.addLayout(top)
        layout.addWidget(self.splitter, 1)
        self.picture.show_message(PICTURE_HINT)

    def reset(self, text: str = HINT) -> None:
        self.diff = None
        self.done = False
        self.model.removeRows(0, self.model.rowCount())
        self.summary.setText(text)
        self.picture.show_message(PICTURE_HINT)

    def pair(self, name: str) -> tuple[TensorRef, TensorRef] | None:
        """Tensor ``name`` of A and of B when both files hold it with the same shape, else None."""
        if self.diff is None:
            return None
        return next(((a, b) for a, b in self.diff.common if a.name == name), None)

    def status(self, name: str) -> str:
        """added, removed, reshaped, changed, unchanged or error, as the table says ("" when not listed)."""
        found = self.model.findItems(name, Qt.MatchFlag.MatchExactly, 0)
        return self.model.item(found[0].row(), 1).text() if found else ""

    def select(self, name: str) -> bool:
        """Select tensor ``name`` in the table (shown only when the filter lists it); False when it is not."""
        found = self.model.findItems(name, Qt.MatchFlag.MatchExactly, 0)
        index = self.proxy.mapFromSource(found[0].index()) if found else QModelIndex()
        if not index.isValid():
            return False
        self.table.setCurrentIndex(index)
        return True

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if not current.isValid():
            return
        name = current.siblingAtColumn(0).data()
        if self.pair(name) is None:
            where = {"added": "only in B", "removed": "only in A", "reshaped": "of another shape in B"}
            self.picture.show_message(f"{name} is {where.get(self.status(name), 'not in both files')}: "
                                      "there is no element-wise difference to draw.", f"<b>{html.escape(name)}</b>")
            return
        self.tensor_clicked.emit(name)

    def on_event(self, event: CannotCompare | CheckpointDiff | Event) -> None:
        if isinstance(event, CannotCompare):
            self.summary.setText(f"<span style='color:{theme.ERROR}'><b>Cannot compare:</b> "
                                 f"{html.escape(event.error)}</span>")
        elif isinstance(event, CheckpointDiff):
            self.diff = event
            for tensor in event.added:
                self.model.appendRow(self._row(tensor.name, "added", None, tensor.shape))
            for tensor in event.removed:
                self.model.appendRow(self._row(tensor.name, "removed", tensor.shape, None))
            for a, b in event.reshaped:
                self.model.appendRow(self._row(a.name, "reshaped", a.shape, b.shape))
            self._show_summary()
        elif isinstance(event, TensorChangeEvent):
            change = event.change
            if change.error:
                status = "error"
            else:
                status = "changed" if change.changed else "unchanged"
            row = self._row(change.name, status, change.shape, change.shape)
            set_number(row[RELATIVE], change.relative_change)
            if change.error is not None:
                row[RELATIVE].setText(change.error)
            set_number(row[MAX_CHANGE], change.max_abs_change)
            set_number(row[ZEROS_A], change.sparsity_a, ".1f")
            set_number(row[ZEROS_B], change.sparsity_b, ".1f")
            self.model.appendRow(row)
        elif isinstance(event, DiffDoneEvent) and self.diff is not None:
            self.done = event.status == "finished"
            self._show_summary()

    def _row(self, name: str, status: str, shape_a: tuple[int, ...] | None,
             shape_b: tuple[int, ...] | None) -> list[QStandardItem]:
        row = [sort_item(name, natural_key(name)), sort_item(status, f"{ORDER.get(status, 9)}"),
               sort_item(_shape(shape_a), _shape(shape_a)), sort_item(_shape(shape_b), _shape(shape_b))]
        row += [sort_item("", MISSING, True) for _ in range(4)]
        row[1].setForeground(QBrush(QColor(STATUS_COLOURS.get(status, theme.ERROR))))
        return row

    def _unchanged_toggled(self, shown: bool) -> None:
        self.proxy.setFilterRegularExpression("" if shown else "^(?!unchanged$)")

    def _show_summary(self) -> None:
        diff = self.diff
        if diff is None:
            return
        parts = [f"<span style='color:{STATUS_COLOURS[key]}'><b>{count}</b> {key}</span>"
                 for key, count in diff.summary().items()]
        pending = len(diff.common) - len(diff.compared)
        if pending > 0:
            parts.append(f"{pending} still to compare\u2026")
        changes = [c.relative_change for c in diff.compared if c.relative_change is not None and c.changed]
        if changes:
            parts.append(f"median relative change {sorted(changes)[len(changes) // 2]:.3g}")
        self.summary.setText(f"A: {html.escape(diff.a)}<br>B: {html.escape(diff.b)}<br>" + " \u00b7 ".join(parts))
