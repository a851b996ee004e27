"""Attention-map heatmap: one layer and head (or the mean of heads) of the probe sample.

Rows are queries, columns keys, as in the papers' figures. An axis shows the
tokens (word pieces) of the part in view whenever that part holds at most
TOKEN_LABEL_LIMIT of them, so a long probe shows positions until the user zooms
in (mouse wheel, drag); the cell under the mouse is named below the map.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, Qt
from PySide6.QtWidgets import QLabel, QStackedWidget, QVBoxLayout, QWidget

from effstudio.engine.events import AttentionEvent
from effstudio.gui import theme
from effstudio.gui.plots.heatmap import (
    TOKEN_LABEL_LIMIT,
    LayerHeadChoice,
    label_tokens,
    show_weights,
    weights_heatmap,
)
from effstudio.gui.views.base import framed


class AttentionView(QWidget):
    """Layer/head selectors above a heatmap with a colour bar."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.current_event: AttentionEvent | None = None

        self.choice = LayerHeadChoice(self, "attention", self._redraw)
        self.choice.layer_box.setMinimumContentsLength(8)
        self.choice.head_box.setMinimumContentsLength(12)
        self.graphics = theme.plot_canvas(self)
        self.plot, self.image, self.colorbar = weights_heatmap(self.graphics, "key position", "query position")

        self.stack = QStackedWidget(self)
        empty = QLabel("No attention maps yet.\nThey arrive during training, every "
                       "\u201cAttention map every\u201d steps.", self)
        empty.setObjectName("emptyState")
        empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        empty.setWordWrap(True)
        self.readout = QLabel(self)  # the cell under the mouse: its query and key tokens and weight
        self.readout.setObjectName("description")
        page = QWidget(self)
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.graphics, 1)
        layout.addWidget(self.readout)
        self.stack.addWidget(empty)
        self.stack.addWidget(page)
        self.plot.getViewBox().sigRangeChanged.connect(self._label_tokens_in_view)
        self.plot.getViewBox().sigResized.connect(self._label_tokens_in_view)  # labels thin out to fit
        self.image.readout_cell = self.cell_text  # the pointer readout names tokens, as the line below does
        self.graphics.scene().sigMouseMoved.connect(self._mouse_moved)
        self.step_label = framed(self, "Attention", "Attention weights of the probe sample: row i is how query i "
                                 "spread over the keys.", self.stack,
                                 beside=self.choice.widgets())
        self.choice.set_enabled(False)

    def set_event(self, event: AttentionEvent) -> None:
        """Show a new probe; the chosen layer and head are kept when they still exist."""
        layers, heads = event.maps.shape[:2]
        if self.current_event is None or self.current_event.maps.shape[:2] != (layers, heads):
            self.choice.offer(layers, heads, layer=self.choice.layer_box.currentData(),
                              head=self.choice.head_box.currentData())
        self.current_event = event
        self.choice.set_enabled(True)
        self.stack.setCurrentIndex(1)
        self._redraw()

    def current_map(self) -> np.ndarray | None:
        """The (N, N) matrix on screen."""
        if self.current_event is None:
            return None
        return self.choice.pick(self.current_event.maps, 0)  # of (L, H, N, N)

    def _redraw(self) -> None:
        matrix = self.current_map()
        if matrix is None or self.current_event is None:
            return
        matrix = show_weights(self.image, self.colorbar, matrix)
        n_queries, n_keys = matrix.shape
        self.plot.setRange(xRange=(0, n_keys), yRange=(0, n_queries), padding=0.01)
        self._label_tokens_in_view()
        self.step_label.setText(f"step {self.current_event.step} \u00b7 {n_queries}\u00d7{n_keys}")

    def _tokens(self) -> tuple[str, ...]:
        """The probe's tokens when there is one per row and column, else ()."""
        matrix = self.current_map()
        tokens = self.current_event.tokens if self.current_event is not None else ()
        return tokens if matrix is not None and len(tokens) >= max(matrix.shape) else ()

    def _label_tokens_in_view(self) -> None:
        """Token labels on each axis whose part in view holds few enough of them; positions otherwise."""
        matrix = self.current_map()
        tokens = self._tokens()
        if matrix is None:
            return
        (x0, x1), (y0, y1) = self.plot.getViewBox().viewRange()
        n_queries, n_keys = matrix.shape
        columns = _in_view(tokens[:n_keys], x0, x1)
        rows = _in_view(tokens[:n_queries], y0, y1)
        label_tokens(self.plot, columns, rows)
        self.plot.setLabel("bottom", "key" if columns is not None else "key position", color=theme.MUTED)
        self.plot.setLabel("left", "query" if rows is not None else "query position", color=theme.MUTED)

    def _mouse_moved(self, position: QPointF) -> None:
        point = self.plot.getViewBox().mapSceneToView(position)
        self.show_cell(int(np.floor(point.y())), int(np.floor(point.x())))

    def show_cell(self, row: int, column: int) -> None:
        """Name the cell (query ``row``, key ``column``) below the map: its tokens and weight."""
        self.readout.setText(self.cell_text(row, column))

    def cell_text(self, row: int, column: int, _value: float | None = None) -> str:
        """The cell (query ``row``, key ``column``) in words: its tokens and weight ("" outside the map);
        also what the plots' pointer readout says over this map."""
        matrix = self.current_map()
        if matrix is None or not (0 <= row < matrix.shape[0] and 0 <= column < matrix.shape[1]):
            return ""
        tokens = self._tokens()

        def name(i: int) -> str:
            return f"{tokens[i].strip() or chr(0x2423)} ({i})" if tokens else str(i)
        return f"query {name(row)} \u2192 key {name(column)}: {float(matrix[row, column]):.4f}"

    def clear(self) -> None:
        self.current_event = None
        self.image.clear()
        self.choice.clear()
        self.step_label.setText("")
        self.readout.setText("")
        self.choice.set_enabled(False)
        self.stack.setCurrentIndex(0)


def _in_view(tokens: tuple[str, ...], low: float, high: float) -> tuple[str | None, ...] | None:
    """``tokens`` with those outside positions [low, high) left out (None), when at most TOKEN_LABEL_LIMIT
    are in view; None when there are no tokens or too many to read."""
    first, last = max(0, int(np.floor(low))), min(len(tokens), int(np.ceil(high)))
    if not tokens or last - first > TOKEN_LABEL_LIMIT:
        return None
    return tuple(token if first <= i < last else None for i, token in enumerate(tokens))
