"""`effstudio bench peers`: the attention kinds against independent implementations of the same patterns."""

from __future__ import annotations

import argparse
import sys

from effstudio.cli.arg_types import comma_list, whole
from effstudio.cli.errors import EXIT_FAILED, EXIT_OK, UsageError
from effstudio.cli.output import cell, print_json

KINDS = ("local", "longformer", "reformer", "performer", "linear")


def add_peers_bench(benches: argparse._SubParsersAction) -> None:
    peers = benches.add_parser(
        "peers", help="attention kinds against local-attention, HF Longformer, reformer-pytorch, performer-pytorch",
        description="For each kind whose peer package is installed: forward+backward with the same inputs "
                    "(and weights, projections where the peer has them), B=1, H=4, D=64, float32; the two "
                    "timed alternately in one process, each one's peak memory in a fresh process, and the "
                    "largest difference of their outputs. Missing peers are listed with how to install them "
                    "(pip install 'effstudio[bench]').")
    peers.add_argument("--lengths", type=comma_list(int), default=[4096, 16384],
                       help="comma-separated sequence lengths (default: 4096,16384)")
    peers.add_argument("--kinds", type=comma_list(str.strip), help=f"some of {', '.join(KINDS)} (default: all)")
    peers.add_argument("--repeats", type=whole(1, 1000), default=5, help="timed calls per side (default: 5)")
    peers.add_argument("--threads", type=whole(1, 1024), default=2, help="CPU threads (default: 2)")
    peers.add_argument("--json", action="store_true", help="print one JSON object")
    peers.set_defaults(func=cmd_bench_peers)


def cmd_bench_peers(args: argparse.Namespace) -> int:
    if not args.lengths or min(args.lengths) < 2:
        raise UsageError(f"--lengths: give lengths of 2 or more, got {args.lengths}")
    unknown = sorted(set(args.kinds or ()) - set(KINDS))
    if unknown:
        raise UsageError(f"--kinds: unknown {', '.join(unknown)}; choose from {', '.join(KINDS)}")
    from effstudio.bench.peers import measure_peers

    if not args.json:
        print(f"{'kind':<11} {'length':>7} {'effstudio ms':>13} {'peer ms':>10} {'ratio':>6} "
              f"{'ours MB':>8} {'peer MB':>8} {'max diff':>9}  peer", flush=True)

    def show(row: dict) -> None:
        if not args.json:
            print(f"{row['kind']:<11} {row['length']:>7} {row['effstudio_ms']:>13.1f} {row['peer_ms']:>10.1f} "
                  f"{row['ratio']:>6.2f} {cell(row['effstudio_peak_mb'], '.1f'):>8} "
                  f"{cell(row['peer_peak_mb'], '.1f'):>8} {cell(row['max_abs_diff'], '.2g'):>9}  {row['peer']}", flush=True)

    result = measure_peers(tuple(args.lengths), repeats=args.repeats, threads=args.threads,
                           kinds=tuple(args.kinds) if args.kinds else None, on_row=show)
    if args.json:
        print_json(result)
    else:
        for missing in result["missing"]:
            print(f"missing: {missing['kind']} ({missing['peer']}): {missing['install']}", file=sys.stderr)
        print("ratio = peer ms / effstudio ms (above 1: effstudio faster); "
              + "; ".join(f"{key}: {value}" for key, value in result["settings"].items()), file=sys.stderr)
        for problem in result["problems"]:
            print(f"problem: {problem}", file=sys.stderr)
    return EXIT_FAILED if result["problems"] else EXIT_OK
