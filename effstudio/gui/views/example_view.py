"""One evaluated example as the model saw it: its decoded text (or its image), what it is and what the model
said, and the model's attention map for it (the Monitor's attention view, on this example)."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF
from PySide6.QtWidgets import QLabel, QPlainTextEdit, QStackedWidget, QVBoxLayout, QWidget

from effstudio.engine.events import AttentionEvent
from effstudio.gui import theme
from effstudio.gui.views.attention_view import AttentionView
from effstudio.gui.views.patch_attention_view import as_image

NOT_PICKED = "Pick an example above to see where the model looked."
NO_ATTENTION = "This model gives no attention map (an ONNX file, or a model that reports none)."
TEXT_HEIGHT, PICTURE_HEIGHT = 64, 140


class ExampleView(QWidget):
    """The selected example: a caption, its text or image, and its attention map."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.index: int | None = None
        self.caption = QLabel("Pick an example to see it and where the model looked.", self)
        self.caption.setObjectName("description")
        self.caption.setWordWrap(True)
        self.text = QPlainTextEdit(self)
        self.text.setObjectName("exampleText")
        self.text.setReadOnly(True)
        self.text.setFont(theme.monospace_font())
        self.picture = theme.plot_canvas(self)
        plot = theme.style_plot(self.picture.addPlot(), grid="", mouse="")
        plot.setAspectLocked(True)
        plot.invertY(True)
        plot.hideAxis("left")
        plot.hideAxis("bottom")
        self.image = pg.ImageItem(axisOrder="row-major")
        plot.addItem(self.image)
        self.picture.setFixedHeight(PICTURE_HEIGHT)
        self.input = QStackedWidget(self)
        self.input.addWidget(self.text)
        self.input.addWidget(self.picture)
        self.input.setMaximumHeight(TEXT_HEIGHT)
        self.attention = AttentionView(self)
        self.empty_attention = self.attention.stack.widget(0)  # its own words speak of training
        self.empty_attention.setText(NOT_PICKED)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.caption)
        layout.addWidget(self.input)
        layout.addWidget(self.attention, 1)

    def show_example(self, index: int, caption: str, text: str, image: np.ndarray | None,
                     attention: np.ndarray | None, tokens: tuple[str, ...]) -> None:
        """``attention``: the example's (N, N) map (the last layer, mean of its heads, as the evaluation
        gives it) or every (layers, heads, N, N) map; None when the model gives none."""
        self.index = index
        self.caption.setText(caption)
        if image is not None:
            picture = as_image(image)
            self.image.setImage(picture, autoLevels=False, levels=(0.0, 1.0))
            self.image.setRect(QRectF(0, 0, picture.shape[1], picture.shape[0]))
            self.input.setCurrentWidget(self.picture)
            self.input.setMaximumHeight(PICTURE_HEIGHT)
        else:
            self.text.setPlainText(text)
            self.input.setCurrentWidget(self.text)
            self.input.setMaximumHeight(TEXT_HEIGHT)
        maps = None if attention is None else np.asarray(attention, dtype=np.float32)
        if maps is None or maps.ndim not in (2, 4) or maps.size == 0:
            self.attention.clear()
            self.empty_attention.setText(NO_ATTENTION)
            return
        one_map = maps.ndim == 2
        for widget in self.attention.choice.widgets():  # nothing to choose from in a single map
            widget.setVisible(not one_map)
        self.attention.set_event(AttentionEvent(step=0, maps=maps[None, None] if one_map else maps,
                                                tokens=tuple(tokens)))
        n = maps.shape[-1]
        which = "last layer, mean of heads \u00b7 " if one_map else ""
        self.attention.step_label.setText(f"{which}example {index} \u00b7 {n}\u00d7{n}")

    def clear(self) -> None:
        self.index = None
        self.caption.setText("Pick an example to see it and where the model looked.")
        self.text.clear()
        self.image.clear()
        self.input.setCurrentWidget(self.text)
        self.input.setMaximumHeight(TEXT_HEIGHT)
        self.attention.clear()
        self.empty_attention.setText(NOT_PICKED)
