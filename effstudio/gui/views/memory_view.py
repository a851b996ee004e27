"""Memory view: what Transformer-XL's memory of earlier segments is worth.

Left, the probe segment's next-token loss at each position, with the memory
of the segment before it and without (the same segment read alone): without
memory the first positions have almost no context and their loss is high; with
memory they see the end of the previous segment. Faint lines are the raw losses
of the one probe segment, bold ones a short moving average. Right, the mean of
both over the probes of the run so far, so the gap's growth shows as the model
learns to use its memory.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QLabel, QWidget

from effstudio.gui import theme
from effstudio.gui.views.base import ModelView, register_view

WINDOW = 5  # positions in the moving average
WITH, WITHOUT = theme.BLUE, theme.RED


def moving_average(values: np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Centred moving average of a 1-d series; the ends average over what they have."""
    if len(values) < 2:
        return values.astype(np.float64)
    kernel = np.ones(min(window, len(values)))
    sums = np.convolve(values, kernel, mode="same")
    counts = np.convolve(np.ones_like(values), kernel, mode="same")
    return sums / counts


@register_view("memory_loss")
class MemoryLossView(ModelView):
    title = "Memory"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.losses: np.ndarray | None = None
        self.history: list[tuple[float, float]] = []
        legend = QLabel(f'<span style="color:{WITH}">\u25ac with memory</span>&nbsp;&nbsp;'
                        f'<span style="color:{WITHOUT}">\u25ac without memory</span>', self)
        self.graphics = theme.plot_canvas(self)
        self.by_position = self.graphics.addPlot(title=None)
        theme.style_plot(self.by_position, bottom="position in segment", left="loss (nats)", mouse="")
        self.over_time = self.graphics.addPlot()
        theme.style_plot(self.over_time, bottom="probe", left="mean loss", mouse="")
        self.graphics.ci.layout.setColumnStretchFactor(0, 3)
        self.graphics.ci.layout.setColumnStretchFactor(1, 2)
        self.curves = {
            "with_raw": self.by_position.plot(pen=theme.pen(WITH, 1, alpha=70)),
            "without_raw": self.by_position.plot(pen=theme.pen(WITHOUT, 1, alpha=70)),
            "with": self.by_position.plot(pen=theme.pen(WITH, 2.2)),
            "without": self.by_position.plot(pen=theme.pen(WITHOUT, 2.2)),
            "with_history": self.over_time.plot(pen=theme.pen(WITH, 2), symbol="o", symbolSize=5,
                                                symbolBrush=WITH, symbolPen=None),
            "without_history": self.over_time.plot(pen=theme.pen(WITHOUT, 2), symbol="o", symbolSize=5,
                                                   symbolBrush=WITHOUT, symbolPen=None),
        }
        self.frame("Loss with and without memory", "Next-token loss on the probe segment, read after the segment "
                   "before it (with the memory) and alone (without). Memory matters most at the start of a segment.",
                   self.graphics, beside=(legend,), min_height=150)

    def set_arrays(self, arrays: dict[str, np.ndarray], tokens: tuple[str, ...]) -> None:
        losses = np.nan_to_num(np.asarray(arrays["memory_loss"], dtype=np.float64))
        if losses.ndim == 3:  # (B, 2, N - 1): the first example
            losses = losses[0]
        self.losses = losses
        with_memory, without = losses[0], losses[1]
        x = np.arange(1, len(with_memory) + 1)  # position t predicts token t (1-based: the first has no target)
        self.curves["with_raw"].setData(x, with_memory)
        self.curves["without_raw"].setData(x, without)
        self.curves["with"].setData(x, moving_average(with_memory))
        self.curves["without"].setData(x, moving_average(without))
        self.history.append((float(with_memory.mean()), float(without.mean())))
        probes = np.arange(1, len(self.history) + 1)
        history = np.array(self.history)
        self.curves["with_history"].setData(probes, history[:, 0])
        self.curves["without_history"].setData(probes, history[:, 1])
        gain = history[-1, 1] - history[-1, 0]
        self.summary.setText(f"with {history[-1, 0]:.2f} \u00b7 without {history[-1, 1]:.2f} \u00b7 "
                             f"memory saves {gain:.2f} nats/token")

    def clear(self) -> None:
        self.losses = None
        self.history = []
        for curve in self.curves.values():
            curve.setData([], [])
        self.summary.setText("")
