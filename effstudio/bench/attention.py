"""Attention scaling: time and peak memory of every kind against sequence length.

:func:`run_attention_bench` is a generator of events, like training: one
:class:`BenchRowEvent` per (kind, length) case, log lines, then one
:class:`BenchDoneEvent` with a summary. The CLI (``effstudio bench attention``),
the GUI's Benchmark section and the tests all drive it.

Every case runs in a fresh child process (:mod:`effstudio.bench.attention_case`),
one after the other, so each one's peak memory is its own and nothing measured
shares the machine with another case. The parent watches the child: it kills it
when its resident memory passes ``max_mb`` or its time passes ``timeout_s``
(the case is then ``ok: false``, not a crash), and when a stop is requested.
Cases run a kind at a time, its lengths shortest first and one straight after
the other, so the growth of its time with length compares the machine within
seconds, not minutes apart (a shared machine's speed drifts by a third over
minutes); a kind that ran out of memory or time at one length is not tried at
the longer ones.

Each case warms up for half a second, then times calls until a second is
measured (at least ``repeats``); a row has the median call, its quartiles, and
the peak memory of the first call at full length (later calls add only the
allocator's fragmentation).

Besides the registered kinds, a run of every kind measures each kind's
plain-operations floor where one is defined (``performer-floor``, see
:mod:`effstudio.bench.attention_floor`), named in --kinds like a kind.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, ClassVar

import psutil

from effstudio.bench.attention_floor import FLOORS
from effstudio.config import ConfigError, fields_of, param
from effstudio.engine.device import available_devices
from effstudio.engine.events import Event, JobControl, LogEvent
from effstudio.engine.timing import Verdict, ordering_verdict
from effstudio.registry import Registry, get_registry

MB = 1024 * 1024
REFERENCE_LENGTH = 4096  # the summary compares kinds here (when measured)
POLL_S = 0.02


def default_max_mb() -> float:
    """80% of the memory available now: a runaway case is stopped before the machine swaps."""
    return round(0.8 * psutil.virtual_memory().available / MB)


@dataclass(frozen=True)
class AttentionBenchSettings:
    """What to measure. ``kinds`` empty means every registered kind; ``device`` "auto" prefers cuda."""

    # the panel draws kinds as a check list and lengths as text: they are not form fields
    kinds: tuple[str, ...] = field(default=(), metadata={"setting": False})
    lengths: tuple[int, ...] = field(default=(1024, 2048, 4096, 8192, 16384), metadata={"setting": False})
    batch: int = param(1, help="Sequences per call", min=1, max=1024)
    heads: int = param(4, help="Attention heads", min=1, max=256)
    head_dim: int = param(64, label="Head dim", help="Width of one head", min=1, max=1024)
    backward: bool = param(True, help="Time forward and backward passes, or the forward pass only")
    device: str = param("auto", help="auto: cuda when there is one, else cpu")
    causal: bool = param(False, help="Mask future tokens", advanced=True)
    repeats: int = param(3, help="Timed calls per case at least, after half a second of warm-up; more until a "
                                 "second is timed. The median is reported", min=1, max=100)
    timeout_s: float = param(300.0, label="Timeout (s)", help="Time limit per case, child start-up included",
                             advanced=True)
    max_mb: float = field(default_factory=default_max_mb,  # per case: the child's resident memory
                          metadata={"label": "Memory limit (MB)", "advanced": True,
                                    "help": "Memory limit per case (default: 80% of the memory available now)"})

    def resolved(self, registry: Registry | None = None) -> AttentionBenchSettings:
        """These settings with the kinds and the device spelled out and every value checked.

        Raises UnknownEntryError for a kind that is not registered and ConfigError
        for any other bad value.
        """
        registry = registry or get_registry()
        kinds = tuple(dict.fromkeys(self.kinds)) or with_floors(tuple(registry.names("attention")), self.causal)
        for kind in kinds:
            if kind not in FLOORS:
                registry.get("attention", kind)
        if not kinds:
            raise ConfigError("kinds", "no attention kinds are registered")
        if not self.lengths or min(self.lengths) < 1:
            raise ConfigError("lengths", f"give one or more positive lengths, got {list(self.lengths)}")
        for spec in fields_of(type(self)):  # the declared minimums; the maximums are the form's range only
            if spec.min is not None and getattr(self, spec.name) < spec.min:
                raise ConfigError(spec.name, f"must be >= {spec.min}, got {getattr(self, spec.name)}")
        for name in ("timeout_s", "max_mb"):
            if not getattr(self, name) > 0:
                raise ConfigError(name, f"must be > 0, got {getattr(self, name)}")
        lengths = tuple(sorted(set(self.lengths)))
        return dataclasses.replace(self, kinds=kinds, lengths=lengths, device=resolve_device(self.device))

    def to_json(self) -> dict[str, Any]:
        return {name: list(value) if isinstance(value, tuple) else value
                for name, value in dataclasses.asdict(self).items()}


def with_floors(kinds: tuple[str, ...], causal: bool) -> tuple[str, ...]:
    """The kinds, each followed by its plain-operations floor case where it has one (bidirectional only)."""
    floor_of = {kind: floor for floor, kind in FLOORS.items()}
    names = []
    for kind in kinds:
        names.append(kind)
        if kind in floor_of and not causal:
            names.append(floor_of[kind])
    return tuple(names)


def resolve_device(name: str) -> str:
    """"auto" is cuda when there is one, else cpu; a named device must exist (mps is not measured)."""
    available = available_devices()
    if name == "auto":
        return "cuda" if "cuda" in available else "cpu"
    if name.split(":", 1)[0] not in ("cpu", "cuda"):
        raise ConfigError("device", f"the attention benchmark runs on cpu or cuda, not {name!r}")
    if name.split(":", 1)[0] not in available:
        raise ConfigError("device", f"{name!r} is not available here; available: {', '.join(available)}")
    return name


# ------------------------------------------------------------------- events
@dataclass(frozen=True)
class BenchRowEvent(Event):
    """One measured case; ``ms`` (the median call) and ``peak_mb`` are None when it failed, ``error`` says
    why. ``ms_q1`` and ``ms_q3`` are the quartiles of its ``calls`` timed calls: their spread."""

    kind: ClassVar[str] = "bench_row"
    attention: str
    length: int
    ms: float | None
    peak_mb: float | None
    ok: bool
    error: str | None = None
    ms_q1: float | None = None
    ms_q3: float | None = None
    calls: int | None = None

    def row(self) -> dict[str, Any]:
        """The record of ``--json``'s "rows"; its keys are a contract."""
        return {"kind": self.attention, "length": self.length, "ms": self.ms, "peak_mb": self.peak_mb,
                "ok": self.ok, "ms_q1": self.ms_q1, "ms_q3": self.ms_q3, "calls": self.calls}


