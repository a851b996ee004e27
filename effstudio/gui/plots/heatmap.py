"""A square-cell heatmap of attention weights with a colour bar: rows top to bottom, labelled axes."""

from __future__ import annotations

import pyqtgraph as pg

from effstudio.gui import theme


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
