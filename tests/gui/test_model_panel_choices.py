"""The Model and Data forms: model/task pairs checked before Start, the first window's pair, the attention
kind kept across model types, mixture-of-experts settings enabled only with that feed-forward, units."""

from __future__ import annotations

from effstudio.engine.run_config import RunConfig
from effstudio.gui.main_window import MainWindow
from effstudio.gui.settings import FIRST_MODEL, FIRST_TASK, save_run_config


def pick(box, name: str) -> None:
    box.setCurrentIndex(box.findData(name))


def test_a_model_that_cannot_take_the_task_disables_start_with_one_message(window):
    pick(window.model_panel.type_box, "vit")
    assert not window.action_map["start"].isEnabled()
    problems = window.train_panel.problems.text()
    assert problems.count("vit classifies images") == 1
    assert "vit classifies images" in window.action_map["start"].toolTip()
    assert window.start_training() is None and window.job is None
    pick(window.data_panel.task_box, "digits")  # an image task: the pair is fine
    assert window.action_map["start"].isEnabled()
    assert window.train_panel.problems.isHidden()


def test_the_first_window_opens_on_a_pair_that_trains_and_then_on_the_last_choice(app, qtbot, settings, tmp_path):
    first = MainWindow(settings, out_dir=tmp_path / "run", isolate=False)
    qtbot.addWidget(first)
    assert (first.model_panel.model_type(), first.data_panel.task_name()) == (FIRST_MODEL, FIRST_TASK)
    assert first.action_map["start"].isEnabled()
    save_run_config(settings, RunConfig.create("vit", "digits"))
    again = MainWindow(settings, out_dir=tmp_path / "run", isolate=False)
    qtbot.addWidget(again)
    assert (again.model_panel.model_type(), again.data_panel.task_name()) == ("vit", "digits")


def test_changing_the_model_type_keeps_the_attention_kind_and_its_settings(window):
    panel = window.model_panel
    panel.model_form.set_value("attention", "local")
    window_field = next(iter(panel.attention_form.specs))
    value = panel.attention_form.values()[window_field]
    changed = value + 1 if isinstance(value, int) and not isinstance(value, bool) else value
    panel.attention_form.set_value(window_field, changed)
    pick(panel.type_box, "universal")
    assert panel.model_form.values()["attention"] == "local"
    assert panel.attention_form.values()[window_field] == changed


def test_mixture_of_experts_fields_are_enabled_only_with_that_feed_forward(window):
    form = window.model_panel.model_form
    experts = form.editor("experts")
    assert form.values()["ffn"] == "dense" and not experts.isEnabled()
    assert "Used only when Feed-forward is moe" in experts.toolTip()
    form.set_value("ffn", "moe")
    assert experts.isEnabled() and form.editor("top_k").isEnabled()
    form.set_value("ffn", "dense")
    assert not form.editor("capacity_factor").isEnabled()


def test_units_are_shown_beside_the_fields(window):
    assert window.train_panel.form.unit_text("steps") == "steps"
    assert window.train_panel.form.unit_text("batch_size") == "sequences"
    assert window.train_panel.form.unit_text("lr") == ""
    assert window.model_panel.model_form.unit_text("d_model") == "dims"
    assert window.data_panel.form.unit_text("max_length") in ("tokens", "symbols")
