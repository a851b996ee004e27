"""The confusion matrix as a heatmap with its counts: rows are the true classes, columns the predicted ones.

A cell's colour is its share of its row (the recall of the true class, spread over the predictions), so
a small class reads as clearly as a large one; its text is the count. Clicking a cell emits
``cell_clicked(true, predicted)`` and outlines it; the cell under the mouse is named below the map.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QGraphicsRectItem, QLabel, QVBoxLayout, QWidget

from effstudio.gui import theme
from effstudio.gui.plots.heatmap import weights_heatmap

COUNT_LIMIT = 30  # classes; more and the cells are too small for their counts (the readout still names them)
COLOUR_MAP = "viridis"


def row_shares(confusion: np.ndarray) -> np.ndarray:
    """Each cell's share of its row (0 for an empty row): (classes, classes)."""
    totals = confusion.sum(axis=1, keepdims=True)
    return np.divide(confusion, totals, out=np.zeros(confusion.shape, dtype=np.float64), where=totals > 0)


class ConfusionView(QWidget):
    """The heatmap, its counts and a readout; ``matrix`` holds the counts shown."""

    cell_clicked = Signal(int, int)  # true class, predicted class

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.matrix = np.zeros((0, 0), dtype=np.int64)
        self.labels: list[str] = []
        self.selected: tuple[int, int] | None = None
        self.graphics = theme.plot_canvas(self)
        self.plot, self.image, self.colorbar = weights_heatmap(self.graphics, "predicted class", "true class",
                                                               tick_points=8, bar_label="share of the true class")
        self.colorbar.setColorMap(pg.colormap.get(COLOUR_MAP))
        self.plot.setMouseEnabled(x=False, y=False)
        self.outline = QGraphicsRectItem()
        self.outline.setPen(theme.pen(theme.ORANGE, 3))
        self.outline.setZValue(10)
        self.outline.hide()
        self.plot.addItem(self.outline)
        self._texts: list[pg.TextItem] = []
        self.readout = QLabel(self)
        self.readout.setObjectName("description")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics, 1)
        layout.addWidget(self.readout)
        self.graphics.scene().sigMouseMoved.connect(self._mouse_moved)
        self.graphics.scene().sigMouseClicked.connect(self._mouse_clicked)
        self.setMinimumHeight(260)

    def set_matrix(self, confusion: Sequence[Sequence[int]], labels: Sequence[str]) -> None:
        self.matrix = np.asarray(confusion, dtype=np.int64).reshape(len(labels), len(labels))
        self.labels = list(labels)
        self.selected = None
        self.outline.hide()
        for text in self._texts:
            self.plot.removeItem(text)
        self._texts = []
        shares = row_shares(self.matrix)
        self.image.setImage(shares, autoLevels=False, levels=(0.0, 1.0))
        self.colorbar.setLevels((0.0, 1.0))
        n = len(labels)
        ticks = [[(i + 0.5, label) for i, label in enumerate(self.labels)]] if n <= COUNT_LIMIT else None
        for axis in ("bottom", "left"):
            self.plot.getAxis(axis).setTicks(ticks)
        if 0 < n <= COUNT_LIMIT:
            colours = pg.colormap.get(COLOUR_MAP)
            font = QFont()
            font.setPointSize(9 if n <= 12 else 7)
            for (row, column), count in np.ndenumerate(self.matrix):
                background = colours.map(float(shares[row, column]), mode="qcolor")
                text = pg.TextItem(f"{count:,}", color=theme.text_on(background), anchor=(0.5, 0.5))
                text.setFont(font)
                text.setPos(column + 0.5, row + 0.5)
                self.plot.addItem(text)
                self._texts.append(text)
        self.plot.setRange(xRange=(0, max(n, 1)), yRange=(0, max(n, 1)), padding=0.02)
        self.readout.setText("Click a cell to list its examples." if n else "")

    def cell_texts(self) -> list[str]:
        """The counts written in the cells, row by row (for a check of what is drawn)."""
        return [text.textItem.toPlainText() for text in self._texts]

    def cell_at(self, scene_position: QPointF) -> tuple[int, int] | None:
        """(true, predicted) of the cell at a scene position, or None off the matrix."""
        point = self.plot.getViewBox().mapSceneToView(scene_position)
        row, column = int(np.floor(point.y())), int(np.floor(point.x()))
        n = len(self.labels)
        return (row, column) if 0 <= row < n and 0 <= column < n else None

    def describe(self, row: int, column: int) -> str:
        count = int(self.matrix[row, column])
        total = int(self.matrix[row].sum())
        share = f" ({count / total:.0%} of {self.labels[row]})" if total else ""
        return f"true {self.labels[row]} \u2192 predicted {self.labels[column]}: {count:,} example" \
               f"{'' if count == 1 else 's'}{share}"

    def select(self, row: int, column: int) -> None:
        """Outline the cell and emit ``cell_clicked`` (what a click on it does)."""
        self.selected = (row, column)
        self.outline.setRect(QRectF(column, row, 1, 1))
        self.outline.show()
        self.cell_clicked.emit(row, column)

    def _mouse_moved(self, position: QPointF) -> None:
        cell = self.cell_at(position)
        if cell is not None:
            self.readout.setText(self.describe(*cell))

    def _mouse_clicked(self, event) -> None:  # a pyqtgraph MouseClickEvent
        if event.button() != Qt.MouseButton.LeftButton:
            return
        cell = self.cell_at(event.scenePos())
        if cell is not None:
            self.select(*cell)
