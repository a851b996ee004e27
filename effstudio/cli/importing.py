"""`effstudio import PATH`: a Hugging Face folder on disk as an ordinary effstudio checkpoint.

PATH is the folder (config.json beside model.safetensors, pytorch_model.bin or a sharded
index, and the tokenizer files) or a weights file in it. The checkpoint is written to
--out (default: ``<folder name>.safetensors`` here) with its tokenizer beside it.
``--set attention=KIND`` (and ``--set attention.SETTING=VALUE``) and ``--max-length N``
make the model efficient on the way (effstudio.pretrained.efficient): another attention
kind with the same weights, a position table grown by copying. ``--check`` compares the
import with the ``transformers`` implementation on a padded batch and prints the largest
absolute difference of each output (one line saying so when transformers is missing).
Bad input (an unsupported architecture, no config.json, weights that do not fit it, a
missing shard, a maximum length below the model's own) is one line, exit code 2, and
nothing is written.

The importer is imported by the command, not here: it brings torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from effstudio.cli.arg_types import whole
from effstudio.cli.errors import EXIT_FAILED, EXIT_OK
from effstudio.cli.output import print_json
from effstudio.config import ConfigError
from effstudio.messages import print_error


def add_import_parser(commands: argparse._SubParsersAction) -> None:
    command = commands.add_parser(
        "import", help="import a Hugging Face model folder exactly, as an effstudio checkpoint",
        description="Reads config.json, the weights (safetensors, or PyTorch files as plain tensors only; "
                    "sharded checkpoints too) and the tokenizer of a Hugging Face folder on disk (nothing is "
                    "downloaded) and writes an ordinary effstudio checkpoint with its tokenizer beside it. "
                    "Imports bert, roberta, distilbert, electra, albert, gpt2, vit and deit.")
    command.add_argument("path", type=Path, help="the model folder, or a weights file beside its config.json")
    command.add_argument("--out", type=Path, help="the checkpoint to write (default: <folder name>.safetensors)")
    command.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                         help="attention=KIND swaps the attention kind (weights kept); attention.SETTING=VALUE "
                              "sets one of its settings (repeatable)")
    command.add_argument("--max-length", type=whole(1, 1 << 20), metavar="N",
                         help="grow the position table to N tokens by copying (Longformer's recipe)")
    command.add_argument("--check", action="store_true",
                         help="compare with the transformers implementation and print the differences")
    command.add_argument("--json", action="store_true", help="print one JSON object")
    command.set_defaults(func=cmd_import, output_files=("out",))


def efficient_choices(overrides: list[str]) -> tuple[str | None, dict[str, Any]]:
    """(the attention kind, its settings) from ``--set`` items."""
    kind, settings = None, {}
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not value.strip():
            raise ConfigError(item, "expected KEY=VALUE, such as attention=longformer")
        if key in ("attention", "model.attention"):
            kind = value.strip()
        elif key.startswith("attention.") and len(key) > len("attention."):
            settings[key.removeprefix("attention.")] = value
        else:
            raise ConfigError(key, "import --set takes attention=KIND and attention.SETTING=VALUE; other settings "
                                   "change with train --init")
    return kind, settings


def cmd_import(args: argparse.Namespace) -> int:
    from effstudio.pretrained.check import TOLERANCE, compare, load_reference
    from effstudio.pretrained.efficient import make_efficient, parameter_count
    from effstudio.pretrained.importer import import_folder, save_imported

    kind, settings = efficient_choices(args.overrides)
    imported = import_folder(args.path)
    differences = None
    check_problem = None
    if args.check:
        try:
            differences = compare(imported, load_reference(args.path))
        except ConfigError as err:  # transformers is not installed
            check_problem = err.message
    notes = list(imported.notes)
    if kind is not None or settings or args.max_length is not None:
        efficient = make_efficient(imported.model, imported.config, attention=kind, attention_settings=settings,
                                   max_length=args.max_length)
        imported.model, imported.config = efficient.model, efficient.config
        notes += efficient.notes
    out = args.out if args.out is not None else Path(f"{_folder_name(args.path)}.safetensors")
    written = save_imported(imported, out)
    exact = differences is None or all(d.exact for d in differences)
    if args.json:
        record: dict[str, Any] = {
            "architecture": imported.architecture, "model_type": imported.config.model_type,
            "attention": imported.config.attention_kind, "task": imported.config.task_name,
            "out": str(written), "parameters": parameter_count(imported.model), "notes": notes,
            "warnings": imported.warnings,
        }
        if args.check:
            record["check"] = ({"error": check_problem} if check_problem is not None else
                               {d.output: d.max_abs for d in differences} | {"tolerance": TOLERANCE, "exact": exact})
        print_json(record)
    else:
        print(f"{imported.architecture} -> {imported.config.model_type} ({imported.config.attention_kind} "
              f"attention, task {imported.config.task_name}): {parameter_count(imported.model):,} parameters")
        for line in notes:
            print(f"  {line}")
        for line in imported.warnings:
            print(f"  warning: {line}")
        if differences is not None:
            for d in differences:
                verdict = "exact" if d.exact else f"NOT exact (tolerance {TOLERANCE:g})"
                print(f"check {d.output} {list(d.shape)}: max abs difference {d.max_abs:.3g} ({verdict})")
        print(f"wrote {written}")
    if check_problem is not None and not args.json:
        print_error(f"check skipped: {check_problem}")
    return EXIT_OK if exact else EXIT_FAILED


def _folder_name(path: Path) -> str:
    path = Path(path).expanduser().resolve()
    return (path if path.is_dir() else path.parent).name or "imported"
