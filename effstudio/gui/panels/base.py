"""What every section panel shares: a title, a subtitle and a scrolling body."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QScrollArea, QVBoxLayout, QWidget

MARGIN = 20


class Panel(QWidget):
    """A section page: header on top, ``self.body`` (a QVBoxLayout) below it, scrolling if asked."""

    def __init__(self, title: str, subtitle: str, *, scroll: bool = True, parent: QWidget | None = None):
        super().__init__(parent)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(MARGIN, MARGIN - 4, MARGIN, MARGIN - 8)
        outer.setSpacing(10)
        heading = QLabel(title, self)
        heading.setObjectName("sectionTitle")
        self.subtitle = QLabel(subtitle, self)
        self.subtitle.setObjectName("sectionSubtitle")
        self.subtitle.setWordWrap(True)
        header = QVBoxLayout()
        header.setSpacing(2)
        header.addWidget(heading)
        header.addWidget(self.subtitle)
        outer.addLayout(header)

        content = QWidget(self)
        self.body = QVBoxLayout(content)
        self.body.setContentsMargins(0, 0, 0, 0)
        self.body.setSpacing(12)
        outer.addWidget(scroll_area(content, self) if scroll else content, 1)


def empty_state(text: str, parent: QWidget | None = None) -> QLabel:
    label = QLabel(text, parent)
    label.setObjectName("emptyState")
    label.setAlignment(Qt.AlignmentFlag.AlignCenter)
    label.setWordWrap(True)
    label.setMinimumHeight(120)
    return label


def description_label(parent: QWidget | None = None) -> QLabel:
    label = QLabel(parent)
    label.setObjectName("description")
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.PlainText)
    return label


def scroll_area(content: QWidget, parent: QWidget | None = None) -> QScrollArea:
    """``content`` scrolling vertically, on the panel's background."""
    area = QScrollArea(parent)
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setWidget(content)
    area.viewport().setAutoFillBackground(False)
    content.setAutoFillBackground(False)
    return area


def side_column(parent: QWidget, width: int) -> tuple[QScrollArea, QVBoxLayout]:
    """A panel's fixed-width column of controls, scrolling when the window is short: (the column, its layout)."""
    column = QWidget(parent)
    layout = QVBoxLayout(column)
    layout.setContentsMargins(0, 0, 4, 0)
    layout.setSpacing(10)
    area = scroll_area(column, parent)
    area.setFixedWidth(width)
    return area, layout


def hbox(*widgets: QWidget | None, spacing: int) -> QHBoxLayout:
    """Widgets side by side; None is a stretch."""
    row = QHBoxLayout()
    row.setSpacing(spacing)
    for widget in widgets:
        if widget is None:
            row.addStretch(1)
        else:
            row.addWidget(widget)
    return row
