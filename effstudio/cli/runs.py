"""`effstudio runs ...`: list, show, export, rename, tag and delete recorded runs.

With ``--json`` each command prints one JSON object (field names are a contract,
see the README). A run is named by its id, or ``last`` for the newest run. A run
that is not there exits with code 2, a store that cannot be read with 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from effstudio.cli.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from effstudio.cli.output import cell, print_json
from effstudio.config import ConfigError
from effstudio.messages import print_error
from effstudio.paths import PathError, add_allow_path_option, check_output_file, check_output_folder

# the run store brings sqlite3 and numpy (half a second), a plan torch: each action imports what it
# uses, so that `effstudio --version` and `--help` do not pay for them
if TYPE_CHECKING:
    from effstudio.runs.store import RunStore


def add_runs_parser(commands: argparse._SubParsersAction) -> None:
    runs = commands.add_parser("runs", help="recorded runs: list, show, export, rename, tag, delete, import",
                               description="Every run, from the window or the command line, is recorded in a "
                                           "SQLite database in the data folder (runs.sqlite).")
    actions = runs.add_subparsers(dest="runs_command", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="runs, newest first")
    listing.add_argument("--status", choices=("running", "finished", "stopped", "failed", "interrupted"))
    listing.add_argument("--tag", help="only runs with this tag")
    listing.add_argument("--model", help="only runs of this model type")
    listing.add_argument("--task", help="only runs on this task")
    listing.add_argument("--limit", type=int, help="at most this many runs")

    show = actions.add_parser("show", help="one run: config, metrics summary, files")
    show.add_argument("id", help="a run id, or 'last'")

    export = actions.add_parser("export", help="a run's metrics as CSV, JSON or TensorBoard event files")
    export.add_argument("id", help="a run id, or 'last'")
    export.add_argument("--format", choices=("csv", "json", "tensorboard"), default="csv")
    export.add_argument("--out", type=Path, help="the file (csv, json; default: stdout) or folder (tensorboard; "
                                                 "default: <data folder>/tensorboard/run-ID-NAME)")

    delete = actions.add_parser("delete", help="delete a run and its files (checkpoints, config, event log)")
    delete.add_argument("id", help="a run id, or 'last'")
    delete.add_argument("--yes", "-y", action="store_true", help="do not ask for confirmation")
    delete.add_argument("--keep-files", action="store_true", help="delete the record only, keep the files")

    rename = actions.add_parser("rename", help="give a run a new name")
    rename.add_argument("id", help="a run id, or 'last'")
    rename.add_argument("name")

    tag = actions.add_parser("tag", help="add (or --remove) tags")
    tag.add_argument("id", help="a run id, or 'last'")
    tag.add_argument("tags", nargs="+", metavar="TAG")
    tag.add_argument("--remove", action="store_true", help="remove these tags instead")

    imported = actions.add_parser("import", help="record a run from its folder (e.g. one trained elsewhere "
                                                 "with --no-record and copied here)")
    imported.add_argument("run_dir", type=Path, help="a run folder with config.toml and events.jsonl")
    imported.add_argument("--name", help="the run's name (default: TASK-ATTENTION-ID)")
    add_allow_path_option(imported)

    for parser in (listing, show, export, delete, rename, tag, imported):
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.set_defaults(func=cmd_runs)


def _error(args: argparse.Namespace, message: str, code: int) -> int:
    if getattr(args, "json", False):
        print_json({"error": message})
    print_error(message)
    return code


def cmd_runs(args: argparse.Namespace) -> int:
    from effstudio.runs.store import RunNotFound, RunStore, RunStoreError

    try:
        with RunStore() as store:
            return _ACTIONS[args.runs_command](store, args)
    except (RunNotFound, ConfigError, PathError) as err:  # bad input: a run id, a file of a run folder
        return _error(args, " ".join(str(err).split()), EXIT_USAGE)
    except RunStoreError as err:
        return _error(args, str(err), EXIT_FAILED)
    except OSError as err:
        return _error(args, f"{err.strerror or err}: {getattr(err, 'filename', '') or ''}".rstrip(": "),
                      EXIT_FAILED)


def _list(store: RunStore, args: argparse.Namespace) -> int:
    runs = store.list_runs(status=args.status, tag=args.tag, model_type=args.model, task=args.task,
                           limit=args.limit)
    if args.json:
        print_json({"runs": [r.summary_json() for r in runs], "store": str(store.path)})
        return EXIT_OK
    if not runs:
        print(f"no runs recorded yet ({store.path})")
        return EXIT_OK
    print(f"{'id':>4}  {'name':<24} {'status':<11} {'model':<12} {'attention':<10} {'task':<9} "
          f"{'steps':>11} {'loss':>8} {'val acc':>8}  started")
    for r in runs:
        steps = f"{r.steps}/{r.total_steps or '?'}"
        started = (r.summary_json()["started_at"] or "")[:16].replace("T", " ")
        tags = f"  [{', '.join(r.tags)}]" if r.tags else ""
        print(f"{r.id:>4}  {r.name[:24]:<24} {r.status:<11} {r.model_type[:12]:<12} {(r.attention or '-')[:10]:<10} "
              f"{r.task[:9]:<9} {steps:>11} {cell(r.final_loss, '.4f'):>8} "
              f"{cell(None if r.val_accuracy is None else 100 * r.val_accuracy, '.1f'):>8}  {started}{tags}")
    return EXIT_OK


def _show(store: RunStore, args: argparse.Namespace) -> int:
    run_id = store.resolve(args.id)
    run = store.get_run(run_id)
    record = run.to_json()
    record["artifacts"] = [a.to_json() for a in store.artifacts(run_id)]
    record["metrics"] = store.metric_summary(run_id)
    if args.json:
        print_json(record)
        return EXIT_OK
    for key in ("id", "name", "status", "model_type", "attention", "task", "device", "world_size", "steps",
                "total_steps", "final_loss", "val_loss", "val_accuracy", "started_at", "ended_at", "duration_s",
                "run_dir", "source", "effstudio_version", "torch_version", "tags", "error"):
        value = record[key]
        if value not in (None, [], ""):
            print(f"{key:>18}: {', '.join(value) if isinstance(value, list) else value}")
    if record["metrics"]:
        print("\nmetrics (count, last, min, max):")
        for name, m in record["metrics"].items():
            print(f"  {name:<18} {m['count']:>6}  {cell(m['last'], '.5g'):>10}  {cell(m['min'], '.5g'):>10}  "
                  f"{cell(m['max'], '.5g'):>10}")
    if record["artifacts"]:
        print("\nfiles:")
        for a in record["artifacts"]:
            missing = "" if a["exists"] else "  (missing)"
            step = f"step {a['step']}: " if a["step"] is not None else ""
            print(f"  {a['kind']:<11} {step}{a['path']}{missing}")
    print(f"\nconfig (effstudio train --config FILE reproduces it; `runs export {run_id} --format json` has it "
          "in full):")
    from effstudio.engine.run_plan import RunPlan

    try:
        print(RunPlan.from_dict(run.config).to_toml().rstrip())
    except Exception:  # a config from a plugin that is gone: show it as recorded
        print(json.dumps(run.config, indent=2))
    return EXIT_OK


def _export(store: RunStore, args: argparse.Namespace) -> int:
    from effstudio.runs import export

    run_id = store.resolve(args.id)
    if args.out is not None:
        (check_output_folder if args.format == "tensorboard" else check_output_file)(args.out)
    if args.format == "tensorboard":
        path = export.write_tensorboard(store, run_id, args.out)
        if args.json:
            print_json({"id": run_id, "format": "tensorboard", "path": str(path), "logdir": str(path.parent)})
        else:
            print(f"wrote {path}\nview it with: tensorboard --logdir {path.parent.parent}")
        return EXIT_OK
    if args.out is None:
        if args.format == "json":
            print_json(export.export_json(store, run_id))
        else:
            export.write_csv(store, run_id, sys.stdout)
        return EXIT_OK
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8", newline="") as handle:
        if args.format == "json":
            json.dump(export.export_json(store, run_id), handle, indent=1)
            handle.write("\n")
        else:
            export.write_csv(store, run_id, handle)
    if args.json:
        print_json({"id": run_id, "format": args.format, "path": str(args.out)})
    else:
        print(f"wrote {args.out}")
    return EXIT_OK


def _delete(store: RunStore, args: argparse.Namespace) -> int:
    run_id = store.resolve(args.id)
    run = store.get_run(run_id)
    files = [] if args.keep_files else store.run_files(run_id)
    if not args.yes:
        if not sys.stdin.isatty():
            return _error(args, "deleting asks for confirmation: add --yes", EXIT_USAGE)
        what = f" and {len(files)} file(s) in {run.run_dir}" if files else ""
        answer = input(f"Delete run {run_id} ({run.name}){what}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return EXIT_OK
    result = store.delete_run(run_id, remove_files=not args.keep_files)
    if args.json:
        print_json({"deleted": run_id, "removed": result.removed, "kept": result.kept})
    else:
        print(f"deleted run {run_id} ({run.name})" + (f" and {len(result.removed)} file(s)" if result.removed else ""))
        for path in result.kept:
            print(f"kept {path}", file=sys.stderr)
    return EXIT_OK


def _rename(store: RunStore, args: argparse.Namespace) -> int:
    run_id = store.resolve(args.id)
    store.rename(run_id, args.name)
    run = store.get_run(run_id)
    if args.json:
        print_json(run.summary_json())
    else:
        print(f"run {run_id} is now called {run.name}")
    return EXIT_OK


def _tag(store: RunStore, args: argparse.Namespace) -> int:
    run_id = store.resolve(args.id)
    tags = store.remove_tags(run_id, args.tags) if args.remove else store.add_tags(run_id, args.tags)
    if args.json:
        print_json({"id": run_id, "tags": tags})
    else:
        print(f"run {run_id} tags: {', '.join(tags) or '(none)'}")
    return EXIT_OK


def _import(store: RunStore, args: argparse.Namespace) -> int:
    from effstudio.runs.recorder import import_run_dir

    run_id = import_run_dir(args.run_dir, path=store.path, name=args.name)
    run = store.get_run(run_id)
    if args.json:
        print_json(run.summary_json())
    else:
        print(f"recorded {args.run_dir} as run {run_id} ({run.name}, {run.status}, {run.steps} steps)")
    return EXIT_OK


_ACTIONS = {"list": _list, "show": _show, "export": _export, "delete": _delete, "rename": _rename, "tag": _tag,
            "import": _import}
