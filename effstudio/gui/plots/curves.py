"""Training curves: loss (raw and smoothed), validation, learning rate, throughput, memory.

Data arrive in batches from the worker and go into growable numpy buffers;
the plots are redrawn by :meth:`CurvesView.refresh`, which the monitor panel
calls from a timer (at most ~20 times a second), so a fast run costs the GUI
thread one ``setData`` per curve per frame, not per step.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from effstudio.engine.events import EvalEvent, MemoryEvent, StepEvent
from effstudio.gui import theme
from effstudio.gui.plots.axes import MEMORY_TITLE, PERCENT_TITLE, memory_axis, percent_axis

if TYPE_CHECKING:
    from PySide6.QtGui import QPaintEvent

CURVE_GROUPS = ("loss", "val", "lr", "speed", "rss", "cuda")


class Series:
    """An (x, y) series in numpy buffers that double when full."""

    def __init__(self, capacity: int = 1024):
        self._x = np.empty(capacity, dtype=np.float64)
        self._y = np.empty(capacity, dtype=np.float64)
        self.size = 0

    def extend(self, xs: Iterable[float], ys: Iterable[float]) -> None:
        x = np.fromiter(xs, dtype=np.float64)
        y = np.fromiter(ys, dtype=np.float64)
        needed = self.size + len(x)
        if needed > len(self._x):
            capacity = max(needed, 2 * len(self._x))
            self._x = np.resize(self._x, capacity)
            self._y = np.resize(self._y, capacity)
        self._x[self.size:needed] = x
        self._y[self.size:needed] = y
        self.size = needed

    def append(self, x: float, y: float) -> None:
        self.extend((x,), (y,))

    @property
    def x(self) -> np.ndarray:
        return self._x[: self.size]

    @property
    def y(self) -> np.ndarray:
        return self._y[: self.size]

    def clear(self) -> None:
        self.size = 0

    def __len__(self) -> int:
        return self.size


def ema(values: np.ndarray, weight: float,
        state: tuple[float, float] = (0.0, 1.0)) -> tuple[np.ndarray, tuple[float, float]]:
    """Bias-corrected exponential moving average of ``values`` (NaNs stay NaN and are skipped).

    ``state`` carries on from the values before these (what an earlier call returned); the start is (0, 1).
    """
    out = np.empty_like(values)
    last, scale = state
    for i, value in enumerate(values.tolist()):
        if not np.isfinite(value):
            out[i] = np.nan
            continue
        last = weight * last + (1 - weight) * value
        scale *= weight
        out[i] = last / (1 - scale)
    return out, (last, scale)


class SmoothedSeries(Series):
    """A series that keeps its EMA up to date as points arrive."""

    def __init__(self, weight: float = 0.9):
        super().__init__()
        self.weight = weight
        self.smooth = Series()
        self._state = (0.0, 1.0)

    def extend(self, xs: Iterable[float], ys: Iterable[float]) -> None:
        start = self.size
        super().extend(xs, ys)
        smoothed, self._state = ema(self.y[start:], self.weight, self._state)
        self.smooth.extend(self.x[start:], smoothed)

    def set_weight(self, weight: float) -> None:
        xs, ys = self.x.copy(), self.y.copy()
        self.weight = weight
        self.clear()
        self.extend(xs, ys)

    def clear(self) -> None:
        super().clear()
        self.smooth.clear()
        self._state = (0.0, 1.0)


class CurvesView(pg.GraphicsLayoutWidget):
    """Six-pane grid of training curves sharing the step axis."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setBackground(theme.SURFACE)
        self.ci.layout.setSpacing(10)
        self.ci.setContentsMargins(4, 4, 4, 4)
        self._dirty: set[str] = set()
        self.smoothing = 0.9
        self.total_steps = 0
        self.paint_s = 0.0  # smoothed time of one repaint, for the monitor's refresh budget

        self.loss = SmoothedSeries(self.smoothing)
        self.val_loss = Series()
        self.val_acc = Series()
        self.lr = Series()
        self.throughput = SmoothedSeries(self.smoothing)
        self.rss = Series()
        self.cuda = Series()

        self.loss_plot = self._plot(0, 0, "Loss", "loss", colspan=2)
        self.loss_raw_curve = self.loss_plot.plot(pen=theme.pen(theme.BLUE, 1, alpha=70), name="train (raw)")
        self.loss_curve = self.loss_plot.plot(pen=theme.pen(theme.BLUE, 2.2), name="train (smoothed)")
        self.val_loss_curve = self.loss_plot.plot(
            pen=theme.pen(theme.ORANGE, 2), symbol="o", symbolSize=6, symbolBrush=theme.ORANGE,
            symbolPen=None, name="validation",
        )
        self.acc_plot = percent_axis(self._plot(0, 2, "Validation accuracy", PERCENT_TITLE))
        self.acc_plot.setYRange(0, 100, padding=0.02)
        self.acc_curve = self.acc_plot.plot(
            pen=theme.pen(theme.GREEN, 2), symbol="o", symbolSize=6, symbolBrush=theme.GREEN, symbolPen=None
        )
        self.lr_plot = self._plot(1, 0, "Learning rate", "learning rate")
        self.lr_curve = self.lr_plot.plot(pen=theme.pen(theme.PURPLE, 2))
        self.speed_plot = self._plot(1, 1, "Throughput", "tokens/s")
        self.speed_raw_curve = self.speed_plot.plot(pen=theme.pen(theme.SKY, 1, alpha=80))
        self.speed_curve = self.speed_plot.plot(pen=theme.pen(theme.SKY, 2.2))
        self.memory_plot = memory_axis(self._plot(1, 2, "Memory", MEMORY_TITLE))
        self.rss_curve = self.memory_plot.plot(pen=theme.pen(theme.RED, 2), name="process RSS")
        self.cuda_curve = self.memory_plot.plot(pen=theme.pen(theme.GREEN, 2, dashed=True))  # named once CUDA is seen

        for curve in (self.loss_raw_curve, self.speed_raw_curve, self.lr_curve, self.rss_curve):
            curve.setDownsampling(auto=True, method="peak")
            curve.setClipToView(True)
        for curve in (self.loss_curve, self.speed_curve):
            curve.setDownsampling(auto=True, method="mean")
            curve.setClipToView(True)
        self._legend(self.loss_plot)
        self.memory_legend = self._legend(self.memory_plot)
        self.memory_legend.hide()  # one curve explains itself; the legend appears with the CUDA curve

    def _plot(self, row: int, col: int, title: str, y_label: str, colspan: int = 1) -> pg.PlotItem:
        plot = self.addPlot(row=row, col=col, colspan=colspan)
        theme.style_plot(plot, title=title, bottom="step", left=y_label, menu=True, mouse="x", si_prefix=False,
                         left_width=62)
        plot.enableAutoRange(y=True)
        return plot

    def _legend(self, plot: pg.PlotItem) -> pg.LegendItem:
        legend = theme.plot_legend(plot, (-8, 8))
        for item in plot.listDataItems():
            if item.name() and item not in [i for i, _ in legend.items]:
                legend.addItem(item, item.name())
        return legend

    # ------------------------------------------------------------------- data
    def add_steps(self, events: list[StepEvent]) -> None:
        if not events:
            return
        steps = [e.step for e in events]
        self.loss.extend(steps, (e.loss for e in events))
        self.lr.extend(steps, (e.lr for e in events))
        self.throughput.extend(steps, (e.tokens_per_s for e in events))
        self.rss.extend(steps, (e.rss_mb for e in events))
        self._dirty |= {"loss", "lr", "speed", "rss"}

    def add_eval(self, event: EvalEvent) -> None:
        self.val_loss.append(event.step, event.val_loss)
        self.val_acc.append(event.step, 100.0 * event.val_accuracy)
        self._dirty |= {"val"}

    def add_memory(self, event: MemoryEvent) -> None:
        if event.cuda_allocated_mb is not None:
            if not self.cuda:
                self.memory_legend.addItem(self.cuda_curve, "CUDA allocated")
                self.memory_legend.show()
            self.cuda.append(event.step, event.cuda_allocated_mb)
            self._dirty |= {"cuda"}

    def set_smoothing(self, weight: float) -> None:
        weight = float(min(max(weight, 0.0), 0.999))
        self.smoothing = weight
        self.loss.set_weight(weight)
        self.throughput.set_weight(weight)
        self._dirty |= {"loss", "speed"}
        self.refresh()

    def reset(self, total_steps: int = 0) -> None:
        """Forget all data (a new run). Not ``clear``: GraphicsLayoutWidget uses that name.

        With ``total_steps`` known, the step axes are fixed to the whole run, so they
        are not re-laid out on every refresh while the run grows.
        """
        for series in (self.loss, self.val_loss, self.val_acc, self.lr, self.throughput, self.rss, self.cuda):
            series.clear()
        self.total_steps = total_steps
        self.memory_legend.removeItem(self.cuda_curve)
        self.memory_legend.hide()
        self._dirty = set(CURVE_GROUPS)
        self.refresh()
        for plot in self.plots():
            plot.enableAutoRange(y=True)
            if total_steps > 0:
                plot.setXRange(0, total_steps, padding=0.02)
            else:
                plot.enableAutoRange(x=True)

    def plots(self) -> tuple[pg.PlotItem, ...]:
        return (self.loss_plot, self.acc_plot, self.lr_plot, self.speed_plot, self.memory_plot)

    def paintEvent(self, event: QPaintEvent) -> None:
        begin = time.perf_counter()
        super().paintEvent(event)
        spent = time.perf_counter() - begin
        self.paint_s = spent if self.paint_s == 0 else 0.8 * self.paint_s + 0.2 * spent

    @property
    def dirty(self) -> bool:
        return bool(self._dirty)

    def refresh(self) -> None:
        """Push the buffers of changed series into their curves (views, no copies)."""
        if not self._dirty:
            return
        groups, self._dirty = self._dirty, set()
        pairs = {
            "loss": ((self.loss_raw_curve, self.loss), (self.loss_curve, self.loss.smooth)),
            "val": ((self.val_loss_curve, self.val_loss), (self.acc_curve, self.val_acc)),
            "lr": ((self.lr_curve, self.lr),),
            "speed": ((self.speed_raw_curve, self.throughput), (self.speed_curve, self.throughput.smooth)),
            "rss": ((self.rss_curve, self.rss),),
            "cuda": ((self.cuda_curve, self.cuda),),
        }
        for group in groups:
            for curve, series in pairs[group]:
                curve.setData(series.x, series.y)
