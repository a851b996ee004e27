"""What the commands print: one JSON record per line, and table cells with a dash for no value."""

from __future__ import annotations

import json
from typing import Any


def print_json(record: Any) -> None:
    """One JSON object on one line of stdout, flushed at once for a reader at the other end of a pipe."""
    print(json.dumps(record), flush=True)


def cell(value: float | None, spec: str) -> str:
    """``value`` formatted with the format ``spec`` (".2f"), or "-" when there is none."""
    return "-" if value is None else format(value, spec)
