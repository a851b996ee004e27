"""The main window: sections, validation that blocks Start, files, settings, plugin errors."""

from __future__ import annotations

import shlex

from PySide6.QtWidgets import QMessageBox

from effstudio.gui.main_window import (
    BENCHMARK,
    COMPRESS,
    DATA,
    EVALUATE,
    INSPECT,
    MODEL,
    MONITOR,
    RUNS,
    TRAIN,
    MainWindow,
)
from effstudio.registry import PluginError, get_registry

from .conftest import tiny_config


def test_window_has_every_section_and_the_run_controls(window):
    names = [window.sidebar.item(i).text() for i in range(window.sidebar.count())]
    assert names == ["Model", "Data", "Train", "Monitor", "Runs", "Compress", "Inspect", "Benchmark", "Evaluate"]
    assert window.stack.count() == 9
    for index in (MODEL, DATA, TRAIN, MONITOR, RUNS, COMPRESS, INSPECT, BENCHMARK, EVALUATE):
        window.show_section(index)
        assert window.stack.currentIndex() == index
    assert [a.text().replace("&", "") for a in window.menuBar().actions()] == ["File", "Run", "View", "Help"]
    assert window.action_map["start"].isEnabled()
    assert not window.action_map["pause"].isEnabled() and not window.action_map["stop"].isEnabled()
    assert not window.windowIcon().isNull()
    assert "Devices:" in window.status.device_label.text()
    assert "MB" in window.status.memory_label.text()
    assert window.windowTitle() == "effstudio \u2014 transformer on copy"
    assert window.model_panel.description.text() == get_registry().get("models", "transformer").description


def test_invalid_value_names_the_field_and_blocks_start(window, qtbot):
    lr = window.train_panel.form.editor("lr")
    lr.setText("fast")
    lr.textEdited.emit("fast")
    assert "expected float" in window.train_panel.form.error_text("lr")
    assert not window.action_map["start"].isEnabled()
    assert "train.lr" in window.action_map["start"].toolTip()
    assert "train.lr" in window.train_panel.problems.text()
    window.show_section(MODEL)
    assert window.start_training() is None
    assert window.job is None
    assert window.current_section() == TRAIN  # taken to the field
    assert "train.lr" in window.status.currentMessage()
    window.train_panel.form.set_value("lr", 1e-3)
    assert window.action_map["start"].isEnabled()
    assert window.train_panel.problems.isHidden()


def test_cross_field_error_in_the_model_config(window):
    form = window.model_panel.model_form
    form.set_value("d_model", 30)
    form.set_value("heads", 4)  # 30 is not divisible by 4
    assert "not divisible" in form.error_text("heads")
    assert window.start_training() is None
    assert window.current_section() == MODEL


def test_attention_form_follows_the_attention_kind(window):
    panel = window.model_panel
    kinds = get_registry().names("attention")
    other = next(k for k in kinds if k != panel.attention_kind())
    panel.model_form.set_value("attention", other)
    assert panel.attention_kind() == other
    assert panel.attention_form.config_cls is get_registry().get("attention", other).config_cls
    assert other in panel.attention_group.title()
    assert window.build_config().attention_kind == other


def test_copy_as_command_lists_only_changed_values(window, app):
    window.apply_config(tiny_config(**{"train.lr": 3e-4}))
    text = window.copy_command()
    words = shlex.split(text)
    assert words[:6] == ["effstudio", "train", "--model", "transformer", "--task", "copy"]
    assert "train.lr=0.0003" in words and "model.d_model=32" in words
    assert not any(w.startswith("train.weight_decay=") for w in words)  # a default
    assert app.clipboard().text() == text


