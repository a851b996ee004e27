"""What every plot shares: the pointer readout (value, row, column over a heatmap; the nearest point over
curves), the percent and memory axes, the colour bar that says where it clips, token labels that never
overlap."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtGui import QImage, QPainter

from effstudio.engine.events import AttentionEvent, EvalEvent, StepEvent
from effstudio.gui.plots.axes import MIN_MEMORY_RANGE_MB
from effstudio.gui.plots.curves import CurvesView
from effstudio.gui.plots.tensor_view import CLIP_PERCENTILE, TensorView, colour_levels
from effstudio.gui.views.attention_view import AttentionView
from effstudio.inspect.stats import MatrixView, TensorPictureEvent


def steps(values, rss):
    return [StepEvent(i + 1, 100, v, 1e-3, 1000.0, r, 1.0, 0.1 * i) for i, (v, r) in enumerate(zip(values, rss, strict=True))]


@pytest.fixture
def curves(app, qtbot):
    view = CurvesView()
    qtbot.addWidget(view)
    view.resize(900, 600)
    view.show()
    view.reset(100)
    return view


def test_one_validation_point_keeps_the_accuracy_axis_inside_0_to_100(curves, qtbot):
    curves.add_eval(EvalEvent(10, 1.2, 0.03))
    curves.refresh()
    curves.acc_plot.enableAutoRange(y=True)
    qtbot.waitUntil(lambda: curves.acc_plot.getViewBox().viewRange()[1][0] >= 0, timeout=2000)
    low, high = curves.acc_plot.getViewBox().viewRange()[1]
    assert 0 <= low < 3 < high <= 100 and high - low >= 10


def test_memory_noise_is_not_drawn_as_a_spike_and_the_axis_reads_plain_megabytes(curves, qtbot):
    curves.add_steps(steps([1.0] * 20, [500.0 + 0.01 * (i % 3) for i in range(20)]))
    curves.refresh()
    qtbot.waitUntil(lambda: curves.memory_plot.getViewBox().viewRange()[1][1] > 500, timeout=2000)
    low, high = curves.memory_plot.getViewBox().viewRange()[1]
    assert high - low >= MIN_MEMORY_RANGE_MB - 1e-6 and low >= 0
    axis = curves.memory_plot.getAxis("left")
    assert axis.labelText == "memory (MB)" and not axis.autoSIPrefix


def test_the_readout_names_the_curve_point_under_the_pointer(curves):
    curves.add_eval(EvalEvent(40, 0.9, 0.625))
    curves.refresh()
    curves.acc_plot.setXRange(0, 100, padding=0)
    curves.acc_plot.setYRange(0, 100, padding=0)
    text = curves.acc_plot.readout.show_at(41.0, 60.0)
    assert text == "step 40 \u00b7 accuracy (%) 62.5"
    assert curves.acc_plot.readout.label.isVisible()
    assert curves.acc_plot.readout.show_at(95.0, 5.0) == ""  # far from every point: nothing named
    assert all(getattr(plot, "readout", None) is not None for plot in curves.plots())


def picture(values: np.ndarray) -> TensorPictureEvent:
    view = MatrixView(values, values.shape[0], values.shape[1], 1.0, 1.0, "12 × 20")
    counts, edges = np.histogram(values, bins=16)
    return TensorPictureEvent("w", counts, edges, view)


def test_the_heatmap_reads_out_value_row_and_column_and_says_where_colours_clip(app, qtbot):
    rng = np.random.default_rng(0)
    values = rng.normal(0, 0.1, (12, 20)).astype(np.float32)
    values[3, 7] = -0.77  # outliers beyond the 99.5th percentile of |value|
    values[5, 2] = 0.65
    view = TensorView()
    qtbot.addWidget(view)
    view.resize(500, 700)
    view.show()
    view.set_picture(picture(values), values.shape, "float32")
    scale = view.colour_scale
    bound = float(np.percentile(np.abs(values), CLIP_PERCENTILE))
    assert scale.clipped and (scale.low, scale.high) == pytest.approx((-bound, bound))
    label = view.colorbar.getAxis("right").labelText
    assert "clipped at 99.5th pct of |value|" in label and "-0.77" in label and "0.65" in label
    text = view.heatmap.readout.show_at(7.5, 3.5)
    assert text == "value -0.77\nrow 3 \u00b7 column 7"
    assert view.heatmap.readout.show_at(2.2, 5.9) == "value 0.65\nrow 5 \u00b7 column 2"


def test_a_scale_that_clips_nothing_says_only_value():
    scale = colour_levels(np.array([[-1.0, 1.0], [1.0, -1.0]], np.float32))
    assert not scale.clipped and scale.label() == "value"


def drawn_label_rects(axis):
    image = QImage(10, 10, QImage.Format.Format_ARGB32)
    painter = QPainter(image)
    try:
        _axis_spec, _ticks, texts = axis.generateDrawSpecs(painter)
    finally:
        painter.end()
    return [rect for rect, _flags, _text in texts]


@pytest.mark.parametrize("width", [360, 1600])
def test_attention_token_labels_never_overlap_at_any_window_size(app, qtbot, width):
    tokens = tuple(f"tok{i:02d}xx" for i in range(40))
    view = AttentionView()
    qtbot.addWidget(view)
    view.resize(width, width)
    view.show()
    view.set_event(AttentionEvent(5, np.full((1, 1, 40, 40), 1 / 40, np.float32), tokens))
    qtbot.wait(50)
    for name in ("bottom", "left"):
        rects = drawn_label_rects(view.plot.getAxis(name))
        assert len(rects) >= 2
        for a, b in zip(rects, rects[1:], strict=False):
            assert not a.intersects(b), (name, a, b)
    assert view.image.readout_cell(0, 1) == "query tok00xx (0) \u2192 key tok01xx (1): 0.0250"


def test_a_log_log_plot_reads_out_its_points_in_their_own_units(app, qtbot):
    import math

    from effstudio.gui.plots.scaling import ScalingPlot

    plot = ScalingPlot("Latency", "time", "ms")
    qtbot.addWidget(plot)
    plot.resize(600, 400)
    plot.show()
    plot.reset(["full"], [128, 256, 512])
    for length, value in ((128, 2.5), (256, 9.0), (512, 40.0)):
        plot.add_point("full", length, value)
    readout = plot.getPlotItem().readout
    plot.getPlotItem().setRange(xRange=(2, 3), yRange=(0, 2), padding=0)
    assert readout.show_at(math.log10(256) + 0.01, math.log10(9.0)) == "full at 256 tokens: 9 ms"
