"""Run store overhead: steps/s of ``train()`` with its events recorded in the run store against without.

The same small model as the engine overhead benchmark (``bench/overhead.py``),
timed the same way: from the step event after a warm-up to the last one. Runs
alternate, off then on, and each ratio reported is the median of the pairs'
ratios, so load from other processes that comes and goes hits both sides of a
pair alike. Two clocks:

- ``ratio``: steps per wall-clock second, store on / off;
- ``cpu_ratio``: steps per CPU-second of the whole process (the recorder's
  writer thread included), store on / off: what recording costs, unaffected
  by other programs competing for the cores.

Torch runs one intra-op thread here, so idle worker threads spinning do not
count as CPU time. The store is a fresh database in a temporary folder, written
as a real run writes it: metrics in batches from the recorder's background
thread. ``recorder_us_per_step`` is the time spent in the recorder on the
training thread for step, eval and memory events (not the one-off start and end).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from effstudio.bench.overhead import WARMUP_STEPS, bench_config
from effstudio.engine.build import build_task
from effstudio.engine.events import DoneEvent, Event, StartEvent, StepEvent
from effstudio.engine.run_config import RunConfig
from effstudio.engine.trainer import train
from effstudio.runs.recorder import RunRecorder
from effstudio.runs.store import RunStore


def _timed(handle: Callable[[Event], list[Event]], spent: list[float]) -> Callable[[Event], list[Event]]:
    def timed(event: Event) -> list[Event]:
        if isinstance(event, (StartEvent, DoneEvent)):
            return handle(event)
        begin = time.perf_counter()
        try:
            return handle(event)
        finally:
            spent[0] += time.perf_counter() - begin

    return timed


def _steps_per_s(config: RunConfig, db: Path | None, spent: list[float]) -> tuple[float, float]:
    """(steps per wall second, steps per process CPU second) of one run, recorded in ``db`` unless None."""
    wall = cpu = (0.0, 0.0)
    with tempfile.TemporaryDirectory() as folder:
        events: Iterator[Event] = train(config, out_dir=Path(folder))
        if db is not None:
            recorder = RunRecorder(config, source="bench", path=db)
            recorder.handle = _timed(recorder.handle, spent)  # type: ignore[method-assign]
            events = recorder.wrap(events)
        for event in events:
            if isinstance(event, StepEvent):
                if event.step == WARMUP_STEPS:
                    wall, cpu = (time.perf_counter(), 0.0), (time.process_time(), 0.0)
                elif event.step == config.train.steps:
                    wall, cpu = (wall[0], time.perf_counter()), (cpu[0], time.process_time())
    steps = config.train.steps - WARMUP_STEPS
    return steps / (wall[1] - wall[0]), steps / (cpu[1] - cpu[0])


def measure_runstore(steps: int = 200, repeats: int = 5) -> dict[str, float | int]:
    config = bench_config(steps)
    build_task(config).split("train")  # generate the data before timing anything
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    on: list[tuple[float, float]] = []
    off: list[tuple[float, float]] = []
    spent = [0.0]
    try:
        with tempfile.TemporaryDirectory() as folder:
            db = Path(folder) / "runs.sqlite"
            _steps_per_s(config, None, spent)  # a first run pays one-off costs (allocator, caches)
            for _ in range(repeats):
                off.append(_steps_per_s(config, None, spent))
                on.append(_steps_per_s(config, db, spent))
            with RunStore(db) as store:
                runs = store.list_runs()
                rows = sum(sum(len(s) for s in store.metrics(r.id).values()) for r in runs)
    finally:
        torch.set_num_threads(threads)
    return {
        "ratio": statistics.median(a[0] / b[0] for a, b in zip(on, off, strict=True)),
        "cpu_ratio": statistics.median(a[1] / b[1] for a, b in zip(on, off, strict=True)),
        "store_on_steps_per_s": statistics.median(a[0] for a in on),
        "store_off_steps_per_s": statistics.median(b[0] for b in off),
        "recorder_us_per_step": 1e6 * spent[0] / (repeats * config.train.steps),
        "steps": steps, "warmup_steps": WARMUP_STEPS, "repeats": repeats, "runs_recorded": len(runs),
        "metric_rows_per_run": rows // max(len(runs), 1),
    }
