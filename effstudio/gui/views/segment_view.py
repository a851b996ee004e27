"""Segment view: how the hierarchical encoder weighs the segments of the probe document.

One line per segment, in document order: its share of the document vector
(the attention pooling weight over segments) as a number and a bar, then its
tokens on a chip tinted by that weight. Segments with no real token (padding)
have no weight and are left out; the summary names the heaviest segment.
"""

from __future__ import annotations

import html

import numpy as np
import pyqtgraph as pg
from PySide6.QtWidgets import QWidget

from effstudio.gui import theme
from effstudio.gui.views.base import ModelView, register_view

COLORMAP = "CET-L12"  # white to deep blue
BAR_WIDTH = 120  # pixels of a bar of weight 1


def segment_tokens(segments: np.ndarray, tokens: tuple[str, ...], count: int) -> list[list[str]]:
    """The token labels of each of ``count`` segments, from each token's segment (-1: padding)."""
    groups: list[list[str]] = [[] for _ in range(count)]
    for i, s in enumerate(segments.astype(int)):
        if 0 <= s < count:
            groups[s].append(tokens[i] if i < len(tokens) else str(i))
    return groups


@register_view("segment_attention")
class SegmentAttentionView(ModelView):
    title = "Segments"

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.weights: np.ndarray | None = None
        self.text = self.token_text("segmentTokens")
        self.frame("Segment attention", "The document vector is a weighted mean of the segment vectors; each line "
                   "is a segment of the probe document with its weight. Padding segments get none.",
                   self.text, min_height=120)

    def set_arrays(self, arrays: dict[str, np.ndarray], tokens: tuple[str, ...]) -> None:
        weights = np.nan_to_num(np.asarray(arrays["segment_attention"], dtype=np.float64))
        if weights.ndim == 2:  # (B, S): the first example
            weights = weights[0]
        self.weights = weights
        count = len(weights)
        segments = arrays.get("token_segments")
        if segments is not None:
            segments = np.asarray(segments)
            groups = segment_tokens(segments[0] if segments.ndim == 2 else segments, tokens, count)
        else:
            groups = [[] for _ in range(count)]
        shown = [s for s in range(count) if weights[s] > 0 or groups[s]]
        if not shown:
            self.text.setHtml("")
            self.summary.setText("no segments")
            return
        cmap = pg.colormap.get(COLORMAP)
        top = max(float(weights.max()), 1e-9)
        rows = []
        for s in shown:
            share = weights[s] / top
            colour = cmap.map(0.08 + 0.8 * share, mode="qcolor")
            text_colour = theme.text_on(colour)
            words = " ".join(html.escape(t.strip() or "\u2423") for t in groups[s])
            bar = max(int(round(BAR_WIDTH * weights[s])), 1)
            rows.append(
                f"<tr><td style='color:{theme.MUTED};padding-right:6px' align='right'>{s + 1}</td>"
                f"<td align='right' style='padding-right:6px'>{100 * weights[s]:.1f}%</td>"
                f"<td width='{BAR_WIDTH + 4}'><table cellspacing='0' cellpadding='0'><tr>"
                f"<td width='{bar}' height='10' bgcolor='{theme.BLUE}'></td></tr></table></td>"
                f"<td><span style='background-color:{colour.name()};color:{text_colour}'>&nbsp;{words}&nbsp;"
                f"</span></td></tr>")
        self.text.setHtml(f"<table style='font-size:10pt' cellspacing='2'>{''.join(rows)}</table>")
        heaviest = int(np.argmax(weights))
        self.summary.setText(f"{len(shown)} segments \u00b7 heaviest: segment {heaviest + 1} "
                             f"({100 * weights[heaviest]:.0f}%)")

    def clear(self) -> None:
        self.weights = None
        self.text.setHtml("")
        self.summary.setText("")
