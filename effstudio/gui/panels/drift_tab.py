"""The Evaluate section's Drift tab: does new data still look like what the model was trained on?

Pick a checkpoint, the reference (a split of its task, or a data file) and the current data (a file);
the core's drift check (:func:`effstudio.evaluate.run.drift`) runs as a job and its report is drawn
by :class:`~effstudio.gui.views.drift_view.DriftResults`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from effstudio.config import ConfigError, param
from effstudio.evaluate.events import Drifted, DriftProgress
from effstudio.evaluate.results import DriftReport
from effstudio.gui import theme
from effstudio.gui.forms.config_form import ConfigForm
from effstudio.gui.icons import action_icon, icon
from effstudio.gui.job import JobHost
from effstudio.gui.panels.base import description_label
from effstudio.gui.panels.evaluate_jobs import bad_input_line, drift_job
from effstudio.gui.views.drift_view import DriftResults


@dataclass(frozen=True)
class DriftInputs:
    """What a drift check compares."""

    checkpoint: str = param("", path="file", help="the model whose representations and predictions are compared")
    reference: str = param("train", path="file",
                           help="what the model was trained on: a split of its task (train, val, test) or a data file")
    current: str = param("", path="file", label="Current data", help="the new data: a file in the task's format")


class DriftTab(JobHost, QWidget):
    """Inputs and a Run button above the results; ``report`` is the last report shown."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.init_jobs()
        self.report: DriftReport | None = None
        self.error: str | None = None
        inputs = QGroupBox("Compare", self)
        inputs_layout = QVBoxLayout(inputs)
        self.form = ConfigForm(DriftInputs, columns=3, parent=inputs)
        self.form.editor("checkpoint").setPlaceholderText("a checkpoint or .onnx file")
        self.form.editor("current").setPlaceholderText("a data file")
        inputs_layout.addWidget(self.form)
        self.run_button = QPushButton(icon("start", theme.ON_DARK), "Check for drift", inputs)
        self.run_button.setObjectName("primary")
        self.run_button.clicked.connect(self.start)
        self.stop_button = QPushButton(action_icon("stop"), "Stop", inputs)
        self.stop_button.clicked.connect(self.stop_jobs)
        self.progress = QProgressBar(inputs)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("idle")
        self.status_label = description_label(inputs)
        row = QHBoxLayout()
        for widget in (self.run_button, self.stop_button):
            row.addWidget(widget)
        row.addWidget(self.progress, 1)
        inputs_layout.addLayout(row)
        inputs_layout.addWidget(self.status_label)
        self.results = DriftResults(self)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 6, 0, 0)
        layout.addWidget(inputs)
        layout.addWidget(self.results, 1)
        self.status_label.setText("Reference and current data go through the model; each signal is compared "
                                  "with its threshold.")
        self.jobs_changed()

    def offer_checkpoint(self, path: str | Path) -> None:
        """Use ``path`` unless a checkpoint is already chosen."""
        if not self.form.raw_values()["checkpoint"].strip():
            self.form.set_value("checkpoint", str(path))

    def start(self) -> bool:
        if self.job_running():
            return False
        try:
            inputs = self.form.config()
        except ConfigError as err:
            self._problem(str(err))
            return False
        missing = [name for name in ("checkpoint", "current") if not getattr(inputs, name).strip()]
        if missing:
            self._problem(f"Choose the {' and the '.join(missing)} file first.")
            return False
        self.error = None
        self.progress.setRange(0, 0)
        self.progress.setFormat("drift\u2026")
        self.status_label.setStyleSheet("")
        self.status_label.setText(f"Comparing {Path(inputs.current).name} with {inputs.reference}\u2026")
        self.start_job(drift_job(Path(inputs.checkpoint), inputs.reference.strip(), Path(inputs.current)),
                       on_event=self._on_event, on_finished=self._on_finished)
        return True

    def _on_event(self, event: object) -> None:
        if isinstance(event, Drifted):
            self.show_report(event.report)
        elif isinstance(event, DriftProgress):
            self.progress.setRange(0, max(event.total, 1))
            self.progress.setValue(event.done)
            self.progress.setFormat(f"{event.stage} {event.done}/{event.total}")

    def show_report(self, report: DriftReport) -> None:
        self.report = report
        self.results.show_report(report)

    def _on_finished(self, status: str) -> None:
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if status == "finished" else 0)
        self.progress.setFormat(status)
        if status == "finished" and self.report is not None:
            self.status_label.setText("Done: a signal past its threshold (the dashed line) says drift.")
        elif status == "stopped":
            self.status_label.setText("Stopped.")

    def show_job_error(self, message: str) -> None:
        self.error = bad_input_line(message)
        self._problem(self.error)

    def _problem(self, text: str) -> None:
        self.status_label.setStyleSheet(f"color: {theme.ERROR};")
        self.status_label.setText(text)

    def jobs_changed(self) -> None:
        running = self.job_running()
        self.run_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
