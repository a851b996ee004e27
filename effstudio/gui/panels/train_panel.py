"""Train section: optimisation settings, the run controls, progress with an ETA.

The Start/Pause/Stop buttons show the main window's actions, so the toolbar,
the Run menu, the shortcuts and these buttons always agree.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from effstudio.config import ConfigError
from effstudio.engine.device import available_devices
from effstudio.engine.run_config import RunConfig, TrainConfig
from effstudio.gui import theme
from effstudio.gui.forms.config_form import ConfigForm
from effstudio.gui.metrics import MetricStrip, RunProgress, format_duration
from effstudio.gui.panels.base import Panel


def action_button(action: QAction, parent: QWidget) -> QToolButton:
    button = QToolButton(parent)
    button.setDefaultAction(action)
    button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
    button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
    button.setMinimumHeight(32)
    return button


class TrainPanel(Panel):
    changed = Signal()

    def __init__(self, actions: dict[str, QAction], parent: QWidget | None = None):
        super().__init__("Train", "Optimiser, schedule and hardware. Training runs in the background; "
                         "the window stays responsive and Stop acts within one step.", parent=parent)
        devices = ["auto", *available_devices()]
        self.form = ConfigForm(TrainConfig, prefix="train", choices={"device": devices}, columns=2, parent=self)
        self.form.changed.connect(lambda _name: self.changed.emit())
        settings = QGroupBox("Training settings", self)
        settings_layout = QVBoxLayout(settings)
        settings_layout.addWidget(self.form)

        run = QGroupBox("Run", self)
        run.setMinimumWidth(300)
        run_layout = QVBoxLayout(run)
        run_layout.setSpacing(10)
        buttons = QHBoxLayout()
        buttons.setSpacing(6)
        self.start_button = action_button(actions["start"], run)
        self.pause_button = action_button(actions["pause"], run)
        self.stop_button = action_button(actions["stop"], run)
        for button in (self.start_button, self.pause_button, self.stop_button):
            buttons.addWidget(button)
        run_layout.addLayout(buttons)

        self.progress = QProgressBar(run)
        self.progress.setRange(0, 1000)
        self.progress.setValue(0)
        self.progress.setTextVisible(True)
        self.progress.setFormat("idle")
        self.progress.setMinimumHeight(22)
        run_layout.addWidget(self.progress)
        self.eta_label = QLabel("", run)
        self.eta_label.setObjectName("description")
        self.eta_label.setFont(theme.monospace_font())
        run_layout.addWidget(self.eta_label)

        self.problems = QLabel(run)
        self.problems.setWordWrap(True)
        self.problems.setStyleSheet(f"color: {theme.ERROR};")
        self.problems.hide()
        run_layout.addWidget(self.problems)

        self.metrics = MetricStrip(columns=2, names=("step", "loss", "val loss", "val accuracy", "tokens/s",
                                                            "elapsed"), parent=run)
        run_layout.addWidget(self.metrics)
        self.run_dir = QLabel("", run)
        self.run_dir.setObjectName("description")
        self.run_dir.setWordWrap(True)
        self.run_dir.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        run_layout.addWidget(self.run_dir)
        copy = action_button(actions["copy_command"], run)
        run_layout.addWidget(copy)
        run_layout.addStretch(1)

        columns = QHBoxLayout()
        columns.setSpacing(12)
        columns.addWidget(settings, 3, Qt.AlignmentFlag.AlignTop)
        columns.addWidget(run, 2)
        self.body.addLayout(columns)
        self.body.addStretch(1)

    # ------------------------------------------------------------------ values
    def forms(self) -> list[ConfigForm]:
        return [self.form]

    def overrides(self) -> dict[str, Any]:
        return {f"train.{k}": v for k, v in self.form.values().items()}

    def set_config(self, config: RunConfig) -> None:
        self.form.set_values(config.train)
        self.changed.emit()

    def validate(self) -> list[ConfigError]:
        return [ConfigError(f"train.{e.field}", e.message) for e in self.form.validate()]

    # ----------------------------------------------------------------- running
    def show_problems(self, errors: list[ConfigError]) -> None:
        if not errors:
            self.problems.hide()
            return
        lines = [f"\u2022 <b>{e.field}</b>: {e.message}" for e in errors[:6]]
        more = f"<br>and {len(errors) - 6} more" if len(errors) > 6 else ""
        noun = "setting" if len(errors) == 1 else "settings"
        self.problems.setText(f"Fix {len(errors)} {noun} before starting:<br>" + "<br>".join(lines) + more)
        self.problems.show()

    def show_progress(self, progress: RunProgress, state: str) -> None:
        self.progress.setValue(int(1000 * progress.fraction))
        if progress.total_steps:
            self.progress.setFormat(f"{state} \u00b7 step {progress.step} of {progress.total_steps} "
                                    f"({100 * progress.fraction:.0f}%)")
            eta = "" if progress.ending else f"   ETA {format_duration(progress.eta_s)}"
            self.eta_label.setText(f"elapsed {format_duration(progress.elapsed_s)}{eta}")
        else:
            self.progress.setFormat(state)
            self.eta_label.setText("")
        self.metrics.show_progress(progress)
        self.run_dir.setText(f"Run folder: {progress.run_dir}" if progress.run_dir else "")
