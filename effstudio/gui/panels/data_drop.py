"""Which task and which of its path settings a file or folder dropped on the Data section goes to.

A table (CSV, TSV, JSON Lines) is a text-classification data set, a plain text file
one for character-level language modelling, and a folder of class sub-folders one
for text or image classification by what the sub-folders hold; when that task is not
installed the current task takes the path if it reads one. Anything else (a model
file, a run config) is not data: the window opens it instead.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from effstudio.config import fields_of
from effstudio.registry import Registry

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson")
TEXT_SUFFIXES = (".txt",)
TABLE_TASK, TEXT_TASK, TEXT_FOLDER_TASK, IMAGE_FOLDER_TASK = "textclass", "charlm", "textclass", "imagefolder"
LOOKED_AT = 200  # entries of a dropped folder looked at to tell a data set from anything else


@dataclass(frozen=True)
class DataTarget:
    task: str
    field: str  # the task's path setting that gets the dropped path


def is_table(path: str | Path) -> bool:
    """A file named as a table of texts (never a model file, whatever section it is dropped on)."""
    path = Path(path)
    return path.suffix.lower() in TABLE_SUFFIXES and path.is_file()


def _class_folders(folder: Path) -> list[Path] | None:
    """The sub-folders of a folder that holds only sub-folders (hidden entries aside), else None."""
    entries = [e for e in itertools.islice(folder.iterdir(), LOOKED_AT) if not e.name.startswith(".")]
    if not entries or not all(e.is_dir() for e in entries):
        return None
    return entries


def _holds_text(class_folders: list[Path]) -> bool:
    for folder in class_folders:
        for entry in itertools.islice(folder.iterdir(), LOOKED_AT):
            if entry.suffix.lower() in TEXT_SUFFIXES:
                return True
    return False


def path_field(registry: Registry, task: str, is_folder: bool) -> str | None:
    """The first path setting of ``task`` that takes a folder (``is_folder``) or a file."""
    for spec in fields_of(registry.get("tasks", task).config_cls):
        if spec.path is not None and (spec.path == "file or folder" or (spec.path == "folder") == is_folder):
            return spec.name
    return None


def data_target(registry: Registry, path: str | Path, current: str | None) -> DataTarget | None:
    """Where a dropped ``path`` goes, or None when it is not a data set (or no registered task reads it)."""
    path = Path(path)
    tasks = registry.names("tasks")
    if path.is_dir():
        try:
            classes = _class_folders(path)
            if classes is None:
                return None
            by_content = TEXT_FOLDER_TASK if _holds_text(classes) else IMAGE_FOLDER_TASK
        except OSError:  # unreadable: not something to train on
            return None
        candidates = [by_content, current]
    elif is_table(path):
        candidates = [TABLE_TASK, current]
    elif path.is_file() and path.suffix.lower() in TEXT_SUFFIXES:
        candidates = [TEXT_TASK, current]
    else:
        return None
    for task in candidates:
        if task in tasks:
            field = path_field(registry, task, path.is_dir())
            if field is not None:
                return DataTarget(task, field)
    return None
