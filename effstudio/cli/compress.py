"""`effstudio prune | quantize | distill | export onnx | compare`.

Each command drives one of the compression generators. With ``--json`` stdout
carries one JSON object per line, each with an ``event`` (``log``,
``prune_step``, ``distill_step``, ``distill_eval``) and a ``result`` record last;
``compare --json`` prints one object ``{"rows": [...], "timing": {...}}`` (the length every
variant was timed at, and whether the timings hold). A file made from a
checkpoint of a recorded run (or from another file of that run) is added to
that run's files in the run store (``effstudio runs show ID``). Bad input (a file of
the wrong kind, an amount outside (0, 1), a student that cannot take the
teacher's task) exits with code 2, one line on stderr, and writes nothing.

The compression modules are imported by each command, not here: they bring torch, which
`effstudio --version` and `--help` need not load.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from effstudio.cli.arg_types import amount, whole
from effstudio.cli.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from effstudio.cli.evaluating import evaluation_table
from effstudio.cli.output import print_json
from effstudio.engine.run_plan import IMPORTANCE, PRUNE_METHODS
from effstudio.engine.run_plan import QUANTIZE_METHODS as QUANT_METHODS
from effstudio.messages import print_error
from effstudio.paths import add_allow_path_option

if TYPE_CHECKING:
    from effstudio.compress.events import ResultEvent
    from effstudio.engine.events import Event

Command = Callable[[argparse.Namespace], int]


def _describe(event: Event) -> str | None:
    kind = event.kind
    if kind == "log":
        return event.message if event.level == "info" else f"{event.level}: {event.message}"
    if kind == "prune_step":
        return f"step {event.step}/{event.total_steps}: sparsity {event.sparsity:.3f}, accuracy " \
               f"{event.accuracy:.3f}, {event.params:,} parameters"
    if kind == "distill_step" and (event.step % 50 == 0 or event.step == event.total_steps):
        return f"step {event.step}/{event.total_steps}: loss {event.loss:.4f} (KL {event.kl:.4f}, " \
               f"task {event.task_loss:.4f})"
    if kind == "distill_eval":
        return f"step {event.step}: student accuracy {event.student_accuracy:.3f} " \
               f"(teacher {event.teacher_accuracy:.3f})"
    if kind == "compress_step":
        return f"compress[{event.index}/{event.total}]: {event.description}: {event.source} -> {event.out}"
    if kind == "compress_done":
        if event.status == "finished":
            return f"compression steps done: {event.completed}/{event.total} file(s) written"
        if event.status == "skipped":
            return f"compression steps skipped: {event.error}"
        return f"compression steps {event.status} after {event.completed}/{event.total}" + \
            (f": {event.error}" if event.error else "")
    return None


def show_event(event: Event, as_json: bool) -> None:
    """Print one event of a compression job as the compress commands do (also for `train --config`).

    Progress events are the window's (its progress bar and ETA): the commands print what they always did."""
    if event.kind == "progress":
        return
    if as_json:
        print_json(event.to_json())
        return
    text = _describe(event)
    if text:
        print(text, file=sys.stderr if event.kind == "log" else sys.stdout, flush=True)
    if event.kind == "result":
        print("\n".join(_result_lines(event)), flush=True)


