"""Inspect section: open any model file or folder and look at every tensor in it, safely.

Opening, statistics, pictures and diffs each run as a job (:class:`~effstudio.gui.job.JobHost`
slots "open", "stats", "picture", "diff", "graph") in a worker thread over the Qt-free
:mod:`effstudio.inspect` core, so a multi-gigabyte file never freezes the
window: the summary appears as soon as the header is read, and each tensor's
statistics fill the tree as they arrive. A file that cannot be read (refused
pickle, truncated, wrong extension...) shows its reason in a banner; the
section and the window keep working. The tensor tree is
:mod:`~effstudio.gui.panels.inspect_tensors`, the Diff tab
:mod:`~effstudio.gui.panels.inspect_diff`, the Graph tab (built when first shown)
:mod:`~effstudio.gui.panels.inspect_graph`; this file wires them together.
"""

from __future__ import annotations

import html
import json
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from effstudio.engine.events import Event, JobControl
from effstudio.gui.job import Job, JobFn, JobHost
from effstudio.gui.metrics import MetricStrip
from effstudio.gui.panels.base import Panel, description_label, empty_state
from effstudio.gui.panels.inspect_diff import DiffView, diff_events
from effstudio.gui.panels.inspect_graph import GraphTab, graph_job
from effstudio.gui.panels.inspect_tensors import TensorTable
from effstudio.gui.plots.tensor_view import TensorView
from effstudio.gui.theme import monospace_font
from effstudio.inspect import Inspected, InspectError, open_model
from effstudio.inspect.diff import iter_diff_picture
from effstudio.inspect.report import format_bytes, format_count
from effstudio.inspect.stats import (
    StatsDoneEvent,
    TensorPictureEvent,
    TensorStats,
    TensorStatsEvent,
    iter_picture,
    iter_stats,
)
from effstudio.pretrained.lab_import import hugging_face_folder

FILE_FILTER = ("Model files (*.safetensors *.pt *.pth *.bin *.ckpt *.onnx *.npy *.npz);;"
               "Index files (*.index.json);;All files (*)")


@dataclass(frozen=True)
class Opened:
    path: str
    inspected: Inspected | None
    error: str | None = None


def open_job(path: Path) -> Callable[[JobControl], Iterator[Opened]]:
    def run(control: JobControl) -> Iterator[Opened]:
        try:
            yield Opened(str(path), open_model(path))
        except InspectError as err:
            yield Opened(str(path), None, str(err))

    return run


