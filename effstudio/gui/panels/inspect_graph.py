"""The Inspect section's Graph tab: the operators of an ONNX file or the blocks of a checkpoint, as boxes.

The graph and its layout come from the Qt-free :mod:`effstudio.inspect.graph`
(built in a job, off the GUI thread); this module only draws them: one box per
operator or block (type, name, attributes and attached weights), edges bent
through the layout's control points and labelled with their shapes. The wheel
zooms around the pointer, dragging pans, the search field finds boxes by name,
kind or weight (Enter: the next match). Selecting a box lists its weights
beside the graph and emits ``tensor_chosen`` with the first, which the panel
selects in the Tensors tab; choosing another weight in the list does the same.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPainterPath, QPolygonF
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsPathItem,
    QGraphicsScene,
    QGraphicsSimpleTextItem,
    QGraphicsView,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QStyleOptionGraphicsItem,
    QVBoxLayout,
    QWidget,
)

from effstudio.engine.events import JobControl
from effstudio.gui import theme
from effstudio.gui.panels.base import description_label, empty_state
from effstudio.inspect import Inspected, InspectError
from effstudio.inspect.graph import GraphNode, ModelGraph, graph_of

X_UNIT, Y_UNIT = 210.0, 104.0  # scene pixels per layout unit (boxes in a layer, layers)
BOX_WIDTH, LINE = 184.0, 15.0
DETAIL_LINES = 2  # attribute lines drawn in a box; all of them are in its tooltip and the side pane
MIN_SCALE, MAX_SCALE = 0.03, 4.0
READABLE_SCALE = 0.7  # a graph is first shown whole only if its text stays readable
TEXT_SCALE = 0.35  # below this zoom boxes and edges are drawn without their text

_PLUMBING = {"Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Reshape", "Cast", "Slice", "Transpose", "Range",
             "ConstantOfShape", "Expand", "Flatten", "Identity", "Where", "Equal", "Not", "Or", "And", "Greater",
             "Less", "IsNaN"}
_ACTIVATIONS = {"Relu", "Gelu", "Erf", "Softmax", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "Selu", "HardSigmoid",
                "LogSoftmax", "Silu", "Mish", "GELU", "ReLU", "GELUActivation"}


@dataclass(frozen=True)
class GraphBuilt:
    graph: ModelGraph | None
    error: str | None = None


def graph_job(inspected: Inspected) -> Callable[[JobControl], Iterator[GraphBuilt]]:
    def run(_control: JobControl) -> Iterator[GraphBuilt]:
        try:
            yield GraphBuilt(graph_of(inspected))
        except InspectError as err:
            yield GraphBuilt(None, str(err))
        except Exception as err:  # a graph the builders do not know: said in the tab, the inspection stays
            yield GraphBuilt(None, f"it cannot be drawn ({type(err).__name__}: {err})")

    return run


def fill_colour(node: GraphNode) -> str:
    """The box's colour says what the operator does: data in/out, weights, normalisation, activation, plumbing."""
    kind = node.kind.rsplit(".", 1)[-1]
    if kind in ("Input", "Output"):
        return theme.tint(theme.ACCENT, 0.18)
    if "Norm" in kind:
        return theme.tint(theme.GREEN, 0.16)
    if kind in _ACTIVATIONS:
        return theme.tint(theme.ORANGE, 0.18)
    if node.tensors or kind in ("Block", "Embedding", "Parameter", "PatchEmbedding"):
        return theme.tint(theme.BLUE, 0.14)
    if kind in _PLUMBING:
        return theme.SIDEBAR
    return theme.SURFACE


