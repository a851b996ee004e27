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
