"""What the Compress section shows: the comparison table, accuracy against latency with the Pareto
front, and the live plots of a pruning or distillation job.

The views only draw: the panel (:mod:`effstudio.gui.panels.compress_panel`) keeps the measured rows
and says what each variant is called.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import QHBoxLayout, QHeaderView, QTableWidget, QVBoxLayout, QWidget

from effstudio.compress.compare import pareto_indices
from effstudio.compress.events import (
    CompareRowEvent,
    DistillEvalEvent,
    DistillStepEvent,
    PruneStepEvent,
    ResultEvent,
)
from effstudio.compress.export import PARITY_LIMIT, parity_text
from effstudio.engine.timing import BUSY_SPREAD
from effstudio.gui import theme
from effstudio.gui.metrics import DASH
from effstudio.gui.plots.scaling import LogAxis
from effstudio.gui.tables import SortItem, fill_table, fixed_text, read_only_rows

COLUMNS = ("Variant", "Params", "Size", "Accuracy", "b1 p50", "b1 p95", "b32 p50", "b32 p95", "Peak MB",
           "ONNX check")
COLUMN_TIPS = ("What made the variant; the file is in the tooltip", "Parameters (quantized weights included)",
               "File size on disk", "Accuracy on the validation split (%)",
               "Median latency of one sequence (ms); every variant is timed on the same length, alternately",
               "95th percentile latency of one sequence (ms), and the spread p95/p50 (x); a spread above "
               f"{BUSY_SPREAD:g}x means the machine was too busy for the comparison to hold",
               "Median latency of a batch of 32 (ms)", "95th percentile latency of a batch of 32 (ms) and its spread",
               "Peak memory of the tensors a forward pass of the batch of 32 allocates, weights excluded (MB); "
               "a dash says in its tooltip why there is no figure",
               "ONNX files: the largest absolute difference of the logits against PyTorch, from the export's check")
FRONT_COLOUR = theme.ORANGE
POINT_COLOUR = theme.BLUE


def file_size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n}"


def percent(fraction: float | None, digits: int = 1) -> str:
    """An accuracy as the rest of the window shows it: a percentage ("87.5%"), a dash when missing."""
    return fixed_text(None if fraction is None else 100 * fraction, digits) + ("%" if fraction is not None else "")


def spread_text(p95: float | None, p50: float | None, digits: int) -> str:
    """A p95 with its spread p95/p50: "12.4 (x1.3)"."""
    if p95 is None or not p50:
        return fixed_text(p95, digits)
    return f"{fixed_text(p95, digits)} (\u00d7{p95 / p50:.1f})"


def describe_result(event: ResultEvent) -> str:
    """A finished operation in one line: its file, parameters and accuracy, and the check it passed."""
    acc = f"accuracy {percent(event.accuracy)} (was {percent(event.baseline_accuracy)})"
    extra = ""
    if "max_abs_diff" in event.details:
        diff = event.details["max_abs_diff"]
        extra = (f"; ONNX check {'passed' if diff <= PARITY_LIMIT else 'FAILED'}: max |\u0394| vs PyTorch "
                 f"{diff:.1e}")
    elif "sparsity" in event.details:
        extra = f"; sparsity {event.details['sparsity']:.2f}"
    return f"Wrote {Path(event.path).name}: {event.params:,} parameters, {acc}{extra}."


def _styled(widget: pg.PlotWidget, title: str, x_label: str, y_label: str) -> pg.PlotWidget:
    """``widget`` in the theme's plot style, its values unscaled (no "x0.001" on the axes)."""
    theme.style_plot(widget.getPlotItem(), title=title, bottom=x_label, left=y_label, si_prefix=False,
                     label_colour=theme.SECONDARY)
    widget.setMinimumHeight(180)
    return widget


def _plot(title: str, x_label: str, y_label: str, parent: QWidget) -> pg.PlotWidget:
    return _styled(pg.PlotWidget(parent, background=theme.SURFACE), title, x_label, y_label)


