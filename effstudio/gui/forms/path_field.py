"""The browse button beside a path setting's line edit (``param(..., path=...)``).

A "file" setting opens a file dialog, a "folder" setting a folder dialog, and a
"file or folder" setting a file dialog with a folder dialog in the button's menu. The dialog starts where
the field's current value is, so browsing again lands beside the last choice.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFileDialog, QLineEdit, QMenu, QToolButton, QWidget

FILE, FOLDER, EITHER = "file", "folder", "file or folder"


def start_folder(value: str) -> str:
    """Where a dialog opens for a field holding ``value``: its folder, or the home folder when empty or gone."""
    if value:
        path = Path(value).expanduser()
        folder = path if path.is_dir() else path.parent
        if folder.is_dir():
            return str(folder)
    return str(Path.home())


def ask_for_path(parent: QWidget, kind: str, title: str, value: str) -> str:
    """The path the user picks in a file (``kind`` "file") or folder dialog; "" when cancelled."""
    start = start_folder(value)
    if kind == FOLDER:
        return QFileDialog.getExistingDirectory(parent, title, start)
    chosen, _filter = QFileDialog.getOpenFileName(parent, title, start)
    return chosen


class BrowseButton(QToolButton):
    """A "Browse…" button for the path in ``line_edit``; ``chosen(path)`` fires with the picked path."""

    chosen = Signal(str)

    def __init__(self, kind: str, label: str, line_edit: QLineEdit, parent: QWidget | None = None):
        super().__init__(parent)
        self.kind, self.label, self.line_edit = kind, label, line_edit
        self.setText("Browse\u2026")
        if kind == EITHER:
            menu = QMenu(self)
            menu.addAction("File\u2026", lambda: self.browse(FILE))
            menu.addAction("Folder\u2026", lambda: self.browse(FOLDER))
            self.setMenu(menu)
            # the button itself picks a file, the usual choice; its arrow offers a folder too
            self.setPopupMode(QToolButton.ToolButtonPopupMode.MenuButtonPopup)
            self.setToolTip(f"Choose the {label.lower()}: a file, or a folder from the arrow's menu")
        else:
            self.setToolTip(f"Choose the {label.lower()} ({kind})")
        self.clicked.connect(lambda: self.browse(FOLDER if kind == FOLDER else FILE))

    def browse(self, kind: str) -> str:
        """Ask for a ``kind`` ("file" or "folder") and emit it; the path, or "" when cancelled."""
        what = "folder" if kind == FOLDER else "file"
        path = ask_for_path(self, kind, f"Choose a {what}: {self.label}", self.line_edit.text())
        if path:
            self.chosen.emit(path)
        return path