def test_save_and_load_run_config(window, tmp_path):
    path = tmp_path / "run.toml"
    window.apply_config(tiny_config(**{"model.d_model": 48, "train.steps": 7}))
    assert window.save_config_to(path)
    window.apply_config(tiny_config())
    assert window.open_path(path)
    config = window.build_config()
    assert config.model.d_model == 48 and config.train.steps == 7
    broken = tmp_path / "broken.toml"
    broken.write_text("[model]\ntype = 'no-such-model'\n[task]\nname = 'copy'\n")
    assert not window.open_path(broken)
    assert "no-such-model" in window.log.text()


def test_settings_are_saved_and_restored(app, qtbot, settings, tmp_path):
    first = MainWindow(settings, restore=True, isolate=False)
    qtbot.addWidget(first)
    first.apply_config(tiny_config(**{"model.d_model": 48}))
    first.monitor_panel.set_smoothing_weight(0.5)
    first.resize(1100, 700)
    first.show_section(DATA)
    first.close()

    second = MainWindow(settings, restore=True, isolate=False)
    qtbot.addWidget(second)
    assert second.build_config().model.d_model == 48
    assert second.monitor_panel.smoothing_weight() == 0.5
    assert second.current_section() == DATA
    assert settings.contains("window/geometry")  # restored within the (offscreen) screen's bounds
    second.close()


def test_plugin_errors_are_shown_with_details(app, qtbot, settings, monkeypatch):
    registry = get_registry()
    error = PluginError("effstudio.attention", "broken", "pkg.mod:ENTRY", "ImportError: no module pkg",
                        "Traceback ...")
    monkeypatch.setattr(registry, "errors", [*registry.errors, error])
    window = MainWindow(settings, restore=False, isolate=False)
    qtbot.addWidget(window)
    window.show()
    button = window.status.plugins_button
    assert not button.isHidden() and "failed to load" in button.text()
    assert "broken" in window.log.text()
    box = window.status.show_plugin_errors()
    assert isinstance(box, QMessageBox) and "pkg.mod:ENTRY" in box.informativeText()
    box.close()


def test_data_panel_previews_examples(window, qtbot):
    panel = window.data_panel
    with qtbot.waitSignal(panel.preview_ready, timeout=30_000):
        window.show_section(DATA)
    assert panel.table.rowCount() > 0
    assert "<sep>" in panel.table.item(0, 0).text() or panel.table.item(0, 0).text()
    assert "language modelling" in panel.summary.text()


def test_fine_tune_the_compress_result_trains_the_pruned_model(window, qtbot, tmp_path):
    from effstudio.engine.loading import load_checkpoint
    from effstudio.models.structure import blocks_of
    from tests.compress.conftest import make_checkpoint
    from tests.compress.conftest import tiny_config as tiny_compress_config

    source = make_checkpoint(tmp_path / "tiny.safetensors", tiny_compress_config(**{"train.steps": 3}))
    panel = window.compress_panel
    panel.set_checkpoint(source)
    panel.forms["prune"].editor("prune").setCurrentText("heads")
    assert not panel.fine_tune_button.isEnabled()
    assert panel.start_operation("prune")
    qtbot.waitUntil(lambda: not panel.running and panel.trainable_result is not None, timeout=60_000)
    assert panel.fine_tune_button.isEnabled()
    with qtbot.waitSignal(panel.fine_tune_requested) as requested:
        panel.fine_tune_button.click()
    assert requested.args == [str(panel.trainable_result)]
    assert panel.trainable_result.name == "tiny-heads-50.safetensors"
    qtbot.waitUntil(lambda: window.job is not None or window.last_done is not None, timeout=10_000)
    job = window.job
    assert window.pipeline.init == panel.trainable_result and job.fn == window.pipeline.training
    with qtbot.waitSignal(job.finished, timeout=60_000) as finished:
        pass
    done = window.last_done
    assert finished.args == ["finished"] and (done.status, done.steps) == ("finished", 3)
    tuned = load_checkpoint(done.checkpoint)
    assert [b.heads for b in blocks_of(tuned.model)] == [2, 2]  # the pruned widths trained on
