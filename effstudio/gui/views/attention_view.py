"""Attention-map heatmap: one layer and head (or the mean of heads) of the probe sample.

Rows are queries, columns keys, as in the papers' figures; short sequences
(N <= TOKEN_LABEL_LIMIT) get their tokens as axis labels.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QStackedWidget, QWidget

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
        self.stack.addWidget(empty)
        self.stack.addWidget(self.graphics)
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
        tokens = self.current_event.tokens
        labelled = 0 < len(tokens) <= TOKEN_LABEL_LIMIT and len(tokens) >= max(n_queries, n_keys)
        label_tokens(self.plot, tokens[:n_keys] if labelled else None, tokens[:n_queries] if labelled else None)
        self.plot.setLabel("bottom", "key" if labelled else "key position", color=theme.MUTED)
        self.plot.setLabel("left", "query" if labelled else "query position", color=theme.MUTED)
        self.step_label.setText(f"step {self.current_event.step} \u00b7 {n_queries}\u00d7{n_keys}")

    def clear(self) -> None:
        self.current_event = None
        self.image.clear()
        self.choice.clear()
        self.step_label.setText("")
        self.choice.set_enabled(False)
        self.stack.setCurrentIndex(0)
