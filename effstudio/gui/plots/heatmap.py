"""A square-cell heatmap of attention weights with a colour bar: rows top to bottom, labelled axes.

Also what the attention views share around it: token labels on the axes, and
layer and head selectors whose head list starts with the mean of the heads.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QComboBox, QLabel, QWidget

from effstudio.gui import theme

TOKEN_LABEL_LIMIT = 48  # tokens on an axis; more and they are left out (positions instead)
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
        plot.getAxis(name).setStyle(textFillLimits=[(0, 0.95), (2, 0.95), (4, 0.9), (6, 0.8)])
    image = pg.ImageItem(axisOrder="row-major")
    plot.addItem(image)
    colorbar = pg.ColorBarItem(values=(0.0, 1.0), colorMap="viridis", interactive=False, width=bar_width,
                               label=bar_label)
    colorbar.setImageItem(image, insert_in=plot)
    return plot, image, colorbar


def token_ticks(tokens: tuple[str | None, ...]) -> list[list[tuple[float, str]]]:
    """Tick levels for token labels (None: no label at that position): every 4th first, then the rest,
    so crowded axes thin out."""
    levels: list[list[tuple[float, str]]] = [[], [], []]
    for i, token in enumerate(tokens):
        if token is None:
            continue
        level = 0 if i % 4 == 0 else (1 if i % 2 == 0 else 2)
        levels[level].append((i + 0.5, token.strip() or "\u2423"))
    return levels


def label_tokens(plot: pg.PlotItem, columns: tuple[str | None, ...] | None,
                 rows: tuple[str | None, ...] | None) -> None:
    """Tokens as the labels of the columns and rows; None: positions."""
    plot.getAxis("bottom").setTicks(token_ticks(columns) if columns is not None else None)
    plot.getAxis("left").setTicks(token_ticks(rows) if rows is not None else None)


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