class NodeItem(QGraphicsItem):
    """One box: kind in bold, the name, up to DETAIL_LINES attribute lines."""

    def __init__(self, index: int, node: GraphNode, fonts: tuple[QFont, QFont]):
        super().__init__()
        self.index, self.node = index, node
        self.bold, self.small = fonts
        self.matched = False
        lines = 2 + min(len(node.details), DETAIL_LINES)
        self.rect = QRectF(-BOX_WIDTH / 2, 0, BOX_WIDTH, 8 + LINE * lines)
        self.rect.moveCenter(QPointF(node.x * X_UNIT, node.y * Y_UNIT))
        self.fill = QColor(fill_colour(node))
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        tooltip = [f"{node.kind}: {node.name}", *node.details]
        if node.tensors:
            tooltip += ["", "weights:", *node.tensors[:20]] + ([f"… {len(node.tensors) - 20} more"]
                                                              if len(node.tensors) > 20 else [])
        self.setToolTip("\n".join(tooltip))
        self.setZValue(1)

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt's name
        return self.rect.adjusted(-3, -3, 3, 3)

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, _widget: QWidget | None = None) -> None:
        if self.isSelected():
            painter.setPen(theme.pen(theme.ACCENT, 2.5))
        elif self.matched:
            painter.setPen(theme.pen(theme.WARNING, 2.0))
        else:
            painter.setPen(theme.pen(theme.BORDER, 1.0))
        painter.setBrush(self.fill)
        painter.drawRoundedRect(self.rect, 5, 5)
        if option.levelOfDetailFromTransform(painter.worldTransform()) < TEXT_SCALE:
            return  # too small to read: the box alone, which paints a whole large graph quickly
        text = self.rect.adjusted(8, 4, -8, 0)
        painter.setPen(QColor(theme.TEXT))
        painter.setFont(self.bold)
        painter.drawText(QRectF(text.left(), text.top(), text.width(), LINE), Qt.AlignmentFlag.AlignLeft,
                         QFontMetricsF(self.bold).elidedText(self.node.kind, Qt.TextElideMode.ElideRight, text.width()))
        painter.setFont(self.small)
        metrics = QFontMetricsF(self.small)
        lines = [self.node.name, *self.node.details[:DETAIL_LINES]]
        for row, line in enumerate(lines, start=1):
            painter.setPen(QColor(theme.MUTED if row == 1 else theme.SECONDARY))  # the name lighter than attributes
            mode = Qt.TextElideMode.ElideLeft if row == 1 else Qt.TextElideMode.ElideRight  # a name ends in its part
            painter.drawText(QRectF(text.left(), text.top() + row * LINE, text.width(), LINE),
                             Qt.AlignmentFlag.AlignLeft, metrics.elidedText(line, mode, text.width()))


def _edge_path(source: NodeItem, target: NodeItem, bends: list[tuple[float, float]]) -> tuple[QPainterPath, QPointF]:
    start = QPointF(source.rect.center().x(), source.rect.bottom())
    end = QPointF(target.rect.center().x(), target.rect.top())
    path = QPainterPath(start)
    for x, y in bends:
        path.lineTo(x * X_UNIT, y * Y_UNIT)
    path.lineTo(end)
    arrow = QPolygonF([end, end + QPointF(-4.5, -8), end + QPointF(4.5, -8), end])
    path.addPolygon(arrow)
    first = QPointF(*(b * u for b, u in zip(bends[0], (X_UNIT, Y_UNIT), strict=True))) if bends else end
    return path, (start + first) / 2


class GraphView(QGraphicsView):
    """A QGraphicsView that zooms with the wheel around the pointer and pans by dragging."""

    zoomed = Signal(float)  # the new scale

    def __init__(self, scene: QGraphicsScene, parent: QWidget | None = None):
        super().__init__(scene, parent)
        self.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setBackgroundBrush(QColor(theme.SURFACE))
        self.setObjectName("graphView")

    def zoom(self, factor: float) -> None:
        scale = self.transform().m11()
        factor = max(MIN_SCALE / scale, min(MAX_SCALE / scale, factor))
        self.scale(factor, factor)
        self.zoomed.emit(self.transform().m11())

    def wheelEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.zoom(1.15 ** (event.angleDelta().y() / 120))

    def fit(self) -> None:
        self.fitInView(self.scene().itemsBoundingRect(), Qt.AspectRatioMode.KeepAspectRatio)
        if self.transform().m11() > 1.0:
            self.resetTransform()
        self.zoomed.emit(self.transform().m11())

    def actual_size(self) -> None:
        self.resetTransform()
        self.zoomed.emit(1.0)


