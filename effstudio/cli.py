"""`effstudio` and its sub-commands: the headless contract of every capability.

`effstudio` alone opens the window; `effstudio FILE` opens it on a file. The
sub-commands run headless and, with --json, print machine-readable records
whose field names are kept stable.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import effstudio
from effstudio.messages import one_line, print_error

COMMANDS = ("models", "attention", "tasks", "train", "runs", "inspect", "gui", "bench",
            "prune", "quantize", "distill", "export", "compare")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # what a shell reports for a program ended by Ctrl+C (128 + SIGINT)


class UsageError(Exception):
    """Bad input from the user: printed as one clear line, exit code 2."""


def _print_json(record: Any) -> None:
    print(json.dumps(record), flush=True)


def _report_plugin_errors(registry: Any) -> None:
    for error in registry.errors:
        print(f"effstudio: plugin {error.name!r} ({error.group}) was skipped: {error.message}", file=sys.stderr)


# ---------------------------------------------------------------- listings
def cmd_list(args: argparse.Namespace) -> int:
    from effstudio.registry import get_registry

    registry = get_registry()
    _report_plugin_errors(registry)
    kind = {"models": "models", "attention": "attention", "tasks": "tasks"}[args.command]
    entries = registry.all(kind)
    if args.json:
        _print_json({"entries": [e.to_json() for e in entries],
                     "plugin_errors": [err.to_json() for err in registry.errors]})
        return EXIT_OK
    for entry in entries:
        print(f"{entry.name:14} {entry.description}")
        for f in entry.fields():
            extra = f" choices: {', '.join(map(str, f.choices))}" if f.choices else ""
            print(f"    {f.name} = {f.default!r:<10} {f.help}{extra}")
    return EXIT_OK


# ------------------------------------------------------------------- train
def _train_config(args: argparse.Namespace):
    from effstudio.engine.checkpoint import read_info
    from effstudio.engine.run_config import RunConfig

    overrides = list(args.set or [])
    if args.steps is not None:
        overrides.append(f"train.steps={args.steps}")
    if args.device is not None:
        overrides.append(f"train.device={args.device}")
    start = args.resume or args.init
    if start:
        option = "--resume" if args.resume else "--init"
        if args.resume and args.init:
            raise UsageError("--resume continues a run, --init starts a new one from a checkpoint: use one")
        if args.model or args.task or args.config:
            raise UsageError(f"{option} uses the checkpoint's own model and task; drop --model/--task/--config")
        return read_info(start).config.with_overrides(overrides)
    if args.config:
        config = RunConfig.from_toml(args.config)
        if args.model or args.task:
            raise UsageError("--config already names the model and task; use --set to change them")
        return config.with_overrides(overrides)
    if not args.model or not args.task:
        raise UsageError("name a model and a task (--model M --task T), a --config file, or --resume a checkpoint")
    return RunConfig.create(args.model, args.task, overrides)


@contextmanager
def _graceful_interrupt(control: Any) -> Iterator[None]:
    """The first Ctrl+C asks the run to stop (and save); a second one interrupts at once."""

    def handler(signum: int, frame: Any) -> None:
        if control.stop_requested:
            raise KeyboardInterrupt
        print("\nstopping after this step (Ctrl+C again to abort)...", file=sys.stderr)
        control.stop()

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def cmd_train(args: argparse.Namespace) -> int:
    from effstudio.engine.distributed import context_from_env, leave_process_group
    from effstudio.engine.events import DoneEvent, JobControl, StartEvent
    from effstudio.engine.run_plan import RunPlan
    from effstudio.engine.trainer import default_run_dir, train

    config = _train_config(args)
    steps = _compress_steps(args, args.resume.parent if args.resume else None)
    # a resumed run continues in its own folder unless told otherwise
    out_dir = args.out or (args.resume.parent if args.resume else None)
    if out_dir is None and steps:  # the steps' outputs are checked against the folder they will go in
        out_dir = default_run_dir(config)
    source = args.config or (args.resume.parent / "config.toml" if args.resume else None)
    config = RunPlan(config, steps).checked(out_dir, source).config  # refused before anything is written
    if args.resume:
        from effstudio.engine.checkpoint import read_info

        _warn_of_unused_edits(args.resume.parent / "config.toml", read_info(args.resume).config, config)
    control = JobControl()
    dist = context_from_env()
    is_main = dist.is_main
    log_file = None
    done: DoneEvent | None = None
    progress = None
    run_dir: Path | None = None
    recorded: Any = None  # the RunRecordedEvent: the run's id and store
    with _graceful_interrupt(control):
        try:
            events = train(config, control=control, out_dir=out_dir, resume=args.resume, init=args.init)
            if is_main and not args.no_record:
                from effstudio.runs.recorder import record_run, recording_enabled

                if recording_enabled():  # only rank 0 records a torchrun job
                    events = record_run(events, _plan(config, steps), source="cli", name=args.name,
                                        world_size=dist.world_size)
            for event in events:
                if not is_main:
                    continue
                record = event.to_json()
                if isinstance(event, StartEvent):
                    run_dir = Path(event.run_dir)
                    log_file = _open_event_log(run_dir)
                elif event.kind == "run":
                    recorded = event
                if log_file is not None:
                    log_file = _log_event(log_file, record)
                if args.json:
                    if event.kind != "memory":
                        _print_json(record)
                else:
                    progress = _show_progress(event, progress)
                if isinstance(event, DoneEvent):
                    done = event
        finally:
            if progress is not None:
                progress.close()
            if log_file is not None:
                log_file.close()
            # every rank leaves the job's process group once training is over: a gloo group left to the
            # interpreter's exit can abort a rank ("terminate called without an active exception")
            leave_process_group()
    if done is None:
        return EXIT_OK
    if not args.json and is_main:
        _print_summary(done)
    code = EXIT_FAILED if done.status == "failed" else EXIT_OK
    if steps:
        from effstudio.engine.distributed import single_process

        if is_main:  # under torchrun, rank 0 alone compresses what it saved, as a process of its own
            with single_process():
                code = max(code, _run_compress_steps(steps, config, done, run_dir, recorded, control, args.json))
    return code


def _warn_of_unused_edits(path: Path, saved: Any, config: Any) -> None:
    """A resumed run keeps its checkpoint's settings (``saved``), changed only by the command line
    (``config``); name those its folder's config.toml sets otherwise (edited by hand since), before the
    run rewrites the file with the settings it used."""
    from effstudio.config import ConfigError
    from effstudio.engine.run_config import read_toml

    try:
        written = read_toml(path) if path.is_file() else {}
    except ConfigError:
        return  # an unreadable file is kept as it is, with its own warning, when the run saves
    before, used = saved.to_dict(), config.to_dict()
    edits = [f"{section}.{key} = {value!r}" for section, values in written.items()
             if isinstance(values, dict) and isinstance(used.get(section), dict)
             for key, value in values.items()
             if key in used[section] and value not in (used[section][key], before.get(section, {}).get(key))]
    if edits:
        shown = ", ".join(edits[:5]) + (f" and {len(edits) - 5} more" if len(edits) > 5 else "")
        print(f"effstudio: warning: {path} sets {shown}, which this resumed run does not use: it continues "
              f"with its checkpoint's settings (change train.* with --set) and rewrites {path.name} with them",
              file=sys.stderr)


def _compress_steps(args: argparse.Namespace, out_dir: Path | None) -> tuple[Any, ...]:
    """The ``[[compress]]`` steps of ``--config``, or of the resumed run's folder; none otherwise."""
    from effstudio.engine.run_plan import RunPlan, steps_of_run_folder

    if getattr(args, "config", None):
        return RunPlan.from_toml(args.config).compress
    if args.resume and out_dir is not None:
        return steps_of_run_folder(out_dir)
    return ()


