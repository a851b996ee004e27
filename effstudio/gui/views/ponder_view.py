"""Ponder view: how many steps the Universal Transformer spent on each token of the probe.

The probe's tokens are laid out as text, each on a chip coloured by the steps
it used (light: few, dark: many) with the count as a subscript, one paragraph
per example, above a legend of the step counts seen.
"""

from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QLabel, QWidget

from effstudio.gui import theme
from effstudio.gui.views.base import ModelView, register_view

COLORMAP = "CET-L12"  # white to deep blue
LIGHTEST = 0.12  # colour-map position of the fewest steps: still tinted


def step_colours(low: int, high: int) -> dict[int, QColor]:
    """A colour per step count from ``low`` to ``high``."""
    cmap = pg.colormap.get(COLORMAP)
    span = max(high - low, 1)
    return {s: cmap.map(LIGHTEST + (1 - LIGHTEST) * (s - low) / span, mode="qcolor") for s in range(low, high + 1)}


@register_view("ponder_steps")
class PonderView(ModelView):
    title = "Ponder time"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.steps: np.ndarray | None = None
        self.legend = QLabel(self)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.text = self.token_text("ponderTokens")
        self.frame("Steps per token", "The shared block runs on a token until its halting probabilities add up "
                   "to 1 \u2212 \u03b5 (or the maximum steps); a higher ponder cost \u03c4 makes tokens stop "
                   "sooner. Probe example, as of the step named on the right.", self.text, beside=(self.legend,),
                   min_height=100)

    def set_arrays(self, arrays: dict[str, np.ndarray], tokens: tuple[str, ...]) -> None:
        steps = np.asarray(arrays["ponder_steps"], dtype=np.float64)
        if steps.ndim == 1:
            steps = steps[None, :]
        self.steps = steps
        used = steps[steps > 0]
        if not used.size:
            self.text.setHtml("")
            self.summary.setText("no real tokens")
            self.legend.setText("")
            return
        low, high = int(used.min()), int(used.max())
        colours = step_colours(low, high)
        paragraphs = []
        for row_index, row in enumerate(steps):
            labels = tokens if row_index == 0 else ()
            chips = []
            for i, value in enumerate(row):
                count = int(value)
                if count <= 0:
                    continue  # padding
                label = labels[i] if i < len(labels) else str(i)
                background = colours[count]
                chips.append(
                    f'<span style="background-color:{background.name()};color:{theme.text_on(background)}">'
                    f"&nbsp;{html.escape(label.strip() or chr(0x2423))}<sub>{count}</sub>&nbsp;</span>")
            paragraphs.append(f'<p style="line-height:150%">{" ".join(chips)}</p>')
        self.text.setHtml(f'<div style="font-size:10pt">{"".join(paragraphs)}</div>')
        swatches = " ".join(
            f'<span style="background-color:{c.name()};color:{theme.text_on(c)}">&nbsp;{s}&nbsp;</span>'
            for s, c in colours.items())
        self.legend.setText(swatches)
        self.summary.setText(f"mean {used.mean():.2f} \u00b7 {used.size} tokens")

    def clear(self) -> None:
        self.steps = None
        self.text.setHtml("")
        self.summary.setText("")
        self.legend.setText("")