def _result_lines(event: ResultEvent) -> list[str]:
    def acc(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    lines = [f"wrote {event.path} ({event.method}): {event.file_bytes:,} bytes, {event.params:,} parameters "
             f"(was {event.baseline_params:,})",
             f"accuracy {acc(event.accuracy)} (original {acc(event.baseline_accuracy)})"]
    for key, value in event.details.items():
        if isinstance(value, dict):
            lines.append(f"{key}:")
            lines.extend(f"    {name:<24} {share:.3f}" if isinstance(share, float) else f"    {name:<24} {share}"
                         for name, share in value.items())
        elif isinstance(value, float):
            lines.append(f"{key}: {value:.6g}")
        else:
            lines.append(f"{key}: {value}")
    return lines


def _drive(events: Iterator[Event], as_json: bool, source: Path | None = None) -> int:
    """Print a job's events; record its output as an artifact of the run that ``source`` belongs to."""
    from effstudio.engine.checkpoint import CheckpointError
    from effstudio.engine.loading import CompressError
    from effstudio.pipeline import recorded_outputs

    result = None
    try:
        for event in recorded_outputs(events, source) if source is not None else events:
            if event.kind == "result":
                result = event
            else:
                show_event(event, as_json)
    except (CompressError, CheckpointError) as err:  # bad input: a wrong or unreadable file
        print_error(str(err))
        return EXIT_USAGE
    except (RuntimeError, OSError) as err:  # the model failed to run (a dtype, memory) or a disk is full
        print_error(f"the job failed: {type(err).__name__}: {err}")
        return EXIT_FAILED
    if result is not None:
        show_event(result, as_json)
    if result is None or result.details.get("parity_ok") is False:
        return EXIT_FAILED  # a failed parity check leaves the file for inspection, but says it failed
    return EXIT_OK


def _refuse_same(source: Path, out: Path | None, option: str = "--out") -> None:
    from effstudio.engine.loading import CompressError

    if out is not None and Path(out).resolve() == Path(source).resolve():
        raise CompressError(f"{option} {out} is the input file; name a new file")


def _guarded(fn: Command) -> Command:
    """Run a command; a CompressError raised while setting up is a usage error (exit 2)."""

    def run(args: argparse.Namespace) -> int:
        from effstudio.engine.loading import CompressError

        try:
            return fn(args)
        except CompressError as err:
            print_error(str(err))
            return EXIT_USAGE

    return run


@_guarded
def cmd_prune(args: argparse.Namespace) -> int:
    from effstudio.compress.prune import PruneSettings, prune_job

    settings = PruneSettings(method=args.method, amount=args.amount, importance=args.importance,
                             finetune_steps=args.finetune_steps, schedule_steps=args.schedule_steps)
    settings.check()
    _refuse_same(args.checkpoint, args.out)
    return _drive(prune_job(args.checkpoint, settings, args.out), args.json, args.checkpoint)


@_guarded
def cmd_quantize(args: argparse.Namespace) -> int:
    from effstudio.compress.quantize import quantize_job

    _refuse_same(args.checkpoint, args.out)
    return _drive(quantize_job(args.checkpoint, args.method, args.out,
                               calibration_batches=args.calibration_batches), args.json, args.checkpoint)


@_guarded
def cmd_distill(args: argparse.Namespace) -> int:
    from effstudio.compress.distill import DistillSettings, distill_job

    settings = DistillSettings(student_model=args.student_model, overrides=tuple(args.set or ()), steps=args.steps,
                               temperature=args.temperature, alpha=args.alpha, hidden_weight=args.hidden_weight)
    settings.check()
    _refuse_same(args.teacher, args.out)
    return _drive(distill_job(args.teacher, settings, args.out), args.json, args.teacher)


@_guarded
def cmd_export(args: argparse.Namespace) -> int:
    from effstudio.compress.export import export_job

    _refuse_same(args.checkpoint, args.out)
    return _drive(export_job(args.checkpoint, args.out, check=args.check), args.json, args.checkpoint)


@_guarded
def cmd_compare(args: argparse.Namespace) -> int:
    import torch

    from effstudio.compress.compare import compare_job, rows_to_csv, rows_to_markdown

    for source in args.files:  # a table written over one of the files it measures
        _refuse_same(source, args.csv, "--csv")
        _refuse_same(source, args.markdown, "--markdown")
    if args.threads:
        torch.set_num_threads(args.threads)
    rows, verdict = [], None
    for event in compare_job(args.files, task_name=args.task, repeats=args.repeats, length=args.length):
        if event.kind == "compare_row":
            rows.append(event)
            if event.error:
                print_error(f"{event.name}: {event.error}")
        elif event.kind == "compare_verdict":
            verdict = event
        elif event.kind == "log" and not args.json:
            print(event.message, file=sys.stderr, flush=True)
    if args.csv:
        args.csv.write_text(rows_to_csv(rows), encoding="utf-8")
    if args.markdown:
        args.markdown.write_text(rows_to_markdown(rows), encoding="utf-8")
    if args.json:
        timing = None if verdict is None else {"length": verdict.length, "holds": verdict.holds, "verdict": verdict.text}
        print_json({"rows": [row.to_json() for row in rows], "timing": timing})
    else:
        print(rows_to_markdown(rows), end="")
        print(evaluation_table(list(args.files)), end="")  # figures of `effstudio evaluate`, where recorded
        if verdict is not None:
            where = f"{verdict.length} tokens" if verdict.length is not None else "whole images"
            print(f"\nevery variant timed alternately at {where}; {verdict.text}")
    return EXIT_FAILED if any(row.error for row in rows) else EXIT_OK


MAX_REPEATS = 100_000  # timed passes per file: far more than a stable median needs
MAX_THREADS = 4096
MAX_LENGTH = 1_000_000  # tokens; the task's own maximum is checked by the job


def add_compress_parsers(commands: argparse._SubParsersAction) -> None:

    prune = commands.add_parser(
        "prune", help="prune a checkpoint: magnitude (layer-wise or global) or whole heads/neurons",
        description="magnitude and global-magnitude zero the smallest weights of the blocks' Linear layers "
                    "(per layer, or over all of them); heads, neurons and structured cut whole attention heads "
                    "and feed-forward neurons out, giving a smaller, faster model.")
    prune.add_argument("checkpoint", type=Path, metavar="CKPT")
    prune.add_argument("--method", choices=PRUNE_METHODS, required=True)
    prune.add_argument("--amount", type=amount, required=True, help="fraction to remove, in (0, 1)")
    prune.add_argument("--importance", choices=IMPORTANCE, default="magnitude",
                       help="how heads/neurons are ranked (default: magnitude)")
    prune.add_argument("--finetune-steps", type=int, default=0,
                       help="fine-tuning steps in all, spread over the schedule's steps (default: 0)")
    prune.add_argument("--schedule-steps", type=int, default=0,
                       help="pruning steps on the cubic schedule (default: 4 with fine-tuning, else 1)")
    prune.add_argument("--out", type=Path, required=True, metavar="FILE")
    prune.add_argument("--json", action="store_true", help="one JSON event per line, the result last")
    add_allow_path_option(prune)
    prune.set_defaults(func=cmd_prune, output_files=("out",))

    quantize = commands.add_parser("quantize", help="quantize a checkpoint (torch dynamic int8, fp16, bf16, "
                                                    "onnxruntime int8 dynamic or static)")
    quantize.add_argument("checkpoint", type=Path, metavar="CKPT")
    quantize.add_argument("--method", choices=QUANT_METHODS, required=True)
    quantize.add_argument("--calibration-batches", type=int, default=8,
                          help="onnx-int8-static: training batches of 16 to calibrate on (default: 8)")
    quantize.add_argument("--out", type=Path, required=True, metavar="FILE",
                          help="a .safetensors file, or .onnx for the onnx-* methods")
    quantize.add_argument("--json", action="store_true", help="one JSON event per line, the result last")
    add_allow_path_option(quantize)
    quantize.set_defaults(func=cmd_quantize, output_files=("out",))

    distill = commands.add_parser("distill", help="train a student model to imitate a teacher checkpoint")
    distill.add_argument("--teacher", type=Path, required=True, metavar="CKPT")
    distill.add_argument("--student-model", required=True, metavar="M", help="model type of the student")
    distill.add_argument("--set", action="append", metavar="KEY=VALUE",
                         help="student setting: model.d_model=64, model.attention=performer, train.lr=1e-3")
    distill.add_argument("--steps", type=int, required=True)
    distill.add_argument("--temperature", type=float, default=2.0, help="softening temperature T (default: 2)")
    distill.add_argument("--alpha", type=float, default=0.5, help="weight of the KL term (default: 0.5)")
    distill.add_argument("--hidden-weight", type=float, default=0.0,
                         help="weight of hidden-state matching when widths are equal (default: 0)")
    distill.add_argument("--out", type=Path, required=True, metavar="FILE")
    distill.add_argument("--json", action="store_true", help="one JSON event per line, the result last")
    add_allow_path_option(distill)
    distill.set_defaults(func=cmd_distill, output_files=("out",))

    export = commands.add_parser("export", help="export a checkpoint (ONNX)")
    formats = export.add_subparsers(dest="format", metavar="FORMAT", required=True)
    onnx = formats.add_parser("onnx", help="ONNX with dynamic batch and sequence axes")
    onnx.add_argument("checkpoint", type=Path, metavar="CKPT")
    onnx.add_argument("--out", type=Path, required=True, metavar="FILE.onnx")
    onnx.add_argument("--check", action="store_true",
                      help="compare with PyTorch (max absolute difference), evaluate and time in onnxruntime")
    onnx.add_argument("--json", action="store_true", help="one JSON event per line, the result last")
    add_allow_path_option(onnx)
    onnx.set_defaults(func=cmd_export, output_files=("out",))

    compare = commands.add_parser("compare", help="measure variants side by side: size, accuracy, latency, memory")
    compare.add_argument("files", type=Path, nargs="+", metavar="FILE")
    compare.add_argument("--task", help="the task to evaluate on (default: the first file's)")
    compare.add_argument("--repeats", type=whole(1, MAX_REPEATS), default=20, help="timed batch-1 passes per file (default: 20)")
    compare.add_argument("--length", type=whole(1, MAX_LENGTH), default=None, metavar="N",
                         help="tokens of every timed sequence (default: the longest validation example's)")
    compare.add_argument("--threads", type=whole(0, MAX_THREADS), default=1,
                         help="CPU threads for PyTorch and onnxruntime (default: 1; 0 keeps torch's default)")
    compare.add_argument("--csv", type=Path, help="also write the table as CSV")
    compare.add_argument("--markdown", type=Path, help="also write the table as Markdown")
    compare.add_argument("--json", action="store_true", help='print {"rows": [...]}')
    add_allow_path_option(compare)
    compare.set_defaults(func=cmd_compare, output_files=("csv", "markdown"))