def _plan(config: Any, steps: tuple[Any, ...]) -> Any:
    """What the run store records as the run's config: the whole plan when there are steps."""
    if not steps:
        return config
    from effstudio.engine.run_plan import RunPlan

    return RunPlan(config, steps)


def _run_compress_steps(steps: tuple[Any, ...], config: Any, done: Any, run_dir: Path | None, recorded: Any,
                        control: Any, as_json: bool) -> int:
    """After training: the config's compression steps on its checkpoint, each output a file of the run."""
    from effstudio.compress.commands import show_event
    from effstudio.compress.steps import CompressDoneEvent
    from effstudio.engine.run_plan import RunPlan
    from effstudio.pipeline import steps_after_training

    events = steps_after_training(RunPlan(config, steps), done, run_dir, control,
                                  run_id=None if recorded is None else recorded.id,
                                  store_path=None if recorded is None else recorded.store)
    if done.status != "finished" or not done.checkpoint:
        for event in events:  # only the "skipped" notice: no run folder to log into
            show_event(event, as_json)
        return EXIT_OK
    status = "failed"
    log: Any = _open_event_log(run_dir or Path(done.checkpoint).parent)
    try:
        with _graceful_interrupt(control):
            for event in events:
                if log is not None:  # a full disk ends the log, not the steps
                    log = _log_event(log, event.to_json())
                show_event(event, as_json)
                if isinstance(event, CompressDoneEvent):
                    status = event.status
    finally:
        if log is not None:
            log.close()
    return EXIT_OK if status in ("finished", "stopped") else EXIT_FAILED


