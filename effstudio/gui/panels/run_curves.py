"""Metrics of several recorded runs on shared axes (the Runs section's comparison).

One plot per chosen metric, stacked, their x axes linked; one curve per run in
each. The x axis counts steps, seconds since each run's first record (relative
time) or the wall-clock time. The smoothing slider is the Monitor's: an
exponential moving average of the noisy metrics, with the raw values faint
behind it. A hint stands in for the plots until there is something to draw. The
controls belong to this view; the panel places them (``controls``).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QSlider,
    QStackedWidget,
    QToolButton,
    QWidget,
)

from effstudio.gui import theme
from effstudio.gui.panels.base import empty_state
from effstudio.gui.plots.axes import (
    MEMORY_TITLE,
    PERCENT_TITLE,
    free_axis,
    memory_axis,
    percent_axis,
)
from effstudio.gui.plots.curves import ema
from effstudio.runs.store import MetricSeries

# (metric, label in the chooser, y-axis label)
METRICS = (("loss", "Training loss", "loss"), ("val_loss", "Validation loss", "loss"),
           ("val_accuracy", "Validation accuracy", PERCENT_TITLE), ("lr", "Learning rate", "learning rate"),
           ("tokens_per_s", "Throughput (tokens/s)", "tokens/s"), ("grad_norm", "Gradient norm", "norm"),
           ("rss_mb", "Memory, process RSS", MEMORY_TITLE),
           ("cuda_allocated_mb", "Memory, CUDA allocated", MEMORY_TITLE))
PERCENT = ("val_accuracy",)  # fractions in the store, percent on screen (as in Monitor)
MEMORY = ("rss_mb", "cuda_allocated_mb")
SMOOTHED = ("loss", "tokens_per_s", "grad_norm")
RISING = ("val_accuracy",)  # curves that climb: the legend goes to the bottom right, out of their way
POINTS = ("val_loss", "val_accuracy")  # a few evaluations: drawn with a marker on each
# (key, label in the chooser, axis title)
X_AXES = (("step", "Step", "step"), ("relative", "Relative time", "time since the run's start (s)"),
          ("wall", "Wall-clock time", "wall-clock time"))
HINT = "Select runs in the table to compare their curves (Ctrl or Shift + click to pick several)."

RunMetrics = dict[int, tuple[str, dict[str, MetricSeries]]]  # run id -> (legend label, metric -> series)


def x_values(series: MetricSeries, axis: str) -> np.ndarray:
    """The x of each point: its step, seconds since the run's first record, or seconds since the epoch."""
    if axis == "step":
        return series.steps.astype(np.float64)
    times = series.wall_times.astype(np.float64)
    return times - times[0] if axis == "relative" else times


