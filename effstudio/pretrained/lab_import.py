"""A Hugging Face folder opened in the window (dropped, or Inspect's "Open in lab"), imported as a job.

:func:`hugging_face_folder` says whether a path names such a folder (or a weights
file beside its config.json); :func:`import_job` imports it with
:func:`effstudio.pretrained.importer.import_folder` and writes the checkpoint
(tokenizer beside it) under the runs folder, ``imported/<folder name>.safetensors``:
the same folder imported again replaces its checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from effstudio.engine.events import Event, JobControl, LogEvent
from effstudio.paths import runs_dir
from effstudio.pretrained.hf_folder import CONFIG
from effstudio.pretrained.importer import import_folder, save_imported

# the weights files a Hugging Face folder holds (single, sharded with an index, or a pickle)
WEIGHT_PATTERNS = ("model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json",
                   "pytorch_model.bin", "pytorch_model-*-of-*.bin", "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class ImportedEvent(Event):
    """The last event: the checkpoint written, and what the import did."""

    kind: ClassVar[str] = "imported"
    path: str
    architecture: str
    notes: tuple[str, ...]
    warnings: tuple[str, ...]


def hugging_face_folder(path: str | Path) -> Path | None:
    """The Hugging Face folder ``path`` names (a folder with config.json and weights, or one of those weights
    files), else None."""
    path = Path(path)
    if path.is_file() and any(path.match(pattern) for pattern in WEIGHT_PATTERNS):
        folder = path.parent
    elif path.is_dir():
        folder = path
        if not any(any(folder.glob(pattern)) for pattern in WEIGHT_PATTERNS):
            return None
    else:
        return None
    return folder if (folder / CONFIG).is_file() else None


def imported_path(folder: Path) -> Path:
    """Where the window writes the checkpoint imported from ``folder``."""
    return runs_dir() / "imported" / f"{Path(folder).resolve().name or 'imported'}.safetensors"


def import_job(path: str | Path, out: str | Path | None = None,
               control: JobControl | None = None) -> Iterator[Event]:
    """Import the folder ``path`` names and write it to ``out`` (default :func:`imported_path`)."""
    folder = hugging_face_folder(path) or Path(path)
    yield LogEvent("info", f"Importing {folder}")
    imported = import_folder(Path(path))
    for note in imported.notes:
        yield LogEvent("info", note)
    for warning in imported.warnings:
        yield LogEvent("warning", warning)
    if control is not None and control.stop_requested:
        return
    written = save_imported(imported, Path(out) if out is not None else imported_path(folder))
    yield LogEvent("info", f"Wrote {written}")
    yield ImportedEvent(str(written), imported.architecture, tuple(imported.notes), tuple(imported.warnings))
