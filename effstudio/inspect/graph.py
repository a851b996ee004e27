"""The graph of an opened model: boxes (operators or blocks) joined by the values that flow between them.

Builders fill a :class:`ModelGraph`: :mod:`effstudio.inspect.onnx_graph`
(an ONNX file's operators, weights attached to the operator that reads them),
:mod:`effstudio.inspect.block_graph` (an effstudio checkpoint's module tree
as embedding -> blocks -> head) and, for other files of numbered layers,
:mod:`effstudio.inspect.name_graph` (blocks grouped from the tensor names). :func:`lay_out` places the boxes top to bottom
with igraph's layered (Sugiyama) layout: every edge points down, long edges bend
through the layers they cross. Qt-free: the GUI only draws what this computes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from effstudio import read_limits
from effstudio.inspect.tensors import Inspected, InspectError


class GraphError(InspectError):
    """This file has no graph that can be shown; the message says why."""


@dataclass(eq=False)
class GraphNode:
    name: str  # the operator's or module's name; unique in its graph
    kind: str  # an ONNX op type ("MatMul"), "Input", "Output", or a block kind ("Embedding", "Block", "Head")
    details: list[str] = field(default_factory=list)  # attributes, attached weights, settings: one line each
    tensors: list[str] = field(default_factory=list)  # the weights it reads, as named in the Tensors tab
    x: float = 0.0  # layout position in layout units (see lay_out); y is the layer, 0 at the top
    y: float = 0.0


@dataclass(eq=False)
class GraphEdge:
    source: int  # index into ModelGraph.nodes
    target: int
    value: str  # the name of the value it carries
    shape: str = ""  # "batch×sequence×384"; empty when unknown
    bends: list[tuple[float, float]] = field(default_factory=list)  # control points between the two boxes


@dataclass(eq=False)
class ModelGraph:
    title: str  # "ONNX operators" or "effstudio blocks"
    nodes: list[GraphNode] = field(default_factory=list)
    edges: list[GraphEdge] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # "build", "layout": where the time went

    def add(self, node: GraphNode) -> int:
        self.nodes.append(node)
        return len(self.nodes) - 1

    def connect(self, source: int, target: int, value: str, shape: str = "") -> None:
        self.edges.append(GraphEdge(source, target, value, shape))

    def find(self, text: str) -> list[int]:
        """Nodes whose name, kind or attached weights contain ``text`` (case-insensitive), in layout order."""
        needle = text.strip().lower()
        if not needle:
            return []
        found = [i for i, node in enumerate(self.nodes)
                 if needle in node.name.lower() or needle in node.kind.lower()
                 or any(needle in tensor.lower() for tensor in node.tensors)]
        return sorted(found, key=lambda i: (self.nodes[i].y, self.nodes[i].x))

    @property
    def layers(self) -> int:
        return int(max((node.y for node in self.nodes), default=-1)) + 1


def shape_text(dims: list[int | str] | tuple[int | str, ...]) -> str:
    """``(batch, 16, 384)`` as ``batch×16×384``; a scalar as ``scalar``."""
    return "×".join(str(d) for d in dims) if dims else "scalar"


# crossing reduction sweeps over every box and bend point: 100 sweeps for a graph of up to 20,000 points, fewer
# for larger ones, so the layout's time stays about that of 2,000,000 point moves
CROSSING_WORK = 2_000_000
MAX_SWEEPS, MIN_SWEEPS = 100, 5


def _longest_path_layers(ig: Any) -> list[int] | None:
    """Each node one layer below its deepest input (what igraph does for a DAG); None for a graph with cycles."""
    if not ig.is_dag():
        return None
    successors = ig.get_adjlist("out")
    layers = [0] * ig.vcount()
    for node in ig.topological_sorting():
        for after in successors[node]:
            layers[after] = max(layers[after], layers[node] + 1)
    return layers


def lay_out(graph: ModelGraph) -> ModelGraph:
    """Place the nodes in layers, top to bottom, with igraph's Sugiyama layout (in place; returns ``graph``).

    Layout units: layers are 1 apart (``y``), boxes at least 1 apart within a layer (``x``); an edge
    that spans several layers gets a bend point in each layer between its ends. GraphError when
    boxes and bend points together exceed MAX_LAYOUT_POINTS."""
    import igraph

    started = time.perf_counter()
    if not graph.nodes:
        return graph
    ig = igraph.Graph(n=len(graph.nodes), edges=[(e.source, e.target) for e in graph.edges], directed=True)
    layers = _longest_path_layers(ig)
    points = len(graph.nodes) + (sum(layers[e.target] - layers[e.source] - 1 for e in graph.edges)
                                 if layers is not None else 0)
    if points > read_limits.MAX_LAYOUT_POINTS:
        raise GraphError(f"the graph's {len(graph.nodes):,} boxes and the bends of its long edges make {points:,} "
                         f"points to place, more than the {read_limits.MAX_LAYOUT_POINTS:,} the Graph tab lays out "
                         "(MAX_LAYOUT_POINTS)")
    sweeps = max(MIN_SWEEPS, min(MAX_SWEEPS, CROSSING_WORK // points))
    layout = ig.layout_sugiyama(layers=layers, hgap=1, vgap=1, maxiter=sweeps)
    for node, (x, y) in zip(graph.nodes, layout.coords, strict=False):  # rows past the nodes are bend points
        node.x, node.y = float(x), float(y)
    for edge, bends in zip(graph.edges, layout.edge_routing, strict=True):
        edge.bends = [(float(x), float(y)) for x, y in bends]
    graph.seconds["layout"] = time.perf_counter() - started
    return graph


def check_size(count: int, what: str) -> None:
    if count > read_limits.MAX_GRAPH_NODES:
        raise GraphError(f"the graph has {count:,} {what}, more than the {read_limits.MAX_GRAPH_NODES:,} the Graph "
                         "tab lays out (MAX_GRAPH_NODES); the Tensors and Details tabs still show the file")


def graph_of(inspected: Inspected) -> ModelGraph:
    """The laid-out graph of an opened file: ONNX operators, an effstudio checkpoint's blocks, or the blocks
    that the tensor names of another file (a Hugging Face folder) spell out.

    GraphError when the file has no graph (tensors without numbered blocks), or it is too large to lay out."""
    started = time.perf_counter()
    if inspected.format == "onnx":
        from effstudio.inspect.onnx_graph import onnx_graph

        graph = onnx_graph(inspected)
    elif inspected.is_effstudio:
        from effstudio.inspect.block_graph import block_graph

        graph = block_graph(inspected)
    else:
        from effstudio.inspect.name_graph import name_graph

        graph = name_graph(inspected, f"a {inspected.format} file without effstudio's model description")
    graph.seconds["build"] = time.perf_counter() - started
    return lay_out(graph)
