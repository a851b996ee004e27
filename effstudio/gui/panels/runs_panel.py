"""Runs section: every recorded run in a sortable, filterable table, and their curves overlaid.

The table reads the run store (``effstudio.runs.store``) in the GUI thread: its
queries take milliseconds. Selecting several runs plots one metric of each on
the same axes. From here a run can be renamed, tagged, deleted with its files
(after a confirmation), its config opened in the forms to run it again, or it
can be continued from its last checkpoint. While a run is recording, the table
refreshes itself every few seconds when the section is on screen. The table is
:mod:`~effstudio.gui.panels.runs_table`, the curves
:mod:`~effstudio.gui.panels.run_curves`, the files list
:mod:`~effstudio.gui.panels.run_files`; this file wires them to the store.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from effstudio.config import ConfigError
from effstudio.engine.run_config import RunConfig
from effstudio.engine.run_plan import RunPlan
from effstudio.gui.panels.base import Panel, empty_state
from effstudio.gui.panels.run_curves import RunCurves
from effstudio.gui.panels.run_files import RunFiles
from effstudio.gui.panels.runs_table import RunsTable
from effstudio.registry import UnknownEntryError
from effstudio.runs.store import RunRecord, RunStore, RunStoreError

if TYPE_CHECKING:
    from PySide6.QtGui import QShowEvent

LIVE_REFRESH_MS = 3000


class RunsPanel(Panel):
    """The Runs section. ``store_path`` picks a database (tests); by default the user's."""

    open_config = Signal(object)  # RunPlan (a RunConfig and its compression steps): show it in the forms
    inspect_file = Signal(str)  # a file of a run, double-clicked in the Files list
    continue_run = Signal(object, str, str)  # RunConfig, checkpoint path, run folder
    message = Signal(str)

    def __init__(self, store_path: str | Path | None = None, parent: QWidget | None = None):
        super().__init__("Runs", "Every run from the window or the command line, recorded with its settings, "
                                 "curves and files. Select several runs to compare their curves.",
                         scroll=False, parent=parent)
        self.store_path = store_path
        self._store: RunStore | None = None
        self.store_error: str | None = None

        self.filter_edit = QLineEdit(self)
        self.filter_edit.setPlaceholderText("Filter by name, model, attention, task, tag\u2026")
        self.filter_edit.setClearButtonEnabled(True)
        self.status_box = QComboBox(self)
        self.status_box.addItem("All statuses", None)
        for status in ("running", "finished", "stopped", "failed", "interrupted"):
            self.status_box.addItem(status.capitalize(), status)
        self.count_label = QLabel(self)
        self.count_label.setObjectName("description")
        refresh = QPushButton("Refresh", self)
        refresh.clicked.connect(self.refresh)
        top = QHBoxLayout()
        top.setSpacing(8)
        top.addWidget(self.filter_edit, 1)
        top.addWidget(self.status_box)
        top.addWidget(self.count_label)
        top.addWidget(refresh)
        self.body.addLayout(top)

        self.table = RunsTable(self)
        self.table.doubleClicked.connect(lambda _index: self.open_selected_config())

        self.rename_button = QPushButton("Rename\u2026", self)
        self.tag_button = QPushButton("Tags\u2026", self)
        self.delete_button = QPushButton("Delete\u2026", self)
        self.open_button = QPushButton("Open config in Train", self)
        self.open_button.setToolTip("Load the run's settings into the forms, to run it again or change it")
        self.continue_button = QPushButton("Continue from checkpoint", self)
        self.continue_button.setToolTip("Resume training from the run's last checkpoint, in its folder")
        self.rename_button.clicked.connect(self.rename_selected)
        self.tag_button.clicked.connect(self.tag_selected)
        self.delete_button.clicked.connect(self.delete_selected)
        self.open_button.clicked.connect(self.open_selected_config)
        self.continue_button.clicked.connect(self.continue_selected)
        actions = QHBoxLayout()
        actions.setSpacing(6)
        for button in (self.rename_button, self.tag_button, self.delete_button):
            actions.addWidget(button)
        actions.addStretch(1)
        self.selection_label = QLabel(self)
        self.selection_label.setObjectName("description")
        actions.addWidget(self.selection_label)
        actions.addStretch(1)
        actions.addWidget(self.open_button)
        actions.addWidget(self.continue_button)

        table_box = QWidget(self)
        table_layout = QVBoxLayout(table_box)
        table_layout.setContentsMargins(0, 0, 0, 0)
        table_layout.setSpacing(6)
        table_layout.addWidget(self.table, 1)
        table_layout.addLayout(actions)

        self.compare = RunCurves(self)
        plot_controls = QHBoxLayout()
        plot_controls.setSpacing(8)
        plot_controls.addWidget(QLabel("<b>Compare</b>", self))
        plot_controls.addLayout(self.compare.controls())
        plot_controls.addStretch(1)
        self.files = RunFiles(self)
        self.files.inspect_file.connect(self.inspect_file)
        plot_row = QHBoxLayout()
        plot_row.setSpacing(8)
        plot_row.addWidget(self.compare, 5)
        plot_row.addWidget(self.files, 3)
        plot_box = QWidget(self)
        plot_layout = QVBoxLayout(plot_box)
        plot_layout.setContentsMargins(0, 4, 0, 0)
        plot_layout.setSpacing(6)
        plot_layout.addLayout(plot_controls)
        plot_layout.addLayout(plot_row, 1)

        self.empty = empty_state("No runs recorded yet.\nRuns started here or with `effstudio train` appear "
                                 "in this table, with their settings, curves and files.", self)
        self.splitter = QSplitter(Qt.Orientation.Vertical, self)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(table_box)
        self.splitter.addWidget(plot_box)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([330, 330])
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.empty)
        self.stack.addWidget(self.splitter)
        self.body.addWidget(self.stack, 1)

        self.filter_edit.textChanged.connect(self._filter_changed)
        self.status_box.currentIndexChanged.connect(self._filter_changed)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        self.compare.changed.connect(self.plot_selected)
        self.timer = QTimer(self)
        self.timer.setInterval(LIVE_REFRESH_MS)
        self.timer.timeout.connect(self._live_refresh)
        self._update_buttons()

    # ------------------------------------------------------------------ store
    @property
    def store(self) -> RunStore | None:
        """The store (opened on first use: that marks runs of crashed processes interrupted)."""
        if self._store is None:
            try:
                self._store = RunStore(self.store_path)
                self.store_error = None
            except RunStoreError as err:
                self.store_error = str(err)
                self.empty.setText(f"The run store cannot be opened:\n{err}")
        return self._store

    def close_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def refresh(self) -> None:
        """Re-read the runs, keeping the selection and the sort order."""
        store = self.store
        if store is None:
            self.stack.setCurrentIndex(0)
            return
        selected = self.selected_ids()
        runs = store.list_runs()
        self.table.records.set_runs(runs)
        self.stack.setCurrentIndex(1 if runs else 0)
        self.select_ids(selected)
        self._update_count()
        if any(r.status == "running" for r in runs):
            self.timer.start()
        else:
            self.timer.stop()
        self.plot_selected()

    def _live_refresh(self) -> None:
        if self.isVisible():
            self.refresh()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.refresh()

    # -------------------------------------------------------------- selection
    def selected_ids(self) -> list[int]:
        return self.table.selected_ids()

    def selected_runs(self) -> list[RunRecord]:
        by_id = {run.id: run for run in self.table.records.runs}
        return [by_id[i] for i in self.selected_ids() if i in by_id]

    def select_ids(self, run_ids: list[int]) -> None:
        self.table.select_ids(run_ids)
        self._selection_changed()

    def _filter_changed(self, *_args: Any) -> None:
        self.table.proxy.set_status(self.status_box.currentData())
        self.table.proxy.set_text(self.filter_edit.text())
        self._update_count()

    def _update_count(self) -> None:
        shown, total = self.table.proxy.rowCount(), self.table.records.rowCount()
        noun = "run" if total == 1 else "runs"
        self.count_label.setText(f"{total} {noun}" if shown == total else f"{shown} of {total} {noun}")

    def _selection_changed(self, *_args: Any) -> None:
        self._update_buttons()
        self.show_files()
        self._offer_model_metrics()
        self.plot_selected()

    def _offer_model_metrics(self) -> None:
        """Add the selected runs' own step metrics (a model's extras, e.g. ponder steps) to the chooser."""
        store = self.store
        if store is not None:
            self.compare.offer_metrics({name for run in self.selected_runs() for name in store.metric_names(run.id)})

    def _update_buttons(self) -> None:
        runs = self.selected_runs()
        one = len(runs) == 1
        self.rename_button.setEnabled(one)
        self.tag_button.setEnabled(bool(runs))
        self.delete_button.setEnabled(bool(runs) and all(r.status != "running" for r in runs))
        self.open_button.setEnabled(one)
        self.continue_button.setEnabled(one and runs[0].status != "running")
        if not runs:
            self.selection_label.setText("")
        elif one:
            run = runs[0]
            self.selection_label.setText(f"#{run.id} \u00b7 {run.device or '?'} \u00b7 "
                                         f"effstudio {run.effstudio_version or '?'}, torch {run.torch_version or '?'}")
        else:
            self.selection_label.setText(f"{len(runs)} runs selected")

    # ------------------------------------------------------------------- plot
    def plot_selected(self, *_args: Any) -> None:
        """One curve per selected run in the plot of each chosen metric."""
        store = self.store
        runs = self.selected_runs() if store is not None else []
        metrics = self.compare.selected_metrics()
        self.compare.show_runs({run.id: (f"#{run.id} {run.name}", store.metrics(run.id, metrics) if metrics else {})
                                for run in runs})

    # ---------------------------------------------------------------- editing
    def rename_selected(self) -> bool:
        runs = self.selected_runs()
        if len(runs) != 1 or self.store is None:
            return False
        name, ok = QInputDialog.getText(self, "Rename run", f"New name of run #{runs[0].id}:", text=runs[0].name)
        if not ok or not name.strip():
            return False
        self.store.rename(runs[0].id, name)
        self.refresh()
        return True

    def tag_selected(self) -> bool:
        runs = self.selected_runs()
        if not runs or self.store is None:
            return False
        current = ", ".join(runs[0].tags) if len(runs) == 1 else ""
        what = f"run #{runs[0].id}" if len(runs) == 1 else f"{len(runs)} runs"
        text, ok = QInputDialog.getText(self, "Tags", f"Tags of {what}, separated by commas:", text=current)
        if not ok:
            return False
        tags = [t for t in text.split(",") if t.strip()]
        for run in runs:
            self.store.set_tags(run.id, tags)
        self.refresh()
        return True

    def delete_selected(self) -> bool:
        """Delete the selected runs and their files after a confirmation; True when deleted."""
        runs = [r for r in self.selected_runs() if r.status != "running"]
        store = self.store
        if not runs or store is None:
            return False
        files = [path for run in runs for path in store.run_files(run.id)]
        names = ", ".join(f"#{r.id} {r.name}" for r in runs[:5]) + (" \u2026" if len(runs) > 5 else "")
        box = QMessageBox(QMessageBox.Icon.Warning, "Delete runs",
                          f"Delete {len(runs)} run{'s' if len(runs) > 1 else ''} ({names})"
                          f"{f' and {len(files)} file(s): checkpoints, configs, event logs' if files else ''}?\n\n"
                          "This cannot be undone.",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, self)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        if files:
            box.setDetailedText("\n".join(str(p) for p in files))
        if box.exec() != QMessageBox.StandardButton.Yes:
            return False
        kept = []
        for run in runs:
            try:
                kept += store.delete_run(run.id).kept
            except RunStoreError as err:
                self.message.emit(str(err))
        self.refresh()
        self.message.emit(f"Deleted {len(runs)} run(s)" + (f"; could not remove {len(kept)} file(s)" if kept else ""))
        return True

    def show_files(self) -> None:
        """List the files of the one selected run (its artifacts in the run store)."""
        runs, store = self.selected_runs(), self.store
        self.files.show_artifacts(store.artifacts(runs[0].id) if len(runs) == 1 and store is not None else None)

    def _config_of(self, run: RunRecord) -> RunConfig | None:
        try:
            return RunConfig.from_dict(run.config)
        except (ConfigError, UnknownEntryError) as err:
            self.message.emit(f"Run #{run.id}'s settings cannot be loaded: {err}")
            return None

    def open_selected_config(self) -> bool:
        runs = self.selected_runs()
        if len(runs) != 1:
            return False
        try:
            plan = RunPlan.from_dict(runs[0].config)
        except (ConfigError, UnknownEntryError) as err:
            self.message.emit(f"Run #{runs[0].id}'s settings cannot be loaded: {err}")
            return False
        self.open_config.emit(plan)
        return True

    def continue_selected(self) -> bool:
        """Ask to continue the run from its last checkpoint (more steps asked for if it had finished)."""
        runs = self.selected_runs()
        store = self.store
        if len(runs) != 1 or store is None:
            return False
        run = runs[0]
        checkpoint = store.last_checkpoint(run.id)
        if checkpoint is None:
            self.message.emit(f"Run #{run.id} has no checkpoint to continue from")
            return False
        config = self._config_of(run)
        if config is None:
            return False
        step = checkpoint.step or 0
        if step >= config.train.steps:
            steps, ok = QInputDialog.getInt(
                self, "Continue run", f"Run #{run.id} ended at step {step}. Train it up to step:",
                value=step + config.train.steps, minValue=step + 1, maxValue=10_000_000)
            if not ok:
                return False
            config = config.with_overrides({"train.steps": steps})
        self.continue_run.emit(config, checkpoint.path, str(Path(checkpoint.path).parent))
        return True