class GraphTab(QWidget):
    """The Graph tab. The panel calls :meth:`forget` when another file opens and :meth:`on_event` with the
    built graph; ``tensor_chosen`` names the weight to select in the Tensors tab."""

    tensor_chosen = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.graph: ModelGraph | None = None
        self.source: Inspected | None = None  # the opened file this graph is (being) built for
        self.items: list[NodeItem] = []
        self.matches: list[int] = []
        self.match = -1
        self.bold = QFont(self.font())
        self.bold.setBold(True)
        self.small = QFont(self.font())
        self.small.setPointSizeF(max(self.font().pointSizeF() - 1.0, 7.0))

        self.search = QLineEdit(self)
        self.search.setPlaceholderText("Find an operator, block or weight by name (Enter: next match)")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._search_changed)
        self.search.returnPressed.connect(self.next_match)
        self.found = QLabel(self)
        self.found.setObjectName("description")
        self.fit_button = QPushButton("Fit", self)
        self.fit_button.setToolTip("Show the whole graph (wheel: zoom around the pointer; drag: pan)")
        self.fit_button.clicked.connect(lambda: self.view.fit())
        self.summary = description_label(self)
        toolbar = QHBoxLayout()
        toolbar.setSpacing(8)
        toolbar.addWidget(self.search, 1)
        toolbar.addWidget(self.found)
        toolbar.addWidget(self.fit_button)

        self.scene = QGraphicsScene(self)
        self.scene.setItemIndexMethod(QGraphicsScene.ItemIndexMethod.NoIndex)  # filled once, never moved
        self.scene.selectionChanged.connect(self._selection_changed)
        self.view = GraphView(self.scene, self)
        self.view.zoomed.connect(self._zoomed)
        self.labels: list[QGraphicsSimpleTextItem] = []
        self.node_title = QLabel(self)
        self.node_title.setWordWrap(True)
        self.node_title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.node_details = description_label(self)
        self.node_details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.weights = QListWidget(self)
        self.weights.setToolTip("The weights this box reads: choose one to select it in the Tensors tab")
        self.weights.currentTextChanged.connect(self._weight_chosen)
        side = QWidget(self)
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(4, 0, 0, 0)
        side_layout.addWidget(self.node_title)
        side_layout.addWidget(self.node_details)
        self.weights_title = QLabel("Weights", side)
        side_layout.addWidget(self.weights_title)
        side_layout.addWidget(self.weights, 1)
        splitter = QSplitter(Qt.Orientation.Horizontal, self)
        splitter.setChildrenCollapsible(False)
        splitter.addWidget(self.view)
        splitter.addWidget(side)
        splitter.setStretchFactor(0, 5)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([900, 260])

        self.message = empty_state("", self)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.message)
        content = QWidget(self)
        content_layout = QVBoxLayout(content)
        content_layout.setContentsMargins(0, 0, 0, 0)
        content_layout.addLayout(toolbar)
        content_layout.addWidget(self.summary)
        content_layout.addWidget(splitter, 1)
        self.stack.addWidget(content)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.stack)
        self.forget()

    # ------------------------------------------------------------ lifecycle
    def forget(self) -> None:
        """Another file (or none) is open: the graph is built again when the tab is next shown."""
        self.source = None
        self.graph = None
        self._clear()
        self._show_message("The graph is drawn when this tab is opened.")

    def wants(self, inspected: Inspected) -> bool:
        """Whether a graph job should start for ``inspected`` (none is built or being built for it)."""
        return self.source is not inspected

    def building(self, inspected: Inspected) -> None:
        self.source = inspected
        self._show_message("Laying out the graph\u2026")

    def on_event(self, event: GraphBuilt) -> None:
        if event.graph is None:
            self._show_message(f"No graph for this file: {event.error}")
            return
        self.show_graph(event.graph)

    def _show_message(self, text: str) -> None:
        self.message.setText(text)
        self.stack.setCurrentIndex(0)

    def _clear(self) -> None:
        self.scene.clear()
        self.items, self.labels = [], []
        self.matches, self.match = [], -1
        self.found.clear()
        self._show_node(None)

    # ------------------------------------------------------------- drawing
    def show_graph(self, graph: ModelGraph) -> None:
        self._clear()
        self.graph = graph
        fonts = (self.bold, self.small)
        self.items = [NodeItem(i, node, fonts) for i, node in enumerate(graph.nodes)]
        for item in self.items:
            self.scene.addItem(item)
        label_font = QFont(self.small)
        edge_pen = theme.pen(theme.SECONDARY, 1.0, alpha=170)
        for edge in graph.edges:
            path, middle = _edge_path(self.items[edge.source], self.items[edge.target], edge.bends)
            line = QGraphicsPathItem(path)
            line.setPen(edge_pen)
            line.setToolTip(f"{edge.value}: {edge.shape or 'shape unknown'}")
            self.scene.addItem(line)
            if edge.shape:
                label = QGraphicsSimpleTextItem(edge.shape)
                label.setFont(label_font)
                label.setBrush(QColor(theme.MUTED))
                label.setPos(middle + QPointF(5, -7))
                label.setZValue(2)
                self.scene.addItem(label)
                self.labels.append(label)
        self.scene.setSceneRect(self.scene.itemsBoundingRect().adjusted(-40, -40, 40, 40))
        timing = " + ".join(f"{name} {seconds:.2f} s" for name, seconds in graph.seconds.items())
        counts = f"{len(graph.nodes):,} boxes, {len(graph.edges):,} edges in {graph.layers:,} layers"
        self.summary.setText(" \u00b7 ".join([graph.title, counts, timing, *graph.notes]))
        self.stack.setCurrentIndex(1)
        self.view.fit()
        if self.view.transform().m11() < READABLE_SCALE:  # a large graph: start readable, at its inputs
            self.view.actual_size()
            first = min(self.items, key=lambda item: (item.node.y, item.node.x))
            self.view.centerOn(first.rect.center() + QPointF(0, self.view.viewport().height() / 2 - 40))
        self._search_changed(self.search.text())

    def _zoomed(self, scale: float) -> None:
        readable = scale >= TEXT_SCALE
        if self.labels and self.labels[0].isVisible() != readable:
            for label in self.labels:
                label.setVisible(readable)

    # ------------------------------------------------------- search, select
    def _search_changed(self, text: str) -> None:
        self.matches = self.graph.find(text) if self.graph is not None else []
        matched = set(self.matches)
        for item in self.items:
            if item.matched != (item.index in matched):
                item.matched = item.index in matched
                item.update()
        self.match = -1
        if not text.strip():
            self.found.clear()
        elif not self.matches:
            self.found.setText("no match")
        else:
            self.next_match()

    def next_match(self) -> None:
        if not self.matches:
            return
        self.match = (self.match + 1) % len(self.matches)
        self.found.setText(f"{self.match + 1} of {len(self.matches)}")
        self.select_node(self.matches[self.match])

    def select_node(self, index: int) -> None:
        """Select box ``index``, show it in the middle of the view (and its weights beside it)."""
        item = self.items[index]
        self.scene.clearSelection()
        item.setSelected(True)
        self.view.centerOn(item)

    def selected_node(self) -> GraphNode | None:
        chosen = [item for item in self.scene.selectedItems() if isinstance(item, NodeItem)]
        return chosen[0].node if chosen else None

    def _selection_changed(self) -> None:
        node = self.selected_node()
        self._show_node(node)
        if node is not None and node.tensors:
            self.weights.setCurrentRow(0)  # emits tensor_chosen through _weight_chosen

    def _show_node(self, node: GraphNode | None) -> None:
        self.weights.blockSignals(True)
        self.weights.clear()
        if node is None:
            self.node_title.setText("Select a box to see its attributes and weights.")
            self.node_details.clear()
        else:
            self.node_title.setText(f"<b>{html.escape(node.kind)}</b><br>{html.escape(node.name)}")
            self.node_details.setText("\n".join(node.details) or "no attributes")
            self.weights.addItems(node.tensors)
        count = len(node.tensors) if node is not None else 0
        self.weights_title.setText(f"Weights ({count})" if count else "Weights: none" if node is not None
                                   else "Weights")
        self.weights.blockSignals(False)

    def _weight_chosen(self, name: str) -> None:
        if name:
            self.tensor_chosen.emit(name)
