"""`effstudio bench pretrained`: imported Hugging Face models against transformers, and made efficient.

See effstudio.bench.pretrained for what each row measures.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from effstudio.cli.arg_types import comma_list, whole
from effstudio.cli.errors import EXIT_FAILED, EXIT_OK
from effstudio.cli.interrupt import graceful_interrupt
from effstudio.cli.output import print_json


def add_pretrained_bench(benches: argparse._SubParsersAction) -> None:
    bench = benches.add_parser(
        "pretrained", help="imported Hugging Face models: parity, speed against transformers, longformer, int8, "
                           "ONNX, and the Longformer-style conversion experiment",
        description="Without --model: random models built with transformers' config classes (nothing is "
                    "downloaded). Needs the transformers library (the dev extra).")
    bench.add_argument("--model", type=Path, help="a Hugging Face folder for the timed rows (default: a random "
                                                  "BERT, see --hidden and --layers)")
    bench.add_argument("--architectures", type=comma_list(str),
                       help="architectures of the parity rows (default: every supported one)")
    bench.add_argument("--hidden", type=whole(8, 8192), default=256, help="width of the random BERT (default: 256)")
    bench.add_argument("--layers", type=whole(1, 128), default=4, help="blocks of the random BERT (default: 4)")
    bench.add_argument("--repeats", type=whole(1, 1000), default=7, help="alternating rounds per pair (default: 7)")
    bench.add_argument("--long-length", type=whole(16, 65536), default=4096,
                       help="tokens of the longformer-against-full row (default: 4096)")
    bench.add_argument("--window", type=whole(1, 65536), default=256, help="longformer window (default: 256)")
    bench.add_argument("--original-steps", type=whole(1, 1_000_000), default=200,
                       help="training steps of the conversion experiment's original (default: 200)")
    bench.add_argument("--finetune-steps", type=whole(0, 1_000_000), default=40,
                       help="steps of the conversion experiment's fine-tune, 0 skips it (default: 40)")
    bench.add_argument("--original-length", type=whole(8, 65536), default=128,
                       help="positions of the experiment's original model (default: 128)")
    bench.add_argument("--converted-length", type=whole(16, 65536), default=4096,
                       help="its maximum length after the conversion (default: 4096)")
    bench.add_argument("--threads", type=whole(0, 512), default=0,
                       help="CPU threads for the timed rows (default: PyTorch's)")
    bench.add_argument("--no-peak-memory", dest="peak_memory", action="store_false",
                       help="skip the long row's peak memory (a fresh process per kind)")
    bench.add_argument("--part", choices=("all", "imports", "finetune"), default="all",
                       help="imports: the parity and timed rows; finetune: the conversion experiment alone "
                            "(default: all)")
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    bench.set_defaults(func=cmd_bench_pretrained)


def cmd_bench_pretrained(args: argparse.Namespace) -> int:
    from effstudio.bench.pretrained import (
        PretrainedBenchSettings,
        PretrainedRowEvent,
        pretrained_report,
        run_pretrained_bench,
    )
    from effstudio.config import ConfigError, validate
    from effstudio.engine.events import JobControl, LogEvent
    from effstudio.pretrained.importer import SUPPORTED

    architectures = tuple(args.architectures) if args.architectures else SUPPORTED
    unknown = [name for name in architectures if name not in SUPPORTED]
    if unknown:
        raise ConfigError("--architectures", f"{unknown[0]!r} is not imported; the supported ones are "
                                             f"{', '.join(SUPPORTED)}")
    settings = PretrainedBenchSettings(
        model=str(args.model or ""), architectures=architectures, hidden=args.hidden, layers=args.layers,
        repeats=args.repeats, long_length=args.long_length, window=args.window, finetune_steps=args.finetune_steps,
        original_steps=args.original_steps, part=args.part,
        original_length=args.original_length, converted_length=args.converted_length, threads=args.threads,
        peak_memory=args.peak_memory)
    validate(settings)
    control = JobControl()
    rows: list[dict[str, Any]] = []
    with graceful_interrupt(control):
        for event in run_pretrained_bench(settings, control):
            if isinstance(event, PretrainedRowEvent):
                rows.append(event.row)
                if not args.json:
                    print(format_row(event.row), flush=True)
            elif isinstance(event, LogEvent):
                print(event.message, file=sys.stderr, flush=True)
    if args.json:
        print_json(pretrained_report(settings, rows))
    failed = any(row["kind"] in ("parity", "onnx") and not row["ok"] for row in rows)
    return EXIT_FAILED if failed else EXIT_OK


def format_row(row: dict[str, Any]) -> str:
    """One line per row of the text output."""
    kind = row["kind"]
    if kind == "parity":
        if row["error"]:
            return f"parity   {row['architecture']:<11} cannot import: {row['error']}"
        logits = "-" if row["logits"] is None else f"{row['logits']:.2e}"
        return (f"parity   {row['architecture']:<11} hidden {row['hidden']:.2e}  logits {logits}  "
                f"{'ok' if row['ok'] else 'NOT exact'}")
    if kind == "speed":
        return (f"speed    batch {row['batch']:>3} x {row['length']}: effstudio {row['effstudio_ms']:.2f} ms, "
                f"transformers eager {row['transformers_eager_ms']:.2f} ms, ratio {row['ratio']:.2f} "
                f"(rounds {row['ratio_spread'][0]:.2f}-{row['ratio_spread'][1]:.2f})")
    if kind == "long":
        memory = (f"peak {row['full_peak_mb']} MB -> {row['longformer_peak_mb']} MB (x{row['memory_ratio']})"
                  if row["memory_ratio"] is not None else "peak memory not measured")
        return (f"long     {row['length']} tokens, window {row['window']}: full {row['full_ms']:.0f} ms, "
                f"longformer {row['longformer_ms']:.0f} ms, {row['speedup']:.2f}x faster; {memory}")
    if kind == "int8":
        return (f"int8     batch 1 x {row['length']}: {row['float32_ms']:.2f} -> {row['int8_ms']:.2f} ms, "
                f"{row['speedup']:.2f}x; largest logit difference {row['max_logit_diff']:.3g}")
    if kind == "onnx":
        return f"onnx     largest difference to PyTorch {row['max_abs_diff']:.2e} ({'ok' if row['ok'] else 'NOT ok'})"
    return (f"finetune {row['documents']} test documents longer than {row['original_length']} tokens: original "
            f"truncated {row['original_truncated_accuracy']:.1%}, converted to {row['converted_length']} and "
            f"fine-tuned {row['converted_accuracy']:.1%} ({row['original_steps']} + {row['finetune_steps']} steps each)")