class RunCurves(QStackedWidget):
    """Page 0 a hint, page 1 the plots: ``plots[metric]``, and ``curves[metric][run id]``."""

    changed = Signal()  # the metrics, the x axis or the smoothing changed: the panel draws again

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.metrics_button = QToolButton(self)
        self.metrics_button.setText("Metrics")
        self.metrics_button.setToolTip("The metrics to compare: one plot each, stacked")
        self.metrics_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.metrics_menu = QMenu(self.metrics_button)
        self.metrics_button.setMenu(self.metrics_menu)
        self.metric_actions: dict[str, QAction] = {}
        for key, label, _axis in METRICS:
            self._add_metric(key, label)
        self.metric_actions["loss"].setChecked(True)

        self.x_box = QComboBox(self)
        self.x_box.setObjectName("runsXAxis")
        for key, label, _title in X_AXES:
            self.x_box.addItem(label, key)
        self.x_box.setToolTip("Compare by step, by time since each run started, or by wall-clock time")
        self.x_box.currentIndexChanged.connect(lambda _=None: self.changed.emit())

        self.smoothing = QSlider(Qt.Orientation.Horizontal, self)
        self.smoothing.setObjectName("runsSmoothing")
        self.smoothing.setRange(0, 99)
        self.smoothing.setValue(90)
        self.smoothing.setFixedWidth(120)
        self.smoothing.setToolTip("Exponential moving average of the training loss, throughput and gradient "
                                  "norm (0 = raw values), as in the Monitor")
        self.smoothing_value = QLabel("0.90", self)
        self.smoothing_value.setFont(theme.monospace_font())
        self.smoothing.valueChanged.connect(self._smoothing_changed)

        self.graphics = theme.plot_canvas(self)
        self.graphics.ci.layout.setSpacing(8)
        self.plots: dict[str, pg.PlotItem] = {}
        self.curves: dict[str, dict[int, pg.PlotDataItem]] = {}
        self.legend: pg.LegendItem | None = None
        self.hint = empty_state(HINT, self)
        self.addWidget(self.hint)
        self.addWidget(self.graphics)

    def controls(self) -> QHBoxLayout:
        """The metric chooser, the x axis and the smoothing slider in a row, for the panel to place."""
        row = QHBoxLayout()
        row.setSpacing(8)
        for widget in (self.metrics_button, QLabel("x axis", self), self.x_box, QLabel("Smoothing", self),
                       self.smoothing, self.smoothing_value):
            row.addWidget(widget)
        return row

    # ---------------------------------------------------------------- choices
    def _add_metric(self, key: str, label: str) -> None:
        action = QAction(label, self.metrics_menu)
        action.setCheckable(True)
        action.setData(key)
        action.toggled.connect(self._metrics_changed)
        self.metrics_menu.addAction(action)
        self.metric_actions[key] = action

    def selected_metrics(self) -> list[str]:
        """The metrics to draw, in the chooser's order."""
        return [key for key, action in self.metric_actions.items() if action.isChecked()]

    def set_metrics(self, names: list[str]) -> None:
        """Choose exactly ``names`` (those the chooser offers); one ``changed`` signal."""
        for key, action in self.metric_actions.items():
            action.blockSignals(True)
            action.setChecked(key in names)
            action.blockSignals(False)
        self._metrics_changed()

    def x_axis(self) -> str:
        return str(self.x_box.currentData())

    def set_x_axis(self, key: str) -> None:
        self.x_box.setCurrentIndex(self.x_box.findData(key))

    def smoothing_weight(self) -> float:
        return self.smoothing.value() / 100

    def offer_metrics(self, names: set[str]) -> None:
        """Add metrics the chooser does not have yet (a model's own, e.g. ponder steps), unchosen."""
        for name in sorted(names - set(self.metric_actions)):
            self._add_metric(name, name.replace("_", " ").capitalize())

    def _metrics_changed(self, _checked: bool = False) -> None:
        chosen = self.selected_metrics()
        labels = [self.metric_actions[key].text() for key in chosen]
        self.metrics_button.setText("Metrics: " + (", ".join(labels) if len(labels) <= 2 else
                                                   f"{labels[0]} and {len(labels) - 1} more") if labels else
                                    "Metrics: none")
        self.metrics_button.setToolTip("The metrics to compare, one plot each: " + (", ".join(labels) or "none"))
        self.changed.emit()

    def _smoothing_changed(self, _value: int) -> None:
        self.smoothing_value.setText(f"{self.smoothing_weight():.2f}")
        self.changed.emit()

    # ------------------------------------------------------------------- draw
    def show_runs(self, runs: RunMetrics) -> None:
        """Draw each chosen metric of each run. Colours follow the order of ``runs`` (len(theme.SERIES)
        distinct ones, then they repeat)."""
        self.graphics.clear()
        self.plots, self.curves, self.legend = {}, {}, None
        metrics = self.selected_metrics()
        if not runs or not metrics:
            self.hint.setText(HINT if not runs else "Choose a metric to compare (Metrics).")
            self.setCurrentIndex(0)
            return
        axis = self.x_axis()
        drawn = False
        for row, metric in enumerate(metrics):
            plot = self._plot(row, metric, axis, last=row == len(metrics) - 1)
            curves = self._draw(plot, metric, runs, axis)
            if curves:
                drawn = True
                if self.legend is None:
                    self._legend(plot, metric, curves)
        first = next(iter(self.plots.values()))
        for plot in self.plots.values():
            if plot is not first:
                plot.setXLink(first)
            plot.enableAutoRange()
        if not drawn:
            names = ", ".join(self.metric_actions[m].text().lower() for m in metrics)
            self.hint.setText(f"No {names} recorded for the selected runs.")
            self.setCurrentIndex(0)
        else:
            self.setCurrentIndex(1)

    def _plot(self, row: int, metric: str, axis: str, *, last: bool) -> pg.PlotItem:
        bottom = pg.DateAxisItem(orientation="bottom") if axis == "wall" else pg.AxisItem(orientation="bottom")
        plot = self.graphics.addPlot(row=row, col=0, axisItems={"bottom": bottom})
        title = {m: t for m, _, t in METRICS}.get(metric, metric)
        x_title = {k: t for k, _, t in X_AXES}[axis]
        theme.style_plot(plot, title=self.metric_actions[metric].text(), bottom=x_title if last else None,
                         left=title, menu=True, si_prefix=False, left_width=62)
        plot.readout.titles["bottom"] = x_title
        if metric in PERCENT:
            percent_axis(plot)
        elif metric in MEMORY:
            memory_axis(plot)
        else:
            free_axis(plot)
        self.plots[metric] = plot
        return plot

    def _draw(self, plot: pg.PlotItem, metric: str, runs: RunMetrics, axis: str) -> dict[int, pg.PlotDataItem]:
        weight = self.smoothing_weight() if metric in SMOOTHED else 0.0
        curves: dict[int, pg.PlotDataItem] = {}
        for number, (run_id, (name, by_metric)) in enumerate(runs.items()):
            values = by_metric.get(metric)
            if values is None or not len(values):
                continue
            xs = x_values(values, axis)
            ys = values.values * (100.0 if metric in PERCENT else 1.0)
            colour = theme.SERIES[number % len(theme.SERIES)]
            if weight > 0:
                raw = plot.plot(xs, ys, pen=theme.pen(colour, 1, alpha=60), name=f"{name} (raw)")
                raw.setDownsampling(auto=True, method="peak")
                raw.setClipToView(True)
                ys, _ = ema(ys, weight)
            curve = plot.plot(xs, ys, pen=theme.pen(colour, 2), name=name,
                              symbol="o" if metric in POINTS else None, symbolSize=5, symbolBrush=colour,
                              symbolPen=None)
            curve.setDownsampling(auto=True, method="mean" if weight > 0 else "peak")
            curve.setClipToView(True)
            curves[run_id] = curve
        self.curves[metric] = curves
        return curves

    def _legend(self, plot: pg.PlotItem, metric: str, curves: dict[int, pg.PlotDataItem]) -> None:
        rising = metric in RISING
        self.legend = theme.plot_legend(plot, (-8, -8 if rising else 8))
        self.legend.anchor(itemPos=(1, 1 if rising else 0), parentPos=(1, 1 if rising else 0),
                           offset=(-8, -8 if rising else 8))
        for curve in curves.values():
            self.legend.addItem(curve, curve.name())
