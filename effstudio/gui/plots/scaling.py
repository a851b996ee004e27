"""Log-log scaling plots: a measure (time, memory) against sequence length, one line per series.

The curves hold log10 values and :class:`LogAxis` labels them in the original
units (lengths as powers of two, "1k", "2k"..., values on a 1-2-5 grid), so the
ticks stay readable while zooming. A failed point is a gap in its line, and the
legend names the lengths where the series failed. Hovering a marker shows its
exact value. :class:`SeriesLegend` is a legend outside the plots, shared by
several plots of the same series, so it never hides a line.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pyqtgraph as pg
from pyqtgraph.graphicsItems.ScatterPlotItem import Symbols
from PySide6.QtCore import QPointF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPen, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFrame,
    QListView,
    QListWidget,
    QListWidgetItem,
    QWidget,
)

from effstudio.gui import theme

# a marker shape for each colour of theme.SERIES
SYMBOLS = ("o", "s", "t", "d", "star", "h", "p", "t1", "o", "s", "t", "d")
LOG2 = math.log10(2)
MIN_VALUE = 1e-6  # a measured value rounded to 0 is drawn here rather than at -inf


def format_length(value: float) -> str:
    """1024 -> "1k", 16384 -> "16k", 512 -> "512"; other values as whole numbers."""
    n = int(round(value))
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024}k"
    return f"{n:,}"


def format_value(value: float) -> str:
    """Axis labels for ms or MB: 0.05, 0.2, 1, 20, 500, 2,000."""
    if value >= 1:
        return f"{value:,.0f}"
    return f"{value:.3g}"


class LogAxis(pg.AxisItem):
    """An axis of log10 data that ticks and labels the original values.

    ``powers_of_two`` ticks 2**k (sequence lengths); otherwise ticks follow a
    1-2-5 grid per decade, thinned to powers of ten when many decades are shown.
    """

    def __init__(self, orientation: str, *, powers_of_two: bool = False, **kwargs):
        super().__init__(orientation, **kwargs)
        self.powers_of_two = powers_of_two
        self._label_minor = True

    def tickValues(self, minVal: float, maxVal: float, size: float):  # noqa: N802 - pyqtgraph's name
        lo, hi = sorted((minVal, maxVal))
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi - lo > 30:
            return []
        if self.powers_of_two:
            first, last = math.ceil(lo / LOG2 - 1e-9), math.floor(hi / LOG2 + 1e-9)
            exponents = list(range(first, last + 1))
            room = max(1, int(size // 38))  # a label needs about 38 px
            step = max(1, math.ceil(len(exponents) / room))
            kept = [e for e in exponents if e % step == 0]
            return [(step * LOG2, [e * LOG2 for e in kept])]
        span = hi - lo
        mantissas = (1, 2, 3, 5, 7) if span < 1.2 else (1, 2, 5)
        self._label_minor = span <= 3.5 and size / max(span, 1e-9) > 60
        major, minor = [], []
        for decade in range(math.floor(lo), math.ceil(hi) + 1):
            for m in mantissas:
                v = decade + math.log10(m)
                if lo <= v <= hi:
                    (major if m == 1 else minor).append(v)
        if not major and not minor:
            return []
        return [(1.0, major), (0.5, minor)]

    def tickStrings(self, values: list[float], scale: float, spacing: float):  # noqa: N802
        if self.powers_of_two:
            return [format_length(2 ** round(v / LOG2)) for v in values]
        if spacing < 1.0 and not self._label_minor:
            return ["" for _ in values]
        return [format_value(10 ** v) for v in values]


class ScalingPlot(pg.PlotWidget):
    """One measure against length on log-log axes; a line with markers per series, gaps where failed."""

    series_changed = Signal()  # a series was added or removed, or one of its points failed

    def __init__(self, title: str, quantity: str, unit: str, *, legend: bool = False,
                 parent: QWidget | None = None):
        axes = {"bottom": LogAxis("bottom", powers_of_two=True), "left": LogAxis("left")}
        super().__init__(parent, background=theme.SURFACE, axisItems=axes)
        self.quantity, self.unit = quantity, unit
        plot = theme.style_plot(self.getPlotItem(), title=title, bottom="sequence length (tokens)",
                                left=f"{quantity} ({unit})", left_width=54, label_colour=theme.SECONDARY)
        self.legend: pg.LegendItem | None = None
        if legend:
            self.legend = theme.plot_legend(plot, (8, 8), verSpacing=-4)
        self.curves: dict[str, pg.PlotDataItem] = {}
        self._points: dict[str, dict[int, float | None]] = {}
        self._order: list[str] = []
        self._dashed: set[str] = set()
        self._lengths: tuple[int, ...] = ()

    # ------------------------------------------------------------------ set-up
    def reset(self, series: Sequence[str], lengths: Iterable[int] = (), *, palette_order: Sequence[str] = (),
              dashed: Iterable[str] = ()) -> None:
        """Forget all points and prepare one empty line per series, in this order.

        Colours and markers follow each name's place in ``palette_order`` (all the
        names there could be), so a series keeps its look from one run to the next.
        """
        plot = self.getPlotItem()
        for curve in self.curves.values():
            plot.removeItem(curve)
        if self.legend is not None:
            self.legend.clear()
        self.curves, self._points = {}, {}
        self._order = list(palette_order) + [s for s in series if s not in palette_order]
        self._dashed = set(dashed)
        for name in series:
            self._add_series(name)
        self._lengths = tuple(sorted(set(lengths)))
        self._rebuild_legend()
        self.series_changed.emit()
        if self._lengths:
            lo, hi = math.log10(self._lengths[0]), math.log10(self._lengths[-1])
            pad = max(0.06, 0.04 * (hi - lo))
            plot.setXRange(lo - pad, hi + pad, padding=0)
        else:
            plot.enableAutoRange(x=True)
        plot.enableAutoRange(y=True)

    # ------------------------------------------------------------------- data
    def add_point(self, name: str, length: int, value: float | None) -> None:
        """A measured value, or None for a failed case (a gap, named in the legend)."""
        changed = name not in self.curves or value is None
        if name not in self.curves:
            self._add_series(name)
        self._points[name][int(length)] = value
        xs, ys = self.data(name)
        curve = self.curves[name]
        curve.setData(np.log10(xs), np.log10(np.maximum(ys, MIN_VALUE)))
        if changed:
            self._rebuild_legend()
            self.series_changed.emit()

    def _add_series(self, name: str) -> None:
        if name not in self._order:
            self._order.append(name)
        index = self._order.index(name) % len(theme.SERIES)
        colour, symbol = theme.SERIES[index], SYMBOLS[index]
        curve = pg.PlotDataItem(pen=theme.pen(colour, 2.2, dashed=name in self._dashed), symbol=symbol,
                                symbolSize=8, symbolBrush=colour, symbolPen=theme.pen(theme.SURFACE),
                                connect="finite", name=name)
        curve.readout_point = lambda index, name=name: self.point_text(name, index)  # drawn as log10: say the value
        self.getPlotItem().addItem(curve)
        self.curves[name] = curve
        self._points[name] = {}

    def colour(self, name: str) -> str:
        return self.curves[name].opts["symbolBrush"]

    def style(self, name: str) -> tuple[str, str, bool]:
        """(colour, marker, dashed) of a series."""
        opts = self.curves[name].opts
        return opts["symbolBrush"], opts["symbol"], name in self._dashed

    def data(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The lengths and values of a series, by length; NaN where a case failed."""
        points = sorted(self._points.get(name, {}).items())
        xs = np.array([x for x, _ in points], dtype=np.float64)
        ys = np.array([np.nan if y is None else y for _, y in points], dtype=np.float64)
        return xs, ys

    def failed_lengths(self, name: str) -> list[int]:
        return [x for x, y in sorted(self._points.get(name, {}).items()) if y is None]

    def series_names(self) -> list[str]:
        return list(self.curves)

    def legend_text(self, name: str) -> str:
        failed = self.failed_lengths(name)
        if not failed:
            return name
        return f"{name} \u2014 failed at {', '.join(format_length(x) for x in failed)}"

    def _rebuild_legend(self) -> None:
        if self.legend is None:
            return
        self.legend.clear()
        for name, curve in self.curves.items():
            self.legend.addItem(curve, self.legend_text(name))

    def point_text(self, name: str, index: int) -> str:
        """A measured point in words (the plots' pointer readout over this log-log plot)."""
        xs, ys = self.data(name)
        return f"{name} at {int(xs[index]):,} tokens: {ys[index]:,.3g} {self.unit}"


