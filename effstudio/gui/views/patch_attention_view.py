"""ViT view: where the class token looks, drawn over the probe image.

Left: the probe image as the model saw it. Right: the same image with the class
token's attention to each patch (last layer, mean of heads) laid over it, a
patch grid, and a colour bar. Weights are shown on a 0..max scale, and the
overlay's opacity follows the weight, so the digit stays visible where the
model does not look. The header says how much of the class token's attention
goes to patches at all (the rest stays on itself) and where the peak is.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF
from PySide6.QtWidgets import QWidget

from effstudio.gui import theme
from effstudio.gui.views.base import ModelView, register_view

COLORMAP = "inferno"
MAX_ALPHA = 0.75  # opacity of the overlay at the most-attended patch


def as_image(array: np.ndarray) -> np.ndarray:
    """The probe image as (H, W) grey or (H, W, 3) RGB in [0, 1], from (B, C, H, W), (C, H, W) or (H, W)."""
    image = np.asarray(array, dtype=np.float32)
    while image.ndim > 3:
        image = image[0]
    if image.ndim == 3:
        image = image[0] if image.shape[0] == 1 else np.moveaxis(image[:3], 0, -1)
    return np.clip(np.nan_to_num(image), 0.0, 1.0)


def overlay_rgba(weights: np.ndarray, height: int, width: int) -> tuple[np.ndarray, float]:
    """(H, W, 4) uint8 colours of the patch weights blown up to the image, and the top weight."""
    top = float(weights.max()) if weights.size else 0.0
    scaled = weights / top if top > 0 else np.zeros_like(weights)
    rows, cols = weights.shape
    cells = np.kron(scaled, np.ones((height // rows, width // cols), dtype=np.float32))  # (H, W)
    lut = pg.colormap.get(COLORMAP).getLookupTable(0.0, 1.0, 256, alpha=False)  # (256, 3)
    rgba = np.empty((*cells.shape, 4), dtype=np.uint8)
    rgba[..., :3] = lut[np.clip((cells * 255).astype(int), 0, 255)]
    rgba[..., 3] = (MAX_ALPHA * 255 * cells).astype(np.uint8)
    return rgba, top


@register_view("cls_patch_attention")
class PatchAttentionView(ModelView):
    title = "Class token attention"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.weights: np.ndarray | None = None  # (Hp, Wp)
        # one plot holds both pictures side by side, so they are always drawn at the same scale
        self.graphics = theme.plot_canvas(self)
        self.plot = theme.style_plot(self.graphics.addPlot(), grid="", mouse="")
        self.plot.setAspectLocked(True)
        self.plot.invertY(True)
        self.plot.hideAxis("left")
        self.plot.hideAxis("bottom")
        self.plain = pg.ImageItem(axisOrder="row-major")
        self.under = pg.ImageItem(axisOrder="row-major")
        self.heat = pg.ImageItem(axisOrder="row-major")
        for item in (self.plain, self.under, self.heat):
            self.plot.addItem(item)
        self.captions = [pg.TextItem(text, color=theme.MUTED, anchor=(0.5, 1.0))
                         for text in ("probe image", "class token \u2192 patches")]
        for caption in self.captions:
            self.plot.addItem(caption)
        self.grid = pg.PlotDataItem(connect="pairs", pen=theme.pen(theme.ON_DARK, alpha=80))
        self.plot.addItem(self.grid)
        self.colorbar = pg.ColorBarItem(values=(0.0, 1.0), colorMap=COLORMAP, interactive=False, width=12,
                                        label="weight")
        self.colorbar_image = pg.ImageItem(axisOrder="row-major")  # carries the scale; the overlay is RGBA
        self.colorbar.setImageItem(self.colorbar_image, insert_in=self.plot)
        self.colorbar.getAxis("right").enableAutoSIPrefix(False)  # weights read as they are, no "(x0.001)"

        self.frame("Where the class token looks", "Attention of the class token to each image patch in the last "
                   "layer, averaged over heads: the patches whose content the classification reads most.",
                   self.graphics, min_height=200)

    def set_arrays(self, arrays: dict[str, np.ndarray], tokens: tuple[str, ...]) -> None:
        weights = np.asarray(arrays["cls_patch_attention"], dtype=np.float32)
        while weights.ndim > 2:
            weights = weights[0]  # the probe batch holds one example
        weights = np.nan_to_num(weights)
        rows, cols = weights.shape
        image = arrays.get("image")
        picture = as_image(image) if image is not None else np.full((rows * 8, cols * 8), 0.5, np.float32)
        height, width = picture.shape[:2]
        self.weights = weights

        gap = max(width // 8, 1)
        right = width + gap  # the overlay's left edge
        self.plain.setImage(picture, autoLevels=False, levels=(0.0, 1.0))
        self.plain.setRect(QRectF(0, 0, width, height))
        self.under.setImage(picture, autoLevels=False, levels=(0.0, 1.0))
        self.under.setRect(QRectF(right, 0, width, height))
        rgba, top = overlay_rgba(weights, height - height % rows, width - width % cols)
        self.heat.setImage(rgba, autoLevels=False)
        self.heat.setRect(QRectF(right, 0, width, height))
        self.colorbar.setLevels((0.0, top if top > 0 else 1.0))
        xs = [right + c * width / cols for c in range(1, cols) for _ in (0, 1)]
        ys = [v for _ in range(1, cols) for v in (0, height)]
        for r in range(1, rows):
            xs += [right, right + width]
            ys += [r * height / rows] * 2
        self.grid.setData(xs, ys)
        self.captions[0].setPos(width / 2, -0.5)
        self.captions[1].setPos(right + width / 2, -0.5)
        self.plot.setRange(xRange=(0, right + width), yRange=(-0.12 * height, height), padding=0.02)

        peak = np.unravel_index(int(weights.argmax()), weights.shape)
        share = float(weights.sum())
        self.summary.setText(f"{rows}\u00d7{cols} patches \u00b7 {100 * share:.0f}% of its attention on patches"
                             f" \u00b7 peak row {peak[0] + 1}, column {peak[1] + 1} ({100 * top:.0f}%)")

    def clear(self) -> None:
        self.weights = None
        for item in (self.plain, self.under, self.heat):
            item.clear()
        self.grid.setData([], [])
        self.summary.setText("")
