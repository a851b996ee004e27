"""A square-cell heatmap of attention weights with a colour bar: rows top to bottom, labelled axes.

Also what the attention views share around it: token labels on the axes, and
layer and head selectors whose head list starts with the mean of the heads.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QFont, QFontMetricsF
from PySide6.QtWidgets import QComboBox, QLabel, QWidget

from effstudio.gui import theme

TOKEN_LABEL_LIMIT = 48  # tokens on an axis; more and they are left out (positions instead)
LABEL_GAP_PX = 6  # the least room between two token labels
NUMBER_FILL_LIMITS = [(0, 0.95), (2, 0.95), (4, 0.9), (6, 0.8)]  # position ticks: pyqtgraph thins them
MEAN_OF_HEADS = -1  # the head selector's value for the mean of the heads


def weights_heatmap(
    graphics: pg.GraphicsLayoutWidget, x_label: str, y_label: str, *, tick_points: int = 7, bar_width: int = 14,
    square: bool = True, bar_label: str | None = "weight",
) -> tuple[pg.PlotItem, pg.ImageItem, pg.ColorBarItem]:
    """Add a plot to ``graphics`` that shows a (rows, columns) matrix, by default weights in [0, 1]
    in square cells; ``square=False`` lets the cells stretch to fill the plot."""
    plot = theme.style_plot(graphics.addPlot(), bottom=x_label, left=y_label, grid="", tick_points=tick_points)
    plot.setAspectLocked(square)
    plot.invertY(True)
    for name in ("left", "bottom"):
        plot.getAxis(name).setStyle(textFillLimits=NUMBER_FILL_LIMITS)
    image = pg.ImageItem(axisOrder="row-major")
    plot.addItem(image)
    colorbar = pg.ColorBarItem(values=(0.0, 1.0), colorMap="viridis", interactive=False, width=bar_width,
                               label=bar_label)
    colorbar.setImageItem(image, insert_in=plot)
    colorbar.getAxis("right").enableAutoSIPrefix(False)
    return plot, image, colorbar


def token_text(token: str) -> str:
    return token.strip() or "\u2423"


def token_ticks(tokens: tuple[str | None, ...], stride: int = 1) -> list[list[tuple[float, str]]]:
    """One tick level of token labels (None: no label at that position): every ``stride``-th position
    counted from the first labelled one."""
    first = next((i for i, token in enumerate(tokens) if token is not None), 0)
    return [[(i + 0.5, token_text(token)) for i, token in enumerate(tokens)
             if token is not None and (i - first) % stride == 0]]


def label_stride(plot: pg.PlotItem, axis_name: str, tokens: tuple[str | None, ...]) -> int:
    """Label every n-th token (n a power of two, so labels stay put while the view changes) such that
    neighbouring labels never overlap at the plot's current size and zoom: a label needs its width
    (columns) or its line height (rows) plus a gap, a cell offers its size in pixels."""
    box = plot.getViewBox()
    views = plot.scene().views() if plot.scene() is not None else []
    if not any(view.isVisible() for view in views):  # no size yet: every label, thinned once it is shown
        return 1
    (x0, x1), (y0, y1) = box.viewRange()
    span, pixels = (x1 - x0, box.width()) if axis_name == "bottom" else (y1 - y0, box.height())
    texts = [token_text(t) for t in tokens if t is not None]
    if span <= 0 or pixels <= 0 or not texts:
        return 1
    metrics = QFontMetricsF(plot.getAxis(axis_name).style.get("tickFont") or QFont())
    need = (max(metrics.horizontalAdvance(t) for t in texts) if axis_name == "bottom" else metrics.height())
    cells = (need + LABEL_GAP_PX) / (pixels / span)
    return 1 if cells <= 1 else 2 ** math.ceil(math.log2(cells))


def label_tokens(plot: pg.PlotItem, columns: tuple[str | None, ...] | None,
                 rows: tuple[str | None, ...] | None) -> None:
    """Tokens as the labels of the columns and rows, thinned to what fits (see label_stride); None:
    positions. Call again when the plot is resized or zoomed."""
    for name, tokens in (("bottom", columns), ("left", rows)):
        axis = plot.getAxis(name)
        if tokens is None:
            axis.setStyle(textFillLimits=NUMBER_FILL_LIMITS)
            axis.setTicks(None)
        else:  # every label given fits: let the axis draw them all
            axis.setStyle(textFillLimits=[(0, 10.0)])
            axis.setTicks(token_ticks(tokens, label_stride(plot, name, tokens)))


def show_weights(image: pg.ImageItem, colorbar: pg.ColorBarItem, matrix: np.ndarray) -> np.ndarray:
    """Draw a matrix of weights from 0 to its largest value (NaN as 0); returns what is drawn."""
    matrix = np.nan_to_num(np.asarray(matrix, dtype=np.float32))
    top = float(matrix.max()) if matrix.size else 1.0
    top = top if top > 0 else 1.0
    image.setImage(matrix, autoLevels=False, levels=(0.0, top))
    colorbar.setLevels((0.0, top))
    return matrix


class LayerHeadChoice:
    """The layer and head selectors of a view of (layers, heads, rows, columns) maps: the head list starts
    with the mean of the heads. The boxes are named ``{name}Layer`` and ``{name}Head``; ``changed`` is
    called when the user picks another entry."""

    def __init__(self, parent: QWidget, name: str, changed: Callable[[], None]):
        self.layer_box, self.head_box = QComboBox(parent), QComboBox(parent)
        self.labels = QLabel("Layer", parent), QLabel("Head", parent)
        for box, what in ((self.layer_box, "Layer"), (self.head_box, "Head")):
            box.setObjectName(f"{name}{what}")
            box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
            box.currentIndexChanged.connect(changed)

    def widgets(self) -> tuple[QWidget, ...]:
        """Labels and boxes in reading order, for a view's header."""
        return self.labels[0], self.layer_box, self.labels[1], self.head_box

    def offer(self, layers: int, heads: int, *, layer: int | None, head: int | None) -> None:
        """Offer ``layers`` layers and the mean of ``heads`` heads, then each head; ``layer`` and ``head``
        stay chosen when offered, else the first entry is. No change signal fires."""
        for box, items, chosen in ((self.layer_box, [(f"{i + 1} of {layers}", i) for i in range(layers)], layer),
                                   (self.head_box, [("mean of heads", MEAN_OF_HEADS)]
                                    + [(f"{h + 1} of {heads}", h) for h in range(heads)], head)):
            box.blockSignals(True)
            box.clear()
            for text, data in items:
                box.addItem(text, data)
            box.setCurrentIndex(max(box.findData(chosen), 0))
            box.blockSignals(False)

    def pick(self, maps: np.ndarray, default_layer: int) -> np.ndarray:
        """The chosen head's map, or the mean of the heads, of the chosen layer (``default_layer`` while
        nothing is offered) of (layers, heads, rows, columns) ``maps``."""
        layer = self.layer_box.currentData()
        layer_maps = maps[default_layer if layer is None else layer]  # (H, rows, columns)
        head = self.head_box.currentData()
        return layer_maps.mean(axis=0) if head is None or head == MEAN_OF_HEADS else layer_maps[head]

    def set_enabled(self, enabled: bool) -> None:
        self.layer_box.setEnabled(enabled)
        self.head_box.setEnabled(enabled)

    def clear(self) -> None:
        self.layer_box.clear()
        self.head_box.clear()
