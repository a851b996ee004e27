"""Model section's "Make efficient": turn an imported (pretrained) checkpoint into a long-sequence model.

Enabled when the model opened in the lab is an imported one (its header names
the architecture it came from). The user picks an attention kind (with its
settings) and a maximum length; the table shows the parameters and one layer's
attention memory at that length for the current and the chosen kind (from the
attention benchmark's recorded curves where the kind was measured, else
estimated from its shape). The figures come from a copy of the model built on
PyTorch's meta device (shapes only, no memory), converted exactly as the real
one will be. Convert writes the converted checkpoint in a JobHost job and emits
``converted(path)``: the window opens it in the lab, where training (``--init``),
distillation (as teacher), compression and comparison apply to it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from effstudio.config import ConfigError
from effstudio.engine.build import model_of_checkpoint, task_of_checkpoint
from effstudio.engine.checkpoint import CheckpointInfo, read_info
from effstudio.engine.events import Event, JobControl, LogEvent
from effstudio.gui.forms.config_form import ConfigForm
from effstudio.gui.job import JobHost
from effstudio.gui.panels.base import description_label
from effstudio.gui.panels.run_controls import RunGroup
from effstudio.pretrained.convert import ConvertedEvent, convert_checkpoint
from effstudio.pretrained.efficient import (
    attention_memory,
    current_max_length,
    make_efficient,
    measured_curves,
    parameter_count,
)
from effstudio.pretrained.importer import PRETRAINED_SOURCE_KEY
from effstudio.pretrained.lab_import import ImportedEvent, import_job
from effstudio.registry import Registry

DEFAULT_KIND = "longformer"
MOST_TOKENS = 65_536  # the largest max_length a text task takes
LOADED = "loaded"  # the meta model's job event


class MakeEfficientPanel(JobHost, QGroupBox):
    converted = Signal(str)  # the converted checkpoint, to open in the lab
    imported = Signal(str)  # the checkpoint a Hugging Face folder was imported into, to open in the lab
    message = Signal(str)

    def __init__(self, registry: Registry, parent: QWidget | None = None):
        super().__init__("Make efficient", parent)
        self.setObjectName("makeEfficient")
        self.registry = registry
        self.init_jobs()
        self.info: CheckpointInfo | None = None
        self.shape_model: torch.nn.Module | None = None  # the checkpoint's model on the meta device
        self.attention_form: ConfigForm | None = None

        layout = QVBoxLayout(self)
        self.source_label = description_label(self)
        layout.addWidget(self.source_label)

        choices = QWidget(self)
        form = QFormLayout(choices)
        form.setContentsMargins(0, 0, 0, 0)
        self.kind_box = QComboBox(choices)
        self.kind_box.setObjectName("efficientKind")
        for name in registry.names("attention"):
            self.kind_box.addItem(name, name)
        form.addRow("Attention kind", self.kind_box)
        self.length_box = QSpinBox(choices)
        self.length_box.setObjectName("efficientLength")
        self.length_box.setRange(1, MOST_TOKENS)
        self.length_box.setSingleStep(512)
        self.length_box.setToolTip("Longest input of the converted model; learned positions grow to it by "
                                   "copying their rows, as Longformer was made from RoBERTa")
        self.length_box.valueChanged.connect(lambda _v: self.update_figures())
        form.addRow("Maximum length", self.length_box)
        layout.addWidget(choices)
        self.settings_box = QGroupBox("Attention settings", self)
        self.settings_layout = QVBoxLayout(self.settings_box)
        layout.addWidget(self.settings_box)

        self.figures = QTableWidget(2, 2, self)
        self.figures.setObjectName("efficientFigures")
        self.figures.setVerticalHeaderLabels(["Parameters", "Attention memory / layer"])
        self.figures.setHorizontalHeaderLabels(["Now", "Chosen"])  # each named by its kind once a model is open
        self.figures.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.figures.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.figures.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.figures.setFixedHeight(self.figures.horizontalHeader().sizeHint().height()
                                    + 2 * self.figures.verticalHeader().defaultSectionSize() + 4)
        layout.addWidget(self.figures)
        self.figures_note = description_label(self)
        layout.addWidget(self.figures_note)

        out_row = QHBoxLayout()
        self.out_edit = QLineEdit(self)
        self.out_edit.setObjectName("efficientOut")
        self.out_edit.setPlaceholderText("converted checkpoint (.safetensors)")
        out_row.addWidget(self.out_edit)
        layout.addLayout(out_row)
        self.run_group = RunGroup("Write the converted checkpoint and open it in the lab", "efficientProblem", self)
        self.run_group.setTitle("Convert")
        self.run_group.run_button.setText("Convert")
        self.run_group.run_button.clicked.connect(self.start)
        self.run_group.stop_button.clicked.connect(self.stop_jobs)
        layout.addWidget(self.run_group)

        self.kind_box.setCurrentIndex(max(self.kind_box.findData(DEFAULT_KIND), 0))
        self.kind_box.currentIndexChanged.connect(self._kind_changed)
        self._kind_changed()
        self.set_checkpoint(None)

    # ------------------------------------------------------------------ source
    @property
    def is_imported(self) -> bool:
        return self.info is not None and bool(self.info.metadata.get(PRETRAINED_SOURCE_KEY))

    def set_checkpoint(self, path: str | Path | None) -> None:
        """The model opened in the lab; the panel is enabled when it is an imported one."""
        self.info, self.shape_model = None, None
        self.run_group.clear_problem()
        if path is not None:
            try:
                self.info = read_info(path)
            except (RuntimeError, ValueError, OSError) as err:
                self.source_label.setText(f"Not an effstudio checkpoint: {err}")
        if self.info is None or not self.is_imported:
            if self.info is not None or path is None:
                self.source_label.setText(
                    "Open an imported model to convert it: drop a Hugging Face folder on the window, use "
                    "Inspect's \u201cOpen in lab\u201d on one, or `effstudio import`.")
            self._set_enabled(False)
            return
        config = self.info.config
        own = current_max_length(config)
        source = self.info.metadata[PRETRAINED_SOURCE_KEY]
        self.source_label.setText(f"{Path(self.info.path).name}: imported from {source}, {config.model_type} with "
                                  f"{config.attention_kind} attention, {own if own is not None else 'no'} maximum "
                                  "length")
        self.length_box.blockSignals(True)
        self.length_box.setMinimum(own or 1)
        self.length_box.setValue(max(own or 1, 4096) if own else 1)
        self.length_box.setEnabled(own is not None)
        self.length_box.blockSignals(False)
        self._suggest_out()
        self._set_enabled(True)
        self.figures_note.setText("Reading the model\u2026")
        info = self.info
        self.start_job(lambda control: _shape_model(info, control), "load", on_event=self._on_loaded,
                       on_failed=self.show_job_error)

    def _set_enabled(self, enabled: bool) -> None:
        for widget in (self.kind_box, self.settings_box, self.figures, self.out_edit, self.run_group):
            widget.setEnabled(enabled)
        if not enabled:
            self.length_box.setEnabled(False)
            self.figures.clearContents()
            self.figures_note.setText("")

    def _suggest_out(self) -> None:
        if self.info is None:
            return
        path = Path(self.info.path)
        self.out_edit.setText(str(path.with_name(f"{path.stem}-{self.kind()}-{self.length_box.value()}"
                                                 f".safetensors")))

    def _on_loaded(self, event: Any) -> None:
        if isinstance(event, tuple) and event[0] == LOADED:
            self.shape_model = event[1]
            self.update_figures()

    def import_folder(self, path: str | Path) -> None:
        """Import a Hugging Face folder (dropped on the window, or opened from Inspect) as a job; ``imported``
        then names the checkpoint written, and a failure shows its one-line reason."""
        self.run_group.clear_problem()
        self.source_label.setText(f"Importing {path}\u2026")
        self.start_job(lambda control: import_job(path, control=control), "import", on_event=self._on_import_event,
                       on_failed=self._import_failed)

    def _on_import_event(self, event: Event) -> None:
        if isinstance(event, LogEvent):
            self.source_label.setText(event.message)
            if event.level == "warning":
                self.message.emit(f"Import: {event.message}")
        elif isinstance(event, ImportedEvent):
            self.message.emit(f"Imported {event.architecture} into {event.path}")
            self.imported.emit(event.path)

    def _import_failed(self, message: str) -> None:
        self.source_label.setText(f"Cannot import: {message}")
        self.message.emit(f"Cannot import: {message}")

    # ------------------------------------------------------------------ choices
    def kind(self) -> str:
        return self.kind_box.currentData()

    def _kind_changed(self) -> None:
        if self.attention_form is not None:
            self.attention_form.hide()  # at once: its deletion waits for the event loop
            self.attention_form.deleteLater()
        entry = self.registry.get("attention", self.kind())
        self.attention_form = ConfigForm(entry.config_cls, prefix="attention", parent=self.settings_box)
        self.attention_form.changed.connect(lambda _name: self.update_figures())
        self.settings_layout.addWidget(self.attention_form)
        self.settings_box.setTitle(f"Attention settings \u00b7 {self.kind()}")
        self._suggest_out()
        self.update_figures()

    def choices(self) -> dict[str, Any]:
        """make_efficient's keyword arguments; raises ConfigError naming a bad setting."""
        settings = self.attention_form.values() if self.attention_form is not None else {}
        length = self.length_box.value() if self.length_box.isEnabled() else None
        return {"attention": self.kind(), "attention_settings": settings, "max_length": length}

    # ------------------------------------------------------------------ figures
    def update_figures(self) -> None:
        """Parameters and attention memory at the chosen length, for the current and the chosen kind."""
        if self.info is None or self.shape_model is None:
            return
        config = self.info.config
        self.run_group.clear_problem()
        try:
            choices = self.choices()
            with torch.device("meta"):
                converted = make_efficient(self.shape_model, config, **choices)
        except ConfigError as err:
            self.run_group.show_problem(f"{err.field}: {err.message}")
            self.run_group.run_button.setEnabled(False)
            return
        self.run_group.run_button.setEnabled(not self.job_running("convert"))
        length = choices["max_length"] or current_max_length(config) or 1
        current_kind = config.attention_kind or "?"
        self.figures.setHorizontalHeaderLabels([f"Now ({current_kind})", f"Chosen ({self.kind()})"])
        report = measured_curves() or {}  # read once for both figures ({}: none recorded)
        before = attention_memory(config, current_kind, length, report=report)
        after = attention_memory(converted.config, self.kind(), length, report=report)
        cells = [[f"{parameter_count(self.shape_model):,}", f"{parameter_count(converted.model):,}"],
                 [_memory_text(before), _memory_text(after)]]
        for row, values in enumerate(cells):
            for column, text in enumerate(values):
                self.figures.setItem(row, column, QTableWidgetItem(text))
        sources = {e.source for e in (before, after) if e is not None}
        how = ("measured by the attention benchmark, scaled to the model's heads" if sources == {"measured"}
               else "estimated from each kind's shape; run the Benchmark section's attention benchmark "
                    "for measured curves" if sources == {"estimated"}
               else "one measured by the attention benchmark, one estimated from the kind's shape")
        self.figures_note.setText(f"Attention memory of one layer at {length:,} tokens, batch 1 ({how}).")

    # ------------------------------------------------------------------ convert
    def start(self) -> bool:
        """Write the converted checkpoint; False (with the reason shown) when it cannot start."""
        if self.info is None or not self.is_imported:
            return False
        out = self.out_edit.text().strip()
        try:
            choices = self.choices()
        except ConfigError as err:
            self.run_group.show_problem(f"{err.field}: {err.message}")
            return False
        if not out:
            self.run_group.show_problem("Name the converted checkpoint's file.")
            return False
        self.run_group.clear_problem()
        source = self.info.path
        self.run_group.progress.setRange(0, 0)
        self.run_group.progress.setFormat("converting")
        self.start_job(lambda control: convert_checkpoint(source, out, control=control, **choices), "convert",
                       on_event=self._on_event, on_finished=self._on_finished)
        return True

    def _on_event(self, event: Event) -> None:
        if isinstance(event, LogEvent):
            self.run_group.status_label.setText(event.message)
        elif isinstance(event, ConvertedEvent):
            self.run_group.status_label.setText(
                f"Wrote {Path(event.path).name}: {event.parameters_before:,} \u2192 {event.parameters_after:,} "
                f"parameters. " + "; ".join(event.notes))
            self.message.emit(f"Converted into {event.path}")
            self.converted.emit(event.path)

    def _on_finished(self, status: str) -> None:
        self.run_group.progress.setRange(0, 1)
        self.run_group.progress.setValue(1 if status == "finished" else 0)
        self.run_group.progress.setFormat(status)

    def show_job_error(self, message: str) -> None:
        self.run_group.show_problem(message)

    def jobs_changed(self) -> None:
        running = self.job_running("convert")
        self.run_group.run_button.setEnabled(self.is_imported and not running)
        self.run_group.stop_button.setEnabled(running)


def _shape_model(info: CheckpointInfo, control: JobControl):
    """The checkpoint's model built on the meta device: its shapes, for the figures (no weights read)."""
    task = task_of_checkpoint(info)
    if control.stop_requested:
        return
    with torch.device("meta"):
        model = model_of_checkpoint(info, task.spec)
    yield (LOADED, model)


def _memory_text(estimate: Any) -> str:
    if estimate is None:
        return "\u2014"
    return f"{estimate.mb:,.0f} MB" if estimate.mb >= 10 else f"{estimate.mb:,.1f} MB"
