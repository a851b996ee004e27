"""`effstudio models | attention | tasks`: the registered entries and their settings."""

from __future__ import annotations

import argparse
import sys

from effstudio.cli.errors import EXIT_OK
from effstudio.cli.output import print_json
from effstudio.registry import Registry, get_registry

LISTINGS = (("models", "model types"), ("attention", "attention kinds"), ("tasks", "tasks"))


def add_listing_parsers(commands: argparse._SubParsersAction) -> None:
    for name, what in LISTINGS:
        listing = commands.add_parser(name, help=f"list registered {what} and their settings")
        listing.add_argument("--json", action="store_true", help="print one JSON object")
        listing.set_defaults(func=cmd_list)


def _report_plugin_errors(registry: Registry) -> None:
    for error in registry.errors:
        print(f"effstudio: plugin {error.name!r} ({error.group}) was skipped: {error.message}", file=sys.stderr)


def cmd_list(args: argparse.Namespace) -> int:
    registry = get_registry()
    _report_plugin_errors(registry)
    entries = registry.all(args.command)  # the command is the registry's kind: models, attention, tasks
    if args.json:
        print_json({"entries": [e.to_json() for e in entries],
                    "plugin_errors": [err.to_json() for err in registry.errors]})
        return EXIT_OK
    for entry in entries:
        print(f"{entry.name:14} {entry.description}")
        for f in entry.fields():
            extra = f" choices: {', '.join(map(str, f.choices))}" if f.choices else ""
            print(f"    {f.name} = {f.default!r:<10} {f.help}{extra}")
    return EXIT_OK
