"""Monitor section: live curves, the attention map, the model's own views and the log of the run.

Data go into the views as they arrive; the plots are redrawn by a timer at most
REFRESH_HZ times a second, and only while the section is on screen.
"""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QShowEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QSlider,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from effstudio.engine.events import AttentionEvent, EvalEvent, MemoryEvent, StartEvent, StepEvent
from effstudio.gui.log_view import LogView
from effstudio.gui.metrics import MetricStrip, RunProgress, format_count
from effstudio.gui.panels.base import Panel, empty_state
from effstudio.gui.plots.curves import CurvesView
from effstudio.gui.theme import monospace_font
from effstudio.gui.views import ModelViewArea
from effstudio.gui.views.attention_view import AttentionView

REFRESH_HZ = 10
PAINT_SHARE = 0.2  # at most this share of the GUI thread goes to repainting curves during a run


class MonitorPanel(Panel):
    def __init__(self, start_action: QAction, parent: QWidget | None = None):
        super().__init__("Monitor", "No run yet.", scroll=False, parent=parent)
        self.metrics = MetricStrip(parent=self)

        self.smoothing = QSlider(Qt.Orientation.Horizontal, self)
        self.smoothing.setObjectName("smoothing")
        self.smoothing.setRange(0, 99)
        self.smoothing.setValue(90)
        self.smoothing.setFixedWidth(140)
        self.smoothing.setToolTip("Exponential moving average of the training loss and throughput "
                                  "(0 = raw values)")
        self.smoothing_value = QLabel("0.90", self)
        self.smoothing_value.setFont(monospace_font())
        self.smoothing_value.setMinimumWidth(34)
        toolbar = QHBoxLayout()
        toolbar.setSpacing(8)
        toolbar.addWidget(self.metrics, 1)
        toolbar.addSpacing(12)
        toolbar.addWidget(QLabel("Smoothing", self))
        toolbar.addWidget(self.smoothing)
        toolbar.addWidget(self.smoothing_value)
        self.body.addLayout(toolbar)

        self.curves = CurvesView(self)
        self.attention = AttentionView(self)
        # the model's own views (ponder time, expert load) get a tab once a run sends some
        self.model_view = ModelViewArea(self)
        self.side_tabs = QTabWidget(self)
        self.side_tabs.setObjectName("monitorTabs")
        self.side_tabs.setDocumentMode(True)
        self.side_tabs.addTab(self.attention, "Attention")
        self.model_view.hide()
        plots = QSplitter(Qt.Orientation.Horizontal, self)
        plots.setChildrenCollapsible(False)
        plots.addWidget(self.curves)
        plots.addWidget(self.side_tabs)
        plots.setStretchFactor(0, 3)
        plots.setStretchFactor(1, 2)
        plots.setSizes([720, 360])
        self.plots_splitter = plots

        waiting = QWidget(self)
        waiting_layout = QVBoxLayout(waiting)
        waiting_layout.addStretch(1)
        waiting_layout.addWidget(empty_state(
            "Nothing to show yet.\nPick a model and a task, then start a run: loss, accuracy, learning "
            "rate, throughput, memory and attention maps appear here live.", waiting))
        start = QToolButton(waiting)
        start.setDefaultAction(start_action)
        start.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        start.setMinimumHeight(32)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(start)
        row.addStretch(1)
        waiting_layout.addLayout(row)
        waiting_layout.addStretch(2)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(waiting)
        self.stack.addWidget(plots)

        self.log = LogView(self)
        log_box = QWidget(self)
        log_layout = QVBoxLayout(log_box)
        log_layout.setContentsMargins(0, 4, 0, 0)
        log_layout.setSpacing(4)
        log_layout.addWidget(QLabel("<b>Log</b>", log_box))
        log_layout.addWidget(self.log)
        vertical = QSplitter(Qt.Orientation.Vertical, self)
        vertical.setChildrenCollapsible(False)
        vertical.addWidget(self.stack)
        vertical.addWidget(log_box)
        vertical.setStretchFactor(0, 5)
        vertical.setStretchFactor(1, 1)
        vertical.setSizes([560, 130])
        self.vertical_splitter = vertical
        self.body.addWidget(vertical, 1)

        self.smoothing.valueChanged.connect(self._smoothing_changed)
        self._last_refresh = 0.0
        self.timer = QTimer(self)
        self.timer.setInterval(1000 // REFRESH_HZ)
        self.timer.timeout.connect(self.refresh)

    # ------------------------------------------------------------------ events
    def run_started(self, event: StartEvent, title: str, progress: RunProgress) -> None:
        self.curves.reset(event.total_steps)
        self.attention.clear()
        self._remove_model_tab()
        self.model_view.reset(event.total_steps)
        self.stack.setCurrentIndex(1)
        self.subtitle.setText(f"{title} \u00b7 {format_count(event.params)} parameters \u00b7 {event.device}"
                              f" \u00b7 {event.run_dir}")
        self.metrics.show_progress(progress)
        self.timer.start()

    def add_steps(self, events: list[StepEvent], progress: RunProgress) -> None:
        self.curves.add_steps(events)
        if self.model_view.add_steps(events):
            self._show_model_tab()
        self.metrics.show_progress(progress)

    def add_eval(self, event: EvalEvent, progress: RunProgress) -> None:
        self.curves.add_eval(event)
        self.metrics.show_progress(progress)

    def add_memory(self, event: MemoryEvent) -> None:
        self.curves.add_memory(event)

    def add_attention(self, event: AttentionEvent) -> None:
        if event.maps.size:
            self.attention.set_event(event)
        if self.model_view.set_event(event):
            self._show_model_tab()

    def _show_model_tab(self) -> None:
        """The model tab joins the attention map and, the first time in a run, comes to the front."""
        if self.side_tabs.indexOf(self.model_view) < 0:
            self.side_tabs.addTab(self.model_view, "Model")
            curves, side = self.plots_splitter.sizes()
            if side < 0.45 * (curves + side):  # the model views need more room than one heatmap
                self.plots_splitter.setSizes([int(0.55 * (curves + side)), int(0.45 * (curves + side))])
        if self.model_view.views:
            self.side_tabs.setCurrentWidget(self.model_view)

    def _remove_model_tab(self) -> None:
        index = self.side_tabs.indexOf(self.model_view)
        if index >= 0:
            self.side_tabs.removeTab(index)
        self.model_view.hide()

    def run_ended(self, progress: RunProgress) -> None:
        self.timer.stop()
        self.metrics.show_progress(progress)  # the ETA tile of an ended run shows a dash
        self.curves.refresh()
        self.model_view.refresh()

    def refresh(self) -> None:
        """Redraw changed curves, spacing redraws out on a machine where painting is slow."""
        if not (self.isVisible() or not self.timer.isActive()):
            return
        now = time.perf_counter()
        if self.timer.isActive() and now - self._last_refresh < self.curves.paint_s / PAINT_SHARE:
            return
        self._last_refresh = now
        self.curves.refresh()
        self.model_view.refresh()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.curves.refresh()
        self.model_view.refresh()

    # --------------------------------------------------------------- smoothing
    def smoothing_weight(self) -> float:
        return self.smoothing.value() / 100

    def set_smoothing_weight(self, weight: float) -> None:
        self.smoothing.setValue(int(round(100 * min(max(weight, 0.0), 0.99))))
        self._smoothing_changed()

    def _smoothing_changed(self, _value: int | None = None) -> None:
        weight = self.smoothing_weight()
        self.smoothing_value.setText(f"{weight:.2f}")
        self.curves.set_smoothing(weight)
        self.model_view.set_smoothing(weight)