class InspectPanel(JobHost, Panel):
    opened = Signal(str)  # a path that opened: for the recent-files menu
    open_in_lab = Signal(str)  # an effstudio checkpoint whose settings the user wants in the forms
    message = Signal(str)  # a line for the status bar

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Inspect", "Drop a model file or folder anywhere on the window, or open one.",
                         scroll=False, parent=parent)
        self.init_jobs()
        self.inspected: Inspected | None = None
        self.stats: dict[str, TensorStats] = {}
        self.state = "empty"  # empty | opening | ready | failed
        self.stats_done = False
        self._selected: str | None = None

        self.open_button = QPushButton("Open file\u2026", self)
        self.open_button.clicked.connect(self.open_file_dialog)
        self.folder_button = QPushButton("Open folder\u2026", self)
        self.folder_button.clicked.connect(self.open_folder_dialog)
        self.compare_button = QPushButton("Compare with\u2026", self)
        self.compare_button.setToolTip("Diff against another checkpoint: tensors added, removed, reshaped, and "
                                       "the relative change of each")
        self.compare_button.clicked.connect(self.compare_dialog)
        self.lab_button = QPushButton("Open in lab", self)
        self.lab_button.setObjectName("primary")
        self.lab_button.setToolTip("Load this effstudio checkpoint's run settings into the Model, Data and Train "
                                   "sections, to train it further or compare settings")
        self.lab_button.clicked.connect(self._open_in_lab)
        self.resume_button = QPushButton("Copy resume command", self)
        self.resume_button.setToolTip("Copy `effstudio train --resume PATH`: continues this exact run headless")
        self.resume_button.clicked.connect(self.copy_resume_command)
        self.progress = QProgressBar(self)
        self.progress.setFixedWidth(160)
        self.progress.setTextVisible(True)
        self.progress.setFormat("statistics %v/%m")
        self.progress.hide()
        toolbar = QHBoxLayout()
        toolbar.setSpacing(8)
        for button in (self.open_button, self.folder_button, self.compare_button):
            toolbar.addWidget(button)
        toolbar.addStretch(1)
        toolbar.addWidget(self.progress)
        toolbar.addWidget(self.resume_button)
        toolbar.addWidget(self.lab_button)
        self.body.addLayout(toolbar)

        self.error_banner = QLabel(self)
        self.error_banner.setObjectName("inspectError")
        self.error_banner.setWordWrap(True)
        self.error_banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_banner.hide()
        self.body.addWidget(self.error_banner)

        self.empty = QWidget(self)
        empty_layout = QVBoxLayout(self.empty)
        empty_layout.addStretch(1)
        empty_layout.addWidget(empty_state(
            "Drop a checkpoint or a model folder here to see everything in it.\n\n"
            "safetensors (also sharded folders) \u00b7 PyTorch .pt .pth .bin .ckpt \u00b7 ONNX \u00b7 NumPy .npy .npz "
            "\u00b7 Hugging Face folders with config.json\n\n"
            "Files are only read, never run: a pickle that would execute code is refused.", self.empty))
        empty_layout.addStretch(2)

        self.summary = MetricStrip(names=("format", "size", "tensors", "parameters", "dtypes"), parent=self)
        self.architecture = QLabel(self)
        self.architecture.setTextFormat(Qt.TextFormat.RichText)
        self.architecture.setWordWrap(True)
        self.architecture.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.notes = description_label(self)  # plain text: the notes quote names read from the file

        self.tensors = TensorTable(self)
        self.tensors.selected.connect(self.show_tensor)
        self.tensors.unlisted.connect(self._selection_unlisted)
        self.tensor_view = TensorView(self)
        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(self.tensors)
        self.splitter.addWidget(self.tensor_view)
        self.splitter.setStretchFactor(0, 5)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setSizes([850, 360])
        self.diff_view = DiffView(self)
        self.diff_view.tensor_clicked.connect(self.show_difference)
        self.details = QPlainTextEdit(self)
        self.details.setObjectName("inspectDetails")
        self.details.setReadOnly(True)
        self.details.setFont(monospace_font())
        self.tabs = QTabWidget(self)
        self.tabs.addTab(self.splitter, "Tensors")
        self.tabs.addTab(self.diff_view, "Diff")
        self.graph_tab = GraphTab(self)
        self.graph_tab.tensor_chosen.connect(self.select_tensor)
        self.tabs.addTab(self.graph_tab, "Graph")
        self.tabs.addTab(self.details, "Details")
        self.tabs.currentChanged.connect(self._build_graph_if_shown)

        content = QWidget(self)
        content_layout = QVBoxLayout(content)
        content_layout.setContentsMargins(0, 0, 0, 0)
        content_layout.setSpacing(8)
        for widget in (self.summary, self.architecture, self.notes):
            content_layout.addWidget(widget)
        content_layout.addWidget(self.tabs, 1)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.empty)
        self.stack.addWidget(content)
        self.body.addWidget(self.stack, 1)
        self._update_buttons()

    # ------------------------------------------------------------------ jobs
    def _run(self, slot: str, fn: JobFn, on_event: Callable[[Any], None]) -> Job:
        """Start ``fn`` in ``slot``; opening another file cancels it (its late events are dropped)."""
        return self.start_job(fn, slot, on_event=on_event,
                              on_failed=lambda text: self.show_error(f"Unexpected error while reading: {text}"))

    def jobs_changed(self) -> None:
        self._update_buttons()

    # ------------------------------------------------------------------ open
    def open(self, path: str | Path) -> Job:
        """Start reading a file or folder; the result arrives as the section fills (or a banner says why not)."""
        path = Path(path)
        # what is open stays (and its diff goes on) until the new file has been read: a refused file leaves it
        self.cancel_job("open")
        self.state = "opening"
        self.stats_done = False
        self.error_banner.hide()
        self.subtitle.setText(f"Opening {path}\u2026")
        self._update_buttons()
        return self._run("open", open_job(path), self._on_opened)

    def _on_opened(self, event: Opened) -> None:
        if event.inspected is None:
            self.show_error(event.error or "cannot be read", Path(event.path))
            self.message.emit(f"Cannot inspect {(event.error or '').split('. ')[0]}")
            return
        self.show_inspected(event.inspected)
        self.opened.emit(event.path)
        self.message.emit(f"Inspecting {Path(event.path).name}: {len(event.inspected.tensors):,} tensors")

    def show_error(self, message: str, refused: Path | None = None) -> None:
        """Say why a file cannot be inspected. A ``refused`` file leaves the inspection that was open
        (its tensors, its diff) as it was, under the message."""
        if refused is not None and self.inspected is not None:
            self.state = "ready"
            self.error_banner.setText(f"<b>{html.escape(refused.name)} cannot be inspected</b>; "
                                      f"{html.escape(self.inspected.path.name)} stays open.<br>{html.escape(message)}")
            self.error_banner.show()
            self.subtitle.setText(str(self.inspected.path))
            self._update_buttons()
            return
        self.cancel_jobs()
        self.state = "failed"
        self.inspected = None
        self.stats = {}
        self.tensors.model.fill([])
        self.tensor_view.show_message("")
        self.error_banner.setText(f"<b>This file cannot be inspected.</b><br>{html.escape(message)}")
        self.error_banner.show()
        self.subtitle.setText("Drop a model file or folder anywhere on the window, or open one.")
        self.stack.setCurrentIndex(0)
        self._update_buttons()

    def show_inspected(self, inspected: Inspected) -> None:
        for slot in ("stats", "picture", "diff", "diff_picture"):  # the jobs of the file this one replaces
            self.cancel_job(slot)
        self.inspected = inspected
        self.stats = {}
        self.state = "ready"
        self.error_banner.hide()
        self.subtitle.setText(str(inspected.path))
        tiles = self.summary.tiles
        tiles["format"].set_text(inspected.format)
        tiles["size"].set_text(format_bytes(inspected.file_bytes))
        tiles["tensors"].set_text(f"{len(inspected.tensors):,}")
        tiles["parameters"].set_text(format_count(inspected.params))
        tiles["parameters"].setToolTip(f"{inspected.params:,} parameters")
        dtypes = inspected.dtypes()
        tiles["dtypes"].set_text(", ".join(list(dtypes)[:3]) + ("\u2026" if len(dtypes) > 3 else "") or "\u2013")
        tiles["dtypes"].setToolTip("\n".join(f"{name}: {count} tensors" for name, count in dtypes.items()))
        self.architecture.setText(f"<span style='font-size:14px'><b>{html.escape(inspected.architecture)}</b></span>")
        self.notes.setText(" \u00b7 ".join(inspected.notes))
        self.notes.setVisible(bool(inspected.notes))
        self.tensors.fill(inspected.tensors)
        self.details.setPlainText(details_text(inspected))
        self.diff_view.reset()
        self.graph_tab.forget()
        self.tensor_view.show_message("Select a tensor in the tree to see its histogram and heatmap.")
        self.stack.setCurrentIndex(1)
        self.tabs.setCurrentIndex(0)
        self.progress.setRange(0, max(len(inspected.tensors), 1))
        self.progress.setValue(0)
        self.progress.setVisible(bool(inspected.tensors))
        self._run("stats", lambda control: iter_stats(inspected, control), self._on_stats)
        self._update_buttons()
        self.tensors.select_first()

    def _on_stats(self, event: Event) -> None:
        if isinstance(event, TensorStatsEvent):
            stats = event.stats
            if stats is not None:
                self.stats[event.name] = stats
            self.tensors.model.set_stats(event.name, stats, event.error)
            self.progress.setValue(event.index + 1)
        elif isinstance(event, StatsDoneEvent):
            self.stats_done = event.status == "finished"
            self.progress.hide()
            if event.status == "finished":
                self.message.emit(f"Statistics of {event.tensors:,} tensors in {event.seconds:.1f} s")

    def _build_graph_if_shown(self, _index: int = -1) -> None:
        """The Graph tab is built when first shown for the open file (in a job: a large ONNX takes a second)."""
        inspected = self.inspected
        if self.tabs.currentWidget() is self.graph_tab and inspected is not None and self.graph_tab.wants(inspected):
            self.graph_tab.building(inspected)
            self._run("graph", graph_job(inspected), self.graph_tab.on_event)

    # -------------------------------------------------------------- selection
    def select_tensor(self, name: str) -> bool:
        return self.tensors.select(name)

    def show_tensor(self, name: str) -> None:
        """Draw the histogram and heatmap of tensor ``name`` (a picture job replaces the previous one)."""
        if self.inspected is None:
            return
        tensor = self.inspected.tensor(name)
        self._selected = name
        self.tensor_view.show_loading(name, tensor.shape, tensor.dtype)
        stats = self.stats.get(name)
        self._run("picture", lambda control: iter_picture(tensor, stats, control), self._on_picture)

    def _selection_unlisted(self) -> None:
        """The filter hid the tensor the side pane shows: the pane shows nothing rather than it."""
        self.cancel_job("picture")
        self._selected = None
        self.tensor_view.show_message("The selected tensor is filtered out. Select a listed tensor to see its "
                                      "histogram and heatmap.")

    def _on_picture(self, event: TensorPictureEvent) -> None:
        if event.name != self._selected or self.inspected is None:
            return
        tensor = self.inspected.tensor(event.name)
        self.tensor_view.set_picture(event, tensor.shape, tensor.dtype)

    # ------------------------------------------------------------------- diff
    def compare_with(self, path: str | Path) -> Job | None:
        """Diff the open file (A) against another (B); the Diff tab fills as tensors are compared."""
        if self.inspected is None:
            return None
        path = Path(path)
        self.diff_view.reset(f"Opening {html.escape(str(path))}\u2026")
        self.tabs.setCurrentIndex(1)
        base = self.inspected
        return self._run("diff", lambda control: diff_events(base, path, control), self.diff_view.on_event)

    def show_difference(self, name: str) -> None:
        """Both histograms of tensor ``name`` and the heatmap of B - A, in the Diff tab."""
        pair = self.diff_view.pair(name)
        if pair is None:
            return
        self.diff_view.picture.show_loading(name)
        self._run("diff_picture", lambda control: iter_diff_picture(*pair, control), self.diff_view.picture.set_picture)

    # -------------------------------------------------------------- dialogs
    def _start_dir(self) -> str:
        return str(self.inspected.path.parent) if self.inspected is not None else str(Path.home())

    def open_file_dialog(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Inspect a model file", self._start_dir(), FILE_FILTER)
        if name:
            self.open(name)

    def open_folder_dialog(self) -> None:
        name = QFileDialog.getExistingDirectory(self, "Inspect a model folder", self._start_dir())
        if name:
            self.open(name)

    def compare_dialog(self) -> None:
        name, _ = QFileDialog.getOpenFileName(self, "Compare with", self._start_dir(), FILE_FILTER)
        if name:
            self.compare_with(name)

    # ------------------------------------------------------------ lab actions
    def _update_buttons(self) -> None:
        loaded = self.inspected is not None
        effstudio_checkpoint = loaded and self.inspected.is_effstudio  # type: ignore[union-attr]
        self.compare_button.setEnabled(loaded)
        self.lab_button.setVisible(bool(effstudio_checkpoint) or self._hugging_face_folder() is not None)
        self.resume_button.setVisible(bool(effstudio_checkpoint))

    def _hugging_face_folder(self) -> Path | None:
        """The Hugging Face folder being inspected (the lab imports it), else None."""
        return hugging_face_folder(self.inspected.path) if self.inspected is not None else None

    def _open_in_lab(self) -> None:
        if self.inspected is not None and self.inspected.is_effstudio:
            self.open_in_lab.emit(str(self.inspected.files[0]))
        elif (folder := self._hugging_face_folder()) is not None:
            self.open_in_lab.emit(str(folder))

    def copy_resume_command(self) -> str | None:
        if self.inspected is None or not self.inspected.is_effstudio:
            return None
        text = f"effstudio train --resume {shlex.quote(str(self.inspected.files[0]))}"
        QApplication.clipboard().setText(text)
        self.message.emit(f"Copied: {text}")
        return text


def details_text(inspected: Inspected) -> str:
    lines = [f"Path: {inspected.path}", f"Format: {inspected.format}",
             f"Size: {format_bytes(inspected.file_bytes)} ({inspected.file_bytes:,} bytes)",
             f"Tensors: {len(inspected.tensors):,}, {inspected.params:,} parameters",
             f"Architecture: {inspected.architecture}"]
    if len(inspected.files) > 1 or inspected.files != [inspected.path]:
        lines += ["", "Files read:"] + [f"  {path}" for path in inspected.files]
    if inspected.notes:
        lines += ["", "Notes:"] + [f"  {note}" for note in inspected.notes]
    graph = inspected.graph
    if graph:
        lines += ["", "ONNX graph:", f"  producer: {graph['producer'] or '-'}, IR version {graph['ir_version']}",
                  "  opset: " + ", ".join(f"{d} {v}" for d, v in graph["opset"].items())]
        for key in ("inputs", "outputs"):
            lines.append(f"  {key}:")
            lines += [f"    {v['name']}: {v['dtype']} {v['shape']}" for v in graph[key]]
        lines.append(f"  operators ({graph['nodes']} nodes):")
        lines += [f"    {op:<24} {count}" for op, count in graph["operators"].items()]
    if inspected.metadata:
        lines += ["", "Metadata:"]
        for key, value in inspected.metadata.items():
            if key == "config" and value.startswith("{"):
                try:
                    value = json.dumps(json.loads(value), indent=2).replace("\n", "\n    ")
                except (ValueError, RecursionError):  # shown as it is stored
                    pass
            lines.append(f"  {key}: {value}")
    if inspected.config:
        lines += ["", "config.json:", json.dumps(inspected.config, indent=2)]
    return "\n".join(lines)