def sample_icon(colour: str, symbol: str, dashed: bool, width: int = 30, height: int = 14) -> QIcon:
    """A legend sample: a short line with the series' marker in the middle."""
    size = QSize(width, height)
    ratio = 2  # drawn at twice the size, so it stays crisp on high-density screens
    pixmap = QPixmap(size * ratio)
    pixmap.setDevicePixelRatio(ratio)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    middle = size.height() / 2
    pen = QPen(QColor(colour), 2.2)
    if dashed:
        pen.setStyle(Qt.PenStyle.DashLine)
    painter.setPen(pen)
    painter.drawLine(QPointF(1, middle), QPointF(size.width() - 1, middle))
    painter.translate(size.width() / 2, middle)
    painter.scale(8, 8)
    painter.setPen(QPen(QColor(theme.SURFACE), 1 / 8))
    painter.setBrush(QColor(colour))
    painter.drawPath(Symbols[symbol])
    painter.end()
    return QIcon(pixmap)


class SeriesLegend(QListWidget):
    """The series of a :class:`ScalingPlot` as one wrapping row of samples, outside the plots."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("seriesLegend")
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(True)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setSpacing(2)
        self.setIconSize(QSize(30, 14))
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setStyleSheet(f"QListWidget#seriesLegend {{ background: transparent; color: {theme.TEXT}; }}"
                           "QListWidget#seriesLegend::item { padding: 0 6px 0 0; }")
        self.setFixedHeight(24)

    def follow(self, plot: ScalingPlot) -> None:
        """Show the series of ``plot`` from now on."""
        plot.series_changed.connect(lambda: self.show_series(plot))
        self.show_series(plot)

    def show_series(self, plot: ScalingPlot) -> None:
        """Mirror the series of ``plot``: one sample per series, failed lengths named."""
        self.clear()
        for name in plot.series_names():
            colour, symbol, dashed = plot.style(name)
            item = QListWidgetItem(sample_icon(colour, symbol, dashed), plot.legend_text(name), self)
            failed = plot.failed_lengths(name)
            if failed:
                item.setForeground(QColor(theme.ERROR))
                item.setToolTip(f"{name} failed at {', '.join(f'{x:,}' for x in failed)} tokens; "
                                "see the results table for why")
            else:
                item.setToolTip(name)
        self._fit_height()

    def texts(self) -> list[str]:
        return [self.item(i).text() for i in range(self.count())]

    def _fit_height(self) -> None:
        self.doItemsLayout()
        bottom = max((self.visualItemRect(self.item(i)).bottom() for i in range(self.count())), default=16)
        self.setFixedHeight(max(24, bottom + 6))

    def resizeEvent(self, event) -> None:  # noqa: ANN001 - Qt's signature
        super().resizeEvent(event)
        self._fit_height()
