"""One tensor drawn two ways: a histogram of its values and a heatmap of its matrix view.

The heatmap's axes count rows and columns of the whole matrix even when only a
sample of them is drawn. Signed tensors get a diverging colour map centred on
zero, non-negative ones a sequential map; the levels clip the extreme 0.5 % so
one outlier does not wash the picture out, and the colour bar's title says so
(the percentile and the data's range). NaN cells (the short last row of a
reshaped vector) stay blank. The cell under the pointer is read out (value, row,
column) by the plots' common readout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QStackedWidget, QVBoxLayout, QWidget

from effstudio.gui import theme
from effstudio.inspect.report import format_count
from effstudio.inspect.stats import TensorPictureEvent

CLIP_PERCENTILE = 99.5  # the colour scale ends here, so one outlier does not wash the picture out


@dataclass(frozen=True)
class ColourScale:
    """How a picture's values map to colours, and what the scale leaves out (said in the colour bar)."""

    colour_map: str
    low: float
    high: float
    data_low: float  # the values' own range
    data_high: float

    @property
    def clipped(self) -> bool:
        return self.data_low < self.low or self.data_high > self.high

    def label(self) -> str:
        """The colour bar's title: the clipping percentile and the range it hides, when it clips."""
        if not self.clipped:
            return "value"
        signed = self.colour_map != "viridis"
        what = f"clipped at {CLIP_PERCENTILE:g}th pct of |value|" if signed else \
            f"clipped to {100 - CLIP_PERCENTILE:g}\u2013{CLIP_PERCENTILE:g}th pct"
        return f"{what} \u00b7 data {self.data_low:.3g}\u2026{self.data_high:.3g}"


