"""`effstudio inspect`: what a model file or folder holds, its statistics, or the diff of two.

The inspector is imported by the command, not here: it brings torch, which `effstudio --version`
and `--help` need not load.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from effstudio.cli.errors import EXIT_FAILED, EXIT_OK
from effstudio.cli.interrupt import graceful_interrupt
from effstudio.cli.output import print_json
from effstudio.config import ConfigError
from effstudio.messages import print_error


def add_inspect_parser(commands: argparse._SubParsersAction) -> None:
    inspect = commands.add_parser(
        "inspect", help="look inside a model file or folder: tensors, statistics, architecture; or diff two",
        description="Reads .safetensors (also sharded folders), PyTorch .pt/.pth/.bin/.ckpt (as plain tensors "
                    "only: a file that would run code is refused), .onnx, .npy/.npz and Hugging Face style "
                    "folders. Statistics are computed in chunks from memory-mapped data. Exit status 1 when "
                    "the file cannot be read, with the reason on stderr.")
    inspect.add_argument("path", type=Path, help="a model file or folder")
    inspect.add_argument("--diff", type=Path, metavar="B", help="compare with this file: added, removed, "
                                                                "reshaped tensors and the relative change of each")
    inspect.add_argument("--no-stats", action="store_true", help="summary and tensor list only (no data read)")
    inspect.add_argument("--json", action="store_true", help="print one JSON object")
    inspect.set_defaults(func=cmd_inspect)


def cmd_inspect(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from effstudio.engine.events import JobControl
    from effstudio.inspect import InspectError, open_model, report
    from effstudio.inspect.architecture import effstudio_header
    from effstudio.inspect.diff import TensorChangeEvent, compare_names, iter_diff
    from effstudio.inspect.stats import TensorStatsEvent, iter_stats

    try:
        first = open_model(args.path)
        second = open_model(args.diff) if args.diff is not None else None
    except InspectError as err:  # a bad file is the file's fault, not a usage error: exit 1 with the reason
        if args.json:
            print_json({"error": str(err)})
        print_error(f"cannot inspect: {err}")
        return EXIT_FAILED
    control = JobControl()
    errors: list[str] = []
    for opened in (first, second):
        # a damaged effstudio header is reported, and what the file holds is still shown: the
        # inspector is where a person looks into a file that the other commands refuse
        if opened is not None and opened.is_effstudio:
            try:
                effstudio_header(opened.metadata, opened.path)
            except ConfigError as err:
                errors.append(str(err))
    if not args.json and second is None:
        print("\n".join(report.summary_lines(first)), flush=True)
    with graceful_interrupt(control):
        if second is not None:
            diff = compare_names(first, second)
            events = iter_diff(diff, control)
            total = len(diff.common)
        else:
            stats: dict[str, Any] = {}
            events = iter([]) if args.no_stats else iter_stats(first, control)
            total = len(first.tensors)
        with tqdm(events, total=total, unit="tensor", file=sys.stderr, disable=None, leave=False) as progress:
            for event in progress:
                if isinstance(event, TensorStatsEvent):
                    stats[event.name] = event.error if event.error is not None else event.stats
                    if event.error is not None:
                        errors.append(f"{event.name}: {event.error}")
                elif isinstance(event, TensorChangeEvent) and event.change.error:
                    errors.append(f"{event.change.name}: {event.change.error}")
    if second is not None:
        if args.json:
            print(report.dumps(diff.to_json()), flush=True)
        else:
            print("\n".join(report.diff_lines(diff)))
    elif args.json:
        print(report.dumps(report.inspect_record(first, stats)), flush=True)
    else:
        print("\n".join(report.table_lines(first, stats)))
    for error in errors:
        print_error(error)
    if control.stop_requested:
        print("effstudio: stopped before every tensor was read", file=sys.stderr)
    return EXIT_FAILED if errors or control.stop_requested else EXIT_OK
