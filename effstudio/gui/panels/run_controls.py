"""The Run group of a section that runs jobs, under its settings in the side column
(:func:`~effstudio.gui.panels.base.side_column`): Run and Stop, a progress bar, a status line, a problem
shown in red."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from effstudio.gui import theme
from effstudio.gui.icons import action_icon, icon
from effstudio.gui.panels.base import description_label


class RunGroup(QGroupBox):
    """Run and Stop side by side, the progress bar ("idle" until a job starts), a status line and a
    problem label (hidden until :meth:`show_problem`). The section connects the buttons."""

    def __init__(self, run_tip: str, problem_name: str, parent: QWidget | None = None):
        super().__init__("Run", parent)
        self._layout = QVBoxLayout(self)
        buttons = QHBoxLayout()
        self.run_button = QPushButton(icon("start", theme.ON_DARK), "Run", self)
        self.run_button.setObjectName("primary")
        self.run_button.setToolTip(run_tip)
        self.stop_button = QPushButton(action_icon("stop"), "Stop", self)
        for button in (self.run_button, self.stop_button):
            button.setMinimumHeight(30)
            button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
            buttons.addWidget(button)
        self._layout.addLayout(buttons)
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("idle")
        self._layout.addWidget(self.progress)
        self.status_label = description_label(self)
        self._layout.addWidget(self.status_label)
        self.problem = QLabel("", self)
        self.problem.setObjectName(problem_name)
        self.problem.setWordWrap(True)
        self.problem.setStyleSheet(f"color: {theme.ERROR};")
        self.problem.hide()
        self._layout.addWidget(self.problem)

    def add_widget(self, widget: QWidget) -> None:
        """A widget of the section's own under the status line (above the problem)."""
        self._layout.insertWidget(self._layout.indexOf(self.problem), widget)

    def show_problem(self, text: str) -> None:
        self.problem.setText(text)
        self.problem.show()

    def clear_problem(self) -> None:
        self.problem.hide()
        self.problem.setText("")