@dataclass(frozen=True)
class BenchDoneEvent(Event):
    """The last event; ``status`` is "finished" or "stopped"."""

    kind: ClassVar[str] = "bench_done"
    status: str
    seconds: float
    summary: tuple[dict[str, Any], ...]
    timing_holds: bool = True  # False: a longer length measured faster than a shorter one (a busy machine)
    timing_verdict: str = ""


# ------------------------------------------------------------------ summary
def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 3)


def reference_length(lengths: tuple[int, ...]) -> int:
    """REFERENCE_LENGTH when it is measured, else the longest length."""
    return REFERENCE_LENGTH if REFERENCE_LENGTH in lengths else max(lengths)


def summarise(rows: list[BenchRowEvent], lengths: tuple[int, ...]) -> list[dict[str, Any]]:
    """Per kind at the reference length: speed-up against full and sdpa, memory against full,
    and how much its time grows from there to the longest length, with the range its calls' quartiles
    allow (the longest's first quartile over the reference's third, and the other way round). None where
    a case is missing."""
    reference, longest = reference_length(lengths), max(lengths)
    measured = {(r.attention, r.length): r for r in rows if r.ok}
    empty = BenchRowEvent("", 0, None, None, False)
    full, sdpa = measured.get(("full", reference), empty), measured.get(("sdpa", reference), empty)
    summary = []
    for kind in dict.fromkeys(r.attention for r in rows):
        here, far = measured.get((kind, reference), empty), measured.get((kind, longest), empty)
        summary.append({
            "kind": kind,
            "length": reference,
            "ms": here.ms,
            "peak_mb": here.peak_mb,
            "speedup_vs_full": _ratio(full.ms, here.ms),
            "speedup_vs_sdpa": _ratio(sdpa.ms, here.ms),
            "memory_vs_full": _ratio(here.peak_mb, full.peak_mb),
            "longest": longest,
            "growth": _ratio(far.ms, here.ms) if longest > reference else None,
            "growth_range": _growth_range(here, far) if longest > reference else None,
        })
    return summary


