"""Step metrics: one small plot per scalar extras key (mean ponder time, dropped tokens...).

Each key gets its own pane (side by side up to three, then in rows), sharing
the step axis, with the raw values faint and their moving average (the
Monitor's smoothing) on top. Panes appear as keys first arrive; data go into
numpy buffers and are drawn by :meth:`refresh`, which the Monitor calls from
its timer.
"""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QGridLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from effstudio.engine.events import StepEvent
from effstudio.gui import theme
from effstudio.gui.plots.curves import SmoothedSeries
from effstudio.gui.views.base import metric_style

COLOURS = (theme.PURPLE, theme.RED, theme.GREEN, theme.ORANGE, theme.BLUE, theme.SKY)
PANE_HEIGHT = 120  # pixels a row of panes wants


class StepMetricsPlot(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setAutoFillBackground(True)
        self.setStyleSheet(f"background: {theme.SURFACE};")
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(4, 4, 4, 4)
        self.grid.setSpacing(8)
        self.panes: dict[str, QWidget] = {}
        self.smoothing = 0.9
        self.total_steps = 0
        self.series: dict[str, SmoothedSeries] = {}
        self.plots: dict[str, pg.PlotItem] = {}
        self.curves: dict[str, tuple[pg.PlotDataItem, pg.PlotDataItem]] = {}
        self._dirty: set[str] = set()

    def keys(self) -> list[str]:
        return list(self.series)

    @property
    def columns(self) -> int:
        return len(self.plots) if len(self.plots) <= 3 else 2

    @property
    def rows(self) -> int:
        return -(-len(self.plots) // self.columns) if self.plots else 0

    def add_steps(self, events: list[StepEvent]) -> bool:
        """Take the metrics of some step events; True when a new key (a new pane) appeared."""
        new = False
        for key in dict.fromkeys(k for e in events for k in e.metrics):
            if key not in self.series:
                self._add_pane(key)
                new = True
            scale = metric_style(key).scale
            points = [(e.step, scale * e.metrics[key]) for e in events if key in e.metrics]
            self.series[key].extend((p[0] for p in points), (p[1] for p in points))
            self._dirty.add(key)
        return new

    def _add_pane(self, key: str) -> None:
        style = metric_style(key)
        colour = COLOURS[len(self.plots) % len(COLOURS)]
        pane = QWidget(self)
        title = QLabel(style.title, pane)
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        title.setStyleSheet(f"color: {theme.TEXT}; font-weight: 600;")
        title.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)  # narrow panes may clip it
        title.setToolTip(key)
        widget = pg.PlotWidget(pane, background=theme.SURFACE)
        widget.setMinimumSize(60, 60)
        box = QVBoxLayout(pane)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(0)
        box.addWidget(title)
        box.addWidget(widget, 1)
        plot = theme.style_plot(widget.getPlotItem(), left=style.unit, menu=True, mouse="x", si_prefix=False,
                                left_width=40)
        if self.plots:
            plot.setXLink(next(iter(self.plots.values())))
        if self.total_steps > 0:
            plot.setXRange(0, self.total_steps, padding=0.02)
        raw = plot.plot(pen=theme.pen(colour, 1, alpha=70))
        smooth = plot.plot(pen=theme.pen(colour, 2.2))
        for curve in (raw, smooth):
            curve.setClipToView(True)
            curve.setDownsampling(auto=True, method="peak")
        self.series[key] = SmoothedSeries(self.smoothing)
        self.plots[key] = plot
        self.panes[key] = pane
        self.curves[key] = (raw, smooth)
        self._lay_out()

    def _lay_out(self) -> None:
        for pane in self.panes.values():
            self.grid.removeWidget(pane)
        for index, pane in enumerate(self.panes.values()):
            self.grid.addWidget(pane, index // self.columns, index % self.columns)
        for col in range(3):
            self.grid.setColumnStretch(col, 1 if col < self.columns else 0)
        self.setMinimumHeight(min(self.rows, 2) * 100)

    def set_smoothing(self, weight: float) -> None:
        self.smoothing = float(min(max(weight, 0.0), 0.999))
        for series in self.series.values():
            series.set_weight(self.smoothing)
        self._dirty |= set(self.series)
        self.refresh()

    def reset(self, total_steps: int = 0) -> None:
        """Forget every metric and pane (a new run)."""
        for pane in self.panes.values():
            self.grid.removeWidget(pane)
            pane.deleteLater()
        self.series, self.plots, self.curves, self.panes = {}, {}, {}, {}
        self._dirty = set()
        self.total_steps = total_steps

    @property
    def dirty(self) -> bool:
        return bool(self._dirty)

    def refresh(self) -> None:
        keys, self._dirty = self._dirty, set()
        for key in keys:
            raw, smooth = self.curves[key]
            series = self.series[key]
            raw.setData(series.x, series.y)
            smooth.setData(series.smooth.x, series.smooth.y)
