"""`effstudio train`: a run config from the options, the training pipeline, its progress on the terminal.

What the run does (train, record, log, compress) is effstudio.pipeline's; this module parses the
options, turns Ctrl+C into a graceful stop, and shows the events: a progress bar and a summary, or
with --json one JSON event per line (memory samples left out; they are in the run's events.jsonl).
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

from effstudio.cli.compress import show_event
from effstudio.cli.errors import EXIT_FAILED, EXIT_OK, UsageError
from effstudio.cli.interrupt import graceful_interrupt
from effstudio.cli.output import print_json
from effstudio.config import ConfigError
from effstudio.engine.run_plan import CompressStep, RunPlan, steps_of_run_folder
from effstudio.paths import add_allow_path_option
from effstudio.tasks.progress import reporting

if TYPE_CHECKING:  # the core brings torch, which `effstudio --version` and `--help` need not load
    from tqdm import tqdm

    from effstudio.engine.events import DoneEvent, Event
    from effstudio.engine.run_config import RunConfig


def add_train_parser(commands: argparse._SubParsersAction) -> None:
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
    add_allow_path_option(train)
    train.set_defaults(func=cmd_train, output_folders=("out",))


def _train_config(args: argparse.Namespace) -> RunConfig:
    from effstudio.engine.checkpoint import read_info  # torch: see the TYPE_CHECKING imports above
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


def cmd_train(args: argparse.Namespace) -> int:
    # the pipeline and the core it drives bring torch: imported when a run starts, not for --help
    from effstudio.compress.steps import CompressDoneEvent
    from effstudio.engine.checkpoint import read_info
    from effstudio.engine.events import JobControl
    from effstudio.engine.trainer import default_run_dir
    from effstudio.pipeline import TRAINING, run_pipeline

    config = _train_config(args)
    steps = _compress_steps(args, args.resume.parent if args.resume else None)
    # a resumed run continues in its own folder unless told otherwise
    out_dir = args.out or (args.resume.parent if args.resume else None)
    if out_dir is None and steps:  # the steps' outputs are checked against the folder they will go in
        out_dir = default_run_dir(config)
    source = args.config or (args.resume.parent / "config.toml" if args.resume else None)
    plan = RunPlan(config, steps).checked(out_dir, source)  # refused before anything is written
    if args.resume:
        _warn_of_unused_edits(args.resume.parent / "config.toml", read_info(args.resume).config, plan.config)
    control = JobControl()
    pipeline = run_pipeline(plan, control=control, out_dir=out_dir, resume=args.resume, init=args.init,
                            source="cli", name=args.name, record=not args.no_record)
    progress: tqdm | None = None
    compressing = False
    compress_status = "failed"  # until the steps' CompressDoneEvent says otherwise
    data_progress = DataProgress()
    with graceful_interrupt(control), closing(iter(pipeline)) as events, reporting(data_progress), \
            closing(data_progress):
        try:
            for event in events:
                if pipeline.stage == TRAINING:
                    if args.json:
                        if event.kind != "memory":
                            print_json(event.to_json())
                    else:
                        progress = _show_progress(event, progress)
                    continue
                if not compressing:  # the training's part is over: its progress bar, then its summary
                    compressing = True
                    progress = _closed(progress)
                    _print_summary(pipeline.done, args.json)
                show_event(event, args.json)
                if isinstance(event, CompressDoneEvent):
                    compress_status = event.status
        finally:
            _closed(progress)
    done = pipeline.done
    if done is None:  # a rank other than 0 of a torchrun job: rank 0 tells
        return EXIT_OK
    if not compressing:
        _print_summary(done, args.json)
    code = EXIT_FAILED if done.status == "failed" else EXIT_OK
    if compressing and done.status == "finished" and done.checkpoint:  # otherwise the steps were skipped
        code = max(code, EXIT_OK if compress_status in ("finished", "stopped") else EXIT_FAILED)
    return code


def _warn_of_unused_edits(path: Path, saved: RunConfig, config: RunConfig) -> None:
    """A resumed run keeps its checkpoint's settings (``saved``), changed only by the command line
    (``config``); name those its folder's config.toml sets otherwise (edited by hand since), before the
    run rewrites the file with the settings it used."""
    from effstudio.engine.run_config import read_toml

    try:
        written = read_toml(path) if path.is_file() else {}
    except ConfigError:
        return  # an unreadable file is kept as it is, with its own warning, when the run saves
    before, used = saved.to_dict(), config.to_dict()
    paths = {*saved.input_paths(), *config.input_paths()}  # "task.path": read as the file means it
    folder = Path(os.path.abspath(path)).parent

    def meant(section: str, key: str, value: object) -> object:
        if f"{section}.{key}" not in paths or not isinstance(value, str) or not value:
            return value
        return os.path.normpath(folder / Path(value).expanduser())  # as RunConfig.from_toml reads it

    edits = [f"{section}.{key} = {value!r}" for section, values in written.items()
             if isinstance(values, dict) and isinstance(used.get(section), dict)
             for key, value in values.items()
             if key in used[section] and meant(section, key, value) not in (
                 used[section][key], before.get(section, {}).get(key))]
    if edits:
        shown = ", ".join(edits[:5]) + (f" and {len(edits) - 5} more" if len(edits) > 5 else "")
        print(f"effstudio: warning: {path} sets {shown}, which this resumed run does not use: it continues "
              f"with its checkpoint's settings (change train.* with --set) and rewrites {path.name} with them",
              file=sys.stderr)


def _compress_steps(args: argparse.Namespace, out_dir: Path | None) -> tuple[CompressStep, ...]:
    """The ``[[compress]]`` steps of ``--config``, or of the resumed run's folder; none otherwise."""
    if getattr(args, "config", None):
        return RunPlan.from_toml(args.config).compress
    if args.resume and out_dir is not None:
        return steps_of_run_folder(out_dir)
    return ()


def _show_progress(event: Event, progress: tqdm | None) -> tqdm | None:
    from tqdm import tqdm  # only a run that shows a progress bar pays for it

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


class DataProgress:
    """A tqdm bar on stderr for each data step a task reports (hashing, reading, tokenizing its files)."""

    def __init__(self) -> None:
        self.what: str | None = None
        self.bar: tqdm | None = None

    def __call__(self, what: str, done: float, total: float | None) -> None:
        from tqdm import tqdm

        if what != self.what:
            self.close()
            self.what = what
            self.bar = tqdm(total=total, desc=what, unit="B", unit_scale=True, file=sys.stderr, leave=False,
                            disable=None, dynamic_ncols=True)
        if self.bar is not None:
            self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.what, self.bar = None, None


def _closed(progress: tqdm | None) -> None:
    if progress is not None:
        progress.close()


def _print_summary(done: DoneEvent | None, as_json: bool) -> None:
    """The run's outcome in a line or two (with --json, the done event has said it)."""
    if done is None or as_json:
        return
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
