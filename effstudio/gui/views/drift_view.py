"""What a drift check found: the verdict, one bar per signal against its threshold, the signals' table,
and the model's pooled representations of the reference and the current data in two dimensions (PCA).

Signals have different scales (a population stability index, a divergence, a rate, a p-value), so a
bar is how far the signal is towards its threshold: its value over the threshold, or for a signal that
says drift BELOW its threshold (the MMD test's p-value) the threshold over its value. Past the dashed
line at 1 the signal says drift. Bars longer than RATIO_LIMIT are cut there and say so; hovering a bar
gives its figures.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import QHBoxLayout, QHeaderView, QLabel, QTableWidget, QVBoxLayout, QWidget

from effstudio.evaluate.results import DriftReport, DriftSignal
from effstudio.gui import theme
from effstudio.gui.tables import SortItem, fill_table, read_only_rows

RATIO_LIMIT = 4.0  # bars are drawn up to this many thresholds
REFERENCE_COLOUR, CURRENT_COLOUR = theme.BLUE, theme.ORANGE


WORDS = {"psi": "PSI", "js": "JS", "mmd": "MMD", "p": "p-", "value": "value"}


def signal_label(name: str) -> str:
    """"length_psi" -> "length PSI", "mmd_p_value" -> "MMD p-value"."""
    return " ".join(WORDS.get(word, word) for word in name.split("_")).replace("p- value", "p-value")


def drifts_below(signal: DriftSignal) -> bool:
    """Whether the signal says drift below its threshold (a p-value): its verdict disagrees with
    "above the threshold"."""
    return signal.value != signal.threshold and signal.drift != (signal.value > signal.threshold)


def ratio(signal: DriftSignal) -> float:
    """How far the signal is towards drift, in thresholds (1 is the threshold)."""
    high, low = (signal.threshold, signal.value) if drifts_below(signal) else (signal.value, signal.threshold)
    if low > 0:
        return high / low
    return RATIO_LIMIT if high > 0 else 0.0


def verdict_text(drift: bool) -> str:
    return "drift" if drift else "no drift"


def describe(signal: DriftSignal) -> str:
    side = "below" if drifts_below(signal) else "above"
    return (f"{signal_label(signal.name)}: {signal.value:.4g} (drift {side} {signal.threshold:.4g}) \u2192 "
            f"{verdict_text(signal.drift)}")


class SignalBars(pg.PlotWidget):
    """Horizontal bars, one per signal, red where it says drift; the threshold a dashed line at 1."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent, background=theme.SURFACE)
        self.plot_item = theme.style_plot(self.getPlotItem(), title="Signals against their thresholds",
                                          bottom="towards the threshold (drift past 1)", grid="x", mouse="",
                                          si_prefix=False, label_colour=theme.SECONDARY)
        self.plot_item.invertY(True)
        self.hover = pg.ScatterPlotItem(size=22, pen=None, brush=theme.brush(theme.SURFACE, 0), hoverable=True,
                                        tip=lambda x, y, data: data)
        self.hover.setZValue(20)
        self.plot_item.addItem(self.hover)
        self.plot_item.addItem(pg.InfiniteLine(1.0, angle=90, pen=theme.pen(theme.TEXT, 1.2, dashed=True)))
        self._items: list[pg.GraphicsObject] = []
        self.signals: list[DriftSignal] = []
        self.setMinimumHeight(180)

    def show_signals(self, signals: list[DriftSignal]) -> None:
        for item in self._items:
            self.plot_item.removeItem(item)
        self._items = []
        self.signals = list(signals)
        ratios = [min(ratio(s), RATIO_LIMIT) for s in signals]
        positions = list(range(len(signals)))
        brushes = [theme.brush(theme.ERROR if s.drift else theme.OK, 200) for s in signals]
        bars = pg.BarGraphItem(x0=0, y=positions, height=0.6, width=ratios, brushes=brushes, pen=None)
        self.plot_item.addItem(bars)
        self._items.append(bars)
        font = QFont()
        font.setPointSize(8)
        for position, signal, shown in zip(positions, signals, ratios, strict=True):
            cut = " \u2192" if ratio(signal) > RATIO_LIMIT else ""
            compared = "vs" if drifts_below(signal) else "/"
            label = pg.TextItem(f"{signal.value:.3g} {compared} {signal.threshold:.3g}{cut}", color=theme.TEXT,
                                anchor=(0, 0.5))
            label.setFont(font)
            label.setPos(shown + 0.05, position)
            self.plot_item.addItem(label)
            self._items.append(label)
        self.hover.setData([{"pos": (shown, position), "data": describe(signal)}
                            for position, signal, shown in zip(positions, signals, ratios, strict=True)])
        self.plot_item.getAxis("left").setTicks([[(p, signal_label(s.name))
                                                  for p, s in zip(positions, signals, strict=True)]])
        # room right of the longest bar for its figures
        self.plot_item.setRange(xRange=(0, RATIO_LIMIT * 1.45), yRange=(-0.6, max(len(signals), 1) - 0.4), padding=0)


