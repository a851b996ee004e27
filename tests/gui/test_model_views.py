"""Model views in the Monitor: ponder time and expert load appear with a run's views, metrics get curves."""

from __future__ import annotations

import numpy as np

from effstudio.engine.events import AttentionEvent, DoneEvent, StartEvent, StepEvent
from effstudio.gui.main_window import MONITOR
from effstudio.gui.views import VIEWS, ModelViewArea, views_for
from effstudio.gui.views.expert_view import ExpertLoadView
from effstudio.gui.views.ponder_view import PonderView

TOKENS = ("[MAX", "2", "9", "[MIN", "4", "7", "]", "0", "]")
PONDER = np.array([[3, 1, 1, 4, 2, 2, 1, 1, 2]], dtype=np.float32)
LOAD = np.array([[0.5, 0.25, 0.125, 0.125], [0.25, 0.25, 0.25, 0.25]], dtype=np.float32)


def step(i: int, total: int, **metrics: float) -> StepEvent:
    return StepEvent(i, total, 1.0 / i, 1e-3, 100.0, 50.0, 1.0, 0.01 * i, metrics)


def probe(i: int, views: dict) -> AttentionEvent:
    n = len(TOKENS)
    return AttentionEvent(i, np.full((2, 2, n, n), 1 / n, dtype=np.float32), TOKENS, views)


def fake_train(total: int = 30, views: bool = True):
    def train(config, *, control, out_dir=None, resume=None, init=None):
        yield StartEvent(str(out_dir), "cpu", 10, total, 0)
        for i in range(1, total + 1):
            metrics = {"ponder_mean": 3.0 - i / total, "moe_dropped": 0.1, "moe_balance_loss": 1.2} if views else {}
            yield step(i, total, **metrics)
            if i % 10 == 0:
                extra = {"ponder_steps": PONDER, "expert_load": LOAD, "no_view_for_this": np.ones(3)}
                yield probe(i, extra if views else {})
        yield DoneEvent(total, 0.1, 0.9, None, 0.1, "finished")

    return train


def test_registry_knows_the_built_in_views():
    assert VIEWS["ponder_steps"] is PonderView and VIEWS["expert_load"] is ExpertLoadView
    assert views_for(["no_view_for_this", "expert_load"]) == [ExpertLoadView]


def test_ponder_view_colours_tokens_by_steps(app, qtbot):
    view = PonderView()
    qtbot.addWidget(view)
    view.set_arrays({"ponder_steps": PONDER}, TOKENS)
    text = view.text.toPlainText()
    assert text.split() == [f"{t}{int(s)}" for t, s in zip(TOKENS, PONDER[0], strict=True)]  # token, steps
    assert "mean 1.89" in view.summary.text() and "9 tokens" in view.summary.text()
    colours = {chunk[:7] for chunk in view.text.toHtml().split("background-color:")[1:]}
    assert len(colours) == 4  # four step counts, four colours
    assert [s.strip() for s in view.legend.text().split("&nbsp;") if s.strip().isdigit()] == ["1", "2", "3", "4"]
    padded = np.array([[2, 2, 0, 0]], dtype=np.float32)  # padding has 0 steps and is left out
    view.set_arrays({"ponder_steps": padded}, ("a", "b", "<pad>", "<pad>"))
    assert "<pad>" not in view.text.toPlainText()
    view.clear()
    assert view.steps is None


def test_expert_view_shows_the_load_table(app, qtbot):
    view = ExpertLoadView()
    qtbot.addWidget(view)
    view.set_arrays({"expert_load": LOAD}, TOKENS)
    assert np.allclose(view.image.image, 100 * LOAD)
    assert sorted(item.toPlainText() for item in view.labels)[:2] == ["12%", "12%"]
    assert len(view.labels) == LOAD.size
    assert "even share 25%" in view.summary.text() and "2.0\u00d7" in view.summary.text()


def test_area_ignores_unknown_keys_and_resets(app, qtbot):
    area = ModelViewArea()
    qtbot.addWidget(area)
    assert not area.has_content
    assert not area.set_event(probe(1, {"no_view_for_this": np.ones(3)}))
    assert not area.has_content
    assert area.set_event(probe(2, {"ponder_steps": PONDER}))
    assert not area.set_event(probe(3, {"ponder_steps": PONDER}))  # the same view is reused
    assert list(area.views) == ["ponder_steps"]
    area.reset(10)
    assert not area.has_content and area.views == {}


def test_monitor_shows_views_and_metric_curves(window, qtbot):
    window.train_fn = fake_train()
    job = window.start_training()
    with qtbot.waitSignal(job.finished, timeout=30_000):
        pass
    qtbot.waitUntil(lambda: window.job is None, timeout=5_000)
    assert window.current_section() == MONITOR
    monitor = window.monitor_panel
    tabs = monitor.side_tabs
    assert [tabs.tabText(i) for i in range(tabs.count())] == ["Attention", "Model"]
    assert tabs.currentWidget() is monitor.model_view  # the model's own view comes to the front
    area = monitor.model_view
    assert set(area.views) == {"ponder_steps", "expert_load"}
    assert np.array_equal(area.views["ponder_steps"].steps, PONDER)
    assert np.array_equal(area.views["expert_load"].load, LOAD)
    assert "step 30" in area.step_label.text()
    assert monitor.attention.current_event is not None  # the attention map is still there

    plot = area.metrics
    assert plot.keys() == ["ponder_mean", "moe_dropped", "moe_balance_loss"]
    x, y = plot.curves["ponder_mean"][0].getData()
    assert list(x) == list(range(1, 31)) and y[0] == 3.0 - 1 / 30
    assert np.allclose(plot.curves["moe_dropped"][0].getData()[1], 10.0)  # shown in percent
    assert len(plot.curves["moe_balance_loss"][1].getData()[0]) == 30  # the smoothed curve too
    monitor.set_smoothing_weight(0.0)
    assert np.allclose(plot.curves["ponder_mean"][1].getData()[1], y)

    window.train_fn = fake_train(views=False)  # a model without views: the tab goes away
    job = window.start_training()
    with qtbot.waitSignal(job.finished, timeout=30_000):
        pass
    assert tabs.count() == 1 and not area.has_content
