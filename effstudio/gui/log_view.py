"""The run log: timestamped, coloured by level, capped so it never grows without bound."""

from __future__ import annotations

import html
from datetime import datetime

from PySide6.QtWidgets import QPlainTextEdit, QWidget

from effstudio.gui import theme
from effstudio.gui.theme import monospace_font

COLOURS = {"info": theme.TEXT, "warning": theme.WARNING, "error": theme.ERROR, "debug": theme.MUTED}
MAX_LINES = 5000


class LogView(QPlainTextEdit):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("log")
        self.setReadOnly(True)
        self.setMaximumBlockCount(MAX_LINES)
        self.setFont(monospace_font())
        self.setPlaceholderText("Log messages of the run appear here.")
        self.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)

    def add(self, level: str, message: str) -> None:
        stamp = datetime.now().strftime("%H:%M:%S")
        colour = COLOURS.get(level, theme.TEXT)
        tag = "" if level == "info" else f"{level.upper()} "
        body = html.escape(message).replace("\n", "<br>")
        self.appendHtml(f"<span style='color:{theme.MUTED}'>{stamp}</span> "
                        f"<span style='color:{colour};white-space:pre-wrap'>{tag}{body}</span>")

    def text(self) -> str:
        return self.toPlainText()
