"""Expert-load view: the share of the probe's tokens each expert was chosen for, per layer.

A layers x experts heatmap (rows: layers, or the steps of a shared block), each
cell labelled with its share; the colour bar starts at 0 and the even share
(1 / experts) is named in the header, so a lopsided router stands out.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from effstudio.gui import theme
from effstudio.gui.plots.heatmap import weights_heatmap
from effstudio.gui.views.base import ModelView, register_view

LABEL_LIMIT = 160  # cells; more than that and the numbers would crowd the heatmap


@register_view("expert_load")
class ExpertLoadView(ModelView):
    title = "Expert load"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.load: np.ndarray | None = None
        self.graphics = theme.plot_canvas(self)
        self.plot, self.image, self.colorbar = weights_heatmap(self.graphics, "expert", "layer", tick_points=8,
                                                               bar_width=12, square=False, bar_label=None)
        self.plot.setMouseEnabled(x=False, y=False)
        self.labels: list[pg.TextItem] = []
        self.frame("Expert load", "Share of the probe's tokens that chose each expert, per layer (per step for a "
                   "shared block). The load-balancing loss pulls every cell towards the even share.",
                   self.graphics, min_height=130)

    def set_arrays(self, arrays: dict[str, np.ndarray], tokens: tuple[str, ...]) -> None:
        load = np.asarray(arrays["expert_load"], dtype=np.float32)
        if load.ndim == 1:
            load = load[None, :]
        load = np.nan_to_num(load)
        self.load = load
        layers, experts = load.shape
        percent = 100.0 * load
        top = max(float(percent.max()) if percent.size else 0.0, 200.0 / max(experts, 1), 1.0)
        self.image.setImage(percent, autoLevels=False, levels=(0.0, top))
        self.colorbar.setLevels((0.0, top))
        self.plot.setRange(xRange=(0, experts), yRange=(0, layers), padding=0.02)
        self.plot.getAxis("bottom").setTicks([[(e + 0.5, str(e + 1)) for e in range(experts)]])
        self.plot.getAxis("left").setTicks([[(row + 0.5, str(row + 1)) for row in range(layers)]])
        self._label_cells(percent, top)
        busiest = float(load.max()) * experts if load.size else 0.0
        self.summary.setText(f"even share {100 / experts:.0f}% \u00b7 busiest expert {busiest:.1f}\u00d7 even")

    def _label_cells(self, percent: np.ndarray, top: float) -> None:
        for item in self.labels:
            self.plot.removeItem(item)
        self.labels = []
        if percent.size > LABEL_LIMIT:
            return
        for (row, col), value in np.ndenumerate(percent):
            colour = theme.ON_DARK if value < 0.6 * top else theme.TEXT  # viridis is dark at the low end
            item = pg.TextItem(f"{value:.0f}%", color=colour, anchor=(0.5, 0.5))
            item.setPos(col + 0.5, row + 0.5)
            self.plot.addItem(item)
            self.labels.append(item)

    def clear(self) -> None:
        self.load = None
        self.image.clear()
        self._label_cells(np.zeros((0, 0)), 1.0)
        self.summary.setText("")
