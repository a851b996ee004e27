"""Model views: widgets for the arrays a model reports about its probe forward pass.

A model puts arrays in ``ModelOutput.extras`` (see effstudio/models/base.py);
the trainer sends the probe's arrays in ``AttentionEvent.views``. This module
maps an extras key to the widget class that shows it::

    @register_view("ponder_steps")
    class PonderView(ModelView):
        title = "Ponder time"

        def set_arrays(self, arrays, tokens):
            ...  # arrays: every view array of the event, by key; tokens: the probe's labels

The Monitor builds one widget per class whose key an event carries and ignores
unknown keys. The method is ``set_arrays`` rather than ``update``: QWidget
already has an ``update()`` (schedule a repaint) that Qt and pyqtgraph call.

A plugin package adds a view through the entry-point group ``effstudio.views``,
the entry point's name being the extras key::

    [project.entry-points."effstudio.views"]
    token_segments = "my_package.views:SegmentLengthView"

:func:`discover_views` loads them the registry's tolerant way: a plugin that
fails to import, is not a ModelView class or claims a key that already has a
view is recorded in ``Registry.errors`` and skipped.

Step metrics (the 0-dim extras) need no view: the Monitor plots every key, with
the title and unit given here in ``METRICS`` when the key is known.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import numpy as np
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QTextBrowser, QVBoxLayout, QWidget

from effstudio.gui import theme
from effstudio.registry import Registry

VIEW_GROUP = "effstudio.views"


class ModelView(QWidget):
    """A widget that shows some of a probe's view arrays."""

    title: str = ""
    key: str = ""  # set by register_view

    def frame(self, heading: str, explanation: str, body: QWidget, *, beside: Sequence[QWidget] = (),
              min_height: int = 0) -> None:
        """Lay the view out as every view is (see :func:`framed`); ``self.summary`` is its top-right label."""
        self.summary = framed(self, heading, explanation, body, beside=beside, min_height=min_height)

    def token_text(self, object_name: str) -> QTextBrowser:
        """A white, frameless rich-text area for a view that colours the probe's tokens."""
        text = QTextBrowser(self)
        text.setObjectName(object_name)
        text.setFrameShape(QFrame.Shape.NoFrame)
        text.setOpenLinks(False)
        text.setStyleSheet(f"QTextBrowser {{ background: {theme.SURFACE}; }}")
        return text

    def set_arrays(self, arrays: dict[str, np.ndarray], tokens: tuple[str, ...]) -> None:
        raise NotImplementedError

    def clear(self) -> None:
        """Forget the shown data (a new run)."""


def framed(widget: QWidget, heading: str, explanation: str, body: QWidget, *, beside: Sequence[QWidget] = (),
           min_height: int = 0) -> QLabel:
    """A view's layout: a bold heading (its tooltip explains the view), ``beside`` it a legend or
    selectors, a summary label on the right (returned), and ``body`` below taking the height."""
    title = QLabel(f"<b>{heading}</b>", widget)
    title.setToolTip(explanation)
    summary = QLabel(widget)
    summary.setObjectName("description")
    top = QHBoxLayout()
    top.setContentsMargins(0, 0, 0, 0)
    top.addWidget(title)
    if beside:
        top.addSpacing(8)
    for item in beside:
        top.addWidget(item)
    top.addStretch(1)
    top.addWidget(summary)
    layout = QVBoxLayout(widget)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(6)
    layout.addLayout(top)
    layout.addWidget(body, 1)
    if min_height:
        widget.setMinimumHeight(min_height)
    return summary


VIEWS: dict[str, type[ModelView]] = {}


def register_view(key: str) -> Callable[[type[ModelView]], type[ModelView]]:
    """Class decorator: show the extras array ``key`` with this view."""

    def register(cls: type[ModelView]) -> type[ModelView]:
        cls.key = key
        VIEWS[key] = cls
        return cls

    return register


def register_plugin_view(key: str, view: Any) -> None:
    """Show the extras array ``key`` with a plugin's ``view`` class; refuse anything else."""
    if not (isinstance(view, type) and issubclass(view, ModelView)):
        raise TypeError(f"{view!r} is not a ModelView class")
    if VIEWS.get(key, view) is not view:
        raise ValueError(f"the extras key {key!r} already has a view ({VIEWS[key].__name__})")
    register_view(key)(view)


def discover_views(registry: Registry) -> None:
    """Register the views plugins declare in ``effstudio.views``; failures go to ``registry.errors``."""
    for ep in entry_points(group=VIEW_GROUP):
        registry.load_plugin(VIEW_GROUP, ep, lambda view, key=ep.name: register_plugin_view(key, view))


def views_for(keys: Iterable[str]) -> list[type[ModelView]]:
    """The view classes for the known keys among ``keys``, in registration order."""
    present = set(keys)
    return [cls for key, cls in VIEWS.items() if key in present]


@dataclass(frozen=True)
class MetricStyle:
    title: str
    unit: str = ""
    scale: float = 1.0  # shown value = metric * scale


METRICS: dict[str, MetricStyle] = {
    "ponder_mean": MetricStyle("Ponder time N + R", "steps"),
    "moe_dropped": MetricStyle("Dropped tokens", "%", 100.0),
    "moe_balance_loss": MetricStyle("Balance loss", ""),
    "loss_memory": MetricStyle("Loss with memory", "nats"),
    "loss_no_memory": MetricStyle("Loss without memory", "nats"),
    "bits_per_char": MetricStyle("Bits per character", "bits"),
}


def metric_style(key: str) -> MetricStyle:
    return METRICS.get(key) or MetricStyle(key.replace("_", " ").capitalize())