def _log_event(log_file: Any, record: dict[str, Any]) -> Any:
    """Append an event to the run's events.jsonl; a full disk ends the log (with a warning), not the run."""
    try:
        log_file.write(json.dumps(record) + "\n")
    except OSError as err:
        print(f"effstudio: warning: stopped writing {log_file.name}: {err.strerror or err}", file=sys.stderr)
        with suppress(OSError):
            log_file.close()
        return None
    return log_file


def _open_event_log(run_dir: Path) -> Any:
    """The run's events.jsonl, opened to append one JSON record per line; None (with a warning) when it
    cannot be opened. A last line cut short by a killed run is ended first, so that the records appended
    now start on a line of their own and `runs import` still finds them."""
    path = run_dir / "events.jsonl"
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+b", buffering=0)
        if handle.seek(0, os.SEEK_END) > 0:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                handle.write(b"\n")
        handle.close()
        return open(path, "a", encoding="utf-8", buffering=1)
    except OSError as err:
        print(f"effstudio: warning: cannot write {path}: {err.strerror or err}", file=sys.stderr)
        return None


def _show_progress(event: Any, progress: Any) -> Any:
    from tqdm import tqdm

    kind = event.kind
    if kind == "start":
        print(f"run folder: {event.run_dir}\ndevice: {event.device}, parameters: {event.params:,}")
        return tqdm(total=event.total_steps, initial=event.start_step, unit="step", dynamic_ncols=True)
    if kind == "run":
        message = f"recorded as run {event.id} (effstudio runs show {event.id})"
        if progress is None:
            print(message)
        else:
            progress.write(message)
        return progress
    if progress is None:
        return progress
    if kind == "step":
        progress.update(event.step - progress.n)
        progress.set_postfix(loss=f"{event.loss:.4f}", lr=f"{event.lr:.2e}", tok_s=f"{event.tokens_per_s:,.0f}")
    elif kind == "eval":
        progress.write(f"step {event.step}: val_loss {event.val_loss:.4f}  val_accuracy {event.val_accuracy:.3f}")
    elif kind == "log":
        progress.write(f"{event.level}: {event.message}")
    return progress


def _print_summary(done: Any) -> None:
    parts = [f"{done.status} after {done.steps} steps in {done.seconds:.1f} s"]
    if done.final_loss is not None:
        parts.append(f"final loss {done.final_loss:.4f}")
    if done.val_accuracy is not None:
        parts.append(f"val accuracy {done.val_accuracy:.3f}")
    print(", ".join(parts))
    if done.checkpoint:
        print(f"checkpoint: {done.checkpoint}")
    if done.error:
        print(f"error: {done.error}", file=sys.stderr)


