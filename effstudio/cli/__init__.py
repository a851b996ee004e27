"""`effstudio` and its sub-commands: the headless contract of every capability.

`effstudio` alone opens the window; `effstudio FILE` opens it on a file. The
sub-commands run headless and, with --json, print machine-readable records
whose field names are kept stable. Each command lives in a module of this
package (train, inspect, bench, compress, runs, listing, window, self_test);
this one builds the parser and is the last guard: bad input is one line and
exit code 2, anything unexpected one line and a log file with the traceback.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

import effstudio
from effstudio.cli.bench import add_bench_parsers
from effstudio.cli.compress import add_compress_parsers
from effstudio.cli.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, UsageError
from effstudio.cli.importing import add_import_parser
from effstudio.cli.inspect import add_inspect_parser
from effstudio.cli.listing import add_listing_parsers
from effstudio.cli.runs import add_runs_parser
from effstudio.cli.self_test import cmd_self_test
from effstudio.cli.train import add_train_parser
from effstudio.cli.window import add_gui_parser
from effstudio.config import ConfigError
from effstudio.messages import one_line, print_error
from effstudio.paths import (
    PathError,
    allow_path,
    check_output_file,
    check_output_folder,
    forget_allowed_paths,
    logs_dir,
    refuse_symlink_loop,
)
from effstudio.registry import UnknownEntryError

COMMANDS = ("models", "attention", "tasks", "train", "runs", "inspect", "gui", "bench",
            "prune", "quantize", "distill", "export", "compare", "import")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="effstudio",
        description="A desktop lab for efficient Transformers. Without a command, opens the window.",
    )
    parser.add_argument("--version", action="version", version=f"effstudio {effstudio.__version__}")
    parser.add_argument("--self-test", action="store_true",
                        help="check this installation headless (models, checkpoints, ONNX, the window) and "
                             "print a pass/fail report; exit status 1 on failure (add --json for JSON lines)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_listing_parsers(commands)
    add_train_parser(commands)
    add_runs_parser(commands)
    add_compress_parsers(commands)
    add_inspect_parser(commands)
    add_gui_parser(commands)
    add_bench_parsers(commands)
    add_import_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Bad input is one line and exit code 2; anything unexpected is one line that
    points to a log file holding the traceback, and exit code 1; Ctrl+C is exit code 130."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _run(argv)
    except KeyboardInterrupt:
        print("effstudio: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `effstudio attention --json | head`: the reader has what it wanted
        _silence_stdout()
        return EXIT_FAILED
    except Exception as err:  # the last guard: no traceback on a user's screen
        print(f"effstudio: internal error: {type(err).__name__}: {one_line(str(err))}; "
              f"{_log_traceback(argv)}", file=sys.stderr)
        return EXIT_FAILED


def _run(argv: list[str]) -> int:
    multiprocessing.freeze_support()  # the GUI trains in a child process, also in a frozen bundle
    if argv[:2] == ["bench", "attention-case"]:  # hidden: one benchmark case, started by `bench attention`
        # imported here: the case's measuring tools (psutil) are for the benchmark's child processes alone
        from effstudio.bench.attention_case import main as run_attention_case

        return run_attention_case(argv[2:])
    if argv[:1] == ["--self-test"]:
        return cmd_self_test(argv[1:])
    if not argv or (argv[0] not in COMMANDS and not argv[0].startswith("-")):
        argv = ["gui", *argv]  # `effstudio` and `effstudio FILE` open the window
    args = build_parser().parse_args(argv)
    # checkpoint errors are declared beside the checkpoint code, which brings torch: imported once a
    # command is to run, so that --version and --help do not pay for it
    from effstudio.engine.checkpoint import CheckpointError

    forget_allowed_paths()  # main() may run many commands in one process (tests, a script)
    try:
        for path in getattr(args, "allow_path", None) or ():
            allow_path(path)
        _check_paths(args)
        return args.func(args)
    except (ConfigError, CheckpointError, UnknownEntryError, UsageError, PathError) as err:
        print_error(str(err))
        return EXIT_USAGE


def _check_paths(args: argparse.Namespace) -> None:
    """Before a command reads or writes: no path given is a symlink loop, and each output is of the
    kind the command writes (a file, not a folder or /dev/null; a folder, not a file)."""
    for value in vars(args).values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, Path):
                refuse_symlink_loop(item)
    for dest in getattr(args, "output_files", ()):
        if getattr(args, dest, None) is not None:
            check_output_file(getattr(args, dest), _option(dest))
    for dest in getattr(args, "output_folders", ()):
        if getattr(args, dest, None) is not None:
            check_output_folder(getattr(args, dest), _option(dest))


def _option(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _silence_stdout() -> None:
    """Point stdout at the null device, so that the interpreter's last flush into a closed pipe
    does not print a second error at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no file descriptor behind stdout (a test's capture): nothing to flush
        pass


def _log_traceback(argv: Sequence[str]) -> str:
    """Write the traceback being handled to a new file in the logs folder; say where it is."""
    text = (f"effstudio {effstudio.__version__}, python {sys.version.split()[0]}\n"
            f"arguments: {list(argv)!r}\n\n{traceback.format_exc()}")
    name = f"effstudio-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    failure = None
    # the logs folder first; where it cannot be written (read-only, a file in its place), the temp folder
    for folder in (logs_dir(), Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.write_text(text, encoding="utf-8")
        except Exception as err:  # a full disk must not turn one line into a traceback
            failure = failure or err
            continue
        return f"the traceback is in {path}"
    return f"the traceback could not be written ({type(failure).__name__}: {one_line(str(failure))})"
