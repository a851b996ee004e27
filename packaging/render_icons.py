"""Render the app icon's PNG sizes from its SVG (run after editing the SVG; commit the PNGs).

    QT_QPA_PLATFORM=offscreen python packaging/render_icons.py

Writes resources/icons/hicolor/<N>x<N>/apps/effstudio.png for every size in SIZES,
rendered by QtSvg; 16 px comes from a variant drawn on whole pixels. build.py
calls :func:`write_ico_icns` for the Windows .ico and macOS .icns (Pillow).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ICONS = ROOT / "resources" / "icons"
SVG = ICONS / "hicolor" / "scalable" / "apps" / "effstudio.svg"
SMALL_SVG = ICONS / "src" / "effstudio-16.svg"  # the same design with its cells on whole pixels
SIZES = (16, 24, 32, 48, 64, 128, 256)


def png_path(size: int) -> Path:
    return ICONS / "hicolor" / f"{size}x{size}" / "apps" / "effstudio.png"


def render_pngs() -> list[Path]:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QRectF, Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 - keeps Qt alive
    renderers = {}
    for svg in (SVG, SMALL_SVG):
        renderers[svg] = QSvgRenderer(str(svg))
        if not renderers[svg].isValid():
            raise SystemExit(f"cannot read {svg}")
    written = []
    for size in SIZES:
        renderer = renderers[SMALL_SVG if size == 16 else SVG]
        image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter, QRectF(0, 0, size, size))
        painter.end()
        target = png_path(size)
        target.parent.mkdir(parents=True, exist_ok=True)
        if not image.save(str(target), "PNG"):
            raise SystemExit(f"cannot write {target}")
        written.append(target)
    return written


def write_ico_icns(out_dir: Path) -> list[Path]:
    """effstudio.ico (Windows) and effstudio.icns (macOS) from the PNGs, with Pillow; [] without it."""
    try:
        from PIL import Image
    except ImportError:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    largest = Image.open(png_path(256)).convert("RGBA")
    ico = out_dir / "effstudio.ico"
    largest.save(ico, sizes=[(s, s) for s in SIZES if s <= 256])
    icns = out_dir / "effstudio.icns"
    try:
        largest.save(icns)
    except (OSError, ValueError):  # a Pillow without the ICNS writer
        return [ico]
    return [ico, icns]


if __name__ == "__main__":
    for path in render_pngs():
        print(path.relative_to(ROOT))
