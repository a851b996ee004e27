"""Data section: the task, its settings and a preview of a few decoded examples.

The preview builds the task in a job (generating a data set or training a
tokenizer can take a moment) and shows the first validation examples as token
strings. A task read from a table of text (textclass) gets column choosers filled
from the file's header and a richer view: examples as word pieces, a histogram of
token lengths and a bar chart of the classes (text_data_view).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from effstudio.config import ConfigError
from effstudio.engine.run_config import RunConfig
from effstudio.gui.forms.config_form import ConfigForm
from effstudio.gui.job import JobHost
from effstudio.gui.panels.base import Panel, description_label, empty_state
from effstudio.gui.panels.data_drop import DataTarget, data_target, is_table
from effstudio.gui.panels.image_grid import ImageGrid
from effstudio.gui.panels.text_data_view import (
    TableHeader,
    TextDataView,
    TextPreview,
    build_text_preview,
)
from effstudio.gui.theme import monospace_font
from effstudio.registry import Registry, UnknownEntryError
from effstudio.tasks.base import IGNORE_INDEX
from effstudio.tasks.progress import reporting
from effstudio.tasks.text_table import sniff_table

if TYPE_CHECKING:
    from PySide6.QtCore import QUrl
    from PySide6.QtGui import QDragEnterEvent, QDropEvent, QShowEvent

    from effstudio.engine.events import JobControl

PREVIEW_EXAMPLES = 8
PREVIEW_CHARS = 160
PREVIEW = "preview"  # the panel's job slot
# the settings of a task read from a table that name its columns (textclass's); the optional ones may be empty
COLUMN_FIELDS = ("text_column", "text_pair_column", "label_column", "split_column")
OPTIONAL_COLUMNS = ("text_pair_column", "split_column")
PROGRESS_EVERY_S = 0.1  # a data step's progress reaches the GUI at most this often
PROGRESS_STEPS = 1000


@dataclass(frozen=True)
class Preview:
    summary: str
    rows: list[tuple[str, str]]
    images: np.ndarray | None = None  # image tasks: (N, C, H, W) float32 in [0, 1], labelled by the rows' targets


def _clip(text: str) -> str:
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "\u2026"


def build_preview(registry: Registry, task_name: str, config: Any, count: int = PREVIEW_EXAMPLES) -> Preview:
    """Decoded inputs and targets of the first ``count`` validation examples (runs in a job's thread)."""
    task = registry.get("tasks", task_name).factory(config)
    spec = task.spec
    split = task.split("val")
    rows = []
    examples = min(count, len(split))
    # an image task's preview shows the pictures themselves (the rows name them), each under its class
    images = split.inputs[:examples].to(torch.float32).numpy() if spec.is_image else None
    for i in range(examples):
        ids = [t for t in split.inputs[i].tolist() if t != spec.pad_id]
        source = " ".join(task.decode(ids))
        target = split.targets[i]
        if spec.is_image:
            shown = _class_name(spec.class_names, int(target))
        elif target.dim() == 0:
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
    return Preview(" \u00b7 ".join(parts), rows, images)


def _class_name(names: tuple[str, ...], label: int) -> str:
    return names[label] if 0 <= label < len(names) else str(label)


class PreviewStopped(Exception):
    """Raised from a progress report to leave a data step the preview no longer needs."""


@dataclass(frozen=True)
class DataProgress:
    """A report of the preview job's data step: ``total`` is -1 when unknown."""

    what: str
    done: float
    total: float


class ThrottledProgress:
    """A task's progress reports (``effstudio.tasks.progress``) passed on at most every PROGRESS_EVERY_S,
    except a new step's first report and a step's last; an unknown total is sent as -1.

    A report made in the job's own thread after ``stop_requested()`` raises PreviewStopped, so a long
    read or tokenization of settings gone stale ends at its next report (a helper thread's report
    does not: the exception would end that thread, not the job)."""

    def __init__(self, send: Callable[[str, float, float], None], stop_requested: Callable[[], bool]):
        self.send, self.stop_requested = send, stop_requested
        self.job_thread: threading.Thread | None = None  # set when the job starts
        self.what, self.sent_at = "", 0.0

    def __call__(self, what: str, done: float, total: float | None) -> None:
        if self.stop_requested() and threading.current_thread() is self.job_thread:
            raise PreviewStopped(what)
        now = time.monotonic()
        last = total is not None and done >= total
        if what == self.what and not last and now - self.sent_at < PROGRESS_EVERY_S:
            return
        self.what, self.sent_at = what, now
        self.send(what, float(done), -1.0 if total is None else float(total))


def reads_a_table(config: Any) -> bool:
    """A task whose settings name a table's text and label columns (its preview is a TextPreview)."""
    return hasattr(config, "text_column") and hasattr(config, "label_column")


def table_header(path: str, config: Any) -> TableHeader:
    """The columns of the data file ``path`` as the task's format settings read it (a bounded head)."""
    found = sniff_table(path, kind=config.format, delimiter=config.delimiter, encoding=config.encoding)
    return TableHeader(path, tuple(found.columns))


def table_preview(registry: Registry, task_name: str, config: Any) -> Iterator[TableHeader | TextPreview]:
    """The file's header first (the column choosers fill even when the chosen columns are wrong), then
    the built task's preview (runs in a job's thread)."""
    if config.path:
        yield table_header(config.path, config)
    task = registry.get("tasks", task_name).factory(config)
    if not config.path:  # the shipped sample
        yield table_header(task.source()["path"], config)
    yield build_text_preview(task, config.max_length)


class DataPanel(JobHost, Panel):
    changed = Signal()
    preview_ready = Signal()
    data_progress = Signal(str, float, float)  # the preview's data step (what, done, total or -1), in the GUI thread

    def __init__(self, registry: Registry, parent: QWidget | None = None):
        super().__init__("Data", "Choose what the model learns. Generated tasks are cached after the "
                         "first use; drop a data file or folder here to train on it.", parent=parent)
        self.init_jobs()
        self.registry = registry
        self.form: ConfigForm | None = None
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
        self.text_view = TextDataView(self)
        self.text_view.hide()
        preview_layout.addWidget(self.text_view, 1)
        self.image_grid = ImageGrid(self)
        self.image_grid.hide()
        preview_layout.addWidget(self.image_grid, 1)
        self.preview_status = QLabel(self)
        self.preview_status.setObjectName("description")
        self.preview_status.setWordWrap(True)  # a long path in a message must not widen the section
        preview_layout.addWidget(self.preview_status)
        self.progress = QProgressBar(self)
        self.progress.setRange(0, PROGRESS_STEPS)
        self.progress.hide()
        preview_layout.addWidget(self.progress)
        self.data_progress.connect(self._show_progress)

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
        self.setAcceptDrops(True)

    def task_name(self) -> str | None:
        return self.task_box.currentData()

    def _task_changed(self) -> None:
        name = self.task_name()
        if name is None:
            return
        entry = self.registry.get("tasks", name)
        self.description.setText(entry.description)
        if self.form is not None:
            self.form.hide()  # at once: it is deleted when the event loop next runs
            self.form.deleteLater()
        self.form = ConfigForm(entry.config_cls, prefix="task", suggest=COLUMN_FIELDS, parent=self.settings_group)
        self.form.changed.connect(self._form_changed)
        self.settings_layout.addWidget(self.form)
        table = reads_a_table(self.form.config_cls())
        self.table.setVisible(not table)
        self.text_view.setVisible(table)
        self.image_grid.hide()  # until a preview says the task has images
        self.image_grid.clear()
        self.settings_group.setTitle(f"Task settings \u00b7 {name}")
        self.summary.clear()  # another task's
        self._mark_stale()
        self.changed.emit()

    def _form_changed(self, _name: str) -> None:
        self._mark_stale()
        self.changed.emit()

    # -------------------------------------------------------------- data files
    def _dropped_target(self, urls: list[QUrl]) -> tuple[str, DataTarget] | None:
        if not urls or not urls[0].isLocalFile():
            return None
        path = urls[0].toLocalFile()
        target = data_target(self.registry, path, self.task_name())
        return (path, target) if target is not None else None

    def open_data_table(self, path: str) -> bool:
        """Train on a table of texts (CSV, TSV, JSON Lines) dropped anywhere or given at start;
        False for any other path (a model file, which the window opens in Inspect)."""
        target = data_target(self.registry, path, self.task_name()) if is_table(path) else None
        if target is None:
            return False
        self.use_data_path(path, target)
        return True

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        # what is not a data set (a model file, a run config) is left to the window, which opens it
        if self._dropped_target(event.mimeData().urls()) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QDropEvent) -> None:
        found = self._dropped_target(event.mimeData().urls())
        if found is None:
            event.ignore()
            return
        self.use_data_path(*found)
        event.acceptProposedAction()

    def use_data_path(self, path: str, target: DataTarget) -> None:
        """Train on ``path``: switch to the task that reads it and put it in that task's path setting."""
        index = self.task_box.findData(target.task)
        if index != self.task_box.currentIndex():
            self.task_box.setCurrentIndex(index)
        assert self.form is not None
        self.form.set_value(target.field, path)

    # ----------------------------------------------------------------- preview
    @property
    def preview_settled(self) -> bool:
        """No preview is running and the one shown (or its error) is of the current settings."""
        return self.job_of(PREVIEW) is None and not self._preview_stale

    def _mark_stale(self) -> None:
        self._preview_stale = True
        job = self.job_of(PREVIEW)
        if job is not None:  # a long read of settings gone stale ends at its next progress report
            job.stop()
        self.preview_status.setText("Press \u201cShow examples\u201d to decode a few validation examples.")
        if self.isVisible():
            self.refresh_preview()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if self._preview_stale and self.form is not None:
            self.refresh_preview()

    def refresh_preview(self) -> None:
        if self.form is None or self.job_of(PREVIEW) is not None:
            return
        try:
            config = self.form.config()
        except ConfigError as err:
            self.preview_status.setText(f"Cannot preview: {err}")
            return
        self._preview_stale = False
        self.preview_status.setText("Building the task\u2026")
        registry, task_name = self.registry, self.task_name()

        def preview(control: JobControl) -> Iterator[Preview | TableHeader | TextPreview]:
            # reported along the job's events: this thread never touches the panel, which may be gone
            progress = ThrottledProgress(lambda *report: control.report(DataProgress(*report)),
                                         lambda: control.stop_requested)
            progress.job_thread = threading.current_thread()
            try:
                with reporting(progress):
                    if reads_a_table(config):
                        yield from table_preview(registry, task_name, config)
                    else:
                        yield build_preview(registry, task_name, config)
            except PreviewStopped:  # the settings changed: the next preview reads them
                return

        self.start_job(preview, PREVIEW, on_event=self._show_preview, on_failed=self._preview_failed,
                       on_finished=self._preview_finished)

    def jobs_changed(self) -> None:
        idle = self.job_of(PREVIEW) is None
        self.refresh_button.setEnabled(idle)
        if idle:
            self.progress.hide()

    def _show_progress(self, what: str, done: float, total: float) -> None:
        if total > 0:
            self.progress.setRange(0, PROGRESS_STEPS)
            self.progress.setValue(round(PROGRESS_STEPS * min(done / total, 1.0)))
            self.progress.setFormat(f"{what} \u00b7 %p%")
        else:
            self.progress.setRange(0, 0)  # busy: no known end
            self.progress.setFormat(what)
        self.progress.show()

    def _show_preview(self, preview: DataProgress | Preview | TableHeader | TextPreview) -> None:
        if self._preview_stale:  # the settings (or the task) changed since: the next preview shows theirs
            return
        if isinstance(preview, DataProgress):
            self.data_progress.emit(preview.what, preview.done, preview.total)
            return
        if isinstance(preview, TableHeader):
            self._offer_columns(preview.columns)
            return
        if self.form is not None:
            self.form.validate()  # what a failed preview marked is mended: only the settings' own errors stay
        if isinstance(preview, TextPreview):
            self.summary.setText(preview.summary)
            self.text_view.show_preview(preview)
            self.preview_status.setText(f"The first {len(preview.examples)} training examples as the tokenizer "
                                        "cuts them into word pieces.")
            return
        self.summary.setText(preview.summary)
        self.table.setVisible(preview.images is None)
        self.image_grid.setVisible(preview.images is not None)
        if preview.images is not None:
            self.image_grid.show_images(preview.images, [label for _source, label in preview.rows])
            self.preview_status.setText(f"First {len(preview.rows)} validation images with their labels.")
            return
        self.table.setRowCount(len(preview.rows))
        for row, (source, target) in enumerate(preview.rows):
            for col, text in enumerate((source, target)):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(row, col, item)
        self.preview_status.setText(f"First {len(preview.rows)} validation examples, padding removed.")

    def _offer_columns(self, columns: tuple[str, ...]) -> None:
        """Fill the column choosers with the file's header (the optional ones may be left empty)."""
        assert self.form is not None
        for name in COLUMN_FIELDS:
            if name in self.form.specs:
                self.form.suggest_values(name, ([""] if name in OPTIONAL_COLUMNS else []) + list(columns))

    def _preview_failed(self, message: str) -> None:
        self.summary.clear()
        self.text_view.clear_preview()
        self.preview_status.setText(f"Cannot build the task: {message}")
        job = self.job_of(PREVIEW)
        err = job.exception if job is not None else None
        # a bad column or file: mark its field, unless the settings changed since (the next preview says)
        if isinstance(err, ConfigError) and self.form is not None and not self._preview_stale:
            self.form.set_error(err.field, err.message)

    def _preview_finished(self, _status: str) -> None:
        self.preview_ready.emit()
        if self._preview_stale and self.isVisible():
            self.refresh_preview()

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
