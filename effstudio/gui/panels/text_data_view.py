"""The Data section's view of a text-classification data set: examples as word pieces, lengths, classes.

``build_text_preview`` runs in the preview job's thread and gathers everything the
view draws (a few decoded examples with their tokens, a histogram of the training
split's full token lengths, its class counts); ``TextDataView`` draws it: each
example as its label, the start of its text and its tokens as alternating chips,
the length histogram with the chosen maximum length marked, and one bar per class.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QTextBrowser, QVBoxLayout, QWidget

from effstudio.gui import theme

PREVIEW_EXAMPLES = 6
PREVIEW_CHARS = 220  # of each example's text, shown above its tokens
PREVIEW_TOKENS = 64  # word pieces shown per example
LENGTH_BINS = 40
CLASS_TICKS = 16  # class names written beside the bars at most (every n-th beyond that)
CLASS_NAME_CHARS = 18
AXIS_PADDING = 14  # pixels beside the class names for the ticks
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TableHeader:
    """The columns a data file's header names (sent before the task is built, so the choosers fill
    even when the chosen columns are wrong)."""

    path: str
    columns: tuple[str, ...]


@dataclass(frozen=True)
class ExampleRow:
    text: str  # clipped to PREVIEW_CHARS
    label: str
    tokens: list[str]  # the first PREVIEW_TOKENS word pieces the model reads
    kept: int  # how many pieces the model reads (cut to the maximum length)
    length: int  # how many pieces the whole text has


@dataclass(frozen=True)
class TextPreview:
    summary: str
    examples: list[ExampleRow]
    length_counts: np.ndarray  # examples per bin, (bins,)
    length_edges: np.ndarray  # bin edges in tokens, (bins + 1,)
    max_length: int
    longer: int  # training examples longer than max_length (cut by the truncation)
    classes: dict[str, int]  # training examples per class


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())  # a preview line: newlines and runs of spaces read as one space
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def length_histogram(lengths: np.ndarray, bins: int = LENGTH_BINS) -> tuple[np.ndarray, np.ndarray]:
    """(counts, edges) of integer token lengths, in at most ``bins`` bins of whole tokens."""
    if lengths.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(1)
    low, high = int(lengths.min()), int(lengths.max()) + 1
    width = max(1, math.ceil((high - low) / bins))
    edges = np.arange(low, high + width, width, dtype=np.float64)
    counts, edges = np.histogram(lengths, bins=edges)
    return counts, edges


def build_text_preview(task: Any, max_length: int, count: int = PREVIEW_EXAMPLES) -> TextPreview:
    """What the view draws of a built text-classification task (runs in a job's thread)."""
    lengths = np.asarray(task.lengths("train"))
    counts, edges = length_histogram(lengths)
    examples = [ExampleRow(_clip(e.text, PREVIEW_CHARS), str(e.label), list(e.tokens[:PREVIEW_TOKENS]),
                           len(e.tokens), int(full))
                for e, full in zip(task.examples("train", count), lengths, strict=False)]
    classes = {str(name): int(n) for name, n in task.class_counts("train").items()}
    # split sizes from the class counts: cheap, where a split's padded tensor of a large file is not
    sizes = " / ".join(f"{sum(task.class_counts(name).values())} {name}" for name in SPLITS)
    parts = [f"{len(classes)} classes", f"vocabulary {task.spec.vocab_size}", sizes]
    if task.duplicates_removed:
        parts.append(f"{task.duplicates_removed} duplicates removed")
    return TextPreview(" \u00b7 ".join(parts), examples, counts, edges, max_length,
                       int((lengths > max_length).sum()), classes)


def _is_special(token: str) -> bool:
    return len(token) > 2 and token.startswith("[") and token.endswith("]")


def chips_html(tokens: list[str]) -> str:
    """Word pieces as chips of alternating tints, so where one ends and the next begins shows (a space
    between them lets a long example wrap)."""
    shades = (theme.tint(theme.BLUE, 0.16), theme.tint(theme.ORANGE, 0.22))
    special = theme.tint(theme.SECONDARY, 0.18)
    spans = []
    for i, token in enumerate(tokens):
        background = special if _is_special(token) else shades[i % 2]
        shown = html.escape(token).replace(" ", "\u2423")  # a space inside a piece stays visible
        spans.append(f"<span style='background-color:{background}; color:{theme.TEXT}'>{shown}</span>")
    return " ".join(spans)


def example_html(row: ExampleRow) -> str:
    more = row.kept - len(row.tokens)
    tail = f" <span style='color:{theme.MUTED}'>\u2026 +{more} more</span>" if more > 0 else ""
    size = f"{row.length} tokens" + (f", the model reads {row.kept}" if row.kept < row.length else "")
    return (f"<p style='margin-bottom:10px'><b style='color:{theme.ACCENT}'>{html.escape(row.label)}</b>"
            f" <span style='color:{theme.MUTED}'>{size} \u00b7 {html.escape(row.text)}</span>"
            f"<br><span style='font-family:monospace'>{chips_html(row.tokens)}</span>{tail}</p>")


class TextDataView(QWidget):
    """Examples with their word pieces above a token-length histogram and a class bar chart."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(8)
        self.examples = QTextBrowser(self)
        self.examples.setObjectName("textExamples")
        self.examples.setOpenLinks(False)
        self.examples.setMinimumHeight(180)
        layout.addWidget(self.examples, 3)

        self.graphics = theme.plot_canvas(self)
        self.graphics.setMinimumHeight(220)
        self.lengths_plot = theme.style_plot(self.graphics.addPlot(row=0, col=0), title="Token lengths (train)",
                                             bottom="tokens per example", left="examples", grid="y", mouse="",
                                             si_prefix=False)
        self.length_bars = pg.PlotDataItem(stepMode="center", fillLevel=0, brush=theme.brush(theme.BLUE, 0xb0),
                                           pen=theme.pen(theme.BLUE))
        self.lengths_plot.addItem(self.length_bars)
        self.max_line = pg.InfiniteLine(0, angle=90, pen=theme.pen(theme.RED, 1.5, dashed=True),
                                        label="max length {value:.0f}",
                                        labelOpts={"color": theme.RED, "position": 0.95, "anchors": [(0, 0), (0, 0)],
                                                   "fill": theme.brush(theme.SURFACE, 215)})
        self.lengths_plot.addItem(self.max_line)
        self.max_line.hide()  # until there are lengths to mark it among
        # one horizontal bar per class: the names read along the left axis, however long or many
        self.classes_plot = theme.style_plot(self.graphics.addPlot(row=0, col=1), title="Classes (train)",
                                             bottom="examples", grid="x", mouse="", si_prefix=False)
        self.classes_plot.invertY(True)  # the first class on top
        self.class_bars = pg.BarGraphItem(x0=[], y=[], width=[], height=0.7, brush=theme.brush(theme.GREEN, 0xb0),
                                          pen=theme.pen(theme.GREEN))
        self.classes_plot.addItem(self.class_bars)
        self.graphics.ci.layout.setColumnStretchFactor(0, 3)
        self.graphics.ci.layout.setColumnStretchFactor(1, 2)
        layout.addWidget(self.graphics, 2)
        self.preview: TextPreview | None = None

    def show_preview(self, preview: TextPreview) -> None:
        self.preview = preview
        self.examples.setHtml("".join(example_html(row) for row in preview.examples))
        self.length_bars.setData(preview.length_edges, preview.length_counts)
        # in the line's label, not the title: a long title would widen the plot past the section
        total = int(preview.length_counts.sum())
        self.max_line.label.setFormat(f"max length {{value:.0f}}: {preview.longer} of {total} longer")
        self.max_line.show()  # before moving it: a hidden line's label keeps its old value
        self.max_line.setValue(preview.max_length)
        names = list(preview.classes)
        counts = np.array(list(preview.classes.values()), dtype=np.float64)
        self.class_bars.setOpts(x0=np.zeros(len(names)), y=np.arange(len(names)), width=counts)
        step = max(1, math.ceil(len(names) / CLASS_TICKS))
        ticks = [(i, _clip(name, CLASS_NAME_CHARS)) for i, name in enumerate(names) if i % step == 0]
        axis = self.classes_plot.getAxis("left")
        axis.setTicks([ticks])
        # as wide as the longest name: the axis would otherwise keep the width it had without names
        metrics = QFontMetrics(axis.style["tickFont"] or self.font())
        axis.setWidth(max((metrics.horizontalAdvance(text) for _i, text in ticks), default=0) + AXIS_PADDING)
        self.classes_plot.setYRange(-0.6, max(len(names), 1) - 0.4, padding=0)
        self.classes_plot.setXRange(0, max(float(counts.max()) if counts.size else 1.0, 1.0), padding=0.05)
        # the marked maximum stays in view when every example is shorter (or all far longer)
        edges = preview.length_edges
        low = min(float(edges[0]), preview.max_length) if edges.size else 0.0
        high = max(float(edges[-1]), preview.max_length) if edges.size else float(preview.max_length)
        self.lengths_plot.setXRange(low, high, padding=0.04)
        # the label on the side of the line with more room
        side = (1, 0) if preview.max_length > (low + high) / 2 else (0, 0)
        self.max_line.label.anchors = [side, side]
        self.max_line.label.updatePosition()
        self.lengths_plot.enableAutoRange(axis="y")

    def clear_preview(self) -> None:
        """Nothing shown (the data set could not be read: what was shown belongs to another one)."""
        self.preview = None
        self.examples.clear()
        self.length_bars.clear()
        self.max_line.hide()
        self.class_bars.setOpts(x0=[], y=[], width=[])
        self.classes_plot.getAxis("left").setTicks([[]])

    def bar_heights(self) -> dict[str, int]:
        """The class chart's bars by class name (what the chart shows)."""
        widths = self.class_bars.opts.get("width")
        names = list(self.preview.classes) if self.preview is not None else []
        return {name: int(w) for name, w in zip(names, widths if widths is not None else [], strict=False)}
