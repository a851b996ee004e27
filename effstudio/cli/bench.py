"""`effstudio bench ...`: the benchmarks, each printed as a table or, with --json, as JSON.

The benchmarks are imported by each command, not here: they bring torch (or the window), which
`effstudio --version` and `--help` need not load.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from effstudio.bench.startup import measure_startup
from effstudio.cli.arg_types import comma_list, non_negative, whole
from effstudio.cli.bench_evaluating import add_evaluate_bench_parsers
from effstudio.cli.bench_graph import add_graph_bench
from effstudio.cli.bench_peers import add_peers_bench
from effstudio.cli.bench_pretrained import add_pretrained_bench
from effstudio.cli.compress import MAX_THREADS
from effstudio.cli.errors import EXIT_FAILED, EXIT_OK, UsageError
from effstudio.cli.interrupt import graceful_interrupt
from effstudio.cli.output import cell, print_json

if TYPE_CHECKING:
    from effstudio.bench.attention import BenchRowEvent


def add_bench_parsers(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help="benchmarks")
    benches = bench.add_subparsers(dest="bench", metavar="BENCH", required=True)
    for name, what in (("overhead", "engine steps/s against a bare PyTorch loop"),
                       ("responsiveness", "GUI event-loop latency while training"),
                       ("runstore", "engine steps/s with the run store recording against without")):
        loop = benches.add_parser(name, help=what)
        loop.add_argument("--steps", type=int, default=200, help="training steps to measure over")
        loop.add_argument("--json", action="store_true", help="print one JSON object")
        loop.set_defaults(func=cmd_bench)
    faults = benches.add_parser("faults", help="SIGKILLs during training and full disks during checkpoint saves: "
                                               "is the newest checkpoint consistent, does it resume exactly?")
    faults.add_argument("--kills", type=non_negative, default=20, help="kills of the training (default: 20)")
    faults.add_argument("--json", action="store_true", help="print one JSON object")
    faults.set_defaults(func=cmd_bench)
    _add_attention_bench(benches)
    add_peers_bench(benches)
    inspect_bench = benches.add_parser("inspect", help="inspector speed and memory on a synthetic safetensors file")
    inspect_bench.add_argument("--size-mb", type=float, default=100, help="file size in MiB (default: 100)")
    inspect_bench.add_argument("--tensors", type=int, default=100, help="number of tensors (default: 100)")
    inspect_bench.add_argument("--dir", type=Path, help="folder for the temporary file (default: the system's)")
    inspect_bench.add_argument("--json", action="store_true", help="print one JSON object")
    inspect_bench.set_defaults(func=cmd_bench_inspect, output_folders=("dir",))
    _add_compress_bench(benches)
    add_graph_bench(benches)
    add_pretrained_bench(benches)
    data = benches.add_parser(
        "data", help="textclass reading, tokenizing and cached reload of a synthetic CSV",
        description="Writes a CSV of --rows short labelled documents, then times reading and splitting it, "
                    "training the tokenizer and encoding, and building the task again from its cache; with "
                    "the process's peak resident memory.")
    data.add_argument("--rows", type=whole(100, 100_000_000), default=100_000,
                      help="rows of the CSV, 100 or more (default: 100000)")
    data.add_argument("--dir", type=Path, help="folder for the CSV and its cache (default: a temporary folder)")
    data.add_argument("--json", action="store_true", help="print one JSON object")
    data.set_defaults(func=cmd_bench_data, output_folders=("dir",))
    startup = benches.add_parser(
        "startup", help="seconds for `effstudio --version` and to the first window, in fresh processes",
        description="Median, minimum and maximum over --repeats fresh processes. With --compare DIR (the root "
                    "of another effstudio checkout) both are timed alternately, so a busier machine slows both.")
    startup.add_argument("--repeats", type=whole(1, 1000), default=7, help="processes per figure (default: 7)")
    startup.add_argument("--compare", type=Path, metavar="DIR", help="another effstudio checkout to time alongside")
    startup.add_argument("--json", action="store_true", help="print one JSON object")
    startup.set_defaults(func=cmd_bench_startup)
    add_evaluate_bench_parsers(benches)


def _add_attention_bench(benches: argparse._SubParsersAction) -> None:
    # options left out keep AttentionBenchSettings' defaults (named in the help), so building
    # the parser does not import the benchmark for every other command
    attention = benches.add_parser(
        "attention", help="time and peak memory of attention kinds against sequence length",
        description="Each case (kind, length) runs in a fresh process: the median time of forward+backward "
                    "after a warm-up, and the peak memory above the process's baseline. A case that runs "
                    "out of memory or time is reported as failed (ok: false), and longer lengths of that "
                    "kind are skipped.")
    attention.add_argument("--kinds", default="all", help="'all' or a comma-separated list (default: all)")
    attention.add_argument("--lengths", type=comma_list(int),
                           help="comma-separated sequence lengths (default: 1024,2048,4096,8192,16384)")
    attention.add_argument("--batch", type=int, help="batch size (default: 1)")
    attention.add_argument("--heads", type=int, help="attention heads (default: 4)")
    attention.add_argument("--head-dim", type=int, help="width of one head (default: 64)")
    attention.add_argument("--backward", action=argparse.BooleanOptionalAction,
                           help="time forward+backward, or the forward pass only (default: --backward)")
    attention.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: auto, cuda when there is one)")
    attention.add_argument("--repeats", type=int, help="timed runs per case at least, after half a second of "
                                                        "warm-up, and more until a second is timed; the median and "
                                                        "quartiles are reported (default: 3)")
    attention.add_argument("--timeout", type=float, metavar="SECONDS", help="time limit per case (default: 300)")
    attention.add_argument("--max-mb", type=float, help="memory limit per case (default: 80%% of the memory "
                                                       "available at the start)")
    attention.add_argument("--json", type=Path, metavar="FILE", help="write settings, rows and summary as JSON")
    attention.set_defaults(func=cmd_bench_attention, output_files=("json",))


def _add_compress_bench(benches: argparse._SubParsersAction) -> None:
    bench = benches.add_parser(
        "compress", help="compression targets on a d_model=256 ListOps model: int8, ONNX, pruning, distillation",
        description="Trains a d_model=256 ListOps model briefly (fixed seed), then measures dynamic int8, "
                    "onnxruntime, structured pruning (half the heads and neurons) and distillation against it.")
    bench.add_argument("--train-steps", type=int, default=300,
                       help="training steps of the ListOps model that is quantized, exported and pruned (default: 300)")
    bench.add_argument("--distill-steps", type=int, default=800,
                       help="training steps of the digits teacher, and of each student (default: 800)")
    bench.add_argument("--threads", type=whole(1, MAX_THREADS), default=1, help="CPU threads for timing (default: 1)")
    bench.add_argument("--length", type=whole(1, 128), default=None, metavar="N",
                       help="tokens of every timed sequence (default: the longest validation example's)")
    bench.add_argument("--dir", type=Path, help="keep the files here (default: a temporary folder)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.set_defaults(func=cmd_bench_compress, output_folders=("dir",))


def cmd_bench(args: argparse.Namespace) -> int:
    if args.bench == "overhead":
        from effstudio.bench.overhead import measure_overhead

        result = measure_overhead(steps=args.steps)
    elif args.bench == "runstore":
        from effstudio.bench.runstore import measure_runstore

        result = measure_runstore(steps=args.steps)
    elif args.bench == "faults":
        if not hasattr(os, "fork") or not hasattr(signal, "SIGKILL"):
            raise UsageError("bench faults forks and SIGKILLs training processes: it runs on Linux and macOS")
        from effstudio.bench.faults import measure_faults

        result = measure_faults(kills=args.kills).to_json()
    else:
        from effstudio.gui.responsiveness import measure_responsiveness

        result = measure_responsiveness(steps=args.steps)
    if args.json:
        print_json(result)
    else:
        for key, value in result.items():
            print(f"{key:>20}: {value:.3f}" if isinstance(value, float) else f"{key:>20}: {value}")
    return EXIT_FAILED if result.get("problems") else EXIT_OK  # the fault bench found a defect


def cmd_bench_startup(args: argparse.Namespace) -> int:
    if args.compare is not None and not (args.compare / "effstudio" / "__init__.py").is_file():
        raise UsageError(f"--compare {args.compare}: not the root of an effstudio checkout "
                         "(no effstudio/__init__.py in it)")
    result = measure_startup(repeats=args.repeats, compare=args.compare)
    if args.json:
        print_json(result)
        return EXIT_OK
    for name in ("this", "compare"):
        figures = result.get(name)
        if isinstance(figures, dict):
            label = "this installation" if name == "this" else str(args.compare)
            for what, spread in figures.items():
                print(f"{label:>32} {what:>13}: {spread['median_s']:.3f} s "
                      f"(min {spread['min_s']:.3f}, max {spread['max_s']:.3f})")
    print(f"{'load average (1 min)':>32}: {result['load_average']}")
    return EXIT_OK


def cmd_bench_inspect(args: argparse.Namespace) -> int:
    from effstudio.bench.inspect import measure_inspect

    print_figures(measure_inspect(size_mb=args.size_mb, tensors=args.tensors, folder=args.dir), args.json)
    return EXIT_OK


def cmd_bench_data(args: argparse.Namespace) -> int:
    from effstudio.bench.data import measure_data

    print_figures(measure_data(rows=args.rows, folder=args.dir), args.json)
    return EXIT_OK


def print_figures(result: dict[str, Any], as_json: bool) -> None:
    """A benchmark's flat result: one JSON object, or one aligned ``name: value`` line per figure."""
    if as_json:
        print_json(result)
    else:
        for key, value in result.items():
            print(f"{key:>20}: {value}")


