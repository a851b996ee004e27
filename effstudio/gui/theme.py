"""One light look for widgets and plots: Fusion, a calm palette, white plots."""

from __future__ import annotations

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QFont, QFontDatabase, QPalette, QPen
from PySide6.QtWidgets import QApplication, QWidget

from effstudio.gui.plots.readout import HoverReadout

ACCENT = "#2563eb"
ACCENT_DARK = "#1d4ed8"
ERROR = "#dc2626"
ERROR_BACKGROUND = "#fef2f2"  # an invalid field, a failed row
ERROR_BORDER = "#fecaca"  # around a message on the error background
WARNING = "#b45309"
OK = "#15803d"
MUTED = "#6b7280"
TEXT = "#1f2937"
BORDER = "#d1d5db"
SIDEBAR = "#f1f3f6"
WINDOW = "#fafafa"
SECONDARY = "#4b5563"  # icons, and axis titles that must read darker than their ticks
DISABLED_ICON = "#c4c8cf"
ON_DARK = "#ffffff"  # text and glyphs on the accent colour or a dark heatmap cell
SURFACE = "#ffffff"  # plots, tiles, cards and text areas
APP_ICON_GRADIENT = ("#3b82f6", "#6d28d9")

# curve colours, colour-blind friendly (Okabe-Ito)
BLUE, ORANGE, GREEN, PURPLE, RED, SKY = "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#d55e00", "#56b4e9"
# one colour per series where there may be many (the benchmark's attention kinds)
SERIES = (BLUE, ORANGE, GREEN, RED, PURPLE, SKY, SECONDARY, "#8c564b", "#9a8700", "#1b3a6b", "#7b2d8e", "#2f6b4f")
GRID_ALPHA = 0.15

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
QLabel#inspectError {{
    background: {ERROR_BACKGROUND}; border: 1px solid {ERROR_BORDER}; border-radius: 6px;
    color: {ERROR}; padding: 8px 10px;
}}
QFrame#benchPlots, QFrame#benchEmpty {{ background: {SURFACE}; border: 1px solid {BORDER}; border-radius: 6px; }}
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
    pg.setConfigOptions(antialias=True, background=SURFACE, foreground=TEXT, imageAxisOrder="row-major")


def plot_canvas(parent: QWidget | None = None) -> pg.GraphicsLayoutWidget:
    """A grid of plots on the plot background."""
    canvas = pg.GraphicsLayoutWidget(parent)
    canvas.setBackground(SURFACE)
    return canvas


def plot_title(text: str, point_size: int = 10) -> str:
    """A plot's title as pyqtgraph draws it: bold, in the text colour."""
    return f"<span style='color:{TEXT};font-size:{point_size}pt;font-weight:600'>{text}</span>"


def style_plot(
    plot: pg.PlotItem,
    *,
    bottom: str | None = None,
    left: str | None = None,
    title: str | None = None,
    grid: str = "xy",
    menu: bool = False,
    mouse: str | None = None,
    tick_points: int = 8,
    si_prefix: bool = True,
    left_width: int | None = None,
    label_colour: str = MUTED,
    readout: bool = True,
) -> pg.PlotItem:
    """The one look of every plot: small muted ticks on pale axis lines, muted axis titles, a faint grid
    on the axes named in ``grid``, no corner button. ``mouse`` names the axes that pan and zoom (None
    leaves pyqtgraph's default, both); ``si_prefix=False`` keeps values unscaled (no "x0.001"). The value
    under the pointer is read out (plots/readout.py), as ``plot.readout``; ``readout=False`` for a plot
    that names its points itself."""
    if title is not None:
        plot.setTitle(plot_title(title))
    plot.showGrid(x="x" in grid, y="y" in grid, alpha=GRID_ALPHA)
    plot.hideButtons()
    plot.setMenuEnabled(menu)
    if mouse is not None:
        plot.setMouseEnabled(x="x" in mouse, y="y" in mouse)
    font = QFont()
    font.setPointSize(tick_points)
    for name in ("left", "bottom"):
        axis = plot.getAxis(name)
        axis.setTickFont(font)
        axis.setTextPen(MUTED)
        axis.setPen(BORDER)
        if not si_prefix:
            axis.enableAutoSIPrefix(False)
    # after setPen, which paints an axis's title in the axis line's pale colour
    if bottom is not None:
        plot.setLabel("bottom", bottom, color=label_colour)
    if left is not None:
        plot.setLabel("left", left, color=label_colour)
    if left_width is not None:
        plot.getAxis("left").setWidth(left_width)
    if readout and getattr(plot, "readout", None) is None:
        plot.readout = HoverReadout(plot, text_colour=TEXT, background=SURFACE, border=BORDER)
    return plot


def plot_legend(plot: pg.PlotItem, offset: tuple[float, float], **options: object) -> pg.LegendItem:
    """The one look of a plot's legend: small labels in the text colour on a nearly opaque plot background
    in a pale frame. ``offset`` places it (negative: from the right or bottom); ``options`` go to pyqtgraph."""
    legend = plot.addLegend(offset=offset, labelTextSize="8pt", labelTextColor=TEXT, **options)
    legend.setBrush(brush(SURFACE, 215))
    legend.setPen(pen(BORDER))
    return legend


def pen(colour: str, width: float = 1.0, *, alpha: int = 255, dashed: bool = False) -> QPen:
    """A cosmetic pen of a theme colour, ``alpha`` 0-255."""
    c = QColor(colour)
    c.setAlpha(alpha)
    result = pg.mkPen(c, width=width)
    if dashed:
        result.setStyle(Qt.PenStyle.DashLine)
    return result


def brush(colour: str, alpha: int = 255) -> QBrush:
    c = QColor(colour)
    c.setAlpha(alpha)
    return pg.mkBrush(c)


def text_on(background: QColor) -> str:
    """The colour that reads on ``background``: white on dark cells, the text colour on light ones."""
    return ON_DARK if background.lightnessF() < 0.55 else TEXT


def tint(colour: str, alpha: float) -> str:
    """A theme colour laid over the surface at ``alpha`` (0-1), as an opaque #rrggbb for rich text."""
    top, ground = QColor(colour), QColor(SURFACE)
    mixed = [round(alpha * a + (1 - alpha) * b) for a, b in zip(top.getRgb()[:3], ground.getRgb()[:3], strict=True)]
    return QColor(*mixed).name()
