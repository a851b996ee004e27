"""Data benchmark: reading, tokenizing and reloading a textclass CSV of N synthetic rows.

It writes ``rows`` one-paragraph survey notes (about 200 bytes each, from the grammar
of the shipped sample, :func:`effstudio.tasks.sample_documents.short_rows`) as a CSV,
then builds the ``textclass`` task on it twice, with the default settings (byte-level
BPE of 8,000 pieces, 512 tokens) and a cache folder of its own:

- ``load_s``: the first build until it starts on the tokenizer: hashing the file,
  reading every row (checking its text and label) and assigning the splits;
- ``tokenize_s``: the rest of the first build: training the tokenizer on the training
  split, encoding every row and writing the encoded splits to the cache (both passes
  read the file again, in chunks);
- ``cached_load_s``: building the task a second time (tokenizer and encoded splits
  from the cache) and padding its three splits, what a second run waits for;
- ``peak_rss_mb``: the process's peak resident memory, the imports included.

The first build is cut into ``load_s`` and ``tokenize_s`` by the task's progress
reports (:mod:`effstudio.tasks.progress`): loading ends at the first report that is
neither hashing nor reading.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil

from effstudio.tasks.progress import reporting
from effstudio.tasks.sample_documents import short_rows, write_csv
from effstudio.tasks.textclass import TextClassConfig, TextClassTask

MB = 1024 * 1024
LOADING_STAGES = ("hashing", "reading")  # how the task's progress reports of its first pass begin


@contextmanager
def _cache_in(folder: Path) -> Iterator[None]:
    """Keep the task's cache (tokenizer, encoded splits) in ``folder`` while the bench runs."""
    saved = os.environ.get("EFFSTUDIO_CACHE_DIR")
    os.environ["EFFSTUDIO_CACHE_DIR"] = str(folder)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("EFFSTUDIO_CACHE_DIR", None)
        else:
            os.environ["EFFSTUDIO_CACHE_DIR"] = saved


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (the kernel's high-water mark), in MiB."""
    if sys.platform == "win32":
        return psutil.Process().memory_info().peak_wset / MB
    import resource  # not on Windows

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MB if sys.platform == "darwin" else peak * 1024 / MB  # bytes on macOS, KiB elsewhere


def _first_build(config: TextClassConfig) -> tuple[float, float]:
    """(load_s, tokenize_s) of building the task with an empty cache."""
    loaded_at: list[float] = []

    def note(what: str, done: float, total: float | None) -> None:
        if not loaded_at and not what.startswith(LOADING_STAGES):
            loaded_at.append(time.perf_counter())

    started = time.perf_counter()
    with reporting(note):
        TextClassTask(config)
    finished = time.perf_counter()
    loaded = loaded_at[0] if loaded_at else finished
    return loaded - started, finished - loaded


def measure_data(rows: int, folder: Path | None = None, seed: int = 0) -> dict[str, Any]:
    """``{"rows", "file_mb", "load_s", "tokenize_s", "cached_load_s", "peak_rss_mb"}`` for ``rows`` rows."""
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="effstudio-bench-data-", dir=folder) as tmp:
        path = Path(tmp) / "rows.csv"
        write_csv(path, short_rows(rows, seed))
        config = TextClassConfig(path=str(path))
        with _cache_in(Path(tmp) / "cache"):
            load_s, tokenize_s = _first_build(config)
            started = time.perf_counter()
            task = TextClassTask(config)
            for name in ("train", "val", "test"):
                task.split(name)
            cached_load_s = time.perf_counter() - started
        return {"rows": rows, "file_mb": round(path.stat().st_size / MB, 1), "load_s": round(load_s, 2),
                "tokenize_s": round(tokenize_s, 2), "cached_load_s": round(cached_load_s, 2),
                "peak_rss_mb": round(peak_rss_mb(), 1)}
