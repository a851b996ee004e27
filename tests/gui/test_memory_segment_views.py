"""The Transformer-XL memory view and the hierarchical model's segment-attention view show their data."""

from __future__ import annotations

import numpy as np

from effstudio.gui.views import VIEWS, views_for
from effstudio.gui.views.memory_view import MemoryLossView, moving_average

POSITIONS = 15
WITH = np.linspace(1.2, 1.0, POSITIONS, dtype=np.float32)
WITHOUT = np.linspace(3.0, 1.1, POSITIONS, dtype=np.float32)  # the first positions lack context


def test_memory_view_draws_both_losses_and_their_history(app, qtbot):
    assert VIEWS["memory_loss"] is MemoryLossView and views_for(["memory_loss"]) == [MemoryLossView]
    view = MemoryLossView()
    qtbot.addWidget(view)
    tokens = tuple("abcdefghijklmnop")
    view.set_arrays({"memory_loss": np.stack([WITH, WITHOUT])}, tokens)
    view.set_arrays({"memory_loss": np.stack([WITH - 0.2, WITHOUT])[None]}, tokens)  # (B, 2, N - 1) too
    x, y = view.curves["without_raw"].getData()
    assert list(x) == list(range(1, POSITIONS + 1)) and np.allclose(y, WITHOUT)
    assert np.allclose(view.curves["with"].getData()[1], moving_average(WITH - 0.2))
    hx, hy = view.curves["with_history"].getData()
    assert list(hx) == [1, 2] and np.allclose(hy, [WITH.mean(), WITH.mean() - 0.2])
    gain = WITHOUT.mean() - (WITH.mean() - 0.2)
    assert f"memory saves {gain:.2f}" in view.summary.text()
    view.resize(700, 240)
    assert not view.grab().isNull()
    view.clear()
    assert view.history == [] and view.curves["with"].getData()[0] is None


def test_moving_average_keeps_the_ends() -> None:
    assert np.allclose(moving_average(np.array([1.0, 1.0, 4.0]), 3), [1.0, 2.0, 2.5])
    assert np.allclose(moving_average(np.array([2.0])), [2.0])


def test_segment_view_lists_segments_with_their_weights(app, qtbot):
    from effstudio.gui.views.segment_view import SegmentAttentionView, segment_tokens

    assert VIEWS["segment_attention"] is SegmentAttentionView
    view = SegmentAttentionView()
    qtbot.addWidget(view)
    tokens = ("[MAX", "2", "9", "]", "[MIN", "4", "]", "<pad>")
    segments = np.array([[0, 0, 0, 0, 1, 1, 1, -1]])
    weights = np.array([[0.75, 0.25, 0.0]], dtype=np.float32)  # the third segment is all padding
    view.set_arrays({"segment_attention": weights, "token_segments": segments}, tokens)
    text = view.text.toPlainText()
    assert "75.0%" in text and "25.0%" in text and "[MAX 2 9 ]" in text and "[MIN 4 ]" in text
    assert "<pad>" not in text and "0.0%" not in text  # the padding segment is left out
    assert "2 segments" in view.summary.text() and "segment 1 (75%)" in view.summary.text()
    assert segment_tokens(segments[0], tokens, 3) == [["[MAX", "2", "9", "]"], ["[MIN", "4", "]"], []]
    view.resize(600, 200)
    assert not view.grab().isNull()
    view.clear()
    assert view.weights is None and view.text.toPlainText() == ""