def cmd_bench_compress(args: argparse.Namespace) -> int:
    from effstudio.bench.compress import format_report, measure_compress

    report = measure_compress(train_steps=args.train_steps, distill_steps=args.distill_steps, threads=args.threads,
                              folder=args.dir, length=args.length)
    if args.json:
        print_json(report)
    else:
        print(format_report(report))
    return EXIT_OK


def _print_bench_row(row: BenchRowEvent) -> None:
    status = "ok" if row.ok else row.error
    spread = f"{row.ms_q1:.4g}-{row.ms_q3:.4g}" if row.ms_q1 is not None and row.ms_q3 is not None else "-"
    print(f"{row.attention:<12} {row.length:>7} {cell(row.ms, '.2f'):>11} {spread:>17} {cell(row.peak_mb, '.1f'):>10}"
          f"  {status}", flush=True)


def _print_bench_summary(summary: list[dict[str, Any]]) -> None:
    if not summary:
        return
    first = summary[0]
    growth = f"time x{first['length']}->{first['longest']}" if first["longest"] > first["length"] else ""
    print(f"\nat length {first['length']}:")
    print(f"{'kind':<12} {'vs full':>9} {'vs sdpa':>9} {'memory/full':>12} {growth:>18} {'(quartiles)':>13}")

    def times(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}x"

    for entry in summary:
        between = entry.get("growth_range")
        spread = f"({between[0]:.2f}-{between[1]:.2f})" if growth and between else ""
        print(f"{entry['kind']:<12} {times(entry['speedup_vs_full']):>9} {times(entry['speedup_vs_sdpa']):>9} "
              f"{cell(entry['memory_vs_full'], '.3f'):>12} {times(entry['growth']) if growth else '':>18} {spread:>13}")