# ----------------------------------------------------------------- inspect
def cmd_inspect(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from effstudio.config import ConfigError
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
            _print_json({"error": str(err)})
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
    with _graceful_interrupt(control):
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


def cmd_bench_inspect(args: argparse.Namespace) -> int:
    from effstudio.bench.inspect import measure_inspect

    result = measure_inspect(size_mb=args.size_mb, tensors=args.tensors, folder=args.dir)
    if args.json:
        _print_json(result)
    else:
        for key, value in result.items():
            print(f"{key:>20}: {value}")
    return EXIT_OK


# --------------------------------------------------------------- gui, bench
def cmd_gui(args: argparse.Namespace) -> int:
    if args.screenshot:
        from effstudio.gui.screenshot import save_screenshot

        save_screenshot(Path(args.screenshot), steps=args.steps)
        print(f"screenshot saved to {args.screenshot}")
        return EXIT_OK
    if _no_display():
        return _headless_demo(args)
    from effstudio.gui.app import run_app

    return run_app(sys.argv[:1], open_path=args.path)


def _no_display() -> bool:
    """True on a Linux/BSD machine without X11 or Wayland (a server, a container, CI)."""
    if sys.platform in ("win32", "darwin") or os.environ.get("QT_QPA_PLATFORM"):
        return False
    return not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _headless_demo(args: argparse.Namespace) -> int:
    """Without a display, run the window offscreen on a short demo and save what it shows."""
    from effstudio.paths import data_dir

    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    target = data_dir() / "demo.png"
    print("No display found: running the headless demo (a short training run in the offscreen window).")
    from effstudio.gui.screenshot import save_screenshot

    save_screenshot(target, steps=args.steps)
    print(f"The window after the demo run is saved to {target}")
    print("Everything the window does is also a command: see `effstudio --help`.")
    return EXIT_OK


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
        _print_json(result)
    else:
        for key, value in result.items():
            print(f"{key:>20}: {value:.3f}" if isinstance(value, float) else f"{key:>20}: {value}")
    return EXIT_FAILED if result.get("problems") else EXIT_OK  # the fault bench found a defect


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number, 0 or more, got {text!r}")
    return value


def _comma_list(kind: type) -> Any:
    def parse(text: str) -> list[Any]:
        try:
            return [kind(item) for item in text.split(",") if item.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {kind.__name__}, got {text!r}") from None

    return parse


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _print_bench_row(row: Any) -> None:
    status = "ok" if row.ok else row.error
    print(f"{row.attention:<12} {row.length:>7} {_cell(row.ms, 2):>11} {_cell(row.peak_mb, 1):>10}  {status}",
          flush=True)


def _print_bench_summary(summary: list[dict[str, Any]]) -> None:
    if not summary:
        return
    first = summary[0]
    growth = f"time x{first['length']}->{first['longest']}" if first["longest"] > first["length"] else ""
    print(f"\nat length {first['length']}:")
    print(f"{'kind':<12} {'vs full':>9} {'vs sdpa':>9} {'memory/full':>12} {growth:>18}")

    def times(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}x"

    for entry in summary:
        print(f"{entry['kind']:<12} {times(entry['speedup_vs_full']):>9} {times(entry['speedup_vs_sdpa']):>9} "
              f"{_cell(entry['memory_vs_full'], 3):>12} {times(entry['growth']) if growth else '':>18}")


def cmd_bench_attention(args: argparse.Namespace) -> int:
    from effstudio.bench.attention import (
        AttentionBenchSettings,
        BenchDoneEvent,
        BenchRowEvent,
        bench_report,
        run_attention_bench,
    )
    from effstudio.engine.events import JobControl, LogEvent

    kinds = () if args.kinds.strip() == "all" else tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    given = {"lengths": tuple(args.lengths) if args.lengths is not None else None, "batch": args.batch,
             "heads": args.heads, "head_dim": args.head_dim, "backward": args.backward, "device": args.device,
             "repeats": args.repeats, "timeout_s": args.timeout, "max_mb": args.max_mb}
    settings = AttentionBenchSettings(kinds=kinds, **{k: v for k, v in given.items() if v is not None})
    settings = settings.resolved()  # a bad kind or value is a usage error before anything runs
    control = JobControl()
    rows: list[BenchRowEvent] = []
    done: BenchDoneEvent | None = None
    print(f"{'kind':<12} {'length':>7} {'ms':>11} {'peak MB':>10}  status", flush=True)
    with _graceful_interrupt(control):
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
    if args.json:
        report = bench_report(settings, rows, done)
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"results written to {args.json}", file=sys.stderr)
    return EXIT_OK


# --------------------------------------------------------------- self-test
def cmd_self_test(argv: Sequence[str]) -> int:
    """`effstudio --self-test [--json] [--no-window]`: the checks of effstudio.selftest, then the window."""
    options = argparse.ArgumentParser(prog="effstudio --self-test")
    options.add_argument("--json", action="store_true", help="one JSON object per check, then a summary")
    options.add_argument("--no-window", action="store_true", help="skip the window check")
    args = options.parse_args(argv)
    from effstudio.selftest import environment, format_check, run_self_test

    info = environment()
    extra = []
    if not args.no_window:
        try:
            from effstudio.gui.selftest import check_window
        except ImportError as err:  # a core-only installation: no window to check
            info["window"] = f"not checked ({err})"
        else:
            extra.append(("main window", check_window))
    if args.json:
        _print_json({"kind": "environment", **info})
    else:
        print("effstudio self-test: " + ", ".join(f"{k} {v}" for k, v in info.items()), flush=True)
    checks = []
    for check in run_self_test(extra=extra):
        checks.append(check)
        if args.json:
            _print_json({"kind": "check", **check.to_json()})
        else:
            print(format_check(check), flush=True)
    failed = [c.name for c in checks if not c.ok]
    seconds = round(sum(c.seconds for c in checks), 2)
    if args.json:
        _print_json({"kind": "summary", "ok": not failed, "checks": len(checks), "failed": failed,
                     "seconds": seconds})
    else:
        verdict = f"FAILED: {', '.join(failed)}" if failed else "all passed"
        print(f"{len(checks) - len(failed)}/{len(checks)} checks passed in {seconds:.1f}s: {verdict}")
    return EXIT_FAILED if failed else EXIT_OK


# ------------------------------------------------------------------ parser
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

    for name, what in (("models", "model types"), ("attention", "attention kinds"), ("tasks", "tasks")):
        listing = commands.add_parser(name, help=f"list registered {what} and their settings")
        listing.add_argument("--json", action="store_true", help="print one JSON object")
        listing.set_defaults(func=cmd_list)

    train = commands.add_parser("train", help="train a model headless (also under torchrun)")
    train.add_argument("--model", help="model type (see `effstudio models`)")
    train.add_argument("--task", help="task (see `effstudio tasks`)")
    train.add_argument("--config", type=Path,
                       help="a run config TOML file; its [[compress]] steps run after training")
    train.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a setting: model.d_model=256, attention.dropout=0.1, train.lr=3e-4, "
                            "or a bare name found in one section (repeatable)")
    train.add_argument("--steps", type=int, help="total optimizer steps (same as --set train.steps=N)")
    train.add_argument("--device", help="auto, cpu, cuda, cuda:1 or mps")
    train.add_argument("--out", type=Path, help="run folder (default: a new folder under the data directory)")
    train.add_argument("--resume", type=Path, metavar="CKPT", help="continue the run saved in this checkpoint")
    train.add_argument("--init", type=Path, metavar="CKPT",
                       help="start a new run from this checkpoint's weights (fine-tune a pruned, quantized or "
                            "distilled model; its model and task settings are kept)")
    train.add_argument("--name", help="the run's name in the run store (default: TASK-ATTENTION-ID)")
    train.add_argument("--no-record", action="store_true",
                       help="do not record the run in the run store (EFFSTUDIO_RECORD_RUNS=0 does the same)")
    train.add_argument("--json", action="store_true", help="one JSON event per line on stdout")
    from effstudio.paths import add_allow_path_option

    add_allow_path_option(train)
    train.set_defaults(func=cmd_train, output_folders=("out",))

    from effstudio.runs.commands import add_runs_parser

    add_runs_parser(commands)

    from effstudio.compress.commands import add_bench_parser, add_compress_parsers

    add_compress_parsers(commands)

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

    gui = commands.add_parser("gui", help="open the window (or save a screenshot of it)")
    gui.add_argument("path", nargs="?", help="a file to open")
    gui.add_argument("--screenshot", type=Path, metavar="FILE.png",
                     help="run a short demo offscreen, save a PNG, exit")
    gui.add_argument("--steps", type=int, default=120, help="demo steps for --screenshot")
    gui.set_defaults(func=cmd_gui, output_files=("screenshot",))

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
    faults.add_argument("--kills", type=_non_negative, default=20, help="kills of the training (default: 20)")
    faults.add_argument("--json", action="store_true", help="print one JSON object")
    faults.set_defaults(func=cmd_bench)
    _add_attention_bench(benches)
    inspect_bench = benches.add_parser("inspect", help="inspector speed and memory on a synthetic safetensors file")
    inspect_bench.add_argument("--size-mb", type=float, default=100, help="file size in MiB (default: 100)")
    inspect_bench.add_argument("--tensors", type=int, default=100, help="number of tensors (default: 100)")
    inspect_bench.add_argument("--dir", type=Path, help="folder for the temporary file (default: the system's)")
    inspect_bench.add_argument("--json", action="store_true", help="print one JSON object")
    inspect_bench.set_defaults(func=cmd_bench_inspect, output_folders=("dir",))
    add_bench_parser(benches)
    return parser