def _growth_range(here: BenchRowEvent, far: BenchRowEvent) -> list[float] | None:
    low, high = _ratio(far.ms_q1, here.ms_q3), _ratio(far.ms_q3, here.ms_q1)
    return None if low is None or high is None else [low, high]


def timing_verdict(rows: Sequence[BenchRowEvent]) -> Verdict:
    """Whether the times hold: no kind measured faster at a longer length than at a shorter one."""
    problems = []
    for kind in dict.fromkeys(r.attention for r in rows):
        series = [(r.length, r.ms) for r in rows if r.attention == kind and r.ok and r.ms is not None]
        verdict = ordering_verdict(series)
        if not verdict.holds:
            problems.append(f"{kind}: {verdict.text}")
    if problems:
        return Verdict(False, "; ".join(problems))
    return Verdict(True, "every kind took longer at longer lengths")


def bench_report(
    settings: AttentionBenchSettings,
    rows: Sequence[BenchRowEvent],
    done: BenchDoneEvent | None,
    *,
    status: str | None = None,
) -> dict[str, Any]:
    """The record that ``bench attention --json`` writes and the GUI saves; its keys are a contract.

    ``status`` defaults to the final event's ("stopped" when the run ended without one).
    """
    return {
        "settings": settings.to_json(),
        "status": status or (done.status if done is not None else "stopped"),
        "rows": [row.row() for row in rows],
        "summary": list(done.summary) if done is not None else [],
        "errors": [{"kind": r.attention, "length": r.length, "error": r.error} for r in rows if not r.ok],
        "timing": {"holds": done.timing_holds, "verdict": done.timing_verdict} if done is not None else None,
    }


# -------------------------------------------------------------- child cases
def case_command(settings: AttentionBenchSettings, kind: str, length: int) -> list[str]:
    """The command line of one case's child process.

    It goes through the `effstudio` CLI, so a frozen app (whose executable is the
    app itself, with no ``-m``) starts the same hidden sub-command as a Python install.
    """
    launcher = [sys.executable] if getattr(sys, "frozen", False) else [sys.executable, "-m", "effstudio"]
    return [
        *launcher, "bench", "attention-case",
        "--kind", kind, "--length", str(length), "--batch", str(settings.batch), "--heads", str(settings.heads),
        "--head-dim", str(settings.head_dim), "--backward" if settings.backward else "--no-backward",
        "--causal" if settings.causal else "--no-causal", "--device", settings.device,
        "--repeats", str(settings.repeats),
    ]


@dataclass(frozen=True)
class CaseOutcome:
    """What one child gave: a row's values, and whether it ran out of memory or time."""

    ms: float | None = None
    peak_mb: float | None = None
    error: str | None = None
    exhausted: bool = False
    stopped: bool = False
    ms_q1: float | None = None
    ms_q3: float | None = None
    calls: int | None = None


def _read_result(stdout: IO[bytes], stderr: IO[bytes], returncode: int) -> CaseOutcome:
    stdout.seek(0)
    lines = [line for line in stdout.read().decode("utf-8", "replace").splitlines() if line.strip()]
    try:
        result = json.loads(lines[-1])
    except (IndexError, ValueError):
        stderr.seek(0)
        tail = [line for line in stderr.read().decode("utf-8", "replace").splitlines() if line.strip()]
        if returncode == -9:  # SIGKILL from outside: on Linux, the system's out-of-memory killer
            return CaseOutcome(error="killed by the system (out of memory?)", exhausted=True)
        reason = f": {tail[-1]}" if tail else ""
        return CaseOutcome(error=f"the case process ended without a result (exit code {returncode}){reason}")
    if result["ok"]:
        return CaseOutcome(ms=round(result["ms"], 3), peak_mb=round(result["peak_mb"], 2),
                           ms_q1=round(result["ms_q1"], 3), ms_q3=round(result["ms_q3"], 3), calls=result["calls"])
    return CaseOutcome(error=result["error"], exhausted=result["out_of_memory"])


