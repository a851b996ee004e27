"""A square-cell heatmap of attention weights with a colour bar: rows top to bottom, labelled axes."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QFont

from effstudio.gui import theme


def weights_heatmap(
    graphics: pg.GraphicsLayoutWidget, x_label: str, y_label: str, *, tick_points: int = 7, bar_width: int = 14,
    square: bool = True, bar_label: str | None = "weight",
) -> tuple[pg.PlotItem, pg.ImageItem, pg.ColorBarItem]:
    """Add a plot to ``graphics`` that shows a (rows, columns) matrix, by default weights in [0, 1]
    in square cells; ``square=False`` lets the cells stretch to fill the plot."""
    plot = graphics.addPlot()
    plot.setAspectLocked(square)
    plot.invertY(True)
    plot.hideButtons()
    plot.setMenuEnabled(False)
    font = QFont()
    font.setPointSize(tick_points)
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        axis.setStyle(textFillLimits=[(0, 0.95), (2, 0.95), (4, 0.9), (6, 0.8)])
        axis.setTickFont(font)
        axis.setTextPen(theme.MUTED)
        axis.setPen(theme.BORDER)
    # after setPen: an axis's pen also recolours its label
    plot.setLabel("bottom", x_label, color=theme.MUTED)
    plot.setLabel("left", y_label, color=theme.MUTED)
    image = pg.ImageItem(axisOrder="row-major")
    plot.addItem(image)
    colorbar = pg.ColorBarItem(values=(0.0, 1.0), colorMap="viridis", interactive=False, width=bar_width,
                               label=bar_label)
    colorbar.setImageItem(image, insert_in=plot)
    return plot, image, colorbar
