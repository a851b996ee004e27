"""The Evaluate section's tables: the headline figures (one row per model), the per-class figures of one
model, and examples (a confusion cell's, or the most confident mistakes). Every column sorts by value."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHeaderView, QTableWidget, QWidget

from effstudio.evaluate.results import ClassFigures, Evaluation, ExampleRow
from effstudio.gui.tables import SortItem, fill_table, fixed_text, read_only_rows

INDEX_ROLE = Qt.ItemDataRole.UserRole  # an example row's index into the evaluated split


def _table(columns: Sequence[str], tips: Sequence[str], stretch: int, name: str, parent: QWidget | None) -> QTableWidget:
    table = QTableWidget(0, len(columns), parent)
    table.setObjectName(name)
    table.setHorizontalHeaderLabels(list(columns))
    for column, tip in enumerate(tips):
        table.horizontalHeaderItem(column).setToolTip(tip)
    read_only_rows(table)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(stretch, QHeaderView.ResizeMode.Stretch)
    table.setSortingEnabled(True)
    header.setSortIndicator(-1, Qt.SortOrder.AscendingOrder)  # rows stay in the order given until a click
    return table


def _number(value: float | None, digits: int = 3) -> SortItem:
    return SortItem(fixed_text(value, digits), value, align_right=True)


def _percent(fraction: float | None) -> SortItem:
    """An accuracy in percent, as the window shows every accuracy; sorted by its value."""
    text = fixed_text(None if fraction is None else 100 * fraction, 1)
    return SortItem(text if fraction is None else f"{text}%", fraction, align_right=True)


HEADLINE = ("Model", "Task", "Split", "Examples", "Accuracy", "Macro-F1", "ECE", "Temperature")
HEADLINE_TIPS = ("The evaluated file (its path in the tooltip)", "The task the model was evaluated on",
                 "The split or file evaluated", "Examples evaluated", "Share of examples predicted right",
                 "Mean of the per-class F1 scores (every class counts the same)",
                 "Expected calibration error over 15 confidence bins (0 is perfectly calibrated)",
                 "Softmax temperature fitted on the validation split (1 leaves the probabilities as they are)")


def headline_table(parent: QWidget | None = None) -> QTableWidget:
    return _table(HEADLINE, HEADLINE_TIPS, 0, "evaluateHeadline", parent)


def show_headline(table: QTableWidget, evaluations: Sequence[Evaluation], paths: Sequence[str]) -> None:
    rows = []
    for evaluation, path in zip(evaluations, paths, strict=True):
        name = SortItem(evaluation.model, evaluation.model)
        name.setToolTip(path)
        rows.append([name, SortItem(evaluation.task, evaluation.task), SortItem(evaluation.split, evaluation.split),
                     SortItem(f"{evaluation.examples:,}", evaluation.examples, align_right=True),
                     _percent(evaluation.accuracy), _number(evaluation.macro_f1), _number(evaluation.ece),
                     _number(evaluation.temperature, 2)])
    fill_table(table, rows)


PER_CLASS = ("Class", "Precision", "Recall", "F1", "Support")
PER_CLASS_TIPS = ("The true class", "Of the examples predicted as this class, the share that are",
                  "Of the examples of this class, the share predicted so", "Harmonic mean of precision and recall",
                  "Examples of this class")


def per_class_table(parent: QWidget | None = None) -> QTableWidget:
    return _table(PER_CLASS, PER_CLASS_TIPS, 0, "evaluatePerClass", parent)


def show_per_class(table: QTableWidget, rows: Sequence[ClassFigures]) -> None:
    fill_table(table, [[SortItem(row.label, row.label), _number(row.precision), _number(row.recall), _number(row.f1),
                        SortItem(f"{row.support:,}", row.support, align_right=True)] for row in rows])


EXAMPLES = ("#", "Confidence", "True", "Predicted", "Input")
EXAMPLE_TIPS = ("The example's place in the evaluated split", "The model's probability for its prediction",
                "The example's label", "What the model predicted", "The decoded input (an image is shown below)")


def examples_table(name: str, parent: QWidget | None = None) -> QTableWidget:
    table = _table(EXAMPLES, EXAMPLE_TIPS, 4, name, parent)
    table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
    table.sortByColumn(1, Qt.SortOrder.DescendingOrder)  # surest first
    return table


def show_examples(table: QTableWidget, rows: Sequence[ExampleRow]) -> None:
    """One row per example; the first cell keeps the example's index (``INDEX_ROLE``)."""
    cells = []
    for row in rows:
        index = SortItem(str(row.index), row.index, align_right=True)
        index.setData(INDEX_ROLE, row.index)
        text = SortItem(one_line(row.text), row.text)
        text.setToolTip(row.text[:2000])
        cells.append([index, _number(row.confidence), SortItem(row.label, row.label),
                      SortItem(row.predicted, row.predicted), text])
    fill_table(table, cells)


def fit_rows(table: QTableWidget, limit: int) -> None:
    """As tall as the table's rows need (no blank space under them), ``limit`` pixels at most."""
    rows = sum(table.rowHeight(r) for r in range(table.rowCount()))
    table.setMaximumHeight(min(limit, table.horizontalHeader().sizeHint().height() + rows + 2 * table.frameWidth()))


def one_line(text: str, limit: int = 200) -> str:
    """A long or multi-line input as one short line for a table cell."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "\u2026"


def example_indices(table: QTableWidget) -> list[int]:
    """The example indices of the rows, in the order shown."""
    return [table.item(r, 0).data(INDEX_ROLE) for r in range(table.rowCount())]


def selected_index(table: QTableWidget) -> int | None:
    rows = {index.row() for index in table.selectedIndexes()}
    return table.item(min(rows), 0).data(INDEX_ROLE) if rows else None
