"""An evaluation kept as a file: ``<model stem>.evaluation.json`` beside the model (or in a folder asked for),
so the run store can list it with its run and the Compare table can show its headline figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from effstudio import read_limits
from effstudio.atomic_file import write_text_atomic
from effstudio.bounded_parse import loads_json
from effstudio.config import ConfigError
from effstudio.evaluate.results import Evaluation

SUFFIX = ".evaluation.json"
HEADLINE = ("accuracy", "macro_f1", "ece", "temperature")  # the figures the Compare table shows


def evaluation_path(model_path: Path, out_dir: Path | None = None) -> Path:
    model_path = Path(model_path)
    return (Path(out_dir) if out_dir is not None else model_path.parent) / f"{model_path.stem}{SUFFIX}"


def write_evaluation(evaluation: Evaluation, path: Path) -> Path:
    """The evaluation's JSON record (the --json keys), written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(evaluation.to_json(), indent=1) + "\n")
    return path


def read_headline(model_path: Path) -> dict[str, Any] | None:
    """The headline figures of the evaluation recorded beside ``model_path``, or None when there is none
    (or it cannot be read: a Compare table then shows dashes)."""
    path = evaluation_path(model_path)
    try:
        if not path.is_file() or path.stat().st_size > read_limits.MAX_JSON_BYTES:
            return None
        record = loads_json(path.read_text(encoding="utf-8"), source=path, field="evaluation")
    except (OSError, UnicodeError, ConfigError):
        return None
    if not isinstance(record, dict):
        return None
    return {key: record.get(key) if isinstance(record.get(key), (int, float)) else None for key in HEADLINE}
