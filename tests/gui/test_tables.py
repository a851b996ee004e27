"""The GUI's shared table pieces: numbers as text, cells that sort by value, rows put into a sorting table."""

from __future__ import annotations

import math

from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import QTableWidget

from effstudio.gui.tables import (
    SORT_ROLE,
    SortItem,
    fill_table,
    fixed_text,
    number_text,
    refilter,
    set_number,
    sort_item,
)


def test_numbers_as_text():
    assert number_text(0.000123456) == "0.0001235"
    assert number_text(None) == "\u2013"
    assert number_text(12.345, ".1f") == "12.3"
    assert fixed_text(12345.678) == "12,345.68"
    assert fixed_text(2.0, 1) == "2.0"
    assert fixed_text(None) == fixed_text(math.nan) == fixed_text(math.inf) == "\u2014"


def test_model_cells_sort_by_value_with_missing_numbers_first(app):
    model = QStandardItemModel(0, 1)
    for value in (10.0, None, 9.0, 100.0):
        item = sort_item("", None, align_right=True)
        set_number(item, value)
        model.appendRow([item])
    assert model.item(1, 0).text() == "\u2013" and model.item(0, 0).text() == "10"
    assert model.item(0, 0).textAlignment() == Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
    proxy = QSortFilterProxyModel()
    proxy.setSourceModel(model)
    proxy.setSortRole(SORT_ROLE)
    proxy.sort(0, Qt.SortOrder.AscendingOrder)
    assert [proxy.index(row, 0).data() for row in range(4)] == ["\u2013", "9", "10", "100"]  # not "10" < "9"


def test_refilter_applies_the_new_filter(app):
    class Containing(QSortFilterProxyModel):
        word = ""

        def filterAcceptsRow(self, row, parent):  # noqa: N802 - Qt's name
            return self.word in self.sourceModel().index(row, 0, parent).data()

    model = QStandardItemModel(0, 1)
    for text in ("query.weight", "key.weight", "query.bias"):
        model.appendRow([sort_item(text, text)])
    proxy = Containing()
    proxy.setSourceModel(model)
    assert proxy.rowCount() == 3
    refilter(proxy, lambda: setattr(proxy, "word", "query"))
    assert [proxy.index(row, 0).data() for row in range(proxy.rowCount())] == ["query.weight", "query.bias"]


def test_table_rows_sort_by_key_with_missing_keys_last(app):
    table = QTableWidget(0, 2)
    table.setSortingEnabled(True)
    fill_table(table, [[SortItem("b", "b"), SortItem("10", 10, align_right=True)],
                       [SortItem("a", "a"), SortItem("\u2014", None)]])
    fill_table(table, [[SortItem("c", "c"), SortItem("9", 9)]], append=True)
    assert table.rowCount() == 3 and table.isSortingEnabled()
    table.sortByColumn(1, Qt.SortOrder.AscendingOrder)
    assert [table.item(row, 0).text() for row in range(3)] == ["c", "b", "a"]  # 9 < 10 < missing
    assert table.item(1, 1).textAlignment() == Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
    fill_table(table, [[SortItem("d", "d"), SortItem("1", 1)]])  # replaces the rows
    assert table.rowCount() == 1 and table.item(0, 0).text() == "d"
