"""The Monitor's model views for ViT (class token over the image) and seq2seq (cross-attention)."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtGui import QAction

from effstudio.engine.events import AttentionEvent, StartEvent
from effstudio.gui.metrics import RunProgress
from effstudio.gui.panels.monitor_panel import MonitorPanel
from effstudio.gui.views import VIEWS
from effstudio.gui.views.cross_attention_view import CrossAttentionView
from effstudio.gui.views.patch_attention_view import PatchAttentionView, as_image, overlay_rgba

SOURCE = ("3", "1", "4", "1", "5")
DECODED = ("5", "1", "4", "1", "3", "<eos>", "<eos>")


@pytest.fixture
def monitor(app, qtbot):
    panel = MonitorPanel(QAction("Start"))
    qtbot.addWidget(panel)
    panel.resize(1200, 720)
    panel.show()
    progress = RunProgress()
    start = StartEvent("run", "cpu", 1000, 100, 0)
    progress.start(start)
    panel.run_started(start, "test run", progress)
    return panel


def vit_event() -> AttentionEvent:
    weights = np.full((1, 4, 4), 0.01, dtype=np.float32)
    weights[0, 2, 1] = 0.6  # the class token looks at patch row 2, column 1
    image = np.zeros((1, 1, 16, 16), dtype=np.float32)
    image[0, 0, 8:12, 4:8] = 1.0
    maps = np.full((2, 2, 17, 17), 1 / 17, dtype=np.float32)
    return AttentionEvent(10, maps, ("image 16\u00d716",), {"cls_patch_attention": weights, "image": image})


def cross_event() -> AttentionEvent:
    layers, heads, t, s = 2, 2, len(DECODED), len(SOURCE)
    cross = np.full((1, layers, heads, t, s), 0.05, dtype=np.float32)
    for i in range(s):
        cross[0, :, 0, i, :] = 0.0
        cross[0, :, 0, i, s - 1 - i] = 1.0  # head 1 reads the source backwards
    encoder = np.full((layers, heads, s, s), 1 / s, dtype=np.float32)
    return AttentionEvent(20, encoder, SOURCE + DECODED,
                          {"cross_attention": cross, "decoded": np.zeros((1, t), dtype=np.int64)})


def test_views_are_registered():
    assert VIEWS["cls_patch_attention"] is PatchAttentionView
    assert VIEWS["cross_attention"] is CrossAttentionView


def test_monitor_shows_the_class_token_over_the_image(monitor, qtbot):
    monitor.add_attention(vit_event())
    assert monitor.side_tabs.currentWidget() is monitor.model_view  # the model tab comes forward
    view = monitor.model_view.views["cls_patch_attention"]
    assert isinstance(view, PatchAttentionView) and view.isVisible()
    assert view.weights.shape == (4, 4)
    heat = view.heat.image  # (16, 16, 4) RGBA over the image
    assert heat.shape == (16, 16, 4)
    alpha = heat[..., 3]
    assert alpha[8:12, 4:8].min() == alpha.max() > 150 and alpha[0:4, 0:4].max() < 20
    assert np.array_equal(view.plain.image, as_image(vit_event().views["image"]))
    assert "peak row 3, column 2" in view.summary.text()
    # the regular attention map still gets the layers
    assert monitor.attention.current_event is not None


def test_monitor_shows_cross_attention_with_token_labels(monitor):
    monitor.add_attention(cross_event())
    view = monitor.model_view.views["cross_attention"]
    assert isinstance(view, CrossAttentionView) and view.isVisible()
    assert view.sources == SOURCE and view.outputs == DECODED[:6]  # rows end at the first <eos>
    assert view.current_map().shape == (6, 5)
    assert view.choice.layer_box.currentData() == 1  # the last layer first
    view.choice.head_box.setCurrentIndex(1)  # head 1
    matrix = view.current_map()
    assert np.allclose(matrix[:5], np.eye(5)[::-1])  # the anti-diagonal of a reversal
    ticks = view.plot.getAxis("left")._tickLevels
    assert [label for level in ticks for _, label in level] and "wrote: 5 1 4 1 3" in view.summary.text()
    # the encoder's own self-attention stays in the Attention tab, labelled by the source
    assert monitor.attention.current_map().shape == (5, 5)


def test_views_accept_unbatched_rgb_and_missing_tokens(app, qtbot):
    view = PatchAttentionView()
    qtbot.addWidget(view)
    rgb = np.random.default_rng(0).random((3, 12, 12)).astype(np.float32)
    view.set_arrays({"cls_patch_attention": np.ones((3, 3), np.float32) / 9, "image": rgb}, ())
    assert view.plain.image.shape == (12, 12, 3)
    rgba, top = overlay_rgba(np.eye(2, dtype=np.float32), 8, 8)
    assert rgba.shape == (8, 8, 4) and top == 1.0 and rgba[0, 0, 3] > rgba[0, 7, 3] == 0
    cross = CrossAttentionView()
    qtbot.addWidget(cross)
    cross.set_arrays({"cross_attention": np.full((1, 1, 3, 4), 0.25, np.float32)}, ())
    assert cross.outputs == ("1", "2", "3") and cross.sources == ("0", "1", "2", "3")
    cross.clear()
    assert cross.current_map() is None


def test_data_preview_describes_image_tasks(tmp_path, monkeypatch):
    from effstudio.gui.panels.data_panel import build_preview
    from effstudio.registry import get_registry
    from effstudio.tasks.digits import DigitsConfig

    monkeypatch.setenv("EFFSTUDIO_CACHE_DIR", str(tmp_path))
    preview = build_preview(get_registry(), "digits", DigitsConfig(train_size=20, val_size=10, test_size=10))
    assert preview.summary.startswith("image classification \u00b7 16\u00d716 grey images \u00b7 10 classes")
    assert preview.rows[0][0] == "image 16\u00d716" and preview.rows[0][1].isdigit()


@pytest.mark.parametrize("model,task,overrides,key", [
    ("vit", "digits", {"task.train_size": 64, "task.val_size": 16, "task.test_size": 16}, "cls_patch_attention"),
    ("seq2seq", "copy", {"task.mode": "reverse", "task.max_length": 5, "task.train_size": 64,
                         "task.val_size": 16, "task.test_size": 16}, "cross_attention"),
])
def test_window_trains_the_model_and_shows_its_view(window, qtbot, model, task, overrides, key):
    from effstudio.engine.run_config import RunConfig

    window.apply_config(RunConfig.create(model, task, {
        "model.d_model": 16, "model.layers": 1, "model.heads": 2, "train.steps": 6, "train.batch_size": 16,
        "train.eval_every": 3, "train.attention_every": 3, "train.warmup_steps": 1, "train.device": "cpu",
        **overrides}))
    job = window.start_training()
    assert job is not None
    with qtbot.waitSignal(job.finished, timeout=60_000) as finished:
        pass
    assert finished.args == ["finished"] and window.last_done.status == "finished"
    monitor = window.monitor_panel
    qtbot.waitUntil(lambda: key in monitor.model_view.views, timeout=5_000)
    assert monitor.side_tabs.currentWidget() is monitor.model_view
