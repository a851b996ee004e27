"""What the GUI's tables share: cell text for numbers, cells that sort by value, read-only table setup.

Two kinds of tables live in the window. Item views over a model (the Runs table,
the Inspect tensor tree and diff) sort by :data:`SORT_ROLE` through a
``QSortFilterProxyModel``: :func:`sort_item` and :func:`set_number` make their
cells. ``QTableWidget`` tables (compression comparison, benchmark results) sort
their :class:`SortItem` cells by key; :func:`fill_table` writes their rows.
A missing number shows a dash and sorts before every number (ascending).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtGui import QStandardItem
from PySide6.QtWidgets import QAbstractItemView, QTableView, QTableWidget, QTableWidgetItem

from effstudio.gui.metrics import DASH

SORT_ROLE = Qt.ItemDataRole.UserRole + 1  # the raw value a proxy model sorts by
RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
MISSING = -1e308  # the sort value of a missing number: first in ascending order
EN_DASH = "\u2013"


def number_text(value: float | None, spec: str = ".4g", dash: str = EN_DASH) -> str:
    """``value`` formatted with ``spec`` (4 significant digits by default), or a dash when there is none."""
    return dash if value is None else format(value, spec)


def fixed_text(value: float | None, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals and thousands separators; a dash when missing or not finite."""
    return DASH if value is None or not math.isfinite(value) else f"{value:,.{digits}f}"


def sort_value(value: float | None) -> float:
    return MISSING if value is None else value


def sort_item(text: str, key: Any, align_right: bool = False) -> QStandardItem:
    """A read-only cell showing ``text`` and sorting by ``key``."""
    item = QStandardItem(text)
    item.setEditable(False)
    item.setData(key, SORT_ROLE)
    if align_right:
        item.setTextAlignment(RIGHT)
    return item


def set_number(item: QStandardItem, value: float | None, spec: str = ".4g") -> None:
    """Show ``value`` in ``item`` (a dash when missing) and sort it as a number."""
    item.setText(number_text(value, spec))
    item.setData(sort_value(value), SORT_ROLE)


def refilter(proxy: QSortFilterProxyModel, change: Callable[[], None]) -> None:
    """Apply ``change`` to a proxy's filter settings and filter its rows again."""
    if hasattr(proxy, "beginFilterChange"):  # Qt >= 6.9, where invalidateFilter() is deprecated
        proxy.beginFilterChange()
        change()
        proxy.endFilterChange(QSortFilterProxyModel.Direction.Rows)
    else:
        change()
        proxy.invalidateFilter()


def read_only_rows(table: QTableView) -> None:
    """Whole rows selected, nothing edited, no row numbers, no wrapping, alternating colours."""
    table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    table.setAlternatingRowColors(True)
    table.setWordWrap(False)
    table.verticalHeader().hide()


class SortItem(QTableWidgetItem):
    """A QTableWidget cell shown as text and sorted by ``key`` (numbers as numbers, missing keys last)."""

    def __init__(self, text: str, key: Any = None, align_right: bool = False):
        super().__init__(text)
        self.key = (1, 0) if key is None else (0, key)
        if align_right:
            self.setTextAlignment(RIGHT)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        return self.key < other.key if isinstance(other, SortItem) else super().__lt__(other)


def fill_table(table: QTableWidget, rows: Sequence[Sequence[QTableWidgetItem]], append: bool = False) -> None:
    """Put ``rows`` of cells in ``table`` (after its rows when ``append``), keeping its sorting on."""
    sorting = table.isSortingEnabled()
    table.setSortingEnabled(False)  # a sorting table moves a row while its cells are being set
    first = table.rowCount() if append else 0
    table.setRowCount(first + len(rows))
    for offset, cells in enumerate(rows):
        for column, item in enumerate(cells):
            table.setItem(first + offset, column, item)
    table.setSortingEnabled(sorting)
