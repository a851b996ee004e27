"""The Data section's preview of an image task: the examples as pictures in a grid, each with its label.

Images arrive as (N, C, H, W) floats in [0, 1] (grey or RGB); each is drawn scaled
up without smoothing, so a 16 x 16 digit shows its pixels.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QGridLayout, QLabel, QVBoxLayout, QWidget

from effstudio.gui import theme

CELL_PX = 72  # the side of one drawn image
COLUMNS = 6


def to_qimage(image: np.ndarray) -> QImage:
    """One (C, H, W) float image in [0, 1] as an 8-bit QImage (grey for one channel, RGB for three)."""
    pixels = np.clip(np.nan_to_num(image) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    channels, height, width = pixels.shape
    if channels == 1:
        data = np.ascontiguousarray(pixels[0])
        qimage = QImage(data.data, width, height, width, QImage.Format.Format_Grayscale8)
    else:
        data = np.ascontiguousarray(pixels[:3].transpose(1, 2, 0))  # (H, W, 3)
        qimage = QImage(data.data, width, height, 3 * width, QImage.Format.Format_RGB888)
    return qimage.copy()  # own its pixels: ``data`` goes away with this function


class ImageGrid(QWidget):
    """Images with their labels under them, COLUMNS to a row."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(4, 4, 4, 4)
        self.grid.setHorizontalSpacing(10)
        self.grid.setVerticalSpacing(10)
        self.cells: list[tuple[QLabel, QLabel]] = []  # (picture, label) per example

    def show_images(self, images: np.ndarray, labels: list[str]) -> None:
        """Draw (N, C, H, W) ``images`` with ``labels``, replacing what was shown."""
        self.clear()
        for index, (image, label) in enumerate(zip(images, labels, strict=True)):
            cell = QWidget(self)
            column = QVBoxLayout(cell)
            column.setContentsMargins(0, 0, 0, 0)
            column.setSpacing(2)
            picture = QLabel(cell)
            picture.setPixmap(QPixmap.fromImage(to_qimage(image)).scaled(
                CELL_PX, CELL_PX, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation))
            picture.setAlignment(Qt.AlignmentFlag.AlignCenter)
            picture.setStyleSheet(f"border: 1px solid {theme.BORDER};")
            caption = QLabel(label, cell)
            caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
            caption.setFont(theme.monospace_font())
            column.addWidget(picture)
            column.addWidget(caption)
            self.grid.addWidget(cell, index // COLUMNS, index % COLUMNS, Qt.AlignmentFlag.AlignTop)
            self.cells.append((picture, caption))
        self.grid.setRowStretch(self.grid.rowCount(), 1)

    def clear(self) -> None:
        while self.grid.count():
            item = self.grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self.cells = []

    def labels(self) -> list[str]:
        return [caption.text() for _picture, caption in self.cells]
