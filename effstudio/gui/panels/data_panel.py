"""Data section: the task, its settings and a preview of a few decoded examples.

The preview builds the task in a background thread (generating a data set can
take a moment) and shows the first validation examples as token strings.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from effstudio.config import ConfigError
from effstudio.engine.run_config import RunConfig
from effstudio.gui.forms.config_form import ConfigForm
from effstudio.gui.panels.base import Panel, description_label, empty_state
from effstudio.gui.theme import monospace_font
from effstudio.registry import Registry, UnknownEntryError
from effstudio.tasks.base import IGNORE_INDEX

PREVIEW_EXAMPLES = 8
PREVIEW_CHARS = 160


@dataclass(frozen=True)
class Preview:
    summary: str
    rows: list[tuple[str, str]]


def _clip(text: str) -> str:
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "\u2026"


def build_preview(registry: Registry, task_name: str, config: Any, count: int = PREVIEW_EXAMPLES) -> Preview:
    """Decoded inputs and targets of the first ``count`` validation examples (runs in a worker thread)."""
    task = registry.get("tasks", task_name).factory(config)
    spec = task.spec
    split = task.split("val")
    rows = []
    for i in range(min(count, len(split))):
        ids = [t for t in split.inputs[i].tolist() if t != spec.pad_id]
        source = " ".join(task.decode(ids))
        target = split.targets[i]
        if target.dim() == 0:
            shown = str(int(target))
        else:
            scored = [t for t in target.tolist() if t != IGNORE_INDEX]
            shown = " ".join(task.decode(scored))
        rows.append((_clip(source), _clip(shown)))
    objective = "classification" if spec.objective == "classify" else "language modelling"
    parts = [objective, f"vocabulary {spec.vocab_size}", f"max length {spec.max_length}"]
    if spec.is_image:
        colour = "grey" if spec.channels == 1 else f"{spec.channels}-channel"
        parts = ["image classification", f"{spec.image_size}\u00d7{spec.image_size} {colour} images"]
    if spec.objective == "classify":
        parts.append(f"{spec.num_classes} classes")
    parts.append(f"{len(split)} validation examples")
    return Preview(" \u00b7 ".join(parts), rows)


class PreviewJob(QObject):
    """Builds a preview in a daemon thread and reports back through queued signals."""

    done = Signal(object)
    failed = Signal(str)

    def __init__(self, registry: Registry, task_name: str, config: Any):
        super().__init__()
        self.args = (registry, task_name, config)
        self._thread = threading.Thread(target=self._run, name="effstudio-preview", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        try:
            preview = build_preview(*self.args)
        except Exception as err:  # a task plugin may raise anything
            self.failed.emit(f"{type(err).__name__}: {err}")
        else:
            self.done.emit(preview)

    def wait(self, timeout_s: float) -> bool:
        self._thread.join(timeout_s)
        return not self._thread.is_alive()


class DataPanel(Panel):
    changed = Signal()
    preview_ready = Signal()

    def __init__(self, registry: Registry, parent: QWidget | None = None):
        super().__init__("Data", "Choose what the model learns. Generated tasks are cached after the "
                         "first use.", parent=parent)
        self.registry = registry
        self.form: ConfigForm | None = None
        self._preview_job: PreviewJob | None = None
        self._preview_stale = True

        self.task_box = QComboBox(self)
        self.task_box.setObjectName("taskName")
        self.task_box.setMinimumWidth(260)
        for entry in registry.all("tasks"):
            self.task_box.addItem(entry.name, entry.name)
            self.task_box.setItemData(self.task_box.count() - 1, entry.description, Qt.ItemDataRole.ToolTipRole)
        self.description = description_label(self)

        left = QVBoxLayout()
        left.setSpacing(12)
        picker = QGroupBox("Task", self)
        picker_layout = QVBoxLayout(picker)
        row = QHBoxLayout()
        row.addWidget(QLabel("Task", picker))
        row.addWidget(self.task_box)
        row.addStretch(1)
        picker_layout.addLayout(row)
        picker_layout.addWidget(self.description)
        left.addWidget(picker)
        self.settings_group = QGroupBox("Task settings", self)
        self.settings_layout = QVBoxLayout(self.settings_group)
        left.addWidget(self.settings_group)
        left.addStretch(1)

        self.preview_group = QGroupBox("Examples", self)
        preview_layout = QVBoxLayout(self.preview_group)
        self.summary = description_label(self)
        self.refresh_button = QPushButton("Show examples", self)
        self.refresh_button.clicked.connect(self.refresh_preview)
        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(self.refresh_button)
        preview_layout.addLayout(top)
        self.table = QTableWidget(0, 2, self)
        self.table.setHorizontalHeaderLabels(["Input", "Target"])
        self.table.setFont(monospace_font())
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        self.table.verticalHeader().setDefaultSectionSize(22)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        preview_layout.addWidget(self.table, 1)
        self.preview_status = QLabel(self)
        self.preview_status.setObjectName("description")
        preview_layout.addWidget(self.preview_status)

        columns = QHBoxLayout()
        columns.setSpacing(12)
        columns.addLayout(left, 2)
        columns.addWidget(self.preview_group, 3)
        self.body.addLayout(columns, 1)

        if not registry.names("tasks"):
            self.settings_group.hide()
            self.preview_group.hide()
            self.task_box.setEnabled(False)
            self.body.insertWidget(0, empty_state(
                "No tasks are registered.\nA plugin may have failed to load: see the warning in the "
                "status bar.", self))
            return
        self.task_box.currentIndexChanged.connect(self._task_changed)
        self._task_changed()

    def task_name(self) -> str | None:
        return self.task_box.currentData()

    def _task_changed(self) -> None:
        name = self.task_name()
        if name is None:
            return
        entry = self.registry.get("tasks", name)
        self.description.setText(entry.description)
        if self.form is not None:
            self.form.deleteLater()
        self.form = ConfigForm(entry.config_cls, prefix="task", parent=self.settings_group)
        self.form.changed.connect(self._form_changed)
        self.settings_layout.addWidget(self.form)
        self.settings_group.setTitle(f"Task settings \u00b7 {name}")
        self._mark_stale()
        self.changed.emit()

    def _form_changed(self, _name: str) -> None:
        self._mark_stale()
        self.changed.emit()

    # ----------------------------------------------------------------- preview
    def _mark_stale(self) -> None:
        self._preview_stale = True
        self.preview_status.setText("Press \u201cShow examples\u201d to decode a few validation examples.")
        if self.isVisible():
            self.refresh_preview()

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if self._preview_stale and self.form is not None:
            self.refresh_preview()

    def refresh_preview(self) -> None:
        if self.form is None or self._preview_job is not None:
            return
        try:
            config = self.form.config()
        except ConfigError as err:
            self.preview_status.setText(f"Cannot preview: {err}")
            return
        self._preview_stale = False
        self.refresh_button.setEnabled(False)
        self.preview_status.setText("Building the task\u2026")
        job = PreviewJob(self.registry, self.task_name(), config)
        job.done.connect(self._show_preview)
        job.failed.connect(self._preview_failed)
        self._preview_job = job
        job.start()

    def _show_preview(self, preview: Preview) -> None:
        self._preview_done()
        self.summary.setText(preview.summary)
        self.table.setRowCount(len(preview.rows))
        for row, (source, target) in enumerate(preview.rows):
            for col, text in enumerate((source, target)):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(row, col, item)
        self.preview_status.setText(f"First {len(preview.rows)} validation examples, padding removed.")

        self.preview_ready.emit()
        self._refresh_if_stale()

    def _preview_failed(self, message: str) -> None:
        self._preview_done()
        self.preview_status.setText(f"Cannot build the task: {message}")
        self.preview_ready.emit()
        self._refresh_if_stale()

    def _preview_done(self) -> None:
        self._preview_job = None
        self.refresh_button.setEnabled(True)

    def _refresh_if_stale(self) -> None:
        if self._preview_stale and self.isVisible():
            self.refresh_preview()

    def preview_running(self) -> bool:
        return self._preview_job is not None

    def wait_for_preview(self, timeout_s: float = 10.0) -> bool:
        job = self._preview_job
        return job is None or job.wait(timeout_s)

    # ------------------------------------------------------------------ values
    def forms(self) -> list[ConfigForm]:
        return [self.form] if self.form is not None else []

    def overrides(self) -> dict[str, Any]:
        if self.form is None:
            return {}
        return {f"task.{k}": v for k, v in self.form.values().items()}

    def set_config(self, config: RunConfig) -> None:
        index = self.task_box.findData(config.task_name)
        if index < 0:
            raise UnknownEntryError("tasks", config.task_name, self.registry.names("tasks"))
        self.task_box.setCurrentIndex(index)
        if self.form is not None:
            self.form.set_values(config.task)
            self._mark_stale()
        self.changed.emit()

    def validate(self) -> list[ConfigError]:
        if self.form is None:
            return []
        return [ConfigError(f"task.{e.field}", e.message) for e in self.form.validate()]
