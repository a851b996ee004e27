"""The value under the pointer, on every plot: one readout that `theme.style_plot` attaches to each.

Over an image (a heatmap) it names the cell: its value and its row and column, in
the coordinates the axes show (a sampled matrix drawn over its whole size reads as
the whole matrix). An image may carry ``readout_cell(row, column, value) -> str``
to name a cell in its own words (tokens). Over curves it names the point nearest
the pointer on screen: the curve's name, x and y with the axes' titles (a curve
drawn in transformed coordinates, a log-log plot's, carries
``readout_point(index) -> str`` to name its points in their own units). The text
sits beside the pointer and leaves the plot's auto-range alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF

NEAR_PX = 48  # a curve's point farther than this from the pointer is not named


def format_reading(value: float) -> str:
    """A number as a readout shows it: 4 significant digits, thousands separated, no scaling prefix."""
    if not math.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
        return f"{value:.4g}"
    text = f"{value:,.4f}".rstrip("0").rstrip(".") if abs(value) < 1000 else f"{value:,.0f}"
    return text if text not in ("-0", "") else "0"


@dataclass(frozen=True)
class Reading:
    text: str
    x: float  # where it is anchored, in view coordinates
    y: float


class HoverReadout:
    """Follows the pointer over ``plot`` and shows what is under it (see the module's notes)."""

    def __init__(self, plot: pg.PlotItem, *, text_colour: str, background: str, border: str):
        self.plot = plot
        self.label = pg.TextItem(anchor=(0, 1), color=text_colour, fill=pg.mkBrush(background + "e6"),
                                 border=pg.mkPen(border))
        self.label.setZValue(1000)
        self.label.hide()
        plot.addItem(self.label, ignoreBounds=True)
        self.reading: Reading | None = None
        # axis titles where an axis shows none (stacked plots title only the bottom one's x axis)
        self.titles: dict[str, str] = {}
        scene = plot.scene()
        if scene is not None:
            scene.sigMouseMoved.connect(self._moved)

    def text(self) -> str:
        """What the readout shows now ("" while hidden)."""
        return self.reading.text if self.reading is not None else ""

    def _moved(self, scene_pos: QPointF) -> None:
        box = self.plot.getViewBox()
        if not self.plot.isVisible() or not box.sceneBoundingRect().contains(scene_pos):
            self.hide()
            return
        point = box.mapSceneToView(scene_pos)
        self.show_at(point.x(), point.y())

    def show_at(self, x: float, y: float) -> str:
        """Show what is at view coordinates (x, y); returns the text ("" when nothing is there)."""
        self.reading = self._image_reading(x, y) or self._curve_reading(x, y)
        if self.reading is None:
            self.hide()
            return ""
        self.label.setText(self.reading.text)
        (x0, x1), (y0, y1) = self.plot.getViewBox().viewRange()
        # keep the text inside the plot: it opens to the side and the height with more room
        self.label.setAnchor((0 if x < (x0 + x1) / 2 else 1, 1 if self._y_up(y, y0, y1) else 0))
        self.label.setPos(self.reading.x, self.reading.y)
        self.label.show()
        return self.reading.text

    def _y_up(self, y: float, y0: float, y1: float) -> bool:
        below_middle = y < (y0 + y1) / 2
        return below_middle != self.plot.getViewBox().yInverted()

    def hide(self) -> None:
        self.reading = None
        self.label.hide()

    def _axis_title(self, name: str, fallback: str) -> str:
        text = self.plot.getAxis(name).labelText
        return text or self.titles.get(name, fallback)

    # ------------------------------------------------------------------ images
    def _image_reading(self, x: float, y: float) -> Reading | None:
        box = self.plot.getViewBox()
        for item in box.addedItems:
            if not isinstance(item, pg.ImageItem) or item.image is None or not item.isVisible():
                continue
            image = np.asarray(item.image)
            if image.ndim != 2:
                continue
            pixel = item.mapFromScene(box.mapViewToScene(QPointF(x, y)))
            if item.axisOrder == "row-major":
                pixel_row, pixel_col = int(math.floor(pixel.y())), int(math.floor(pixel.x()))
            else:
                pixel_col, pixel_row = int(math.floor(pixel.y())), int(math.floor(pixel.x()))
            if not (0 <= pixel_row < image.shape[0] and 0 <= pixel_col < image.shape[1]):
                continue
            value = float(image[pixel_row, pixel_col])
            row, column = int(math.floor(y)), int(math.floor(x))  # as the axes count
            describe = getattr(item, "readout_cell", None)
            if callable(describe):
                text = describe(row, column, value)
            else:
                text = (f"value {format_reading(value) if math.isfinite(value) else 'none'}\n"
                        f"{self._axis_title('left', 'row')} {row} \u00b7 {self._axis_title('bottom', 'column')} {column}")
            return Reading(text, x, y)
        return None

    # ------------------------------------------------------------------ curves
    def _curve_reading(self, x: float, y: float) -> Reading | None:
        box = self.plot.getViewBox()
        pointer = box.mapViewToScene(QPointF(x, y))
        best: tuple[float, pg.PlotDataItem, int, float, float, float, float] | None = None
        for item in self.plot.listDataItems():
            if not isinstance(item, pg.PlotDataItem) or not item.isVisible():
                continue
            xs, ys = item.xData, item.yData
            if xs is None or ys is None or not len(ys):
                continue
            xs, ys = np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)
            if len(xs) == len(ys) + 1:  # a histogram's bin edges: read at the bins' centres
                xs = (xs[:-1] + xs[1:]) / 2
            log_x, log_y = item.opts.get("logMode", (False, False))[:2]
            with np.errstate(divide="ignore", invalid="ignore"):
                shown_x = np.log10(xs) if log_x else xs
                shown_y = np.log10(ys) if log_y else ys
            finite = np.isfinite(shown_x) & np.isfinite(shown_y)
            if not finite.any():
                continue
            index = self._nearest(shown_x, shown_y, finite, x, pointer)
            at = box.mapViewToScene(QPointF(shown_x[index], shown_y[index]))
            distance = math.hypot(at.x() - pointer.x(), at.y() - pointer.y())
            if best is None or distance < best[0]:
                best = (distance, item, index, xs[index], ys[index], shown_x[index], shown_y[index])
        if best is None or best[0] > NEAR_PX:
            return None
        _distance, item, index, value_x, value_y, view_x, view_y = best
        describe = getattr(item, "readout_point", None)
        if callable(describe):
            return Reading(describe(index), view_x, view_y)
        name = item.name() or ""
        heading = f"{name}\n" if name else ""
        text = (f"{heading}{self._axis_title('bottom', 'x')} {format_reading(value_x)} \u00b7 "
                f"{self._axis_title('left', 'y')} {format_reading(value_y)}")
        return Reading(text, view_x, view_y)

    def _nearest(self, xs: np.ndarray, ys: np.ndarray, finite: np.ndarray, x: float, pointer: QPointF) -> int:
        """The index of the point nearest the pointer on screen, among those near it in x (a long curve is
        searched around the pointer's x, not point by point)."""
        candidates = np.flatnonzero(finite)
        if len(candidates) > 512 and np.all(np.diff(xs[candidates]) >= 0):
            middle = int(np.searchsorted(xs[candidates], x))
            candidates = candidates[max(0, middle - 64):middle + 64]
        box = self.plot.getViewBox()
        (x0, x1), (y0, y1) = box.viewRange()
        width, height = max(box.width(), 1.0), max(box.height(), 1.0)
        dx = (xs[candidates] - x) / max(x1 - x0, 1e-300) * width
        dy = (ys[candidates] - box.mapSceneToView(pointer).y()) / max(y1 - y0, 1e-300) * height
        return int(candidates[int(np.argmin(dx * dx + dy * dy))])
