"""The Model section's "Make efficient" panel on imported and ordinary checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from effstudio.engine.build import build_model, build_task
from effstudio.engine.checkpoint import read_info, save_checkpoint
from effstudio.engine.loading import load_model
from effstudio.engine.run_config import RunConfig
from effstudio.gui.panels.make_efficient_panel import MakeEfficientPanel
from effstudio.pretrained.convert import EFFICIENT_KEY, SOURCE_KEY
from effstudio.registry import get_registry


def checkpoint(folder, imported: bool = True):
    config = RunConfig.create("transformer", "listops", {
        "model.attention": "full", "model.d_model": 32, "model.layers": 2, "model.heads": 4, "task.max_length": 64,
        "task.train_size": 20, "task.val_size": 4, "task.test_size": 4})
    torch.manual_seed(0)
    model = build_model(config, build_task(config).spec, training=False)
    extra = {SOURCE_KEY: "bert"} if imported else {}
    return save_checkpoint(folder / ("imported.safetensors" if imported else "trained.safetensors"), model, config,
                           step=0, extra_metadata=extra)


@pytest.fixture
def panel(qtbot):
    widget = MakeEfficientPanel(get_registry())
    qtbot.addWidget(widget)
    widget.resize(520, 760)
    yield widget
    widget.shutdown()


def loaded(qtbot, panel, path) -> None:
    panel.set_checkpoint(path)
    qtbot.waitUntil(lambda: panel.shape_model is not None, timeout=20_000)


def cell(panel, row: int, column: int) -> str:
    return panel.figures.item(row, column).text()


def test_enabled_only_for_an_imported_model(qtbot, panel, tmp_path) -> None:
    assert not panel.run_group.isEnabled() and not panel.kind_box.isEnabled()
    panel.set_checkpoint(checkpoint(tmp_path, imported=False))
    assert not panel.run_group.isEnabled()
    assert "Open an imported model" in panel.source_label.text()
    loaded(qtbot, panel, checkpoint(tmp_path))
    assert panel.run_group.isEnabled() and panel.kind_box.isEnabled()
    assert "imported from bert" in panel.source_label.text()
    assert panel.length_box.minimum() == 64 and panel.length_box.value() == 4096


def test_figures_for_the_current_and_the_chosen_kind(qtbot, panel, tmp_path) -> None:
    loaded(qtbot, panel, checkpoint(tmp_path))
    assert panel.kind() == "longformer"
    before, after = cell(panel, 0, 0), cell(panel, 0, 1)
    # longformer owns no parameters: only the position table grows, 64 -> 4,096 rows of 32
    assert int(after.replace(",", "")) - int(before.replace(",", "")) == (4096 - 64) * 32
    full_mb = float(cell(panel, 1, 0).split()[0].replace(",", ""))
    longformer_mb = float(cell(panel, 1, 1).split()[0].replace(",", ""))
    assert full_mb > 10 * longformer_mb
    assert "estimated" in panel.figures_note.text()
    assert panel.figures.horizontalHeaderItem(0).text() == "Now (full)"

    panel.kind_box.setCurrentIndex(panel.kind_box.findData("linformer"))
    panel.attention_form.set_values({"k": 128})
    panel.update_figures()
    linformer = int(cell(panel, 0, 1).replace(",", ""))  # two (128 x 4097) projections in each of 2 layers
    assert linformer - int(before.replace(",", "")) == (4096 - 64) * 32 + 2 * 2 * 128 * 4097

    panel.length_box.setValue(64)  # a window covering every position is refused, and Convert with it
    panel.kind_box.setCurrentIndex(panel.kind_box.findData("longformer"))
    assert panel.run_group.problem.isVisibleTo(panel) and "full attention" in panel.run_group.problem.text()
    assert not panel.run_group.run_button.isEnabled()


def test_convert_writes_an_ordinary_checkpoint(qtbot, panel, tmp_path) -> None:
    loaded(qtbot, panel, checkpoint(tmp_path))
    panel.length_box.setValue(1024)
    panel.attention_form.set_values({"window": 32})
    out = tmp_path / "efficient.safetensors"
    panel.out_edit.setText(str(out))
    with qtbot.waitSignal(panel.converted, timeout=30_000) as signal:
        assert panel.start()
    assert signal.args == [str(out)]
    info = read_info(out)
    assert info.config.attention_kind == "longformer" and info.config.attention.window == 32
    assert info.config.task.max_length == 1024
    assert info.metadata[SOURCE_KEY] == "bert"
    assert "position table positions: 64 -> 1024 rows by copying" in json.loads(info.metadata[EFFICIENT_KEY])
    model, _, _ = load_model(out)
    assert model.positions.num_embeddings == 1024
    assert "Wrote efficient.safetensors" in panel.run_group.status_label.text()