def run_case(settings: AttentionBenchSettings, kind: str, length: int, control: JobControl) -> CaseOutcome:
    """Run one case in a child process, watching its memory, its time and the stop request."""
    # files, not pipes: a child that writes a lot of warnings can never block on a full pipe
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        child = subprocess.Popen(case_command(settings, kind, length), stdin=subprocess.DEVNULL,
                                 stdout=stdout, stderr=stderr)
        try:
            watched = psutil.Process(child.pid)
            started = time.monotonic()
            while child.poll() is None:
                if control.stop_requested:
                    return CaseOutcome(stopped=True)
                if time.monotonic() - started > settings.timeout_s:
                    return CaseOutcome(error=f"timed out (> {settings.timeout_s:g} s)", exhausted=True)
                try:
                    rss = watched.memory_info().rss
                except psutil.Error:  # it has just exited
                    rss = 0
                if rss > settings.max_mb * MB:
                    return CaseOutcome(error=f"out of memory (> {settings.max_mb:g} MB)", exhausted=True)
                time.sleep(POLL_S)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
        if control.stop_requested:  # Ctrl+C reaches the child too; it did not fail on its own
            return CaseOutcome(stopped=True)
        return _read_result(stdout, stderr, child.returncode)


# ------------------------------------------------------------------- the job
def case_order(settings: AttentionBenchSettings) -> list[tuple[str, int]]:
    """(kind, length) in the order they run: a kind at a time, its lengths shortest first."""
    return [(kind, length) for kind in settings.kinds for length in settings.lengths]


def run_attention_bench(
    settings: AttentionBenchSettings,
    control: JobControl | None = None,
    registry: Registry | None = None,
) -> Iterator[Event]:
    """Measure every kind at every length; yields log and row events, then a BenchDoneEvent.

    Stop requests are honoured between cases and during one (its child is killed).
    """
    control = control or JobControl()
    registry = registry or get_registry()
    if not settings.kinds:
        for error in registry.errors:
            if error.group == "effstudio.attention":
                yield LogEvent("warning", f"attention kind {error.name!r} is skipped: {error.message}")
    settings = settings.resolved(registry)
    started = time.perf_counter()
    rows: list[BenchRowEvent] = []
    exhausted_at: dict[str, str] = {}  # kind -> why longer lengths are not tried
    order, status = case_order(settings), "finished"
    total = len(order)
    yield LogEvent("info", f"{total} cases on {settings.device}: {', '.join(settings.kinds)} at lengths "
                           f"{', '.join(map(str, settings.lengths))}")
    for kind, length in order:
        control.wait_while_paused()
        if control.stop_requested:
            status = "stopped"
            break
        if kind in exhausted_at:
            row = BenchRowEvent(kind, length, None, None, False, f"skipped: {exhausted_at[kind]}")
        else:
            yield LogEvent("info", f"[{len(rows) + 1}/{total}] {kind} at length {length}")
            outcome = run_case(settings, kind, length, control)
            if outcome.stopped:
                status = "stopped"
                break
            if outcome.exhausted:
                exhausted_at[kind] = f"{outcome.error} at length {length}"
            row = BenchRowEvent(kind, length, outcome.ms, outcome.peak_mb, outcome.error is None, outcome.error,
                                outcome.ms_q1, outcome.ms_q3, outcome.calls)
        rows.append(row)
        yield row
    seconds = time.perf_counter() - started
    verdict = timing_verdict(rows)
    if not verdict.holds:
        yield LogEvent("warning", verdict.text)
    yield BenchDoneEvent(status, seconds, tuple(summarise(rows, settings.lengths)), verdict.holds, verdict.text)
