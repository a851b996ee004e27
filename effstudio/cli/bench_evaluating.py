"""`effstudio bench evaluate` and `effstudio bench lra`: evaluation throughput, and ListOps for every kind."""

from __future__ import annotations

import argparse
import sys

from effstudio.cli.arg_types import whole
from effstudio.cli.errors import EXIT_OK
from effstudio.cli.output import print_json


def add_evaluate_bench_parsers(benches: argparse._SubParsersAction) -> None:
    evaluate = benches.add_parser(
        "evaluate", help="evaluation throughput (inference mode, batched) against training throughput",
        description="Trains nothing: times batched inference-mode passes over the ListOps validation split and "
                    "training steps of the same model on the same examples, alternately, and reports "
                    "examples per second of each and their ratio.")
    evaluate.add_argument("--repeats", type=whole(1, 100), default=3, help="alternating rounds (default: 3)")
    evaluate.add_argument("--examples", type=whole(8, 1_000_000), default=256,
                          help="ListOps examples read per round (default: 256)")
    evaluate.add_argument("--max-length", type=whole(16, 4096), default=256, help="longest expression (default: 256)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.set_defaults(func=cmd_bench_evaluate)
    lra = benches.add_parser(
        "lra", help="ListOps test accuracy of the transformer with every attention kind at one budget",
        description="Trains the same small transformer on the same generated ListOps splits once per attention "
                    "kind and prints its test accuracy beside the Long Range Arena paper's ListOps column.")
    lra.add_argument("--steps", type=whole(1, 1_000_000), default=300, help="training steps per kind (default: 300)")
    lra.add_argument("--kinds", help="comma-separated attention kinds (default: all)")
    lra.add_argument("--max-length", type=whole(16, 4096), default=256, help="longest expression (default: 256)")
    lra.add_argument("--train-size", type=whole(10, 1_000_000), default=5000, help="training examples (default: 5000)")
    lra.add_argument("--test-size", type=whole(1, 1_000_000), default=500, help="test examples (default: 500)")
    lra.add_argument("--d-model", type=whole(8, 4096), default=128, help="model width (default: 128)")
    lra.add_argument("--json", action="store_true", help='print {"rows": [...]} (one row per kind)')
    lra.set_defaults(func=cmd_bench_lra)


def cmd_bench_evaluate(args: argparse.Namespace) -> int:
    from effstudio.bench.evaluate import measure_evaluate

    result = measure_evaluate(repeats=args.repeats, examples=args.examples, max_length=args.max_length)
    if args.json:
        print_json(result)
    else:
        for key, value in result.items():
            print(f"{key:>24}: {value}")
    return EXIT_OK


def cmd_bench_lra(args: argparse.Namespace) -> int:
    from effstudio.bench.lra import HEADER, PAPER_LISTOPS, format_row, run_lra
    from effstudio.registry import get_registry

    kinds = tuple(k.strip() for k in (args.kinds or "").split(",") if k.strip())
    for kind in kinds:
        get_registry().get("attention", kind)  # an unknown kind is a usage error before anything trains
    rows = []
    if not args.json:
        print(HEADER, flush=True)
    for row in run_lra(args.steps, kinds, max_length=args.max_length, train_size=args.train_size,
                       test_size=args.test_size, d_model=args.d_model):
        rows.append(row)
        if args.json:
            print(f"{row.kind}: done in {row.seconds:.0f} s", file=sys.stderr, flush=True)
        else:
            print(format_row(row), flush=True)
    if args.json:
        print_json({"rows": [row.to_json() for row in rows], "paper_listops": PAPER_LISTOPS,
                    "errors": {row.kind: row.error for row in rows if row.error}})
    return EXIT_OK
