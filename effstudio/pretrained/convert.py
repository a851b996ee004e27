"""Convert a checkpoint into an efficient one (another attention kind, a longer maximum length), as a job.

:func:`convert_checkpoint` is a generator of events like every long job (the
window's "Make efficient" panel drives it): log lines, then one
:class:`ConvertedEvent`. The output is an ordinary checkpoint with the source's
tokenizer beside it and its header records kept (where it was imported from, a
pruned structure), plus the notes of what was converted, so training,
distillation, compression and comparison all apply to it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from effstudio.config import ConfigError
from effstudio.engine.checkpoint import read_info, save_checkpoint, saved_task_data
from effstudio.engine.events import Event, JobControl, LogEvent
from effstudio.engine.loading import DTYPE_KEY, QUANT_KEY, load_model
from effstudio.models.structure import METADATA_KEY as STRUCTURE_KEY
from effstudio.paths import check_output_file
from effstudio.pretrained.efficient import make_efficient, parameter_count
from effstudio.pretrained.importer import PRETRAINED_SOURCE_KEY

# header entry of a converted checkpoint: what was converted how (a JSON list of notes)
EFFICIENT_KEY = "effstudio.pretrained.efficient"
KEPT_KEYS = (PRETRAINED_SOURCE_KEY, STRUCTURE_KEY)


@dataclass(frozen=True)
class ConvertedEvent(Event):
    """The last event: where the converted checkpoint is, and what changed."""

    kind: ClassVar[str] = "efficient_done"
    path: str
    notes: tuple[str, ...]
    parameters_before: int
    parameters_after: int


def convert_checkpoint(path: str | Path, out: str | Path, *, attention: str | None = None,
                       attention_settings: dict[str, Any] | None = None, max_length: int | None = None,
                       control: JobControl | None = None) -> Iterator[Event]:
    """Read ``path``, convert it (see :func:`effstudio.pretrained.efficient.make_efficient`), write ``out``.

    Bad choices raise one ConfigError before anything is written; a stop before the write writes nothing.
    """
    path, out = Path(path), Path(out)
    check_output_file(out)
    if out.resolve() == path.resolve():
        raise ConfigError("out", f"{out} is the checkpoint being converted; name another file")
    info = read_info(path)
    stored = info.metadata.get(QUANT_KEY) or info.metadata.get(DTYPE_KEY)
    if stored:
        raise ConfigError("checkpoint", f"{path.name} is stored as {stored}; convert the float32 model, "
                                        "then quantize the converted one")
    yield LogEvent("info", f"Reading {path}")
    model, config, _task = load_model(path)
    if control is not None and control.stop_requested:
        return
    efficient = make_efficient(model, config, attention=attention, attention_settings=attention_settings,
                               max_length=max_length)
    for note in efficient.notes:
        yield LogEvent("info", note)
    if control is not None and control.stop_requested:
        return
    extra = {key: info.metadata[key] for key in KEPT_KEYS if key in info.metadata}
    extra[EFFICIENT_KEY] = json.dumps(efficient.notes)
    written = save_checkpoint(out, efficient.model, efficient.config, step=info.step, extra_metadata=extra,
                              task_data=saved_task_data(info))
    yield LogEvent("info", f"Wrote {written}")
    yield ConvertedEvent(str(written), tuple(efficient.notes), parameter_count(model),
                         parameter_count(efficient.model))