class CompareTable(QTableWidget):
    """One row per measured variant: the Pareto front in bold, a failed measurement in red; every column sorts.

    The first cell of a row holds the variant's path (``Qt.UserRole``).
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(0, len(COLUMNS), parent)
        self.setObjectName("compareTable")
        self.setHorizontalHeaderLabels(list(COLUMNS))
        for column, tip in enumerate(COLUMN_TIPS):
            self.horizontalHeaderItem(column).setToolTip(tip)
        read_only_rows(self)
        header = self.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(60)
        self.setSortingEnabled(True)

    def show_rows(self, rows: list[CompareRowEvent], names: list[str]) -> None:
        """Show ``rows``, each called by its entry of ``names`` ("original", "heads 50%", ...)."""
        front = set(pareto_indices(rows))
        bold = QFont()
        bold.setBold(True)
        table = []
        for r, (row, name) in enumerate(zip(rows, names, strict=True)):
            check = None if row.max_abs_diff is None else f"{row.max_abs_diff:.1e}"
            numbers = ((f"{row.params:,}", row.params), (file_size(row.file_bytes), row.file_bytes),
                       (percent(row.accuracy), row.accuracy), (fixed_text(row.latency_ms_b1), row.latency_ms_b1),
                       (spread_text(row.latency_p95_ms_b1, row.latency_ms_b1, 2), row.latency_p95_ms_b1),
                       (fixed_text(row.latency_ms_b32, 1), row.latency_ms_b32),
                       (spread_text(row.latency_p95_ms_b32, row.latency_ms_b32, 1), row.latency_p95_ms_b32),
                       (fixed_text(row.peak_mb, 2), row.peak_mb), (check or DASH, row.max_abs_diff))
            cells = [SortItem(name, row.name),
                     *(SortItem(text, value, align_right=value is not None) for text, value in numbers)]
            cells[0].setData(Qt.ItemDataRole.UserRole, row.path)
            cells[0].setToolTip(f"{row.path}\n{row.error}" if row.error else row.path)
            self._explain(cells, row)
            for cell in cells:
                if r in front:
                    cell.setFont(bold)
                if row.error:
                    cell.setForeground(QColor(theme.ERROR))
            table.append(cells)
        fill_table(self, table)

    @staticmethod
    def _explain(cells: list[SortItem], row: CompareRowEvent) -> None:
        """Tooltips that say what a figure is, or why it is missing."""
        if row.params_note:
            cells[COLUMNS.index("Params")].setToolTip(row.params_note)
        if "accuracy" in row.reused:
            cells[COLUMNS.index("Accuracy")].setToolTip("Measured earlier on this unchanged file (same size and "
                                                        "modification time): not evaluated again")
        if row.length is not None:
            for column in ("b1 p50", "b1 p95", "b32 p50", "b32 p95"):
                cells[COLUMNS.index(column)].setToolTip(f"Timed at {row.length} tokens, alternately with the other "
                                                        "variants")
        if row.peak_mb_note:
            cells[COLUMNS.index("Peak MB")].setToolTip(row.peak_mb_note)
        check = cells[COLUMNS.index("ONNX check")]
        if row.max_abs_diff is not None:
            check.setToolTip(parity_text(row.max_abs_diff))
            if row.max_abs_diff > PARITY_LIMIT:
                check.setForeground(QColor(theme.ERROR))
        elif row.path.lower().endswith(".onnx"):
            check.setToolTip("Not checked in this window: export with the check on to compare it with PyTorch")
        for column, p95, p50 in (("b1 p95", row.latency_p95_ms_b1, row.latency_ms_b1),
                                 ("b32 p95", row.latency_p95_ms_b32, row.latency_ms_b32)):
            if p95 is not None and p50 and p95 / p50 > BUSY_SPREAD:
                cells[COLUMNS.index(column)].setForeground(QColor(theme.WARNING))

    def selected_paths(self) -> list[str]:
        rows = sorted({index.row() for index in self.selectedIndexes()})
        return [self.item(row, 0).data(Qt.ItemDataRole.UserRole) for row in rows]


class ParetoScatter(pg.PlotWidget):
    """Accuracy against batch-1 latency (log scale), the Pareto front joined in orange, every point named."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent=parent, background=theme.SURFACE, axisItems={"bottom": LogAxis("bottom")})
        _styled(self, "Accuracy against latency (batch 1); Pareto front in orange", "latency p50, batch 1 (ms)",
               "accuracy (%)")
        self.setMinimumHeight(230)

    def draw(self, rows: list[CompareRowEvent], names: list[str]) -> None:
        plot = self.getPlotItem()
        plot.clear()
        usable = [i for i, r in enumerate(rows) if r.accuracy is not None and r.latency_ms_b1]
        if not usable:
            return
        front = pareto_indices(rows)
        xs = np.log10([max(rows[i].latency_ms_b1, 1e-3) for i in usable])
        ys = np.array([100 * rows[i].accuracy for i in usable])
        others = [k for k, i in enumerate(usable) if i not in front]
        plot.addItem(pg.ScatterPlotItem(xs[others], ys[others], size=10, brush=theme.brush(POINT_COLOUR),
                                        pen=theme.pen(theme.SURFACE)))
        on_front = sorted((k for k, i in enumerate(usable) if i in front), key=lambda k: xs[k])
        plot.addItem(pg.PlotDataItem(xs[on_front], ys[on_front], pen=theme.pen(FRONT_COLOUR, 2),
                                     symbol="o", symbolSize=12, symbolBrush=FRONT_COLOUR,
                                     symbolPen=theme.pen(theme.SURFACE)))
        # labels alternate above and below their points (by latency), so neighbours do not overwrite each other
        for rank, k in enumerate(sorted(range(len(usable)), key=lambda k: xs[k])):
            i = usable[k]
            text = pg.TextItem(names[i], color=FRONT_COLOUR if i in front else theme.TEXT,
                               anchor=(0, 1.15) if rank % 2 == 0 else (0, -0.15))
            text.setFont(QFont(self.font().family(), 8))
            text.setPos(xs[k], ys[k])
            plot.addItem(text)
        spread_y = max(float(ys.max() - ys.min()), 2.0)
        spread_x = max(float(xs.max() - xs.min()), 0.3)
        plot.setXRange(float(xs.min()) - 0.1 * spread_x, float(xs.max()) + 0.45 * spread_x, padding=0)
        plot.setYRange(max(0.0, float(ys.min()) - 0.25 * spread_y), min(100.0, float(ys.max()) + 0.25 * spread_y),
                       padding=0)


