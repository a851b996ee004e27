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

Step metrics (the 0-dim extras) need no view: the Monitor plots every key, with
the title and unit given here in ``METRICS`` when the key is known.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from PySide6.QtWidgets import QWidget


class ModelView(QWidget):
    """A widget that shows some of a probe's view arrays."""

    title: str = ""
    key: str = ""  # set by register_view

    def set_arrays(self, arrays: dict[str, np.ndarray], tokens: tuple[str, ...]) -> None:
        raise NotImplementedError

    def clear(self) -> None:
        """Forget the shown data (a new run)."""


VIEWS: dict[str, type[ModelView]] = {}


def register_view(key: str) -> Callable[[type[ModelView]], type[ModelView]]:
    """Class decorator: show the extras array ``key`` with this view."""

    def register(cls: type[ModelView]) -> type[ModelView]:
        cls.key = key
        VIEWS[key] = cls
        return cls

    return register


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