def cmd_bench_attention(args: argparse.Namespace) -> int:
    from effstudio.bench.attention import (
        AttentionBenchSettings,
        BenchDoneEvent,
        BenchRowEvent,
        bench_report,
        run_attention_bench,
    )
    from effstudio.engine.events import JobControl, LogEvent
    from effstudio.pretrained.efficient import record_attention_report

    kinds = () if args.kinds.strip() == "all" else tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    given = {"lengths": tuple(args.lengths) if args.lengths is not None else None, "batch": args.batch,
             "heads": args.heads, "head_dim": args.head_dim, "backward": args.backward, "device": args.device,
             "repeats": args.repeats, "timeout_s": args.timeout, "max_mb": args.max_mb}
    settings = AttentionBenchSettings(kinds=kinds, **{k: v for k, v in given.items() if v is not None})
    settings = settings.resolved()  # a bad kind or value is a usage error before anything runs
    control = JobControl()
    rows: list[BenchRowEvent] = []
    done: BenchDoneEvent | None = None
    print(f"{'kind':<12} {'length':>7} {'ms':>11} {'quartiles (ms)':>17} {'peak MB':>10}  status", flush=True)
    with graceful_interrupt(control):
        for event in run_attention_bench(settings, control):
            if isinstance(event, BenchRowEvent):
                rows.append(event)
                _print_bench_row(event)
            elif isinstance(event, LogEvent):
                print(f"{event.message}" if event.level == "info" else f"{event.level}: {event.message}",
                      file=sys.stderr, flush=True)
            elif isinstance(event, BenchDoneEvent):
                done = event
    _print_bench_summary(list(done.summary) if done is not None else [])
    report = bench_report(settings, rows, done)
    if any(row.ok for row in rows):
        record_attention_report(report)  # the curves `import`/Make efficient estimate attention memory from
    if done is not None and done.timing_verdict:
        print(f"timing {'holds' if done.timing_holds else 'DOES NOT HOLD'}: {done.timing_verdict}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"results written to {args.json}", file=sys.stderr)
    return EXIT_OK