def colour_levels(values: np.ndarray) -> ColourScale:
    """The colour scale of a picture: diverging around zero for signed values, clipped at the
    CLIP_PERCENTILE of the magnitudes (signed) or of the values (both ends)."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return ColourScale("viridis", 0.0, 1.0, 0.0, 1.0)
    low, high = float(finite.min()), float(finite.max())
    if low < 0 < high:
        bound = float(np.percentile(np.abs(finite), CLIP_PERCENTILE)) or max(-low, high)
        return ColourScale("CET-D1", -bound, bound, low, high)
    top = float(np.percentile(finite, CLIP_PERCENTILE)) if high > low else high
    bottom = float(np.percentile(finite, 100 - CLIP_PERCENTILE)) if high > low else low
    if top <= bottom:
        bottom, top = bottom - 0.5, top + 0.5
    return ColourScale("viridis", bottom, top, low, high)


class TensorView(QWidget):
    """Histogram above heatmap, for the tensor selected in the Inspect section."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.picture: TensorPictureEvent | None = None
        self.colour_scale: ColourScale | None = None
        self.title = QLabel(self)
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.title.setWordWrap(True)
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.caption = QLabel(self)
        self.caption.setObjectName("description")
        self.caption.setWordWrap(True)
        self.log_counts = QCheckBox("Log counts", self)
        self.log_counts.setToolTip("Show log\u2081\u2080(1 + count): small bins stay visible next to a spike "
                                   "(the zeros of a pruned matrix)")
        self.log_counts.toggled.connect(self._draw_histogram)
        self.log_counts.clicked.connect(self._log_chosen)
        self._log_chosen_by_user = False

        self.graphics = theme.plot_canvas(self)
        self.graphics.ci.layout.setSpacing(14)
        self.histogram = theme.style_plot(self.graphics.addPlot(row=0, col=0), left="count", grid="y", mouse="",
                                          left_width=64)
        self.histogram.setTitle(theme.plot_title("Values", 9))
        self.bars = pg.PlotDataItem(stepMode="center", fillLevel=0, brush=theme.brush(theme.BLUE, 0xb0),
                                    pen=theme.pen(theme.BLUE))
        self.histogram.addItem(self.bars)
        self.zero_line = pg.InfiniteLine(0, angle=90, pen=theme.pen(theme.MUTED, dashed=True))
        self.histogram.addItem(self.zero_line)

        self.heatmap = theme.style_plot(self.graphics.addPlot(row=1, col=0), bottom="column", left="row", grid="",
                                        left_width=64)
        self.heatmap.setTitle(theme.plot_title("Matrix", 9))
        self.heatmap.invertY(True)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.heatmap.addItem(self.image)
        self.colorbar = pg.ColorBarItem(values=(0.0, 1.0), colorMap="CET-D1", interactive=False, width=14)
        self.colorbar.setImageItem(self.image, insert_in=self.heatmap)
        self.colorbar.getAxis("right").enableAutoSIPrefix(False)  # small values read as they are, no "(x0.001)"
        self.graphics.ci.layout.setRowStretchFactor(0, 2)
        self.graphics.ci.layout.setRowStretchFactor(1, 3)

        self.placeholder = QLabel("Select a tensor in the tree to see its histogram and heatmap.", self)
        self.placeholder.setObjectName("emptyState")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.placeholder.setWordWrap(True)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.placeholder)
        self.stack.addWidget(self.graphics)

        header = QHBoxLayout()
        header.setContentsMargins(0, 0, 0, 0)
        header.addWidget(self.title, 1)
        header.addWidget(self.log_counts, 0, Qt.AlignmentFlag.AlignTop)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(header)
        layout.addWidget(self.caption)
        layout.addWidget(self.stack, 1)

    def show_message(self, text: str) -> None:
        self.picture = None
        self.title.setText("")
        self.caption.setText("")
        self.placeholder.setText(text)
        self.stack.setCurrentIndex(0)

    def show_loading(self, name: str, shape: tuple[int, ...], dtype: str) -> None:
        self.title.setText(self._title(name, shape, dtype))
        self.caption.setText("Reading\u2026")

    @staticmethod
    def _title(name: str, shape: tuple[int, ...], dtype: str) -> str:
        dims = " \u00d7 ".join(map(str, shape)) or "scalar"
        return f"<b>{name}</b> <span style='color:{theme.MUTED}'>\u00b7 {dims} \u00b7 {dtype}</span>"

    def set_picture(self, event: TensorPictureEvent, shape: tuple[int, ...], dtype: str) -> None:
        self.picture = event
        self.title.setText(self._title(event.name, shape, dtype))
        if event.error or event.view is None:
            self.show_message(f"{event.name}: {event.error or 'nothing to draw'}")
            return
        stats = event.stats
        parts = [event.view.description]
        if stats is not None and stats.nonfinite:
            parts.append(f"{format_count(stats.nonfinite)} NaN/inf values left out")
        self.caption.setText(" \u00b7 ".join(parts))
        if not self._log_chosen_by_user and event.counts is not None:
            # one bin with most of the values (the zeros of a pruned matrix) flattens the rest: use a log scale
            self.log_counts.blockSignals(True)
            self.log_counts.setChecked(bool(event.counts.max() > 0.25 * max(event.counts.sum(), 1)))
            self.log_counts.blockSignals(False)
        self._draw_histogram()
        self._draw_heatmap()
        self.stack.setCurrentIndex(1)

    def _log_chosen(self) -> None:
        self._log_chosen_by_user = True

    def _draw_histogram(self) -> None:
        event = self.picture
        if event is None or event.counts is None or event.edges is None:
            return
        counts = event.counts.astype(np.float64)
        log = self.log_counts.isChecked()
        if log:
            counts = np.log10(1.0 + counts)
        self.histogram.setLabel("left", "log\u2081\u2080(1 + count)" if log else "count", color=theme.MUTED)
        self.bars.setData(event.edges, counts)
        low, high = float(event.edges[0]), float(event.edges[-1])
        self.zero_line.setVisible(low < 0 < high)
        self.histogram.setXRange(low, high, padding=0.02)
        self.histogram.setYRange(0, max(float(counts.max()), 1.0), padding=0.05)

    def _draw_heatmap(self) -> None:
        view = self.picture.view if self.picture is not None else None
        if view is None:
            return
        values = view.values
        scale = colour_levels(values)
        self.colour_scale = scale
        self.colorbar.setColorMap(pg.colormap.get(scale.colour_map))
        self.image.setImage(values, autoLevels=False, levels=(scale.low, scale.high))
        self.colorbar.setLevels((scale.low, scale.high))
        self.colorbar.setLabel("right", scale.label(), color=theme.MUTED)
        self.image.setRect(QRectF(0, 0, view.cols, view.rows))
        self.heatmap.setRange(xRange=(0, view.cols), yRange=(0, view.rows), padding=0)