def _add_attention_bench(benches: Any) -> None:
    # options left out keep AttentionBenchSettings' defaults (named in the help), so building
    # the parser does not import the benchmark for every other command
    attention = benches.add_parser(
        "attention", help="time and peak memory of attention kinds against sequence length",
        description="Each case (kind, length) runs in a fresh process: the median time of forward+backward "
                    "after a warm-up, and the peak memory above the process's baseline. A case that runs "
                    "out of memory or time is reported as failed (ok: false), and longer lengths of that "
                    "kind are skipped.")
    attention.add_argument("--kinds", default="all", help="'all' or a comma-separated list (default: all)")
    attention.add_argument("--lengths", type=_comma_list(int),
                           help="comma-separated sequence lengths (default: 1024,2048,4096,8192,16384)")
    attention.add_argument("--batch", type=int, help="batch size (default: 1)")
    attention.add_argument("--heads", type=int, help="attention heads (default: 4)")
    attention.add_argument("--head-dim", type=int, help="width of one head (default: 64)")
    attention.add_argument("--backward", action=argparse.BooleanOptionalAction,
                           help="time forward+backward, or the forward pass only (default: --backward)")
    attention.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: auto, cuda when there is one)")
    attention.add_argument("--repeats", type=int, help="timed runs per case after one warm-up; the median is "
                                                        "reported (default: 3)")
    attention.add_argument("--timeout", type=float, metavar="SECONDS", help="time limit per case (default: 300)")
    attention.add_argument("--max-mb", type=float, help="memory limit per case (default: 80%% of the memory "
                                                       "available at the start)")
    attention.add_argument("--json", type=Path, metavar="FILE", help="write settings, rows and summary as JSON")
    attention.set_defaults(func=cmd_bench_attention, output_files=("json",))


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
        from effstudio.bench.attention_case import main as case_main

        return case_main(argv[2:])
    if argv[:1] == ["--self-test"]:
        return cmd_self_test(argv[1:])
    if not argv or (argv[0] not in COMMANDS and not argv[0].startswith("-")):
        argv = ["gui", *argv]  # `effstudio` and `effstudio FILE` open the window
    args = build_parser().parse_args(argv)
    from effstudio.config import ConfigError
    from effstudio.engine.checkpoint import CheckpointError
    from effstudio.paths import PathError, allow_path, forget_allowed_paths
    from effstudio.registry import UnknownEntryError

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
    from effstudio.paths import check_output_file, check_output_folder, refuse_symlink_loop

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
    import time
    import traceback

    from effstudio.paths import logs_dir

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
