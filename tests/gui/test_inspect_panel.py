"""The Inspect section: open, fill, filter, sort, select, draw, diff, refuse bad files and keep working."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PySide6.QtCore import Qt

from effstudio.gui.panels.inspect_panel import InspectPanel
from effstudio.gui.panels.inspect_tensors import ELEMENTS, MEAN, NAME
from tests.inspect import files

TIMEOUT = 15_000


@pytest.fixture
def panel(app, qtbot):
    widget = InspectPanel()
    qtbot.addWidget(widget)
    widget.resize(1200, 760)
    widget.show()
    yield widget
    widget.shutdown(10_000)


def open_and_wait(qtbot, panel, path, stats=True):
    panel.open(path)
    qtbot.waitUntil(lambda: panel.state in ("ready", "failed"), timeout=TIMEOUT)
    if stats and panel.state == "ready":
        qtbot.waitUntil(lambda: panel.stats_done, timeout=TIMEOUT)


def wait_idle(qtbot, panel):
    qtbot.waitUntil(lambda: not panel.busy, timeout=TIMEOUT)


def test_opening_fills_summary_and_tree(panel, qtbot, tmp_path):
    folder = files.bert_folder(tmp_path / "bert")
    open_and_wait(qtbot, panel, folder)
    assert panel.stack.currentIndex() == 1 and panel.error_banner.isHidden()
    tiles = panel.summary.tiles
    assert tiles["format"].value.text() == "safetensors"
    assert tiles["tensors"].value.text() == str(len(files.bert_tensors()))
    assert "BERT-like encoder, 2 layers, hidden 32, 4 heads, vocab 100" in panel.architecture.text()
    assert set(panel.tensors.model.leaves) == set(files.bert_tensors())
    expected = files.bert_tensors()["embeddings.word_embeddings.weight"]
    row = panel.tensors.model.leaves["embeddings.word_embeddings.weight"]
    assert row[ELEMENTS].text() == f"{expected.size:,}"
    assert float(row[MEAN].text()) == pytest.approx(expected.mean(), rel=1e-3)
    assert "config.json" in panel.details.toPlainText()


def test_filter_and_sort(panel, qtbot, tmp_path):
    open_and_wait(qtbot, panel, files.safetensors_file(tmp_path / "m.safetensors"))
    panel.tensors.filter.setText("query.weight")

    def visible_leaves(parent=None):
        from PySide6.QtCore import QModelIndex

        parent = parent or QModelIndex()
        names = []
        for row in range(panel.tensors.proxy.rowCount(parent)):
            index = panel.tensors.proxy.index(row, 0, parent)
            name = index.data(Qt.ItemDataRole.UserRole + 2)
            names += [name] if name else visible_leaves(index)
        return names

    assert sorted(visible_leaves()) == ["encoder.layer.0.attention.self.query.weight",
                                        "encoder.layer.1.attention.self.query.weight"]
    panel.tensors.filter.setText("")
    panel.tensors.tree.sortByColumn(ELEMENTS, Qt.SortOrder.DescendingOrder)
    top = panel.tensors.proxy.index(0, NAME)
    assert top.data() == "encoder.layer"  # the module with the most elements first; one-child modules merged


def test_selecting_a_tensor_draws_histogram_and_heatmap(panel, qtbot, tmp_path):
    open_and_wait(qtbot, panel, files.safetensors_file(tmp_path / "m.safetensors"))
    name = "encoder.layer.1.output.dense.weight"
    assert panel.select_tensor(name)
    qtbot.waitUntil(lambda: panel.tensor_view.picture is not None and panel.tensor_view.picture.name == name,
                    timeout=TIMEOUT)
    view = panel.tensor_view
    assert view.stack.currentIndex() == 1
    assert view.image.image.shape == (32, 128)
    x, y = view.bars.getData()
    assert y.sum() == 32 * 128
    assert view.colorbar.levels()[0] < 0 < view.colorbar.levels()[1]
    view.log_counts.setChecked(True)
    assert view.bars.getData()[1].max() == pytest.approx(np.log10(1 + view.picture.counts.max()))


def test_diff_view(panel, qtbot, tmp_path):
    a = files.bert_tensors()
    b = dict(a)
    b["encoder.layer.0.output.dense.weight"] = a["encoder.layer.0.output.dense.weight"] * 1.5
    b["classifier.weight"] = np.ones((2, 32), np.float32)
    del b["embeddings.position_embeddings.weight"]
    open_and_wait(qtbot, panel, files.safetensors_file(tmp_path / "a.safetensors", a))
    panel.compare_with(files.safetensors_file(tmp_path / "b.safetensors", b))
    qtbot.waitUntil(lambda: panel.diff_view.done, timeout=TIMEOUT)
    rows = {panel.diff_view.model.item(r, 0).text(): panel.diff_view.model.item(r, 1).text()
            for r in range(panel.diff_view.model.rowCount())}
    assert rows["classifier.weight"] == "added"
    assert rows["embeddings.position_embeddings.weight"] == "removed"
    assert rows["encoder.layer.0.output.dense.weight"] == "changed"
    assert rows["encoder.layer.1.output.dense.weight"] == "unchanged"
    assert "1</b> added" in panel.diff_view.summary.text()
    assert panel.tabs.currentIndex() == 1


@pytest.mark.parametrize("kind", ["malicious", "truncated", "empty", "wrong_extension"])
def test_bad_files_show_a_clear_message_and_the_panel_keeps_working(panel, qtbot, tmp_path, kind):
    marker = tmp_path / "PWNED"
    good = files.safetensors_file(tmp_path / "good.safetensors")
    if kind == "malicious":
        bad = files.malicious_files(tmp_path / "evil", marker)[1]
        expected = "refused"
    elif kind == "truncated":
        bad = files.truncated_copy(good, tmp_path / "cut.safetensors", good.stat().st_size - 64)
        expected = "truncated"
    elif kind == "empty":
        bad = tmp_path / "empty.pt"
        bad.write_bytes(b"")
        expected = "empty"
    else:
        bad = tmp_path / "zip.safetensors"
        torch.save({"w": torch.ones(1)}, bad)
        expected = "zip archive"
    open_and_wait(qtbot, panel, bad)
    assert panel.state == "failed" and not panel.error_banner.isHidden()
    assert expected in panel.error_banner.text()
    assert not marker.exists()
    open_and_wait(qtbot, panel, good)
    assert panel.state == "ready" and panel.error_banner.isHidden()
