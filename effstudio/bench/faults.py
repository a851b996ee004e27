"""Faults during training: SIGKILLs at random moments and inside each checkpoint write, and full disks.

``effstudio bench faults [--kills N] [--json]`` and the kill test
(tests/hostile/test_kill_and_disk_full.py) run this same driver.

Kills. A tiny model trains in a process of its own with a checkpoint every
step, printing its events as ``effstudio train --json`` does, is SIGKILLed,
resumed from its checkpoint in a new process (as ``train --resume`` does: the
checkpoint's own config, its own folder), killed again, and so on ``kills``
times, then resumed to the end. Every other kill lands at a point of the
checkpoint's commit protocol (``checkpoint.SAVE_POINTS``: inside the state's
and the weights' writes, which then leave half a file, after each fsync,
between the two renames, after both), the others at a random moment of a
random step. After each kill the newest
checkpoint in the run folder must be consistent (``checkpoint.resume_point``
accepts it) and at the step the moment of the kill implies; every resumed
process must compute the same per-step losses as an uninterrupted run (to 1e-6:
dropout off, fixed seed, one thread).

Each training process is forked from a "zygote" process that has imported torch
and effstudio once (and run nothing), so that a kill and a resume cost a fork,
not a Python start-up: 20 kills take seconds.

Full disks. The same model trains in this process with a checkpoint every step,
and the third save fails at one of its write points with the error a full disk
gives there (torch.save's RuntimeError, safetensors' SafetensorError, ENOSPC
from fsync or before the commit rename). The run must end "failed" with a
one-line message, and the checkpoint of step 2 must be kept byte for byte, with
no temporary file left: ``kept_previous`` counts the cases where it was.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from effstudio.engine import checkpoint as ckpt

LOSS_TOLERANCE = 1e-6
# the kills at a named point, in this order, then again (the random ones alternate with them)
KILL_POINTS = ("committed", "weights_write", "state_write", "weights_synced", "completed", "state_synced")
WRITE_POINTS = ("state_write", "weights_write")  # a kill here leaves only a prefix of the file
SETTINGS = {
    "model": {"type": "transformer", "d_model": 16, "layers": 1, "heads": 2, "ff_mult": 2, "dropout": 0.0},
    "attention": {"dropout": 0.0},
    "task": {"name": "copy", "vocab_size": 6, "min_length": 3, "max_length": 6, "train_size": 64,
             "val_size": 8, "test_size": 8},
    "train": {"batch_size": 8, "lr": 3e-3, "warmup_steps": 2, "eval_every": 1_000_000, "attention_every": 0,
              "checkpoint_every": 1, "device": "cpu", "seed": 0},
}
WAIT_S = 120.0  # the longest a training process may take to reach a step on a busy machine


@dataclass
class FaultReport:
    kills: int = 0
    consistent_after_kill: int = 0
    resumed_equal: int = 0
    disk_full_cases: int = 0
    kept_previous: int = 0
    temporaries_left: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def measure_faults(kills: int = 20, folder: Path | None = None, seed: int = 0) -> FaultReport:
    """Run ``kills`` kill-and-resume rounds and the full-disk cases; see the module docstring."""
    if kills < 0:
        raise ValueError("kills must be 0 or more")
    begin = time.perf_counter()
    report = FaultReport()
    with tempfile.TemporaryDirectory(prefix="effstudio-faults-") as scratch:
        work = Path(folder) if folder is not None else Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        run_kills(kills, work / "kills", report, random.Random(seed))
        run_disk_full_cases(work / "disk-full", report)
    report.seconds = round(time.perf_counter() - begin, 1)
    return report


# ------------------------------------------------------------------ kills
@dataclass
class _Segment:
    """One training process: what it trains, its logs and what it printed."""

    config: Path  # the run config of a fresh run
    run_dir: Path
    resume: bool  # continue from the run folder's checkpoint instead
    log: Path
    stderr: Path

    def records(self) -> list[dict[str, Any]]:
        """The JSON records printed so far (a line cut by a kill is left out)."""
        records = []
        for line in self.log.read_text(encoding="utf-8").splitlines(keepends=True):
            if line.endswith("\n"):
                records.append(json.loads(line))
        return records

    def losses(self) -> dict[int, float]:
        return {r["step"]: r["loss"] for r in self.records() if r["event"] == "step"}


def run_kills(kills: int, folder: Path, report: FaultReport, rng: random.Random) -> None:
    """Train, kill, check, resume ``kills`` times, then resume to the end; count into ``report``."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "run.toml"
    steps = 3 * kills + 4  # a kill lands at most 3 steps after the last resume point: all well before the end
    config.write_text(_toml({**SETTINGS, "train": {**SETTINGS["train"], "steps": steps}}), encoding="utf-8")
    run_dir = folder / "run"
    checkpoint = run_dir / "checkpoint.safetensors"
    with _Zygote(folder) as zygote:
        reference = zygote.run(_Segment(config, folder / "reference", False, *_logs(folder, "reference")))
        expected = reference.segment.losses()
        if reference.code != 0 or len(expected) != steps:
            report.problems.append(f"the uninterrupted run failed (exit {reference.code}): {reference.tail()}")
            return
        last = [r for r in reference.segment.records() if r["event"] == "step"][-1]
        step_s = max(last["elapsed_s"] / steps, 1e-3)  # the random kills land within about one step
        found: int | None = None
        for index in range(kills + 1):
            segment = _Segment(config, run_dir, found is not None, *_logs(folder, f"segment-{index:02d}"))
            start = found or 0
            if index == kills:
                outcome = zygote.run(segment)
                if outcome.code != 0:
                    report.problems.append(f"the last resume (from step {start}) exited {outcome.code}: "
                                           f"{outcome.tail()}")
            else:
                point = KILL_POINTS[(index // 2) % len(KILL_POINTS)] if index % 2 == 0 else None
                target = start + rng.randint(1, 3)
                outcome = zygote.kill_during(segment, point, target, step_s, rng)
                report.kills += 1
                found = _check_after_kill(checkpoint, start, point, target, segment, outcome.code, report)
            if index > 0:
                report.resumed_equal += _resumed_equal(segment, start, expected, report)
        report.temporaries_left = len(list(run_dir.glob(".*.tmp")))
        if report.temporaries_left:
            report.problems.append(f"temporary files left in {run_dir}: "
                                   f"{sorted(p.name for p in run_dir.glob('.*.tmp'))}")


def _logs(folder: Path, name: str) -> tuple[Path, Path]:
    return folder / f"{name}.jsonl", folder / f"{name}.stderr"


def _check_after_kill(checkpoint: Path, start: int, point: str | None, target: int, segment: _Segment,
                      code: int, report: FaultReport) -> int | None:
    """The step of the newest consistent checkpoint after a kill (None: none yet); counts it if it is
    consistent and where the kill's moment puts it."""
    where = f"kill at {point or 'a random moment'} of step {target} (resumed from {start})"
    if code != -signal.SIGKILL:
        report.problems.append(f"{where}: the process was not killed (exit {code}): {_tail(segment.stderr)}")
    if not checkpoint.exists():
        found = None
        consistent = not ckpt.state_path(checkpoint).exists()
    else:
        try:
            found = ckpt.resume_point(checkpoint).step
            consistent = True
        except ckpt.CheckpointError as err:
            report.problems.append(f"{where}: the newest checkpoint is not consistent: {err}")
            return None
    if point is not None:  # the save of step `target` was killed: before its commit point, or after
        allowed = {target} if point in ("committed", "completed") else {target - 1}
    else:  # a step is printed before its save: the save of the last printed step may or may not be done
        last = max(segment.losses(), default=start)
        allowed = {last - 1, last} if last > start else {start}
    allowed = {step if step > 0 else None for step in allowed}
    if consistent and found in allowed:
        report.consistent_after_kill += 1
    else:
        report.problems.append(f"{where}: the newest consistent checkpoint is at step {found}, expected "
                               f"{sorted(allowed, key=str)}")
    return found


def _resumed_equal(segment: _Segment, start: int, expected: dict[int, float], report: FaultReport) -> int:
    """1 if a resumed process started at ``start`` and computed the uninterrupted run's losses, else 0."""
    records = segment.records()
    begun = next((r for r in records if r["event"] == "start"), None)
    losses = segment.losses()
    problems = []
    if begun is not None and begun["start_step"] != start:
        problems.append(f"started at step {begun['start_step']}")
    if sorted(losses) != list(range(start + 1, start + 1 + len(losses))):
        problems.append(f"printed steps {sorted(losses)}")
    differ = {s: (v, expected.get(s)) for s, v in losses.items()
              if expected.get(s) is None or abs(v - expected[s]) > LOSS_TOLERANCE}
    if differ:
        problems.append(f"losses differ from the uninterrupted run's (step: resumed, uninterrupted): {differ}")
    if "Traceback" in segment.stderr.read_text(encoding="utf-8", errors="replace"):
        problems.append(f"a traceback on stderr: {_tail(segment.stderr)}")
    for problem in problems:
        report.problems.append(f"{segment.log.stem} (resumed from step {start}): {problem}")
    return 0 if problems else 1


def _toml(tables: dict[str, dict[str, Any]]) -> str:
    import tomli_w

    return tomli_w.dumps(tables)


def _tail(file: Path, lines: int = 3) -> str:
    try:
        text = file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return " | ".join(text.strip().splitlines()[-lines:])


@dataclass
class _Outcome:
    segment: _Segment
    code: int

    def tail(self) -> str:
        return _tail(self.segment.stderr)


class _Zygote:
    """A process that has imported effstudio and forks one training process per segment on request."""

    def __init__(self, folder: Path):
        self.stderr = open(folder / "zygote.stderr", "wb")  # noqa: SIM115  (closed in close())
        env = {**os.environ, "OMP_NUM_THREADS": "1", "EFFSTUDIO_RECORD_RUNS": "0"}
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from effstudio.bench.faults import zygote_main; zygote_main()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.stderr, text=True, env=env)
        self._expect("ready")

    def __enter__(self) -> _Zygote:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.stderr.close()

    def _expect(self, word: str) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline().split()
        if not line or line[0] != word:
            self.process.kill()
            raise RuntimeError(f"the fault bench's zygote process failed: {_tail(Path(self.stderr.name))}")
        return line[1] if len(line) > 1 else ""

    def start(self, segment: _Segment, point: str | None = None, step: int = 0) -> int:
        assert self.process.stdin is not None
        for file in (segment.log, segment.stderr):  # there before the process starts writing them
            file.write_bytes(b"")
        command = {"config": str(segment.config), "run_dir": str(segment.run_dir), "resume": segment.resume,
                   "log": str(segment.log), "stderr": str(segment.stderr), "point": point, "step": step}
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return int(self._expect("pid"))

    def wait(self) -> int:
        return int(self._expect("exit"))

    def run(self, segment: _Segment) -> _Outcome:
        pid = self.start(segment)
        _end_by(pid, time.monotonic() + WAIT_S)
        return _Outcome(segment, self.wait())

    def kill_during(self, segment: _Segment, point: str | None, step: int, step_s: float,
                    rng: random.Random) -> _Outcome:
        """Run ``segment`` and SIGKILL it: at ``point`` of the save of ``step`` (it kills itself there), or,
        without a point, at a random moment of the step after ``step`` is printed."""
        pid = self.start(segment, point, step)
        deadline = time.monotonic() + WAIT_S
        if point is None:
            while max(segment.losses(), default=0) < step and time.monotonic() < deadline and _alive(pid):
                time.sleep(0.002)
            time.sleep(rng.uniform(0.0, step_s))
            deadline = time.monotonic()
        _end_by(pid, deadline)
        return _Outcome(segment, self.wait())


def _end_by(pid: int, deadline: float) -> None:
    """SIGKILL the process ``pid`` at ``deadline`` unless it has ended (a hung process is killed too)."""
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.005)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # it has ended: the zygote reports how


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def zygote_main() -> None:
    """The zygote: import once, then fork a training process per command line read from stdin."""
    import torch  # noqa: F401  (imported here once, for every forked process)
    import torch._dynamo  # noqa: F401  (what the optimizer imports on first use: a second per process otherwise)

    import effstudio.engine.trainer  # noqa: F401
    from effstudio.registry import get_registry

    get_registry()
    print("ready", flush=True)
    for line in iter(sys.stdin.readline, ""):
        command = json.loads(line)
        pid = os.fork()
        if pid == 0:
            _training_process(command)
        print(f"pid {pid}", flush=True)
        _, status = os.waitpid(pid, 0)
        print(f"exit {os.waitstatus_to_exitcode(status)}", flush=True)