class ProgressPlots(QWidget):
    """A pruning job's accuracy against sparsity; a distillation's student and teacher accuracy and its KL.
    Accuracy and sparsity are percentages, as everywhere in the window.

    ``points`` keeps what each curve shows ("sparsity", "student", "teacher", "kl": (x, y) pairs).
    """

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 6, 0, 0)
        sparsity = _plot("Pruning: accuracy against sparsity", "sparsity (%)", "accuracy (%)", self)
        distill = _plot("Distillation: validation accuracy", "step", "accuracy (%)", self)
        theme.plot_legend(distill.getPlotItem(), (-10, -10))  # bottom right, clear of the rising curve
        kl = _plot("Distillation: KL to the teacher", "step", "KL (x T\u00b2)", self)
        # percentages cannot leave 0..100: a single point must not stretch the axis to -0.3 or past 100
        sparsity.getPlotItem().setLimits(xMin=0, xMax=100, yMin=0, yMax=100)
        distill.getPlotItem().setLimits(yMin=0, yMax=100)
        self._curves = {
            "sparsity": sparsity.plot([], [], pen=theme.pen(theme.BLUE, 2), symbol="o", symbolBrush=theme.BLUE,
                                      symbolPen=None, symbolSize=7),
            "student": distill.plot([], [], pen=theme.pen(theme.BLUE, 2), symbol="o", symbolSize=6,
                                    symbolBrush=theme.BLUE, symbolPen=None, name="student"),
            "teacher": distill.plot([], [], pen=theme.pen(theme.ORANGE, 2, dashed=True),
                                    name="teacher"),
            "kl": kl.plot([], [], pen=theme.pen(theme.GREEN, 2)),
        }
        self.points: dict[str, list[tuple[float, float]]] = {name: [] for name in self._curves}
        layout.addWidget(sparsity, 1)
        row = QHBoxLayout()
        row.addWidget(distill, 1)
        row.addWidget(kl, 1)
        layout.addLayout(row, 1)

    def reset(self, operation: str) -> None:
        """Clear the curves of "prune" or "distill" for a new job."""
        for name in ("sparsity",) if operation == "prune" else ("student", "teacher", "kl"):
            self.points[name].clear()
            self._curves[name].setData([], [])

    def add(self, event: PruneStepEvent | DistillStepEvent | DistillEvalEvent) -> None:
        if isinstance(event, PruneStepEvent):
            self._extend("sparsity", 100 * event.sparsity, 100 * event.accuracy)
        elif isinstance(event, DistillStepEvent):  # redrawn every 5 steps: a distillation reports every step
            self._extend("kl", event.step, event.kl, draw=event.step % 5 == 0 or event.step == event.total_steps)
        else:
            self._extend("student", event.step, 100 * event.student_accuracy)
            self._extend("teacher", event.step, 100 * event.teacher_accuracy)

    def _extend(self, name: str, x: float, y: float, draw: bool = True) -> None:
        self.points[name].append((x, y))
        if draw:
            xs, ys = zip(*self.points[name], strict=True)
            self._curves[name].setData(list(xs), list(ys))