class ProjectionPlot(pg.PlotWidget):
    """The pooled representations of reference and current examples, projected on their first two
    principal components."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent, background=theme.SURFACE)
        self.plot_item = theme.style_plot(self.getPlotItem(), title="Representations (PCA)",
                                          bottom="first component", left="second component", si_prefix=False,
                                          label_colour=theme.SECONDARY)
        theme.plot_legend(self.plot_item, (-8, 8))
        self.reference = pg.ScatterPlotItem(size=6, pen=None, brush=theme.brush(REFERENCE_COLOUR, 120),
                                            name="reference")
        self.current = pg.ScatterPlotItem(size=6, pen=None, brush=theme.brush(CURRENT_COLOUR, 120), name="current")
        self.plot_item.addItem(self.reference)
        self.plot_item.addItem(self.current)
        self.setMinimumHeight(220)

    def show_points(self, reference: list[tuple[float, float]], current: list[tuple[float, float]]) -> None:
        for item, points in ((self.reference, reference), (self.current, current)):
            xy = np.asarray(points, dtype=np.float64).reshape(-1, 2)
            item.setData(xy[:, 0], xy[:, 1])
        self.plot_item.enableAutoRange()


class DriftResults(QWidget):
    """The verdict line, the bars beside the projection, and the table of signals."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.verdict = QLabel(self)
        self.verdict.setObjectName("driftVerdict")
        self.verdict.setTextFormat(Qt.TextFormat.RichText)
        self.bars = SignalBars(self)
        self.projection = ProjectionPlot(self)
        self.table = QTableWidget(0, 4, self)
        self.table.setObjectName("driftSignals")
        self.table.setHorizontalHeaderLabels(["Signal", "Value", "Drift when", "Verdict"])
        read_only_rows(self.table)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.table.setMaximumHeight(190)
        plots = QHBoxLayout()
        plots.addWidget(self.bars, 3)
        plots.addWidget(self.projection, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.verdict)
        layout.addLayout(plots, 1)
        layout.addWidget(self.table)

    def show_report(self, report: DriftReport) -> None:
        colour = theme.ERROR if report.drift else theme.OK
        flagged = [signal_label(s.name) for s in report.signals if s.drift]
        said = f": {', '.join(flagged)}" if flagged else ""
        self.verdict.setText(f"<span style='color:{colour};font-size:14pt;font-weight:600'>"
                             f"{verdict_text(report.drift).capitalize()}</span>"
                             f"<span style='color:{theme.MUTED}'> &nbsp; {len(flagged)} of {len(report.signals)} "
                             f"signals{said} \u00b7 MMD {report.mmd:.4g}, permutation p = {report.p_value:.3g}</span>")
        self.bars.show_signals(report.signals)
        self.projection.show_points(report.reference_xy, report.current_xy)
        rows = []
        for signal in report.signals:
            verdict = SortItem(verdict_text(signal.drift), signal.drift)
            verdict.setForeground(QColor(theme.ERROR if signal.drift else theme.OK))
            side = "< " if drifts_below(signal) else "> "
            name = SortItem(signal_label(signal.name), signal.name)
            name.setToolTip(signal.name)
            rows.append([name, SortItem(f"{signal.value:.4g}", signal.value, True),
                         SortItem(f"{side}{signal.threshold:.4g}", signal.threshold, True), verdict])
        fill_table(self.table, rows)

    def verdicts(self) -> dict[str, str]:
        """Signal name (as the report names it) -> the verdict its row says."""
        return {self.table.item(r, 0).toolTip(): self.table.item(r, 3).text() for r in range(self.table.rowCount())}

    def clear(self) -> None:
        self.verdict.setText("")
        self.bars.show_signals([])
        self.projection.show_points([], [])
        self.table.setRowCount(0)
