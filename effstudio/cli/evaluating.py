"""`effstudio evaluate FILE...` and `effstudio drift CKPT --reference ... --current FILE`.

``evaluate --json`` prints one object per file with exactly the keys ``model, task, split, examples,
accuracy, macro_f1, per_class, confusion, by_length, length_generalisation, ece, temperature,
robustness``; ``drift --json`` one object ``{"signals": [...], "mmd", "p_value", "drift"}``. Each
evaluation is written as ``<model stem>.evaluation.json`` (beside the model, or in --out) and recorded
as a file of the model's run in the run store.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from effstudio.cli.arg_types import comma_list
from effstudio.cli.errors import EXIT_OK, EXIT_USAGE
from effstudio.cli.output import cell, print_json
from effstudio.messages import print_error

MAX_FACTOR = 64


def add_evaluate_parsers(commands: argparse._SubParsersAction) -> None:
    evaluate = commands.add_parser(
        "evaluate", help="where a model fails: per-class figures, confusion, by length, length generalisation, "
                         "calibration, robustness",
        description="Evaluates checkpoints (trained, pruned, quantized, distilled) and exported .onnx files on a "
                    "split of their task or on a data file, and writes each result beside the model "
                    "(<stem>.evaluation.json, or in --out).")
    evaluate.add_argument("files", type=Path, nargs="+", metavar="FILE")
    evaluate.add_argument("--task", help="the task to evaluate on (default: each file's own)")
    evaluate.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                          help="a task setting for the evaluation data (task.test_size=1000); repeatable")
    evaluate.add_argument("--split", default="val", metavar="val|test|PATH",
                          help="the split, or a CSV/TSV/JSON Lines file with text and label columns (default: val)")
    evaluate.add_argument("--factors", type=comma_list(int), default=[1, 2, 4, 8],
                          help="length generalisation: multiples of the training length (default: 1,2,4,8)")
    evaluate.add_argument("--extend-positions", action="store_true",
                          help="grow learned position tables (by copying) to reach the longer lengths")
    evaluate.add_argument("--no-robustness", action="store_true", help="skip the perturbation curves")
    evaluate.add_argument("--store-temperature", action="store_true",
                          help="write the temperature fitted on the validation split into each checkpoint's header")
    evaluate.add_argument("--apply-temperature", action="store_true",
                          help="divide the logits by the temperature stored in the checkpoint")
    evaluate.add_argument("--out", type=Path, metavar="DIR", help="folder for the evaluation files "
                                                                 "(default: beside each model)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object per file")
    evaluate.set_defaults(func=cmd_evaluate, output_folders=("out",))
    drift = commands.add_parser(
        "drift", help="does new data still look like the training data? PSI, Jensen-Shannon, unknown tokens, "
                      "predicted classes, MMD",
        description="Compares a data file with a split of the checkpoint's task (or another file) through the "
                    "model: a verdict per signal with its threshold, and one overall.")
    drift.add_argument("checkpoint", type=Path, metavar="CKPT")
    drift.add_argument("--reference", required=True, metavar="SPLIT_OR_FILE",
                       help="train, val, test, or a data file (CSV/TSV/JSON Lines with a text column)")
    drift.add_argument("--current", type=Path, required=True, metavar="FILE", help="the new data")
    drift.add_argument("--json", action="store_true", help="print one JSON object")
    drift.set_defaults(func=cmd_drift)


def _settings(pairs: list[str]) -> dict[str, str]:
    from effstudio.cli.errors import UsageError

    found = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set {pair}: expected KEY=VALUE")
        found[key.strip()] = value
    return found


def cmd_evaluate(args: argparse.Namespace) -> int:
    from effstudio.cli.errors import UsageError
    from effstudio.evaluate.events import EvaluateError
    from effstudio.evaluate.model_file import store_temperature
    from effstudio.evaluate.record import evaluation_path, write_evaluation
    from effstudio.evaluate.run import evaluate
    from effstudio.runs.recorder import record_output

    if any(f < 1 or f > MAX_FACTOR for f in args.factors):
        raise UsageError(f"--factors: each factor must be 1 to {MAX_FACTOR}")
    if args.store_temperature and any(f.suffix.lower() == ".onnx" for f in args.files):
        raise UsageError("--store-temperature writes into a checkpoint's header; an .onnx file has none")
    writers: dict[Path, Path] = {}  # each record's path -> the model file that writes it
    for file in args.files:
        record = evaluation_path(file, args.out)
        other = writers.setdefault(record, file)
        if other.resolve() != Path(file).resolve():
            raise UsageError(f"{other} and {file} would both write {record}: evaluate them into different "
                             "folders (--out)")
    evaluations = []
    try:
        for event in evaluate(args.files, task=args.task, settings=_settings(args.set), split=args.split,
                              factors=tuple(args.factors), extend_positions=args.extend_positions,
                              robustness=not args.no_robustness, calibrate=True,
                              apply_temperature=args.apply_temperature):
            if event.kind == "evaluated":
                evaluations.append((Path(event.file), event.evaluation))
                _show(event.evaluation, args.json)
            elif event.kind == "log":
                if event.level == "warning" or not args.json:
                    print(f"{event.level}: {event.message}", file=sys.stderr, flush=True)
            elif not args.json:
                print(f"{Path(event.file).name}: {event.stage} {event.done}/{event.total}", file=sys.stderr,
                      flush=True)
    except EvaluateError as err:
        print_error(str(err))
        return EXIT_USAGE
    for path, evaluation in evaluations:
        written = write_evaluation(evaluation, evaluation_path(path, args.out))
        record_output(path, written, "evaluation")
        if args.store_temperature and evaluation.temperature is not None:
            store_temperature(path, evaluation.temperature)
    return EXIT_OK


def _show(evaluation: Any, as_json: bool) -> None:
    if as_json:
        print_json(evaluation.to_json())
        return
    print(f"{evaluation.model} on {evaluation.task} ({evaluation.split}, {evaluation.examples} examples): "
          f"accuracy {cell(evaluation.accuracy, '.4f')}, macro-F1 {cell(evaluation.macro_f1, '.4f')}, "
          f"ECE {cell(evaluation.ece, '.4f')}, temperature {cell(evaluation.temperature, '.3f')}")
    for point in evaluation.length_generalisation:
        note = " (positions extended)" if point.extended else ""
        print(f"  length x{point.factor:<2} ({point.length:>5} tokens): accuracy {cell(point.accuracy, '.4f')}{note}")
    for bucket in evaluation.by_length:
        print(f"  length {bucket.bucket:>11}: {bucket.examples:>5} examples, accuracy {cell(bucket.accuracy, '.4f')}")
    for point in evaluation.robustness:
        print(f"  {point.perturbation:>12} {100 * point.rate:>4.0f}%: accuracy {point.accuracy:.4f}")


def cmd_drift(args: argparse.Namespace) -> int:
    from effstudio.evaluate.drift import drift
    from effstudio.evaluate.events import EvaluateError

    try:
        for event in drift(args.checkpoint, reference=args.reference, current=args.current):
            if event.kind != "drifted":
                continue
            report = event.report
            if args.json:
                print_json(report.to_json())
            else:
                for signal in report.signals:
                    verdict = "DRIFT" if signal.drift else "ok"
                    relation = "<" if signal.name.endswith("p_value") else ">"
                    print(f"{signal.name:>22}: {signal.value:10.4f}  (drift if {relation} {signal.threshold:.4f})  "
                          f"{verdict}")
                print(f"{'verdict':>22}: {'drift' if report.drift else 'no drift'}")
    except EvaluateError as err:
        print_error(str(err))
        return EXIT_USAGE
    return EXIT_OK


def evaluation_table(files: list[Path]) -> str:
    """The headline figures of the evaluations recorded beside ``files`` (`effstudio evaluate`), as a
    Markdown table that joins the Compare table; empty when none of them was evaluated."""
    from effstudio.evaluate.record import HEADLINE, read_headline

    rows = [(path.name, read_headline(path)) for path in files]
    if not any(figures for _, figures in rows):
        return ""
    lines = ["| Variant | " + " | ".join(f"eval {key}" for key in HEADLINE) + " |", "|---" * (len(HEADLINE) + 1) + "|"]
    for name, figures in rows:
        cells = [cell((figures or {}).get(key), ".4f") for key in HEADLINE]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
