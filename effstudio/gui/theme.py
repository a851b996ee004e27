"""One light look for widgets and plots: Fusion, a calm palette, white plots."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtGui import QColor, QFont, QFontDatabase, QPalette
from PySide6.QtWidgets import QApplication

ACCENT = "#2563eb"
ACCENT_DARK = "#1d4ed8"
ERROR = "#dc2626"
ERROR_BACKGROUND = "#fef2f2"  # an invalid field, a failed row
WARNING = "#b45309"
OK = "#15803d"
MUTED = "#6b7280"
TEXT = "#1f2937"
BORDER = "#d1d5db"
SIDEBAR = "#f1f3f6"
WINDOW = "#fafafa"
ON_ACCENT = "#ffffff"  # text and glyphs on an accent-coloured button

# curve colours, colour-blind friendly (Okabe-Ito)
BLUE, ORANGE, GREEN, PURPLE, RED, SKY = "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#d55e00", "#56b4e9"

STYLESHEET = f"""
QListWidget#sidebar {{
    background: {SIDEBAR};
    border: none;
    border-right: 1px solid {BORDER};
    padding-top: 8px;
    outline: 0;
}}
QListWidget#sidebar::item {{
    padding: 9px 10px;
    margin: 1px 8px;
    border-radius: 6px;
    color: {TEXT};
}}
QListWidget#sidebar::item:hover {{ background: #e4e8ee; }}
QListWidget#sidebar::item:selected {{ background: {ACCENT}; color: white; }}
QLabel#sectionTitle {{ font-size: 17px; font-weight: 600; color: {TEXT}; }}
QLabel#sectionSubtitle {{ color: {MUTED}; }}
QLabel#description {{ color: {MUTED}; }}
QLabel#fieldError {{ color: {ERROR}; font-size: 11px; }}
QLabel#emptyState {{ color: {MUTED}; font-size: 13px; }}
QLabel#metricValue {{ font-size: 15px; font-weight: 600; color: {TEXT}; }}
QLabel#metricName {{ color: {MUTED}; font-size: 11px; }}
QGroupBox {{
    font-weight: 600;
    border: 1px solid {BORDER};
    border-radius: 6px;
    margin-top: 14px;
    padding: 10px 8px 8px 8px;
    background: white;
}}
QGroupBox::title {{ subcontrol-origin: margin; left: 10px; padding: 0 4px; color: {TEXT}; }}
QLineEdit[invalid="true"], QSpinBox[invalid="true"], QComboBox[invalid="true"], QListWidget[invalid="true"] {{
    border: 1px solid {ERROR};
    border-radius: 3px;
    background: {ERROR_BACKGROUND};
}}
QFrame#benchPlots, QFrame#benchEmpty {{ background: white; border: 1px solid {BORDER}; border-radius: 6px; }}
QPushButton#primary {{
    background: {ACCENT}; color: white; border: 1px solid {ACCENT_DARK};
    border-radius: 4px; padding: 5px 14px; font-weight: 600;
}}
QPushButton#primary:hover {{ background: {ACCENT_DARK}; }}
QPushButton#primary:disabled {{ background: #93c5fd; border-color: #93c5fd; }}
QStatusBar QLabel {{ padding: 0 6px; }}
QPlainTextEdit#log {{ background: white; border: 1px solid {BORDER}; }}
"""


def monospace_font(point_size: int | None = None) -> QFont:
    font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
    if point_size:
        font.setPointSize(point_size)
    return font


def apply_theme(app: QApplication) -> None:
    """Fusion style with a light palette on every platform, so screenshots match."""
    app.setStyle("Fusion")
    palette = QPalette()
    roles = {
        QPalette.ColorRole.Window: WINDOW,
        QPalette.ColorRole.WindowText: TEXT,
        QPalette.ColorRole.Base: "#ffffff",
        QPalette.ColorRole.AlternateBase: "#f5f6f8",
        QPalette.ColorRole.Text: TEXT,
        QPalette.ColorRole.Button: "#f4f5f7",
        QPalette.ColorRole.ButtonText: TEXT,
        QPalette.ColorRole.Highlight: ACCENT,
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.ToolTipBase: "#ffffff",
        QPalette.ColorRole.ToolTipText: TEXT,
        QPalette.ColorRole.PlaceholderText: MUTED,
        QPalette.ColorRole.Link: ACCENT,
    }
    for role, colour in roles.items():
        palette.setColor(role, QColor(colour))
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor("#9ca3af"))
    app.setPalette(palette)
    app.setStyleSheet(STYLESHEET)
    configure_plots()


def configure_plots() -> None:
    pg.setConfigOptions(antialias=True, background="w", foreground=TEXT, imageAxisOrder="row-major")
