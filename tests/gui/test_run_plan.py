"""The window keeps a run config's [[compress]] steps; the Runs section lists a run's files."""

from __future__ import annotations

import shlex

from effstudio.engine.run_plan import PruneStep, QuantizeStep, RunPlan
from effstudio.gui.panels.runs_panel import RunsPanel
from effstudio.runs.store import RunStore

from .conftest import tiny_config

STEPS = (PruneStep(prune="heads", amount=0.5, finetune_steps=10), QuantizeStep(quantize="fp16"))


def test_save_and_load_keep_the_compression_steps(window, tmp_path):
    source = tmp_path / "with-steps.toml"
    source.write_text(RunPlan(tiny_config(**{"model.d_model": 48}), STEPS).to_toml(), encoding="utf-8")
    assert window.open_path(source)
    assert window.build_config().model.d_model == 48
    assert window.compress_steps == STEPS
    assert "2 compression step(s)" in window.log.text() and "prune heads 0.5" in window.log.text()
    saved = tmp_path / "saved.toml"
    window.apply_config(tiny_config(**{"model.d_model": 64}))  # the forms change, the steps stay
    assert window.save_config_to(saved)
    plan = RunPlan.from_toml(saved)
    assert plan.compress == STEPS and plan.config.model.d_model == 64
    # the command line cannot carry the steps, and says so
    text = window.copy_command()
    command, note = text.split("  # ", 1)
    assert shlex.split(command)[:2] == ["effstudio", "train"] and "--config" in note
    # settings that come without steps (a recorded run's plain config, a checkpoint's) drop them
    window.open_run_config(tiny_config())
    assert window.compress_steps == ()
    assert window.save_config_to(saved)
    assert "compress" not in saved.read_text(encoding="utf-8")


def test_runs_panel_lists_a_runs_files_and_opens_its_steps(app, qtbot, tmp_path):
    path = tmp_path / "runs.sqlite"
    checkpoint = tmp_path / "checkpoint.safetensors"
    checkpoint.write_bytes(b"weights")
    plan = RunPlan(tiny_config(), STEPS)
    with RunStore(path) as store:
        run_id = store.create_run(config=plan.to_dict(), model_type="transformer", task="copy", status="finished")
        store.add_artifact(run_id, "checkpoint", checkpoint, 20)
        store.add_artifact(run_id, "pruned", tmp_path / "gone.safetensors")
    panel = RunsPanel(store_path=path)
    qtbot.addWidget(panel)
    panel.show()
    panel.refresh()
    panel.select_ids([run_id])
    texts = [panel.files.list.item(i).text() for i in range(panel.files.list.count())]
    assert texts == ["checkpoint \u00b7 checkpoint.safetensors", "pruned \u00b7 gone.safetensors (missing)"]
    with qtbot.waitSignal(panel.inspect_file) as inspected:
        panel.files.inspect_item(panel.files.list.item(0))
    assert inspected.args == [str(checkpoint)]
    with qtbot.waitSignal(panel.open_config) as opened:
        assert panel.open_selected_config()
    assert opened.args[0] == plan
    panel.close_store()


def test_the_window_refuses_the_configs_train_refuses(window, tmp_path):
    """`effstudio FILE` opens a run config: a path it names outside its folder is refused on opening,
    and steps whose outputs would leave the run folder are refused on Start, before anything runs."""
    from tests.hostile import path_cases as cases

    outside = cases.make_charlm_parent(tmp_path / "a")
    assert not window.open_path(outside)
    assert "task.path" in window.log.text() and "leads outside its folder" in window.log.text()
    (tmp_path / "b").mkdir()
    escaping = cases.make_out_symlink(tmp_path / "b")
    plan = RunPlan.from_toml(escaping)  # steps that name a link the run folder holds
    window.out_dir = cases.run_folder(tmp_path / "b")
    window.apply_config(tiny_config())
    window.set_compress_steps(plan.compress)
    assert window.start_training() is None and window.job is None
    assert "Cannot start: compress[1].out" in window.log.text()
    assert not (window.out_dir / "checkpoint.safetensors").exists()
    assert cases.victim(tmp_path / "b").read_text(encoding="utf-8") == cases.VICTIM_TEXT