def _training_process(command: dict[str, Any]) -> NoReturn:
    """In a forked process: stdout and stderr to the segment's files, the kill point armed, a run trained."""
    code = 70
    try:
        for fd, name in ((1, command["log"]), (2, command["stderr"])):
            os.dup2(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
        import torch

        torch.set_num_threads(1)
        if command["point"] is not None:
            ckpt.fault_hook = _kill_at(command["point"], command["step"])
        code = _train_printing_events(Path(command["config"]), Path(command["run_dir"]), command["resume"])
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _train_printing_events(config_file: Path, run_dir: Path, resume: bool) -> int:
    """Train as ``effstudio train --json`` does, fresh from ``config_file`` or resumed from the run's
    checkpoint with its own config; return the exit code the CLI would."""
    from effstudio.engine.events import DoneEvent
    from effstudio.engine.run_config import RunConfig
    from effstudio.engine.trainer import CHECKPOINT_NAME, train

    checkpoint = run_dir / CHECKPOINT_NAME
    config = ckpt.read_info(checkpoint).config if resume else RunConfig.from_toml(config_file)
    status = None
    for event in train(config, out_dir=run_dir, resume=checkpoint if resume else None):
        if event.kind not in ("memory", "attention"):
            print(json.dumps(event.to_json()), flush=True)
        if isinstance(event, DoneEvent):
            status = event.status
    return 0 if status in ("finished", "stopped") else 1


def _kill_at(point: str, step: int) -> ckpt.FaultHook:
    def hook(at: str, file: Path, at_step: int) -> None:
        if (at, at_step) != (point, step):
            return
        if at in WRITE_POINTS:  # killed mid-write: only a prefix of the file reached the disk
            os.truncate(file, file.stat().st_size // 2)
        os.kill(os.getpid(), signal.SIGKILL)

    return hook


# -------------------------------------------------------------- full disks
def _injected_errors() -> tuple[tuple[str, Callable[[], Exception]], ...]:
    """(write point, the error a full disk raises there): torch.save's on a full tmpfs, safetensors',
    and ENOSPC from a failing fsync or from the folder before the commit rename."""
    from safetensors import SafetensorError

    return (
        ("state_write", lambda: RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")),
        ("weights_write", lambda: SafetensorError("Error while serializing: I/O error: No space left on device "
                                                  "(os error 28)")),
        ("state_synced", lambda: OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))),
        ("weights_synced", lambda: OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))),
    )


