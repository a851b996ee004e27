"""The files of one run (checkpoints and what was made from them), listed to be inspected."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QLabel, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from effstudio.gui import theme
from effstudio.runs.store import Artifact


class RunFiles(QWidget):
    """A titled list of a run's artifacts; double-clicking a file that exists emits ``inspect_file``."""

    inspect_file = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.list = QListWidget(self)
        self.list.setToolTip("The selected run's files: checkpoints and what was made from them (pruned, "
                             "quantized, distilled, ONNX). Double-click one to inspect it.")
        self.list.setAlternatingRowColors(True)
        self.list.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # the ends of a name tell files apart
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.list.itemDoubleClicked.connect(self.inspect_item)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(QLabel("<b>Files</b>", self))
        layout.addWidget(self.list, 1)

    def show_artifacts(self, artifacts: list[Artifact] | None) -> None:
        """List ``artifacts``; None when there is not exactly one run to list the files of."""
        self.list.clear()
        if artifacts is None:
            self._note("Select one run to see its files")
            return
        for artifact in artifacts:
            exists = Path(artifact.path).exists()
            text = f"{artifact.kind} \u00b7 {Path(artifact.path).name}" + ("" if exists else " (missing)")
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, artifact.path)
            item.setToolTip(artifact.path + ("" if exists else "\nThe file is no longer there."))
            if not exists:
                item.setForeground(QColor(theme.MUTED))
            self.list.addItem(item)
        if not artifacts:
            self._note("No files recorded")

    def _note(self, text: str) -> None:
        self.list.addItem(text)
        self.list.item(0).setFlags(Qt.ItemFlag.NoItemFlags)

    def inspect_item(self, item: QListWidgetItem) -> None:
        path = item.data(Qt.ItemDataRole.UserRole)
        if path and Path(path).exists():
            self.inspect_file.emit(path)
