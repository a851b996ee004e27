"""One shared tensor of two checkpoints: both histograms overlaid, and a heatmap of B - A.

The histograms share their bins (the range of both tensors), A in blue and B in
orange, so a pruned matrix shows its spike at zero beside the original's bell. The
difference uses the Inspect heatmap's colour scale (diverging around zero, clipped at
a percentile that the colour bar names); cells count rows and columns of the whole
matrix view, as in the Tensors tab.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtWidgets import QLabel, QStackedWidget, QVBoxLayout, QWidget

from effstudio.gui import theme
from effstudio.gui.plots.tensor_view import ColourScale, colour_levels
from effstudio.inspect.diff import DiffPictureEvent


class DiffPicture(QWidget):
    """Histograms of A and B above the heatmap of B - A, for the tensor clicked in the Diff table."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.picture: DiffPictureEvent | None = None
        self.colour_scale: ColourScale | None = None
        self.title = QLabel(self)
        self.title.setWordWrap(True)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.placeholder = QLabel(self)
        self.placeholder.setObjectName("emptyState")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.placeholder)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.title)
        layout.addWidget(self.stack, 1)
        self.graphics: pg.GraphicsLayoutWidget | None = None  # built when the first picture arrives

    def _build_plots(self) -> None:
        """The plots, once: most sessions never click a tensor in the Diff tab (the window opens faster)."""
        self.graphics = theme.plot_canvas(self)
        self.graphics.ci.layout.setSpacing(12)
        self.histogram = theme.style_plot(self.graphics.addPlot(row=0, col=0), bottom="value", left="count",
                                          grid="y", mouse="", left_width=64)
        self.histogram.setTitle(theme.plot_title("Values of A and B", 9))
        self.bars_a = pg.PlotDataItem(stepMode="center", fillLevel=0, brush=theme.brush(theme.BLUE, 0x60),
                                      pen=theme.pen(theme.BLUE, 1.5), name="A")
        self.bars_b = pg.PlotDataItem(stepMode="center", fillLevel=0, brush=theme.brush(theme.ORANGE, 0x60),
                                      pen=theme.pen(theme.ORANGE, 1.5), name="B")
        for bars in (self.bars_a, self.bars_b):
            self.histogram.addItem(bars)
        self.legend = theme.plot_legend(self.histogram, (-8, 8))
        for bars in (self.bars_a, self.bars_b):
            self.legend.addItem(bars, bars.name())
        self.heatmap = theme.style_plot(self.graphics.addPlot(row=1, col=0), bottom="column", left="row", grid="",
                                        left_width=64)
        self.heatmap.setTitle(theme.plot_title("Difference B \u2212 A", 9))
        self.heatmap.invertY(True)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.heatmap.addItem(self.image)
        self.colorbar = pg.ColorBarItem(values=(-1.0, 1.0), colorMap="CET-D1", interactive=False, width=14)
        self.colorbar.setImageItem(self.image, insert_in=self.heatmap)
        self.colorbar.getAxis("right").enableAutoSIPrefix(False)  # small differences read as they are
        self.graphics.ci.layout.setRowStretchFactor(0, 2)
        self.graphics.ci.layout.setRowStretchFactor(1, 3)
        self.stack.addWidget(self.graphics)

    def show_message(self, text: str, title: str = "") -> None:
        self.picture = None
        self.title.setText(title)
        self.placeholder.setText(text)
        self.stack.setCurrentIndex(0)

    def show_loading(self, name: str) -> None:
        self.title.setText(f"<b>{name}</b> \u00b7 reading both files\u2026")

    def set_picture(self, event: DiffPictureEvent) -> None:
        if event.error or event.difference is None or event.edges is None:
            self.show_message(f"{event.name}: {event.error or 'nothing to draw'}", f"<b>{event.name}</b>")
            return
        if self.graphics is None:
            self._build_plots()
        self.picture = event
        self.title.setText(f"<b>{event.name}</b> <span style='color:{theme.MUTED}'>\u00b7 "
                           f"{event.difference.description}</span>")
        self.bars_a.setData(event.edges, event.counts_a)
        self.bars_b.setData(event.edges, event.counts_b)
        top = max(float(np.max(event.counts_a)), float(np.max(event.counts_b)), 1.0)
        self.histogram.setXRange(float(event.edges[0]), float(event.edges[-1]), padding=0.02)
        self.histogram.setYRange(0, top, padding=0.05)
        view = event.difference
        scale = colour_levels(view.values)
        if scale.colour_map == "viridis":  # one-signed or zero differences: still centred on zero
            bound = max(abs(scale.low), abs(scale.high), 1e-12)
            scale = ColourScale("CET-D1", -bound, bound, scale.data_low, scale.data_high)
        self.colour_scale = scale
        self.colorbar.setColorMap(pg.colormap.get(scale.colour_map))
        self.image.setImage(view.values, autoLevels=False, levels=(scale.low, scale.high))
        self.colorbar.setLevels((scale.low, scale.high))
        self.colorbar.setLabel("right", "B \u2212 A" if scale.label() == "value" else
                               scale.label().replace("value", "B \u2212 A", 1), color=theme.MUTED)
        self.image.setRect(QRectF(0, 0, view.cols, view.rows))
        self.heatmap.setRange(xRange=(0, view.cols), yRange=(0, view.rows), padding=0)
        self.stack.setCurrentIndex(1)
