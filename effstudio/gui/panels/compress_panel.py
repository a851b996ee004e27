"""Compress section: prune, quantize, distill and export a checkpoint, then compare the variants.

Every operation is a core generator (effstudio.compress) run in a
:class:`~effstudio.gui.job.Job`; the panel only turns its controls into
settings and events into plots and rows. A finished job's file joins the
variants list with the source checkpoint, and both are measured (accuracy,
latency at batch 1 and 32, size, memory) by the same ``compare`` job as
``effstudio compare``. The comparison table exports as CSV or Markdown; the
scatter plots accuracy against batch-1 latency with the Pareto front drawn.

A run config's ``[[compress]]`` steps run here too, after the window trains
it (:meth:`CompressPanel.start_steps`): one job for the whole chain, shown
step by step, its outputs measured into the table like results made by hand.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from effstudio.compress.compare import compare_job, pareto_indices, rows_to_csv, rows_to_markdown
from effstudio.compress.distill import DistillSettings, distill_job
from effstudio.compress.events import (
    CompareRowEvent,
    DistillEvalEvent,
    DistillStepEvent,
    PruneStepEvent,
    ResultEvent,
)
from effstudio.compress.export import export_job
from effstudio.compress.prune import PruneSettings, prune_job
from effstudio.compress.quantize import quantize_job
from effstudio.compress.steps import CompressDoneEvent, CompressStepEvent
from effstudio.engine.events import JobControl, LogEvent
from effstudio.engine.run_plan import IMPORTANCE, PRUNE_METHODS
from effstudio.engine.run_plan import QUANTIZE_METHODS as QUANT_METHODS
from effstudio.gui import theme
from effstudio.gui.icons import action_icon, icon
from effstudio.gui.job import Job
from effstudio.gui.metrics import DASH
from effstudio.gui.panels.base import Panel
from effstudio.gui.plots.scaling import LogAxis
from effstudio.registry import Registry

JobFn = Callable[[JobControl], Iterator[Any]]
COLUMNS = ("Variant", "Params", "Size", "Accuracy", "b1 p50", "b1 p95", "b32 p50", "b32 p95", "Peak MB")
COLUMN_TIPS = ("What made the variant; the file is in the tooltip", "Parameters (quantized weights included)",
               "File size on disk", "Accuracy on the validation split",
               "Median latency of one sequence (ms)", "95th percentile latency of one sequence (ms)",
               "Median latency of a batch of 32 (ms)", "95th percentile latency of a batch of 32 (ms)",
               "Peak resident memory above the baseline while running the batch of 32 (MB)")
SUFFIX = {"onnx-int8": ".onnx", "onnx-int8-static": ".onnx"}
FRONT_COLOUR = theme.ORANGE
POINT_COLOUR = theme.BLUE


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n}"


def _num(value: float | None, digits: int = 2) -> str:
    return DASH if value is None or not math.isfinite(value) else f"{value:,.{digits}f}"


class _Item(QTableWidgetItem):
    def __init__(self, text: str, key: Any = None):
        super().__init__(text)
        self.key = (1, 0) if key is None else (0, key)
        if key is not None and not isinstance(key, str):
            self.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)

    def __lt__(self, other: QTableWidgetItem) -> bool:
        return self.key < other.key if isinstance(other, _Item) else super().__lt__(other)


def _plot(title: str, x_label: str, y_label: str, parent: QWidget, x_log: bool = False) -> pg.PlotWidget:
    axes = {"bottom": LogAxis("bottom")} if x_log else {}
    widget = pg.PlotWidget(parent=parent, background="w", axisItems=axes)
    item = widget.getPlotItem()
    item.setTitle(f"<span style='color:{theme.TEXT}; font-size:10pt'>{title}</span>")
    item.setLabel("bottom", x_label, color="#4b5563")
    item.setLabel("left", y_label, color="#4b5563")
    item.showGrid(x=True, y=True, alpha=0.15)
    for side in ("bottom", "left"):
        item.getAxis(side).enableAutoSIPrefix(False)
        item.getAxis(side).setPen(pg.mkPen("#9ca3af"))
        item.getAxis(side).setTextPen(pg.mkPen("#4b5563"))
    widget.setMinimumHeight(180)
    return widget


class CompressPanel(Panel):
    """Operations on the left (tabs), comparison and live plots on the right."""

    message = Signal(str)
    fine_tune_requested = Signal(str)  # a result checkpoint to train further in the Train section
    job_finished = Signal(str)
    steps_done = Signal(object)  # the CompressDoneEvent of a run config's steps (start_steps)
    steps_log = Signal(str, str)  # level, message: what the steps report (a failure, a run-store warning)

    def __init__(self, registry: Registry, parent: QWidget | None = None):
        super().__init__("Compress", "Prune, quantize, distill and export a checkpoint. Every result is an ordinary "
                         "checkpoint or ONNX file; it is measured beside the original on the same validation "
                         "split: size, accuracy, latency and memory.", scroll=False, parent=parent)
        self.registry = registry
        self.job: Job | None = None
        self.job_kind = ""
        self.rows: dict[str, CompareRowEvent] = {}  # by path, in insertion order
        self.variants: list[Path] = []
        self.labels: dict[str, str] = {}  # path -> what made it ("original", "heads 50%", ...)
        self.last_result: ResultEvent | None = None
        self.trainable_result: Path | None = None  # the newest result checkpoint (not an ONNX file)
        self.error: str | None = None
        self._pending_steps: tuple[Path, JobFn] | None = None  # steps that wait for the running job
        self._step: CompressStepEvent | None = None  # the step of a chain that runs now
        self._steps_done: CompressDoneEvent | None = None
        self._steps_summary = ""  # how the last chain went, kept in view while its outputs are measured

        columns = QHBoxLayout()
        columns.setSpacing(14)
        columns.addWidget(self._make_controls())
        columns.addWidget(self._make_results(), 1)
        self.body.addLayout(columns, 1)
        self._update_buttons()

    # ---------------------------------------------------------------- controls
    def _make_controls(self) -> QWidget:
        column = QWidget(self)
        layout = QVBoxLayout(column)
        layout.setContentsMargins(0, 0, 4, 0)
        layout.setSpacing(10)

        source = QGroupBox("Checkpoint", column)
        source_layout = QVBoxLayout(source)
        source_layout.setSpacing(6)
        row = QHBoxLayout()
        self.source_edit = QLineEdit(source)
        self.source_edit.setObjectName("compressSource")
        self.source_edit.setPlaceholderText("a .safetensors checkpoint")
        self.source_edit.textChanged.connect(lambda _t: self._source_changed())
        browse = QPushButton("\u2026", source)
        browse.setFixedWidth(32)
        browse.setToolTip("Choose a checkpoint")
        browse.clicked.connect(self._browse_source)
        row.addWidget(self.source_edit, 1)
        row.addWidget(browse)
        source_layout.addLayout(row)
        self.source_info = QLabel("Train a model or open a checkpoint to start.", source)
        self.source_info.setObjectName("description")
        self.source_info.setWordWrap(True)
        source_layout.addWidget(self.source_info)
        layout.addWidget(source)

        self.tabs = QTabWidget(column)
        self.tabs.setObjectName("compressTabs")
        self.tabs.addTab(self._prune_tab(), "Prune")
        self.tabs.addTab(self._quantize_tab(), "Quantize")
        self.tabs.addTab(self._distill_tab(), "Distill")
        self.tabs.addTab(self._export_tab(), "Export")
        layout.addWidget(self.tabs)

        run_group = QGroupBox("Run", column)
        run_layout = QVBoxLayout(run_group)
        buttons = QHBoxLayout()
        self.run_button = QPushButton(icon("start", "#ffffff"), "Run", run_group)
        self.run_button.setObjectName("primary")
        self.run_button.setToolTip("Run the operation of the open tab, then measure the result")
        self.stop_button = QPushButton(action_icon("stop"), "Stop", run_group)
        for button in (self.run_button, self.stop_button):
            button.setMinimumHeight(30)
            button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            buttons.addWidget(button)
        self.run_button.clicked.connect(self.start_current)
        self.stop_button.clicked.connect(self.stop)
        run_layout.addLayout(buttons)
        self.progress = QProgressBar(run_group)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("idle")
        run_layout.addWidget(self.progress)
        self.status_label = QLabel("", run_group)
        self.status_label.setObjectName("description")
        self.status_label.setWordWrap(True)
        run_layout.addWidget(self.status_label)
        self.fine_tune_button = QPushButton(icon("start"), "Fine-tune the result", run_group)
        self.fine_tune_button.setToolTip("Train the newest result further: a new run that starts from its weights, "
                                         "with its own settings")
        self.fine_tune_button.setEnabled(False)
        self.fine_tune_button.clicked.connect(
            lambda: self.trainable_result and self.fine_tune_requested.emit(str(self.trainable_result)))
        run_layout.addWidget(self.fine_tune_button)
        self.problem = QLabel("", run_group)
        self.problem.setObjectName("compressProblem")
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet(f"color: {theme.ERROR};")
        self.problem.hide()
        run_layout.addWidget(self.problem)
        layout.addWidget(run_group)
        layout.addStretch(1)

        scroll = QScrollArea(self)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(column)
        scroll.setFixedWidth(290)
        return scroll

    def _form(self, parent: QWidget) -> QFormLayout:
        form = QFormLayout(parent)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.setHorizontalSpacing(10)
        form.setVerticalSpacing(6)
        return form

    def _combo(self, items: tuple[str, ...], parent: QWidget, tip: str) -> QComboBox:
        box = QComboBox(parent)
        box.addItems(list(items))
        box.setToolTip(tip)
        box.currentTextChanged.connect(lambda _t: self._suggest_outputs())
        return box

    def _out_edit(self, parent: QWidget) -> QLineEdit:
        edit = QLineEdit(parent)
        edit.setPlaceholderText("output file")
        edit.setToolTip("Where the result is written (suggested beside the checkpoint)")
        return edit

    def _prune_tab(self) -> QWidget:
        tab = QWidget(self)
        form = self._form(tab)
        self.prune_method = self._combo(PRUNE_METHODS, tab, "magnitude: smallest weights per layer; "
                                        "global-magnitude: over all layers; heads / neurons / structured: "
                                        "cut whole heads and feed-forward neurons (a smaller, faster model)")
        self.prune_amount = QDoubleSpinBox(tab)
        self.prune_amount.setRange(0.05, 0.95)
        self.prune_amount.setSingleStep(0.05)
        self.prune_amount.setValue(0.5)
        self.prune_amount.setToolTip("Fraction of weights (or heads and neurons) to remove")
        self.prune_amount.valueChanged.connect(lambda _v: self._suggest_outputs())
        self.prune_importance = self._combo(IMPORTANCE, tab, "How heads and neurons are ranked: weight "
                                            "magnitude, or |weight x gradient| over a few training batches")
        self.prune_finetune = QSpinBox(tab)
        self.prune_finetune.setRange(0, 100_000)
        self.prune_finetune.setToolTip("Fine-tuning steps in all, spread over 4 pruning steps on a cubic "
                                       "schedule; 0 prunes once")
        self.prune_out = self._out_edit(tab)
        form.addRow("Method", self.prune_method)
        form.addRow("Amount", self.prune_amount)
        form.addRow("Importance", self.prune_importance)
        form.addRow("Fine-tune steps", self.prune_finetune)
        form.addRow("Output", self.prune_out)
        return tab

    def _quantize_tab(self) -> QWidget:
        tab = QWidget(self)
        form = self._form(tab)
        self.quant_method = self._combo(QUANT_METHODS, tab, "dynamic-int8: torch int8 Linear layers; fp16/bf16: "
                                        "half-precision weights; onnx-int8(-static): onnxruntime int8, static "
                                        "calibrated on training batches")
        self.quant_out = self._out_edit(tab)
        form.addRow("Method", self.quant_method)
        form.addRow("Output", self.quant_out)
        return tab

    def _distill_tab(self) -> QWidget:
        tab = QWidget(self)
        form = self._form(tab)
        self.student_model = QComboBox(tab)
        self.student_model.addItems(self.registry.names("models"))
        if "transformer" in self.registry.names("models"):
            self.student_model.setCurrentText("transformer")
        self.student_model.setToolTip("Model type of the student")
        self.student_attention = QComboBox(tab)
        self.student_attention.addItems(self.registry.names("attention"))
        self.student_attention.setCurrentText("sdpa")
        self.student_width = QSpinBox(tab)
        self.student_width.setRange(8, 4096)
        self.student_width.setValue(64)
        self.student_width.setToolTip("Student model width (d_model)")
        self.student_heads = QSpinBox(tab)
        self.student_heads.setRange(1, 64)
        self.student_heads.setValue(2)
        self.student_layers = QSpinBox(tab)
        self.student_layers.setRange(1, 48)
        self.student_layers.setValue(2)
        self.distill_steps = QSpinBox(tab)
        self.distill_steps.setRange(1, 1_000_000)
        self.distill_steps.setValue(200)
        self.distill_temperature = QDoubleSpinBox(tab)
        self.distill_temperature.setRange(0.1, 20.0)
        self.distill_temperature.setValue(2.0)
        self.distill_alpha = QDoubleSpinBox(tab)
        self.distill_alpha.setRange(0.0, 1.0)
        self.distill_alpha.setSingleStep(0.1)
        self.distill_alpha.setValue(0.5)
        self.distill_alpha.setToolTip("Weight of the KL term; the task loss gets 1 - alpha")
        self.distill_out = self._out_edit(tab)
        teacher = QLabel("The checkpoint above: after a run in this window, the model just trained; "
                         "or any checkpoint you open.", tab)
        teacher.setObjectName("description")
        teacher.setWordWrap(True)
        form.addRow("Teacher", teacher)
        form.addRow("Student", self.student_model)
        form.addRow("Attention", self.student_attention)
        form.addRow("Width", self.student_width)
        form.addRow("Heads", self.student_heads)
        form.addRow("Layers", self.student_layers)
        form.addRow("Steps", self.distill_steps)
        form.addRow("Temperature", self.distill_temperature)
        form.addRow("Alpha", self.distill_alpha)
        form.addRow("Output", self.distill_out)
        return tab

    def _export_tab(self) -> QWidget:
        tab = QWidget(self)
        form = self._form(tab)
        self.export_out = self._out_edit(tab)
        note = QLabel("ONNX with dynamic batch and sequence axes; the export is checked against PyTorch "
                      "(largest absolute difference) and timed in onnxruntime.", tab)
        note.setObjectName("description")
        note.setWordWrap(True)
        form.addRow(note)
        form.addRow("Output", self.export_out)
        return tab

    # ----------------------------------------------------------------- results
    def _make_results(self) -> QWidget:
        self.result_tabs = QTabWidget(self)
        self.result_tabs.setObjectName("compressResults")

        compare = QWidget(self)
        compare_layout = QVBoxLayout(compare)
        compare_layout.setContentsMargins(0, 6, 0, 0)
        bar = QHBoxLayout()
        self.add_button = QPushButton(action_icon("open"), "Add files\u2026", compare)
        self.add_button.setToolTip("Add checkpoints or ONNX files of the same task to the comparison")
        self.add_button.clicked.connect(self._add_files_dialog)
        self.measure_button = QPushButton("Measure", compare)
        self.measure_button.setToolTip("Measure the variants that have no figures yet")
        self.measure_button.clicked.connect(self.measure_pending)
        self.remove_button = QPushButton("Remove", compare)
        self.remove_button.clicked.connect(self._remove_selected)
        self.csv_button = QPushButton(action_icon("save"), "CSV\u2026", compare)
        self.csv_button.clicked.connect(lambda: self._export_dialog("csv"))
        self.markdown_button = QPushButton(action_icon("save"), "Markdown\u2026", compare)
        self.markdown_button.clicked.connect(lambda: self._export_dialog("md"))
        for button in (self.add_button, self.measure_button, self.remove_button):
            bar.addWidget(button)
        bar.addStretch(1)
        bar.addWidget(self.csv_button)
        bar.addWidget(self.markdown_button)
        compare_layout.addLayout(bar)

        self.table = QTableWidget(0, len(COLUMNS), compare)
        self.table.setObjectName("compareTable")
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        for column, tip in enumerate(COLUMN_TIPS):
            self.table.horizontalHeaderItem(column).setToolTip(tip)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(60)
        self.table.setWordWrap(False)
        self.table.setSortingEnabled(True)

        self.scatter = _plot("Accuracy against latency (batch 1); Pareto front in orange", "latency p50, batch 1 (ms)",
                             "accuracy", compare, x_log=True)
        self.scatter.setMinimumHeight(230)
        splitter = QSplitter(Qt.Orientation.Vertical, compare)
        splitter.addWidget(self.table)
        splitter.addWidget(self.scatter)
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 1)
        compare_layout.addWidget(splitter, 1)
        self.result_tabs.addTab(compare, "Compare")

        live = QWidget(self)
        live_layout = QVBoxLayout(live)
        live_layout.setContentsMargins(0, 6, 0, 0)
        self.sparsity_plot = _plot("Pruning: accuracy against sparsity", "sparsity", "accuracy", live)
        self.sparsity_curve = self.sparsity_plot.plot([], [], pen=pg.mkPen(theme.BLUE, width=2), symbol="o",
                                                      symbolBrush=theme.BLUE, symbolPen=None, symbolSize=7)
        self.distill_plot = _plot("Distillation: validation accuracy", "step", "accuracy", live)
        legend = self.distill_plot.getPlotItem().addLegend(offset=(-10, -10))  # bottom right, clear of the rising curve
        legend.setLabelTextColor(theme.TEXT)
        self.student_curve = self.distill_plot.plot([], [], pen=pg.mkPen(theme.BLUE, width=2), symbol="o",
                                                    symbolSize=6, symbolBrush=theme.BLUE, symbolPen=None,
                                                    name="student")
        self.teacher_curve = self.distill_plot.plot([], [], pen=pg.mkPen(theme.ORANGE, width=2,
                                                                         style=Qt.PenStyle.DashLine),
                                                    name="teacher")
        self.kl_plot = _plot("Distillation: KL to the teacher", "step", "KL (x T\u00b2)", live)
        self.kl_curve = self.kl_plot.plot([], [], pen=pg.mkPen(theme.GREEN, width=2))
        live_layout.addWidget(self.sparsity_plot, 1)
        row = QHBoxLayout()
        row.addWidget(self.distill_plot, 1)
        row.addWidget(self.kl_plot, 1)
        live_layout.addLayout(row, 1)
        self.result_tabs.addTab(live, "Progress")
        self._sparsity: list[tuple[float, float]] = []
        self._student: list[tuple[int, float]] = []
        self._teacher: list[tuple[int, float]] = []
        self._kl: list[tuple[int, float]] = []
        return self.result_tabs

    # ------------------------------------------------------------------ source
    def set_checkpoint(self, path: str | Path) -> None:
        """Use this checkpoint as the source (the current model, an opened file)."""
        self.source_edit.setText(str(path))

    @property
    def source(self) -> Path | None:
        text = self.source_edit.text().strip()
        return Path(text) if text else None

    def _browse_source(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Choose a checkpoint", str(self.source or ""),
                                              "Checkpoints (*.safetensors)")
        if name:
            self.set_checkpoint(name)

    def _source_changed(self) -> None:
        source = self.source
        self._clear_problem()
        if source is None or not source.is_file():
            self.source_info.setText("Train a model or open a checkpoint to start." if source is None
                                     else "No such file.")
        else:
            try:
                from effstudio.engine.loading import config_of_file

                config, metadata = config_of_file(source)
                kind = metadata.get("effstudio.quantization") or metadata.get("effstudio.dtype") or "float32"
                self.source_info.setText(f"{config.model_type} ({config.attention_kind}) on {config.task_name}, "
                                         f"{kind}")
            except Exception as err:  # a file of the wrong kind: say so, the Run button will refuse it
                self.source_info.setText(f"Not an effstudio checkpoint: {err}")
        self._suggest_outputs()
        self._update_buttons()

    def _suggest_outputs(self) -> None:
        source = self.source
        if source is None:
            return
        stem, folder = source.stem, source.parent
        amount = int(round(self.prune_amount.value() * 100))
        prune = f"{stem}-{self.prune_method.currentText()}-{amount}.safetensors"
        quant_method = self.quant_method.currentText()
        quant = f"{stem}-{quant_method}{SUFFIX.get(quant_method, '.safetensors')}"
        self.prune_out.setText(str(folder / prune))
        self.quant_out.setText(str(folder / quant))
        self.distill_out.setText(str(folder / f"{stem}-student.safetensors"))
        self.export_out.setText(str(folder / f"{stem}.onnx"))

    # -------------------------------------------------------------------- jobs
    @property
    def running(self) -> bool:
        return self.job is not None and self.job.running

    def start_current(self) -> None:
        self.start_operation(self.tabs.tabText(self.tabs.currentIndex()).lower())

    def start_operation(self, operation: str) -> bool:
        """Start "prune", "quantize", "distill" or "export" with the tab's settings; False if refused."""
        source = self.source
        if self.running:
            return False
        if source is None or not source.is_file():
            self._show_problem("Choose a checkpoint first.")
            return False
        if operation == "prune":
            settings = PruneSettings(self.prune_method.currentText(), round(self.prune_amount.value(), 4),
                                     self.prune_importance.currentText(), self.prune_finetune.value())
            out = Path(self.prune_out.text())

            def fn(control: JobControl) -> Iterator[Any]:
                return prune_job(source, settings, out, control)
            label = f"{settings.method} {int(round(settings.amount * 100))}%"
        elif operation == "quantize":
            method, out = self.quant_method.currentText(), Path(self.quant_out.text())

            def fn(control: JobControl) -> Iterator[Any]:
                return quantize_job(source, method, out, control)
            label = method
        elif operation == "distill":
            settings = DistillSettings(
                self.student_model.currentText(),
                (f"model.d_model={self.student_width.value()}", f"model.heads={self.student_heads.value()}",
                 f"model.layers={self.student_layers.value()}",
                 f"model.attention={self.student_attention.currentText()}"),
                steps=self.distill_steps.value(), temperature=self.distill_temperature.value(),
                alpha=self.distill_alpha.value())
            out = Path(self.distill_out.text())

            def fn(control: JobControl) -> Iterator[Any]:
                return distill_job(source, settings, out, control)
            label = f"student {self.student_attention.currentText()} d{self.student_width.value()}"
        elif operation == "export":
            out = Path(self.export_out.text())

            def fn(control: JobControl) -> Iterator[Any]:
                return export_job(source, out, True, control)
            label = "ONNX"
        else:
            raise ValueError(f"unknown operation {operation!r}")
        if out.resolve() == source.resolve():
            self._show_problem("The output would overwrite the checkpoint; name another file.")
            return False
        self.labels.setdefault(str(source), "original")
        self.labels[str(out)] = label
        if operation in ("prune", "distill"):
            self._reset_live(operation)
            self.result_tabs.setCurrentIndex(1)
        self._run(operation, fn)
        return True

    def measure_pending(self) -> bool:
        pending = [p for p in self.variants if str(p) not in self.rows]
        if not pending or self.running:
            return False
        task = None
        if self.rows:  # new variants are measured on the task of those already in the table
            from effstudio.engine.loading import config_of_file

            try:
                task = config_of_file(Path(next(iter(self.rows))))[0].task_name
            except Exception:  # the file is gone or unreadable: each new file then brings its own task
                task = None

        def fn(control: JobControl) -> Iterator[Any]:
            return compare_job(pending, task_name=task, control=control, repeats=20)
        self.result_tabs.setCurrentIndex(0)
        self._run("compare", fn)
        return True

    def start_steps(self, checkpoint: str | Path, fn: JobFn) -> bool:
        """Run a run config's compression steps on the checkpoint they start from.

        ``fn`` runs the chain (:func:`effstudio.pipeline.steps_after_training`). While another
        job runs, the chain waits for it; False says so.
        """
        if self.job is not None:  # running, or ended with its finished signal still on the way
            self._pending_steps = (Path(checkpoint), fn)
            self.status_label.setText("The run config's compression steps start when this job ends.")
            return False
        self.set_checkpoint(checkpoint)
        self.labels[str(checkpoint)] = "original"
        self._step = self._steps_done = None
        self._run("steps", fn)
        self.progress.setFormat("compression steps\u2026")
        self.status_label.setText("Running the run config's compression steps\u2026")
        return True

    def _run(self, kind: str, fn: JobFn) -> None:
        self._clear_problem()
        self.job_kind = kind
        self.error = None
        self.job = Job(fn, name=f"effstudio-{kind}", parent=self)
        self.job.event.connect(self._on_event)
        self.job.failed.connect(self._on_failed)
        self.job.finished.connect(self._on_finished)
        self.progress.setRange(0, 0)
        self.progress.setFormat(f"{kind}\u2026")
        if kind != "compare":
            self._steps_summary = ""
        self.status_label.setText(f"{self._steps_summary} Measuring\u2026" if kind == "compare" and
                                  self._steps_summary else f"{kind.capitalize()} running\u2026")
        self.job.start()
        self._update_buttons()  # after start: `running` asks the job's thread

    def stop(self) -> None:
        if self.job is not None:
            self.job.stop()

    def shutdown(self, timeout_ms: int = 30_000) -> bool:
        self._pending_steps = None
        return self.job.shutdown(timeout_ms) if self.job is not None else True

    def _step_prefix(self) -> str:
        """While a chain runs, progress texts start with its step ("2/3 prune \u00b7 "); the label says more."""
        step = self._step if self.job_kind == "steps" else None
        return f"{step.index}/{step.total} {step.method} \u00b7 " if step is not None else ""

    def _on_event(self, event: Any) -> None:
        if isinstance(event, CompressStepEvent):
            self._on_step(event)
        elif isinstance(event, CompressDoneEvent):
            self._steps_done = event
        elif isinstance(event, PruneStepEvent):
            self._sparsity.append((event.sparsity, event.accuracy))
            xs, ys = zip(*self._sparsity, strict=True)
            self.sparsity_curve.setData(list(xs), list(ys))
            self.progress.setRange(0, event.total_steps)
            self.progress.setValue(event.step)
            self.progress.setFormat(f"{self._step_prefix()}step {event.step}/{event.total_steps}")
        elif isinstance(event, DistillStepEvent):
            self._kl.append((event.step, event.kl))
            if event.step % 5 == 0 or event.step == event.total_steps:
                xs, ys = zip(*self._kl, strict=True)
                self.kl_curve.setData(list(xs), list(ys))
            self.progress.setRange(0, event.total_steps)
            self.progress.setValue(event.step)
            self.progress.setFormat(f"{self._step_prefix()}step {event.step}/{event.total_steps}")
        elif isinstance(event, DistillEvalEvent):
            self._student.append((event.step, event.student_accuracy))
            self._teacher.append((event.step, event.teacher_accuracy))
            for curve, points in ((self.student_curve, self._student), (self.teacher_curve, self._teacher)):
                xs, ys = zip(*points, strict=True)
                curve.setData(list(xs), list(ys))
        elif isinstance(event, ResultEvent):
            self.last_result = event
            self.trainable_result = Path(event.path) if event.path.endswith(".safetensors") else None
            self.fine_tune_button.setEnabled(self.trainable_result is not None)
            if self.trainable_result is not None:
                self.fine_tune_button.setToolTip(f"Train {self.trainable_result.name} further with its own settings "
                                                 "(a new run that starts from its weights)")
            self.status_label.setText(self._describe_result(event))
            self.message.emit(f"{event.method}: wrote {event.path}")
            if self.job_kind == "steps":  # measured with the others once the chain is over
                if self._step is not None:
                    self.labels[event.path] = self._step.description
                for path in (Path(self._step.source) if self._step else None, Path(event.path)):
                    if path is not None and path not in self.variants:
                        self.variants.append(path)
        elif isinstance(event, CompareRowEvent):
            self.rows[event.path] = event
            self._fill_table()
            self._draw_scatter()
            if event.error:
                self._show_problem(f"{event.name}: {event.error}")
        elif isinstance(event, LogEvent):
            step = self._step if self.job_kind == "steps" else None
            self.status_label.setText(f"Step {step.index} of {step.total}, {step.description}: {event.message}"
                                      if step is not None else event.message)
            if self.job_kind == "steps":
                self.steps_log.emit(event.level, event.message)

    def _on_step(self, event: CompressStepEvent) -> None:
        self._step = event
        self.progress.setRange(0, 0)
        self.progress.setFormat(f"{event.index}/{event.total} {event.method}\u2026")
        self.status_label.setText(f"Step {event.index} of {event.total}: {event.description} \u2192 "
                                  f"{Path(event.out).name}")
        if event.method in ("prune", "distill"):
            self._reset_live(event.method)
            self.result_tabs.setCurrentIndex(1)
        self.message.emit(f"compression step {event.index}/{event.total}: {event.description}")

    def _steps_ended(self, status: str) -> None:
        """A chain's job is over: say how it went, then measure what it wrote (unless stopped)."""
        done = self._steps_done
        if done is None:  # the job raised before the chain could report (shown by _on_failed)
            done = CompressDoneEvent("stopped" if status == "stopped" else "failed", 0, 0, [], self.error)
        elif status == "stopped" and done.status != "stopped":
            done = CompressDoneEvent("stopped", done.completed, done.total, done.outputs, done.error)
        failed_step = self._step.index if self._step is not None else done.completed + 1
        self._step = None
        self.progress.setRange(0, max(done.total, 1))
        self.progress.setValue(done.completed)
        self.progress.setFormat(f"steps: {done.status} ({done.completed}/{done.total})")
        wrote = ", ".join(Path(p).name for p in done.outputs) or "nothing"
        if done.status == "finished":
            self.status_label.setText(f"Ran the {done.total} compression step(s); wrote {wrote}.")
        elif done.status == "failed":
            skipped = done.total - failed_step
            self._show_problem(done.error or "a compression step failed")
            self.status_label.setText(f"Step {failed_step} of {done.total} failed"
                                      + (f"; the {skipped} later step(s) were skipped" if skipped > 0 else "")
                                      + f". Wrote {wrote}.")
        elif done.status == "stopped":
            self.status_label.setText(f"Stopped after {done.completed} of {done.total} step(s); wrote {wrote} "
                                      "(a step cut short writes nothing).")
        else:
            self.status_label.setText(done.error or f"The compression steps {done.status}.")
        self._steps_summary = self.status_label.text() if done.status in ("finished", "failed") else ""
        self.steps_done.emit(done)
        if done.status != "stopped":
            self.measure_pending()

    def _describe_result(self, event: ResultEvent) -> str:
        acc = f"accuracy {_num(event.accuracy, 3)} (was {_num(event.baseline_accuracy, 3)})"
        extra = ""
        if "max_abs_diff" in event.details:
            extra = f"; max |\u0394| vs PyTorch {event.details['max_abs_diff']:.1e}"
        elif "sparsity" in event.details:
            extra = f"; sparsity {event.details['sparsity']:.2f}"
        return f"Wrote {Path(event.path).name}: {event.params:,} parameters, {acc}{extra}."

    def _on_failed(self, message: str) -> None:
        self.error = message
        self._show_problem(message)
        self.status_label.setText(f"{self.job_kind.capitalize()} failed; nothing was written.")

    def _on_finished(self, status: str) -> None:
        kind, result = self.job_kind, self.last_result
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if status == "finished" else 0)
        self.progress.setFormat(status)
        self.job = None
        self._update_buttons()
        self.job_finished.emit(status)
        if kind == "steps":
            self.last_result = None
            self._steps_ended(status)
            if self.job is None and self._pending_steps is not None:  # a later run's chain waited for this one
                checkpoint, fn = self._pending_steps
                self._pending_steps = None
                self.start_steps(checkpoint, fn)
            return
        if self._pending_steps is not None:  # the chain goes first; what is left to measure waits for it
            self.last_result = None
            if kind != "compare" and result is not None and status == "finished":
                for path in (self.source, Path(result.path)):
                    if path is not None and path not in self.variants:
                        self.variants.append(path)
            checkpoint, fn = self._pending_steps
            self._pending_steps = None
            self.start_steps(checkpoint, fn)
            return
        if kind == "compare" and status == "finished":
            self.status_label.setText(f"{self._steps_summary} ".lstrip() +
                                      f"Measured {len(self.rows)} variant{'s' if len(self.rows) != 1 else ''} "
                                      "on the validation split.")
        if status != "finished":
            if status == "stopped":
                self.status_label.setText("Stopped; nothing was written.")
            return
        if kind != "compare" and result is not None:
            self.last_result = None
            source = self.source
            for path in (source, Path(result.path)):
                if path is not None and path not in self.variants:
                    self.variants.append(path)
            self.measure_pending()

    # ----------------------------------------------------------------- compare
    def add_variants(self, paths: list[Path]) -> None:
        for path in paths:
            if path not in self.variants:
                self.variants.append(Path(path))
                self.labels.setdefault(str(path), "")
        self.measure_pending()

    def _add_files_dialog(self) -> None:
        names, _ = QFileDialog.getOpenFileNames(self, "Add variants", str(self.source.parent if self.source else ""),
                                                "Models (*.safetensors *.onnx)")
        if names:
            self.add_variants([Path(n) for n in names])

    def _remove_selected(self) -> None:
        rows = sorted({index.row() for index in self.table.selectedIndexes()}, reverse=True)
        for row in rows:
            path = self.table.item(row, 0).data(Qt.ItemDataRole.UserRole)
            self.rows.pop(path, None)
            self.variants = [p for p in self.variants if str(p) != path]
        self._fill_table()
        self._draw_scatter()

    def ordered_rows(self) -> list[CompareRowEvent]:
        return list(self.rows.values())

    def _name(self, row: CompareRowEvent) -> str:
        """What made the variant ("original", "heads 50%", "onnx-int8"), else its file name."""
        return self.labels.get(row.path) or row.name

    def _fill_table(self) -> None:
        rows = self.ordered_rows()
        front = set(pareto_indices(rows))
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(rows))
        bold = QFont()
        bold.setBold(True)
        for r, row in enumerate(rows):
            cells = [
                _Item(self._name(row), row.name),
                _Item(f"{row.params:,}", row.params),
                _Item(_size(row.file_bytes), row.file_bytes),
                _Item(_num(row.accuracy, 3), row.accuracy),
                _Item(_num(row.latency_ms_b1), row.latency_ms_b1),
                _Item(_num(row.latency_p95_ms_b1), row.latency_p95_ms_b1),
                _Item(_num(row.latency_ms_b32, 1), row.latency_ms_b32),
                _Item(_num(row.latency_p95_ms_b32, 1), row.latency_p95_ms_b32),
                _Item(_num(row.peak_mb, 1), row.peak_mb),
            ]
            cells[0].setData(Qt.ItemDataRole.UserRole, row.path)
            cells[0].setToolTip(f"{row.path}\n{row.error}" if row.error else row.path)
            for c, cell in enumerate(cells):
                if r in front:
                    cell.setFont(bold)
                if row.error:
                    cell.setForeground(QColor(theme.ERROR))
                self.table.setItem(r, c, cell)
        self.table.setSortingEnabled(True)
        self._update_buttons()

    def _draw_scatter(self) -> None:
        plot = self.scatter.getPlotItem()
        plot.clear()
        rows = self.ordered_rows()
        usable = [i for i, r in enumerate(rows) if r.accuracy is not None and r.latency_ms_b1]
        if not usable:
            return
        front = pareto_indices(rows)
        xs = np.log10([max(rows[i].latency_ms_b1, 1e-3) for i in usable])
        ys = np.array([rows[i].accuracy for i in usable])
        others = [k for k, i in enumerate(usable) if i not in front]
        plot.addItem(pg.ScatterPlotItem(xs[others], ys[others], size=10, brush=pg.mkBrush(POINT_COLOUR),
                                        pen=pg.mkPen("w")))
        on_front = sorted((k for k, i in enumerate(usable) if i in front), key=lambda k: xs[k])
        plot.addItem(pg.PlotDataItem(xs[on_front], ys[on_front], pen=pg.mkPen(FRONT_COLOUR, width=2),
                                     symbol="o", symbolSize=12, symbolBrush=FRONT_COLOUR, symbolPen=pg.mkPen("w")))
        # labels alternate above and below their points (by latency), so neighbours do not overwrite each other
        for rank, k in enumerate(sorted(range(len(usable)), key=lambda k: xs[k])):
            i = usable[k]
            text = pg.TextItem(self._name(rows[i]), color=FRONT_COLOUR if i in front else theme.TEXT,
                               anchor=(0, 1.15) if rank % 2 == 0 else (0, -0.15))
            text.setFont(QFont(self.font().family(), 8))
            text.setPos(xs[k], ys[k])
            plot.addItem(text)
        spread_y = max(float(ys.max() - ys.min()), 0.02)
        spread_x = max(float(xs.max() - xs.min()), 0.3)
        plot.setXRange(float(xs.min()) - 0.1 * spread_x, float(xs.max()) + 0.45 * spread_x, padding=0)
        plot.setYRange(float(ys.min()) - 0.25 * spread_y, float(ys.max()) + 0.25 * spread_y, padding=0)

    def export_text(self, kind: str) -> str:
        rows = [CompareRowEvent(**{**row.__dict__, "name": self._name(row)}) for row in self.ordered_rows()]
        return rows_to_csv(rows) if kind == "csv" else rows_to_markdown(rows)

    def _export_dialog(self, kind: str) -> None:
        pattern = "CSV (*.csv)" if kind == "csv" else "Markdown (*.md)"
        name, _ = QFileDialog.getSaveFileName(self, "Export the comparison", f"compare.{kind}", pattern)
        if name:
            Path(name).write_text(self.export_text(kind), encoding="utf-8")
            self.message.emit(f"comparison written to {name}")

    # -------------------------------------------------------------------- misc
    def _reset_live(self, operation: str) -> None:
        if operation == "prune":
            self._sparsity.clear()
            self.sparsity_curve.setData([], [])
        else:
            for points in (self._student, self._teacher, self._kl):
                points.clear()
            for curve in (self.student_curve, self.teacher_curve, self.kl_curve):
                curve.setData([], [])

    def _show_problem(self, text: str) -> None:
        self.problem.setText(text)
        self.problem.show()

    def _clear_problem(self) -> None:
        self.problem.hide()
        self.problem.setText("")

    def _update_buttons(self) -> None:
        busy = self.running
        source = self.source
        self.run_button.setEnabled(not busy and source is not None and source.is_file())
        self.stop_button.setEnabled(busy)
        self.measure_button.setEnabled(not busy and any(str(p) not in self.rows for p in self.variants))
        has_rows = bool(self.rows)
        for button in (self.csv_button, self.markdown_button, self.remove_button):
            button.setEnabled(has_rows and not busy)
