"""A plot of one line per model: what the Evaluate section draws for length generalisation, accuracy by
length, calibration and robustness.

A model keeps its colour and marker in every plot of the section (its place in the list of evaluated
files picks them). A missing value is a gap in its line; a marked point (a model that needed its
position table extended to reach that length) is drawn hollow. Hovering a marker names the model and
its values, as the benchmark's scaling plots do. The legend sits in the top right corner, above the
lines (the y range leaves it room), unless a plot puts it elsewhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from effstudio.gui import theme
from effstudio.gui.plots.scaling import SYMBOLS


def model_colour(index: int) -> str:
    return theme.SERIES[index % len(theme.SERIES)]


def model_symbol(index: int) -> str:
    return SYMBOLS[index % len(SYMBOLS)]


@dataclass
class ModelLine:
    """One model's line: ``ys`` None where the model has no value; ``tips`` the hover text of each point;
    ``marked`` the points drawn hollow."""

    name: str
    index: int  # the model's place among the evaluated files: its colour and marker
    xs: Sequence[float]
    ys: Sequence[float | None]
    tips: Sequence[str]
    marked: Sequence[bool] = field(default_factory=tuple)
    legend: str = ""  # what the legend says; the name when empty
    dashed: bool = False


class ModelCurves(pg.PlotWidget):
    """Lines with markers, one per model, and a legend; ``lines`` is what is drawn."""

    def __init__(self, title: str, x_label: str, y_label: str, *, legend: bool = True,
                 legend_offset: tuple[float, float] = (-8, 8), axis_items: dict[str, pg.AxisItem] | None = None,
                 parent: QWidget | None = None):
        super().__init__(parent, background=theme.SURFACE, axisItems=axis_items)
        self.plot_item = theme.style_plot(self.getPlotItem(), title=title, bottom=x_label, left=y_label,
                                          si_prefix=False, label_colour=theme.SECONDARY, left_width=48)
        # top right by default: accuracy falls with length and perturbation, so the lines leave that corner free
        self.legend = theme.plot_legend(self.plot_item, legend_offset, verSpacing=-4) if legend else None
        if self.legend is not None:
            self.legend.setVisible(False)  # until there are lines: an empty legend is a stray box
        self.hover = pg.ScatterPlotItem(size=16, pen=None, brush=theme.brush(theme.SURFACE, 0), hoverable=True,
                                        tip=lambda x, y, data: data)
        self.hover.setZValue(20)
        self.plot_item.addItem(self.hover)
        self.lines: list[ModelLine] = []
        self.curves: list[pg.PlotDataItem] = []
        self._extras: list[pg.GraphicsObject] = []
        self.setMinimumHeight(200)

    def draw(self, lines: Sequence[ModelLine]) -> None:
        """Replace every line by ``lines``."""
        for item in self.curves + self._extras:
            self.plot_item.removeItem(item)
        if self.legend is not None:
            self.legend.clear()
        self.lines, self.curves, self._extras = list(lines), [], []
        spots = []
        for line in self.lines:
            colour, symbol = model_colour(line.index), model_symbol(line.index)
            xs = np.asarray(line.xs, dtype=np.float64)
            ys = np.array([np.nan if y is None else y for y in line.ys], dtype=np.float64)
            curve = pg.PlotDataItem(xs, ys, pen=theme.pen(colour, 2.2, dashed=line.dashed), symbol=symbol,
                                    symbolSize=9, symbolBrush=colour, symbolPen=theme.pen(theme.SURFACE),
                                    connect="finite", name=line.legend or line.name)
            self.plot_item.addItem(curve)
            self.curves.append(curve)
            marked = np.asarray(line.marked if len(line.marked) else [False] * len(xs), dtype=bool)
            if marked.any():  # hollow markers drawn over the filled ones (the legend keeps the filled sample)
                hollow = pg.ScatterPlotItem(xs[marked], ys[marked], symbol=symbol, size=9,
                                            brush=theme.brush(theme.SURFACE), pen=theme.pen(colour, 1.8))
                hollow.setZValue(5)
                self.plot_item.addItem(hollow)
                self._extras.append(hollow)
            spots += [{"pos": (x, y), "data": tip} for x, y, tip in zip(xs, ys, line.tips, strict=True)
                      if np.isfinite(y)]
        self.hover.setData(spots)
        if self.legend is not None:
            self.legend.setVisible(bool(self.lines))
        self.plot_item.enableAutoRange(x=True)
        self.fit_y(*self.value_range())

    def value_range(self) -> tuple[float, float]:
        """The lowest and highest value drawn ((0, 1) when none)."""
        values = [y for line in self.lines for y in line.ys if y is not None and np.isfinite(y)]
        return (min(values), max(values)) if values else (0.0, 1.0)

    def fit_y(self, low: float, high: float, legend_lines: int | None = None) -> None:
        """Show values from ``low`` to ``high`` with room above them for ``legend_lines`` lines of a legend
        (by default this plot's own)."""
        span = max(high - low, 0.02)
        if legend_lines is None:
            legend_lines = len(self.lines) if self.legend is not None else 0
        top = high + span * (0.08 + 0.12 * legend_lines)
        self.plot_item.setYRange(low - 0.08 * span, top, padding=0)

    def add_item(self, item: pg.GraphicsObject) -> None:
        """A guide (a diagonal, a threshold line) that the next :meth:`draw` removes with the lines."""
        self.plot_item.addItem(item)
        self._extras.append(item)

    def legend_texts(self) -> list[str]:
        if self.legend is None:
            return []
        return [label.text for _sample, label in self.legend.items]
