"""The Monitor's model-view area: the views a run's probes carry, above its step metrics.

It stays empty (and the Monitor keeps it out of sight) until a run sends a
view it knows or a step metric; views and metric panes appear as their keys
first arrive, and a new run starts from nothing.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSplitter, QVBoxLayout, QWidget

from effstudio.engine.events import AttentionEvent, StepEvent
from effstudio.gui.views.base import ModelView, views_for
from effstudio.gui.views.metrics_plot import PANE_HEIGHT, StepMetricsPlot


class ModelViewArea(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.views: dict[str, ModelView] = {}  # by extras key
        self.step_label = QLabel(self)
        self.step_label.setObjectName("description")
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addStretch(1)
        top.addWidget(self.step_label)

        self.metrics = StepMetricsPlot(self)
        self.metrics.hide()
        self.splitter = QSplitter(Qt.Orientation.Vertical, self)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(self.metrics)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(top)
        layout.addWidget(self.splitter, 1)

    @property
    def has_content(self) -> bool:
        return bool(self.views) or bool(self.metrics.keys())

    def add_steps(self, events: list[StepEvent]) -> bool:
        """Plot the events' metrics; True when this made the area show something new."""
        had = self.has_content
        if self.metrics.add_steps(events):
            self.metrics.show()
            self._resize_panes()
        return self.has_content and not had

    def set_event(self, event: AttentionEvent) -> bool:
        """Show the event's known view arrays; True when a view appeared that was not there."""
        added = False
        for cls in views_for(event.views):
            view = self.views.get(cls.key)
            if view is None:
                view = cls(self.splitter)
                self.views[cls.key] = view
                self.splitter.insertWidget(len(self.views) - 1, view)
                added = True
            view.set_arrays(event.views, event.tokens)
        if self.views and (added or event.views):
            self.step_label.setText(f"probe at step {event.step}")
        if added:
            self._resize_panes()
        return added

    def _resize_panes(self) -> None:
        """The metric panes take a band per row (at most half); the views share the rest."""
        total = max(self.splitter.height(), 300)
        views = list(self.views.values())
        rows = self.metrics.rows
        metrics = min(PANE_HEIGHT * rows, total // 2) if views else total
        wanted = [v.minimumHeight() for v in views]
        spare = max(total - metrics - sum(wanted), 0)
        sizes = [w + spare * w // max(sum(wanted), 1) for w in wanted]
        self.splitter.setSizes(sizes + [metrics if rows else 0])

    def resizeEvent(self, event) -> None:  # noqa: ANN001
        super().resizeEvent(event)
        self._resize_panes()

    def refresh(self) -> None:
        self.metrics.refresh()

    def set_smoothing(self, weight: float) -> None:
        self.metrics.set_smoothing(weight)

    def reset(self, total_steps: int = 0) -> None:
        for view in self.views.values():
            view.hide()
            view.setParent(None)
            view.deleteLater()
        self.views = {}
        self.metrics.reset(total_steps)
        self.metrics.hide()
        self.step_label.setText("")
