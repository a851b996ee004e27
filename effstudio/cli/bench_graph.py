"""`effstudio bench graph`: seconds from a ~100 MB ONNX encoder on disk to its laid-out operator graph."""

from __future__ import annotations

import argparse
from pathlib import Path

from effstudio.cli.arg_types import whole
from effstudio.cli.errors import EXIT_OK


def add_graph_bench(benches: argparse._SubParsersAction) -> None:
    graph = benches.add_parser(
        "graph", help="Inspect's Graph tab: read + lay out an exported ONNX encoder (target: 3 s for 100 MB)",
        description="Exports an effstudio Transformer encoder to ONNX in a temporary folder (12 layers of width "
                    "384 and a 10,000-token vocabulary make about 100 MB), then times opening it as the inspector "
                    "does, building its operator graph and laying it out; median and slowest of --repeats.")
    graph.add_argument("--layers", type=whole(1, 48), default=12, help="encoder blocks, up to 48 (default: 12)")
    graph.add_argument("--d-model", type=whole(8, 4096), default=384, help="width (default: 384)")
    graph.add_argument("--vocab", type=whole(2, 1_000_000), default=10_000, help="vocabulary (default: 10000)")
    graph.add_argument("--repeats", type=whole(1, 100), default=3, help="timed runs (default: 3)")
    graph.add_argument("--dir", type=Path, help="folder for the temporary file (default: the system's)")
    graph.add_argument("--json", action="store_true", help="print one JSON object")
    graph.set_defaults(func=cmd_bench_graph, output_folders=("dir",))


def cmd_bench_graph(args: argparse.Namespace) -> int:
    from effstudio.bench.graph import measure_graph
    from effstudio.cli.bench import print_figures

    print_figures(measure_graph(layers=args.layers, d_model=args.d_model, vocab=args.vocab, repeats=args.repeats,
                                folder=args.dir), args.json)
    return EXIT_OK