def run_disk_full_cases(folder: Path, report: FaultReport, fail_at_step: int = 3) -> None:
    """Each case: train with a checkpoint every step; the save of ``fail_at_step`` fails at a write point."""
    import torch

    from effstudio.engine.events import CheckpointEvent, DoneEvent
    from effstudio.engine.run_config import RunConfig
    from effstudio.engine.trainer import train

    config = RunConfig.from_dict({**SETTINGS, "train": {**SETTINGS["train"], "steps": fail_at_step + 2}})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for point, error in _injected_errors():
            run_dir = folder / point
            checkpoint = run_dir / "checkpoint.safetensors"
            before: dict[str, str] = {}
            ckpt.fault_hook = _fail_at(point, fail_at_step, error, checkpoint, before)
            try:
                events = list(train(config, out_dir=run_dir))
            finally:
                ckpt.fault_hook = None
            report.disk_full_cases += 1
            done = events[-1]
            saved = [e.step for e in events if isinstance(e, CheckpointEvent)]
            problems = []
            if not isinstance(done, DoneEvent) or done.status != "failed" or not done.error:
                problems.append(f"the run ended {getattr(done, 'status', done)!r}, not failed")
            elif "\n" in done.error or f"step {fail_at_step - 1} is kept" not in done.error:
                problems.append(f"message {done.error!r}")
            if saved != list(range(1, fail_at_step)) or getattr(done, "checkpoint", None) != str(checkpoint):
                problems.append(f"checkpoints {saved}, last good {getattr(done, 'checkpoint', None)}")
            problems += _previous_kept(checkpoint, before, fail_at_step - 1)
            for problem in problems:
                report.problems.append(f"full disk at {point}: {problem}")
            report.kept_previous += not problems
    finally:
        torch.set_num_threads(threads)


def _fail_at(point: str, step: int, error: Callable[[], Exception], checkpoint: Path,
             before: dict[str, str]) -> ckpt.FaultHook:
    def hook(at: str, file: Path, at_step: int) -> None:
        if at_step != step:
            return
        if not before:  # the first point of the failing save: the pair it must keep
            before.update(_digests(checkpoint))
        if at == point:
            if at in WRITE_POINTS:  # the disk filled up mid-write
                os.truncate(file, file.stat().st_size // 2)
            raise error()

    return hook


def _digests(checkpoint: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in (checkpoint, ckpt.state_path(checkpoint)) if p.is_file()}


def _previous_kept(checkpoint: Path, before: dict[str, str], step: int) -> list[str]:
    problems = []
    if len(before) != 2 or _digests(checkpoint) != before:
        problems.append("the previous checkpoint's files changed")
    left = sorted(p.name for p in checkpoint.parent.glob(".*.tmp"))
    if left:
        problems.append(f"temporary files left: {left}")
    try:
        if ckpt.resume_point(checkpoint).step != step:
            problems.append(f"the kept checkpoint is not at step {step}")
    except ckpt.CheckpointError as err:
        problems.append(f"the kept checkpoint does not resume: {err}")
    return problems
