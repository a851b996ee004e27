"""Encoder-decoder view: which source tokens each output token read (cross-attention).

A heatmap with the decoded output tokens as rows and the source tokens as
columns, for one layer and one head or the mean of heads, with a colour bar.
Rows stop at the first <eos>: what the decoder writes after it is never used.
A model that reverses its input draws an anti-diagonal; one that copies, a
diagonal; one that sorts, a permutation.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QWidget

from effstudio.gui import theme
from effstudio.gui.plots.heatmap import (
    MEAN_OF_HEADS,
    TOKEN_LABEL_LIMIT,
    LayerHeadChoice,
    label_tokens,
    show_weights,
    weights_heatmap,
)
from effstudio.gui.views.base import ModelView, register_view

END = "<eos>"


def split_tokens(tokens: tuple[str, ...], sources: int, outputs: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(source labels, output labels): the probe's tokens are the source's, then the decoded ones."""
    if len(tokens) >= sources + outputs:
        return tokens[:sources], tokens[sources:sources + outputs]
    return tuple(str(i) for i in range(sources)), tuple(str(i + 1) for i in range(outputs))


@register_view("cross_attention")
class CrossAttentionView(ModelView):
    title = "Cross-attention"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.maps: np.ndarray | None = None  # (L, H, T, S)
        self.sources: tuple[str, ...] = ()
        self.outputs: tuple[str, ...] = ()
        self.choice = LayerHeadChoice(self, "cross", self._redraw)
        self.graphics = theme.plot_canvas(self)
        self.plot, self.image, self.colorbar = weights_heatmap(
            self.graphics, "source token (encoder)", "output token (decoder)", tick_points=8, bar_width=12)
        self.plot.getViewBox().sigRangeChanged.connect(self._label_tokens)
        self.plot.getViewBox().sigResized.connect(self._label_tokens)

        self.frame("Cross-attention", "Rows: the tokens the decoder wrote (greedy decoding of the probe). Columns: "
                   "the source tokens. Each row is how that output token's query spread over the source.",
                   self.graphics, beside=self.choice.widgets(),
                   min_height=200)

    def set_arrays(self, arrays: dict[str, np.ndarray], tokens: tuple[str, ...]) -> None:
        maps = np.asarray(arrays["cross_attention"], dtype=np.float32)
        if maps.ndim == 5:
            maps = maps[0]  # the probe batch holds one example: (L, H, T, S)
        layers, heads, outputs, sources = maps.shape
        source_labels, output_labels = split_tokens(tokens, sources, outputs)
        if END in output_labels:  # what the decoder writes after <eos> is never read
            outputs = output_labels.index(END) + 1
            output_labels, maps = output_labels[:outputs], maps[:, :, :outputs]
        if self.maps is None or self.maps.shape[:2] != (layers, heads):
            self.choice.offer(layers, heads, layer=layers - 1, head=MEAN_OF_HEADS)
        self.maps, self.sources, self.outputs = maps, source_labels, output_labels
        self._redraw()

    def current_map(self) -> np.ndarray | None:
        """The (T, S) matrix on screen."""
        if self.maps is None:
            return None
        return self.choice.pick(self.maps, len(self.maps) - 1)  # of (L, H, T, S)

    def _redraw(self) -> None:
        matrix = self.current_map()
        if matrix is None:
            return
        rows, cols = show_weights(self.image, self.colorbar, matrix).shape
        self.plot.setRange(xRange=(0, cols), yRange=(0, rows), padding=0.02)
        self._label_tokens()
        written = " ".join(t for t in self.outputs if t != END)
        self.summary.setText(f"{rows} outputs \u00d7 {cols} source tokens \u00b7 wrote: {written[:60]}")

    def _label_tokens(self) -> None:
        """Token labels that fit the plot's size and zoom (again after each resize or zoom)."""
        matrix = self.current_map()
        if matrix is None:
            return
        labelled = max(matrix.shape) <= TOKEN_LABEL_LIMIT
        label_tokens(self.plot, self.sources if labelled else None, self.outputs if labelled else None)

    def clear(self) -> None:
        self.maps = None
        self.image.clear()
        self.choice.clear()
        self.summary.setText("")
