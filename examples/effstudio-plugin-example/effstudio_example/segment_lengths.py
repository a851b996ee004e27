"""A model view for the ``token_segments`` array (hierarchical model): real tokens per segment.

``token_segments`` is (B, N): each token's segment, -1 for padding. The view draws
one bar per segment of the probe document (the first example) and names the
longest in its summary.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from effstudio.gui import theme
from effstudio.gui.views.base import ModelView


def segment_lengths(segments: np.ndarray) -> np.ndarray:
    """Real tokens in each segment, from each token's segment (-1: padding); shape (segments,)."""
    segments = np.asarray(segments).astype(int)
    if segments.ndim == 2:  # (B, N): the first example
        segments = segments[0]
    real = segments[segments >= 0]
    return np.bincount(real) if real.size else np.zeros(0, dtype=int)


class SegmentLengthView(ModelView):
    title = "Segment lengths"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.lengths = np.zeros(0, dtype=int)
        self.plot = pg.PlotWidget(self, background="w")
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.setLabel("bottom", "segment")
        self.plot.setLabel("left", "tokens")
        self.bars = pg.BarGraphItem(x=[], height=[], width=0.8, brush=theme.BLUE)
        self.plot.addItem(self.bars)
        self.frame("Segment lengths", "Real tokens in each segment of the probe document (padding not counted).",
                   self.plot, min_height=120)

    def set_arrays(self, arrays: dict[str, np.ndarray], tokens: tuple[str, ...]) -> None:
        self.lengths = segment_lengths(arrays["token_segments"])
        numbers = np.arange(1, len(self.lengths) + 1)
        self.bars.setOpts(x=numbers, height=self.lengths, width=0.8)
        self.plot.getAxis("bottom").setTicks([[(int(i), str(i)) for i in numbers]])  # segments, not fractions
        if len(self.lengths):
            longest = int(np.argmax(self.lengths))
            self.summary.setText(f"{len(self.lengths)} segments \u00b7 longest: segment {longest + 1}, "
                                 f"{self.lengths[longest]} tokens")
        else:
            self.summary.setText("no segments")

    def clear(self) -> None:
        self.lengths = np.zeros(0, dtype=int)
        self.bars.setOpts(x=[], height=[])
        self.summary.setText("")
