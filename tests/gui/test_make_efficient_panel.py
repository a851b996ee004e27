"""The Model section's "Make efficient" panel on imported and ordinary checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from effstudio.engine.build import build_model, build_task
from effstudio.engine.checkpoint import read_info, save_checkpoint
from effstudio.engine.loading import load_model
from effstudio.engine.run_config import RunConfig
from effstudio.gui.main_window import MODEL
from effstudio.gui.panels.make_efficient_panel import MakeEfficientPanel
from effstudio.pretrained.convert import EFFICIENT_KEY
from effstudio.pretrained.importer import PRETRAINED_SOURCE_KEY
from effstudio.registry import get_registry


def checkpoint(folder, imported: bool = True):
    config = RunConfig.create("transformer", "listops", {
        "model.attention": "full", "model.d_model": 32, "model.layers": 2, "model.heads": 4, "task.max_length": 64,
        "task.train_size": 20, "task.val_size": 4, "task.test_size": 4})
    torch.manual_seed(0)
    model = build_model(config, build_task(config).spec, training=False)
    extra = {PRETRAINED_SOURCE_KEY: "bert"} if imported else {}
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
    assert info.metadata[PRETRAINED_SOURCE_KEY] == "bert"
    assert "position table positions: 64 -> 1024 rows by copying" in json.loads(info.metadata[EFFICIENT_KEY])
    model, _, _ = load_model(out)
    assert model.positions.num_embeddings == 1024
    assert "Wrote efficient.safetensors" in panel.run_group.status_label.text()


def hugging_face_bert(folder):
    """A tiny randomly initialised BERT classifier saved as a Hugging Face folder (config.json, model.safetensors)."""
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=64, max_position_embeddings=64, num_labels=3)
    torch.manual_seed(0)
    transformers.BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def drop(window, path) -> None:
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(path))])
    window.dropEvent(QDropEvent(QPointF(200, 200), Qt.DropAction.CopyAction, data, Qt.MouseButton.NoButton,
                                Qt.KeyboardModifier.NoModifier))


def test_a_dropped_hugging_face_folder_is_imported_and_opened(window, qtbot, tmp_path) -> None:
    folder = hugging_face_bert(tmp_path / "tiny-bert")
    panel = window.make_efficient_panel
    with qtbot.waitSignal(panel.imported, timeout=30_000) as signal:
        drop(window, folder / "model.safetensors")  # its weights file beside config.json: the same folder
    assert window.current_section() == MODEL
    written = Path(signal.args[0])
    assert written.name == "tiny-bert.safetensors" and written.parent.name == "imported"
    qtbot.waitUntil(lambda: panel.shape_model is not None, timeout=20_000)
    assert panel.is_imported and "imported from bert" in panel.source_label.text()
    assert window.compress_panel.source == written  # every section works on it
    assert window.build_config().task_name == "textclass"
    assert window.build_config().model.norm_position == "post"
    panel.resize(520, 760)
    panel.grab().save(str(tmp_path / "make_efficient.png"))


def test_open_in_lab_from_inspect_imports_a_hugging_face_folder(window, qtbot, tmp_path) -> None:
    folder = hugging_face_bert(tmp_path / "bert-folder")
    inspect = window.inspect_panel
    window.inspect_path(folder)
    qtbot.waitUntil(lambda: inspect.state == "ready", timeout=20_000)
    assert inspect.lab_button.isVisibleTo(inspect)
    with qtbot.waitSignal(window.make_efficient_panel.imported, timeout=30_000) as signal:
        inspect.lab_button.click()
    assert Path(signal.args[0]).name == "bert-folder.safetensors"
    qtbot.waitUntil(lambda: not inspect.busy, timeout=20_000)


def test_a_broken_folder_says_why(window, qtbot, tmp_path) -> None:
    folder = hugging_face_bert(tmp_path / "broken")
    (folder / "config.json").write_text('{"model_type": "t5"}')
    panel = window.make_efficient_panel
    window.open_path(folder)
    qtbot.waitUntil(lambda: "Cannot import" in panel.source_label.text(), timeout=20_000)
    assert "t5" in panel.source_label.text() and "bert" in panel.source_label.text()
    assert not panel.is_imported


def test_a_finished_attention_benchmark_gives_measured_memory(app, qtbot, settings, panel, tmp_path) -> None:
    from effstudio.gui.panels.benchmark_panel import BenchmarkPanel
    from tests.gui.test_benchmark_panel import FakeBench, configure, run

    bench = BenchmarkPanel(get_registry(), bench_fn=FakeBench(), settings=settings)
    qtbot.addWidget(bench)
    configure(bench, kinds=("full", "sdpa"), lengths="1024, 2048", backward=False)
    run(qtbot, bench)
    assert bench.shutdown(10_000)
    loaded(qtbot, panel, checkpoint(tmp_path))
    panel.kind_box.setCurrentIndex(panel.kind_box.findData("sdpa"))
    panel.length_box.setValue(2048)
    # the fake's full attention: 3 x 2048 / 100 + 1 MB at batch 1 x 4 heads, the model's 4 heads
    assert cell(panel, 1, 0) == "62 MB"
    assert "measured by the attention benchmark" in panel.figures_note.text()
