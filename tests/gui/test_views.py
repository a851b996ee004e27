"""Plots, metrics, icons, the command line and the two offscreen entry points."""

from __future__ import annotations

import numpy as np
import pytest

from effstudio.engine.events import AttentionEvent, StartEvent, StepEvent
from effstudio.gui.command import command_line
from effstudio.gui.icons import GLYPHS, app_icon, icon
from effstudio.gui.metrics import RunProgress, format_count, format_duration
from effstudio.gui.plots.curves import CurvesView, SmoothedSeries
from effstudio.gui.plots.heatmap import MEAN_OF_HEADS
from effstudio.gui.views.attention_view import AttentionView

from .conftest import tiny_config


def test_smoothed_series_matches_a_debiased_ema():
    series = SmoothedSeries(weight=0.5)
    series.extend([1, 2], [4.0, 0.0])
    series.extend([3], [2.0])
    # debiased EMA: (1-w)*sum(w^k y) / (1 - w^t)
    expected = [4.0, (0.25 * 4 + 0.5 * 0) / 0.75, (0.125 * 4 + 0.25 * 0 + 0.5 * 2) / 0.875]
    assert np.allclose(series.smooth.y, expected)
    series.set_weight(0.0)
    assert np.allclose(series.smooth.y, [4.0, 0.0, 2.0])
    big = SmoothedSeries()
    big.extend(range(5000), np.ones(5000))
    assert len(big) == 5000 and np.allclose(big.smooth.y, 1.0)


def test_curves_fill_and_reset(app, qtbot):
    view = CurvesView()
    qtbot.addWidget(view)
    view.reset(total_steps=10)
    view.add_steps([StepEvent(i, 10, 1.0 / i, 1e-3, 500.0, 100.0, 1.0, 0.1 * i) for i in range(1, 6)])
    view.refresh()
    assert list(view.loss_raw_curve.getOriginalDataset()[0]) == [1, 2, 3, 4, 5]
    assert view.plots()[0].viewRange()[0][1] >= 10  # the step axis spans the whole run
    view.reset()
    assert view.loss_raw_curve.getOriginalDataset()[0] is None or len(view.loss_raw_curve.getOriginalDataset()[0]) == 0


@pytest.mark.parametrize(("n", "labelled"), [(5, True), (60, False)])
def test_attention_view_selectors_and_token_labels(app, qtbot, n, labelled):
    view = AttentionView()
    qtbot.addWidget(view)
    maps = np.random.default_rng(0).random((2, 3, n, n)).astype(np.float32)
    view.set_event(AttentionEvent(7, maps, tuple(f"t{i}" for i in range(n))))
    assert view.choice.layer_box.count() == 2 and view.choice.head_box.count() == 4
    assert view.choice.head_box.currentData() == MEAN_OF_HEADS
    assert np.allclose(view.current_map(), maps[0].mean(axis=0))
    view.choice.layer_box.setCurrentIndex(1)
    view.choice.head_box.setCurrentIndex(2)
    assert np.allclose(view.current_map(), maps[1, 1])
    ticks = view.plot.getAxis("bottom")._tickLevels
    assert (ticks is not None) == labelled
    assert "step 7" in view.step_label.text()
    view.clear()
    assert view.current_map() is None


def test_a_long_probe_shows_its_word_pieces_where_the_view_is_zoomed_in_and_under_the_mouse(app, qtbot):
    view = AttentionView()
    qtbot.addWidget(view)
    n = 300
    tokens = ("[CLS]", *(f"\u2581piece{i}" for i in range(1, n - 1)), "[SEP]")
    maps = np.random.default_rng(1).random((1, 2, n, n)).astype(np.float32)
    view.set_event(AttentionEvent(3, maps, tokens))
    assert view.plot.getAxis("bottom")._tickLevels is None  # 300 tokens in view: positions
    view.plot.setRange(xRange=(100, 120), yRange=(0, 300), padding=0)
    ticks = [label for level in view.plot.getAxis("bottom")._tickLevels for _, label in level]
    assert set(ticks) <= {f"\u2581piece{i}" for i in range(100, 121)} and "\u2581piece110" in ticks
    assert view.plot.getAxis("left")._tickLevels is None  # the query axis still shows all 300
    view.show_cell(0, 110)
    expected = maps[0].mean(axis=0)[0, 110]
    assert view.readout.text() == f"query [CLS] (0) \u2192 key \u2581piece110 (110): {expected:.4f}"
    view.show_cell(5, n)  # outside the map
    assert view.readout.text() == ""


def test_progress_and_formatting():
    progress = RunProgress()
    progress.start(StartEvent("run", "cpu", 1000, 100, 0))
    progress.add_steps([StepEvent(25, 100, 1.0, 1e-3, 1500.0, 10.0, 1.0, 10.0)])
    assert progress.fraction == 0.25 and progress.eta_s == pytest.approx(30.0)
    assert format_duration(3725) == "1:02:05" and format_duration(65) == "1:05"
    assert format_count(26_800) == "26.8k" and format_count(None) == "\u2014"


def test_icons_render(app):
    assert not app_icon().isNull()
    for name in GLYPHS:
        assert not icon(name).pixmap(24, 24).isNull()


def test_command_line_of_defaults_is_short():
    from effstudio.engine.run_config import RunConfig

    assert command_line(RunConfig.create("transformer", "copy")) == (
        "effstudio train --model transformer --task copy")
    assert "--set train.steps=20" in command_line(tiny_config())


def test_screenshot_entry_point(app, tmp_path):
    from PySide6.QtGui import QImage

    from effstudio.gui.screenshot import save_screenshot

    path = tmp_path / "shot.png"
    save_screenshot(path, steps=8, isolate=False)  # the child-process path is tested elsewhere
    image = QImage(str(path))
    assert not image.isNull() and image.width() >= 1000 and image.height() >= 600
