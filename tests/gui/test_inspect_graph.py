"""The Inspect section's Graph tab: built when shown, search finds boxes, a box's weights reach the Tensors tab."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from effstudio.gui.panels.inspect_graph import NodeItem
from effstudio.gui.panels.inspect_panel import InspectPanel
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


def show_graph(qtbot, panel, path):
    panel.open(path)
    qtbot.waitUntil(lambda: panel.state == "ready", timeout=TIMEOUT)
    tab = panel.graph_tab
    assert tab.graph is None  # nothing is laid out before the tab is looked at
    panel.tabs.setCurrentWidget(tab)
    qtbot.waitUntil(lambda: tab.graph is not None or "No graph" in tab.message.text(), timeout=TIMEOUT)
    return tab


def item_named(tab, kind: str) -> NodeItem:
    return next(item for item in tab.items if item.node.kind == kind)


def test_graph_tab_draws_the_onnx_operators(panel, qtbot, tmp_path):
    tab = show_graph(qtbot, panel, files.onnx_model(tmp_path / "tiny.onnx"))
    assert tab.stack.currentIndex() == 1
    assert [item.node.kind for item in tab.items] == ["Input", "MatMul", "Add", "Relu", "Cast", "Mul", "Output"]
    assert "7 boxes, 6 edges in" in tab.summary.text()
    tops = [item.rect.top() for item in tab.items]
    assert tops[0] < tops[1] < tops[2] < tops[3] < tops[-1]  # top to bottom


def test_search_selects_a_box_and_its_weight(panel, qtbot, tmp_path):
    tab = show_graph(qtbot, panel, files.onnx_model(tmp_path / "tiny.onnx"))
    tab.search.setText("matmul")
    assert tab.found.text() == "1 of 1"
    assert tab.selected_node().kind == "MatMul"
    assert [tab.weights.item(i).text() for i in range(tab.weights.count())] == ["dense.weight"]
    assert panel.tensors.tree.currentIndex().data() == "weight"
    assert panel._selected == "dense.weight"
    tab.search.setText("mul")  # MatMul and Mul
    assert tab.found.text() == "1 of 2" and tab.selected_node().kind == "MatMul"
    qtbot.keyClick(tab.search, Qt.Key.Key_Return)
    assert tab.found.text() == "2 of 2" and tab.selected_node().kind == "Mul"
    assert sum(item.matched for item in tab.items) == 2
    tab.search.setText("nothing like this")
    assert tab.found.text() == "no match" and not any(item.matched for item in tab.items)


def test_clicking_a_box_selects_its_tensor_in_the_tensors_tab(panel, qtbot, tmp_path):
    tab = show_graph(qtbot, panel, files.onnx_model(tmp_path / "tiny.onnx"))
    add = item_named(tab, "Add")
    tab.view.centerOn(add)
    point = tab.view.mapFromScene(add.rect.center())
    qtbot.mouseClick(tab.view.viewport(), Qt.MouseButton.LeftButton, pos=point)
    assert tab.selected_node() is add.node
    assert panel._selected == "dense.bias"
    assert "Add" in tab.node_title.text() and tab.weights_title.text() == "Weights (1)"
    tab.select_node(next(i for i, item in enumerate(tab.items) if item.node.kind == "Relu"))
    assert tab.weights_title.text() == "Weights: none" and panel._selected == "dense.bias"  # nothing to select


def test_zoom_is_bounded_and_fit_shows_everything(panel, qtbot, tmp_path):
    tab = show_graph(qtbot, panel, files.onnx_model(tmp_path / "tiny.onnx"))
    for _ in range(60):
        tab.view.zoom(1.5)
    assert tab.view.transform().m11() == pytest.approx(4.0)
    tab.fit_button.click()
    visible = tab.view.mapToScene(tab.view.viewport().rect()).boundingRect()
    assert visible.contains(tab.scene.itemsBoundingRect())


def test_a_checkpoint_shows_its_blocks_and_another_file_rebuilds(panel, qtbot, tmp_path):
    from tests.inspect.test_graph import checkpoint

    tab = show_graph(qtbot, panel, checkpoint(tmp_path / "c.safetensors", **{"model.layers": 2}))
    assert [item.node.name for item in tab.items if item.node.kind == "Block"] == ["blocks.0", "blocks.1"]
    tab.select_node(next(i for i, item in enumerate(tab.items) if item.node.name == "blocks.1"))
    assert panel._selected == "blocks.1.norm1.weight"  # the block's first weight, in the Tensors tab
    panel.open(files.npz_file(tmp_path / "a.npz"))
    qtbot.waitUntil(lambda: panel.state == "ready" and panel.inspected.format == "npz", timeout=TIMEOUT)
    panel.tabs.setCurrentWidget(tab)
    qtbot.waitUntil(lambda: "No graph" in tab.message.text(), timeout=TIMEOUT)
    assert "holds tensors only" in tab.message.text() and tab.stack.currentIndex() == 0
