"""One metric of several recorded runs on the same axes (the Runs section's comparison).

A hint stands in for the plot until there is something to draw. The metric
chooser and the smoothing switch belong to this view; the panel places them.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QCheckBox, QComboBox, QStackedWidget, QWidget

from effstudio.gui import theme
from effstudio.gui.panels.base import empty_state
from effstudio.gui.plots.curves import ema
from effstudio.runs.store import MetricSeries

# (metric, label in the chooser, y-axis label)
METRICS = (("loss", "Training loss", "loss"), ("val_loss", "Validation loss", "loss"),
           ("val_accuracy", "Validation accuracy", "accuracy (%)"), ("lr", "Learning rate", "learning rate"),
           ("tokens_per_s", "Throughput (tokens/s)", "tokens/s"), ("grad_norm", "Gradient norm", "norm"),
           ("rss_mb", "Memory, process RSS", "MB"), ("cuda_allocated_mb", "Memory, CUDA allocated", "MB"))
SMOOTHED = ("loss", "tokens_per_s", "grad_norm")
RISING = ("val_accuracy",)  # curves that climb: the legend goes to the bottom right, out of their way
POINTS = ("val_loss", "val_accuracy")  # a few evaluations: drawn with a marker on each
HINT = "Select runs in the table to compare their curves (Ctrl or Shift + click to pick several)."


class RunCurves(QStackedWidget):
    """Page 0 a hint, page 1 the plot: one curve per run, keyed by run id in ``curves``."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.metric_box = QComboBox(self)
        for key, label, _axis in METRICS:
            self.metric_box.addItem(label, key)
        self.smooth_box = QCheckBox("Smooth", self)
        self.smooth_box.setChecked(True)
        self.smooth_box.setToolTip("Exponential moving average (0.9) of the training loss, throughput and "
                                   "gradient norm")
        self.plot = pg.PlotWidget(self, background=theme.SURFACE)
        plot_item = theme.style_plot(self.plot.getPlotItem(), bottom="step", menu=True, si_prefix=False,
                                     left_width=62)
        self.legend = theme.plot_legend(plot_item, (-8, 8))
        self.curves: dict[int, pg.PlotDataItem] = {}
        self.hint = empty_state(HINT, self)
        self.addWidget(self.hint)
        self.addWidget(self.plot)

    def selected_metric(self) -> str:
        return str(self.metric_box.currentData())

    def offer_metrics(self, names: set[str]) -> None:
        """Add metrics the chooser does not have yet (a model's own, e.g. ponder steps), quietly."""
        known = {self.metric_box.itemData(i) for i in range(self.metric_box.count())}
        self.metric_box.blockSignals(True)
        for name in sorted(names - known):
            self.metric_box.addItem(name.replace("_", " ").capitalize(), name)
        self.metric_box.blockSignals(False)

    def show_runs(self, series: dict[int, tuple[str, MetricSeries | None]]) -> None:
        """Draw the selected metric of each run: ``series`` maps a run id to its legend label and values.

        Colours follow the order of ``series`` (len(theme.SERIES) distinct ones, then they repeat).
        """
        plot_item = self.plot.getPlotItem()
        for curve in self.curves.values():
            plot_item.removeItem(curve)
        self.legend.clear()
        self.curves = {}
        if not series:
            self.setCurrentIndex(0)
            return
        self.setCurrentIndex(1)
        metric, label = self.selected_metric(), self.metric_box.currentText()
        plot_item.setLabel("left", {m: axis for m, _, axis in METRICS}.get(metric, metric), color=theme.MUTED)
        self.smooth_box.setEnabled(metric in SMOOTHED)
        smooth = self.smooth_box.isChecked() and metric in SMOOTHED
        rising = metric in RISING
        self.legend.anchor(itemPos=(1, 1 if rising else 0), parentPos=(1, 1 if rising else 0),
                           offset=(-8, -8 if rising else 8))
        for number, (run_id, (name, values)) in enumerate(series.items()):
            if values is None or not len(values):
                continue
            ys = values.values * (100.0 if metric == "val_accuracy" else 1.0)
            if smooth:
                ys, _ = ema(ys, 0.9)
            colour = theme.SERIES[number % len(theme.SERIES)]
            curve = plot_item.plot(values.steps.astype(np.float64), ys, pen=theme.pen(colour, 2),
                                   name=name, symbol="o" if metric in POINTS else None, symbolSize=5,
                                   symbolBrush=colour, symbolPen=None)
            curve.setDownsampling(auto=True, method="mean" if smooth else "peak")
            curve.setClipToView(True)
            self.curves[run_id] = curve
        plot_item.enableAutoRange()
        if not self.curves:
            self.hint.setText(f"No {label.lower()} recorded for the selected runs.")
            self.setCurrentIndex(0)
        else:
            self.hint.setText(HINT)
