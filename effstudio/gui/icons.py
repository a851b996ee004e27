"""Icons drawn with QPainter: one line style for every section and action.

Each glyph is drawn on a 24x24 grid; :func:`icon` renders it at several sizes,
in grey for the normal state and white for a selected sidebar item.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import (
    QBrush,
    QColor,
    QIcon,
    QLinearGradient,
    QPainter,
    QPainterPath,
    QPen,
    QPixmap,
)

from effstudio.gui import theme

SIZES = (16, 20, 24, 32, 48, 64)
Glyph = Callable[[QPainter], None]


def _path(p: QPainter, *points: tuple[float, float], closed: bool = False) -> None:
    """A line through ``points``, back to the first when ``closed``."""
    path = QPainterPath(QPointF(*points[0]))
    for x, y in points[1:]:
        path.lineTo(x, y)
    if closed:
        path.closeSubpath()
    p.drawPath(path)


def _lines(p: QPainter, *segments: tuple[float, float, float, float]) -> None:
    """Separate straight lines, each (x0, y0, x1, y1)."""
    for x0, y0, x1, y1 in segments:
        p.drawLine(QPointF(x0, y0), QPointF(x1, y1))


def _model(p: QPainter) -> None:
    for y in (4.0, 10.0, 16.0):
        p.drawRoundedRect(QRectF(4, y, 16, 4.5), 1.5, 1.5)
    _lines(p, (12, 8.5, 12, 10), (12, 14.5, 12, 16))


def _data(p: QPainter) -> None:
    p.drawRoundedRect(QRectF(3.5, 4.5, 17, 15), 2, 2)
    _lines(p, (3.5, 9.5, 20.5, 9.5), (3.5, 14.5, 20.5, 14.5), (9.5, 4.5, 9.5, 19.5))


def _train(p: QPainter) -> None:
    p.drawEllipse(QRectF(3, 3, 18, 18))
    _path(p, (10, 8), (16.5, 12), (10, 16), closed=True)


def _monitor(p: QPainter) -> None:
    _lines(p, (4, 4, 4, 20), (4, 20, 20.5, 20))
    _path(p, (6.5, 16.5), (10, 10), (13, 13.5), (19.5, 6))


def _start(p: QPainter) -> None:
    _path(p, (7, 4.5), (19, 12), (7, 19.5), closed=True)


def _pause(p: QPainter) -> None:
    p.drawRoundedRect(QRectF(6.5, 5, 3.5, 14), 1, 1)
    p.drawRoundedRect(QRectF(14, 5, 3.5, 14), 1, 1)


def _stop(p: QPainter) -> None:
    p.drawRoundedRect(QRectF(6, 6, 12, 12), 1.5, 1.5)


def _save(p: QPainter) -> None:
    _lines(p, (12, 4, 12, 15), (7.5, 10.5, 12, 15), (16.5, 10.5, 12, 15), (4.5, 15.5, 4.5, 19.5),
           (4.5, 19.5, 19.5, 19.5), (19.5, 19.5, 19.5, 15.5))


def _open(p: QPainter) -> None:
    _path(p, (3.5, 18.5), (3.5, 5.5), (9, 5.5), (11, 8), (19, 8), (19, 10.5))
    _path(p, (3.5, 18.5), (6.5, 10.5), (21, 10.5), (18, 18.5), closed=True)


def _copy(p: QPainter) -> None:
    p.drawRoundedRect(QRectF(8.5, 8.5, 11, 12), 1.5, 1.5)
    _path(p, (15.5, 6), (15.5, 3.5), (4.5, 3.5), (4.5, 16), (7, 16))


def _warning(p: QPainter) -> None:
    _path(p, (12, 3.5), (21, 19.5), (3, 19.5), closed=True)
    _lines(p, (12, 9, 12, 14))
    p.drawPoint(QPointF(12, 16.8))


def _benchmark(p: QPainter) -> None:
    p.drawEllipse(QRectF(4, 6, 16, 16))  # a stopwatch
    _lines(p, (12, 14, 12, 9.5), (12, 14, 15, 16), (10, 2.5, 14, 2.5), (12, 2.5, 12, 6), (18, 6.5, 19.5, 5))


def _inspect(p: QPainter) -> None:
    p.drawEllipse(QRectF(4, 4, 12, 12))  # a magnifying glass
    _lines(p, (14.6, 14.6, 20, 20), (7, 10, 13, 10), (10, 7, 10, 13))


def _compress(p: QPainter) -> None:
    p.drawRoundedRect(QRectF(8, 8, 8, 8), 1.5, 1.5)  # a block squeezed from both sides
    for x0, x1 in ((2.5, 6), (21.5, 18)):
        tip = 1.8 if x1 > x0 else -1.8
        _lines(p, (x0, 12, x1, 12), (x1, 12, x1 - tip, 10), (x1, 12, x1 - tip, 14))


def _runs(p: QPainter) -> None:
    for y in (6.0, 12.0, 18.0):  # a list of runs, each with its status dot
        p.drawEllipse(QPointF(5.5, y), 1.4, 1.4)
        p.drawLine(QPointF(10, y), QPointF(20, y))


def _evaluate(p: QPainter) -> None:
    p.drawEllipse(QRectF(3, 3, 18, 18))  # a target: where the model hits and misses
    p.drawEllipse(QRectF(7.5, 7.5, 9, 9))
    p.drawEllipse(QPointF(12, 12), 1.2, 1.2)


GLYPHS: dict[str, Glyph] = {
    "model": _model, "data": _data, "train": _train, "monitor": _monitor,
    "start": _start, "pause": _pause, "stop": _stop, "save": _save, "open": _open,
    "copy": _copy, "warning": _warning, "benchmark": _benchmark,
    "inspect": _inspect, "compress": _compress, "runs": _runs, "evaluate": _evaluate,
}
FILLED = {"start", "pause", "stop"}


def _render(glyph: Glyph, size: int, colour: str, filled: bool) -> QPixmap:
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.scale(size / 24, size / 24)
    pen = QPen(QColor(colour), 1.8)
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
    painter.setPen(pen)
    painter.setBrush(QBrush(QColor(colour)) if filled else Qt.BrushStyle.NoBrush)
    glyph(painter)
    painter.end()
    return pixmap


@cache
def icon(name: str, colour: str = theme.SECONDARY) -> QIcon:
    """A named glyph as an icon; selected (sidebar) and disabled states get their own colour."""
    glyph, filled = GLYPHS[name], name in FILLED
    result = QIcon()
    for size in SIZES:
        result.addPixmap(_render(glyph, size, colour, filled), QIcon.Mode.Normal)
        result.addPixmap(_render(glyph, size, theme.ON_DARK, filled), QIcon.Mode.Selected)
        result.addPixmap(_render(glyph, size, theme.DISABLED_ICON, filled), QIcon.Mode.Disabled)
    return result


def action_icon(name: str) -> QIcon:
    colours = {"start": theme.OK, "stop": theme.ERROR, "warning": theme.WARNING}
    return icon(name, colours.get(name, theme.SECONDARY))


def _app_pixmap(size: int) -> QPixmap:
    """A rounded tile with a small attention matrix: a bright diagonal band on blue (as the SVG icon)."""
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    p = QPainter(pixmap)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.scale(size / 64, size / 64)
    gradient = QLinearGradient(0, 0, 64, 64)
    gradient.setColorAt(0, QColor(theme.APP_ICON_GRADIENT[0]))
    gradient.setColorAt(1, QColor(theme.APP_ICON_GRADIENT[1]))
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(gradient)
    p.drawRoundedRect(QRectF(2, 2, 60, 60), 13, 13)
    for row in range(3):
        for col in range(3):
            p.setBrush(theme.brush(theme.ON_DARK, (255, 128, 41)[abs(row - col)]))
            p.drawRoundedRect(QRectF(12 + col * 14, 12 + row * 14, 12, 12), 2.5, 2.5)
    p.end()
    return pixmap


@cache
def app_icon() -> QIcon:
    """The app icon from resources/icons (rendered from its SVG); drawn here when those are not installed."""
    from effstudio.resources import app_icon_pngs

    result = QIcon()
    for size, path in app_icon_pngs().items():
        result.addFile(str(path), QSize(size, size))
    if result.isNull():
        for size in (16, 24, 32, 48, 64, 128, 256):
            result.addPixmap(_app_pixmap(size))
    return result
