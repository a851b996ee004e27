"""Run ``train()`` in a child process and yield its events here, as if it ran in-process.

Why a process: a small model's training step is mostly Python, and every PySide
call on the GUI thread releases and re-takes the GIL, so a training *thread*
makes each repaint wait behind the trainer (on two cores, seconds of lag). A
child process has its own interpreter: the GUI thread stays free and training
runs at full speed. The child also leaves the window one core (its thread
count) and runs at a lower scheduling priority (``CHILD_NICE``), so that on a
machine whose cores are all busy the window's thread still runs first.

:func:`train_in_process` has the trainer's signature, so the GUI's worker drives
it like the real generator: stop/pause/resume requests on its JobControl are
forwarded to the child (within POLL_S), the child's events come back pickled,
a ConfigError in the child is raised here again with its field, and a child that
dies is reported, never waited for forever.

One spare child is kept warm (torch imported, lazy imports done), so Start does
not pay the interpreter start-up; it is replaced after each run.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import sys
import threading
import traceback
from collections.abc import Iterator
from multiprocessing.connection import Connection
from pathlib import Path

from effstudio.config import ConfigError
from effstudio.engine.events import DoneEvent, Event, JobControl
from effstudio.engine.run_config import RunConfig

POLL_S = 0.02
READY_TIMEOUT_S = 300.0
EXIT_TIMEOUT_S = 15.0


class TrainingProcessError(RuntimeError):
    """The child failed outside the trainer's own error handling; ``details`` has its traceback."""

    def __init__(self, message: str, details: str = ""):
        super().__init__(message)
        self.details = details


# ------------------------------------------------------------------ the child
def _listen(conn: Connection, control: JobControl) -> None:
    """Apply the parent's control requests; a vanished parent means stop."""
    while True:
        try:
            message = conn.recv()
        except Exception:  # EOF, a closed handle: the parent is gone or the run is over
            control.stop()
            return
        if message == "stop":
            control.stop()
        elif message == "pause":
            control.pause()
        elif message == "resume":
            control.resume()


CHILD_NICE = 4  # the training child's scheduling priority below the window's (POSIX nice steps; see lower_priority)


def lower_priority(steps: int) -> None:
    """Lower this process's scheduling priority by ``steps`` (0: leave it), so that the window's
    thread wins the cores whenever it has work: the window stays responsive while training uses
    every cycle the window leaves. Windows has no nice levels: "below normal" stands for any step."""
    if steps <= 0:
        return
    try:
        if hasattr(os, "nice"):
            os.nice(steps)
        else:
            import psutil

            psutil.Process().nice(psutil.BELOW_NORMAL_PRIORITY_CLASS)
    except OSError:
        pass  # a priority that cannot be changed leaves training as fast as before


def child_main(conn: Connection, threads: int, nice: int = 0) -> None:
    """The child: warm up, wait for one job, train it, send every event back, exit."""
    lower_priority(nice)
    try:
        import torch

        torch.set_num_threads(max(1, threads))
        from effstudio.engine.trainer import train

        torch.optim.AdamW([torch.zeros(1, requires_grad=True)])  # pulls in the optimizers' lazy imports
        conn.send(("ready",))
        job = conn.recv()
    except (EOFError, OSError, KeyboardInterrupt):
        return
    if job[0] != "train":
        return
    _, data, out_dir, resume, init = job
    control = JobControl()
    threading.Thread(target=_listen, args=(conn, control), daemon=True).start()
    try:
        config = RunConfig.from_dict(data)
        events = train(config, control=control, out_dir=Path(out_dir) if out_dir else None,
                       resume=Path(resume) if resume else None, init=Path(init) if init else None)
        for event in events:
            conn.send(("event", event))
    except ConfigError as err:
        conn.send(("config_error", err.field, err.message))
    except BaseException as err:  # report everything; the parent decides what to show
        conn.send(("error", f"{type(err).__name__}: {err}", traceback.format_exc()))
    finally:
        conn.close()


# ----------------------------------------------------------------- the parent
@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """Keep spawn from re-running the parent's script in the child (the child never needs it).

    A script that opens the window without an ``if __name__ == "__main__"`` guard
    would otherwise start a second window in every training process.
    """
    main = sys.modules.get("__main__")
    saved = {name: main.__dict__[name] for name in ("__spec__", "__file__") if main and name in main.__dict__}
    try:
        if main is not None:
            main.__dict__["__spec__"] = None
            main.__dict__.pop("__file__", None)
        yield
    finally:
        if main is not None:
            main.__dict__.update(saved)
            if "__spec__" not in saved:
                main.__dict__.pop("__spec__", None)


class _Child:
    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child_conn = ctx.Pipe(duplex=True)
        threads = max(1, (os.cpu_count() or 2) - 1)  # leave a core to the GUI
        self.process = ctx.Process(target=child_main, args=(child_conn, threads, CHILD_NICE), daemon=True,
                                   name="effstudio-training")
        with _main_module_hidden():
            self.process.start()
        child_conn.close()
        self.ready = False

    def wait_ready(self, control: JobControl, timeout_s: float) -> bool:
        """Wait for the child's warm-up; False when it died or the run was stopped meanwhile."""
        waited = 0.0
        while not self.ready:
            if control.stop_requested or waited > timeout_s:
                return False
            if self.conn.poll(POLL_S):
                try:
                    self.ready = self.conn.recv() == ("ready",)
                except (EOFError, OSError):
                    return False
            elif not self.process.is_alive():
                return False
            waited += POLL_S
        return True

    def close(self, timeout_s: float = EXIT_TIMEOUT_S) -> None:
        try:
            self.conn.close()
        except OSError:
            pass
        self.process.join(timeout_s)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


_lock = threading.Lock()
_spare: _Child | None = None


def prestart() -> None:
    """Start a warm spare child in the background, if there is none."""
    global _spare
    with _lock:
        if _spare is None or not _spare.process.is_alive():
            _spare = _Child()


def _take() -> _Child:
    global _spare
    with _lock:
        child, _spare = _spare, None
    if child is None or not child.process.is_alive():
        child = _Child()
    return child


@atexit.register
def shutdown_spare() -> None:
    global _spare
    with _lock:
        child, _spare = _spare, None
    if child is not None:
        child.close(timeout_s=2)


def _control_state(control: JobControl) -> str:
    if control.stop_requested:
        return "stop"
    return "pause" if control.paused else "resume"


def train_in_process(
    config: RunConfig,
    *,
    control: JobControl | None = None,
    out_dir: Path | None = None,
    resume: Path | None = None,
    init: Path | None = None,
) -> Iterator[Event]:
    """``train()`` in a child process; same arguments, same events."""
    control = control or JobControl()
    data = config.to_dict()  # check that it serialises before starting anything
    child = _take()
    try:
        if not child.wait_ready(control, READY_TIMEOUT_S):
            if control.stop_requested:
                yield DoneEvent(0, None, None, None, 0.0, "stopped")
                return
            raise TrainingProcessError(f"the training process did not start (exit code {child.process.exitcode})")
        child.conn.send(("train", data, str(out_dir) if out_dir else None, str(resume) if resume else None,
                         str(init) if init else None))
        sent = "resume"
        while True:
            state = _control_state(control)
            if state != sent:
                child.conn.send(state)
                sent = state
            if not child.conn.poll(POLL_S):
                if not child.process.is_alive() and not child.conn.poll(0):
                    raise TrainingProcessError(
                        f"the training process ended unexpectedly (exit code {child.process.exitcode})")
                continue
            try:
                message = child.conn.recv()
            except (EOFError, OSError):
                raise TrainingProcessError(
                    f"the training process ended unexpectedly (exit code {child.process.exitcode})") from None
            kind = message[0]
            if kind == "event":
                yield message[1]
                if isinstance(message[1], DoneEvent):
                    return
            elif kind == "config_error":
                raise ConfigError(message[1], message[2])
            elif kind == "error":
                raise TrainingProcessError(message[1], message[2])
    finally:
        if child.process.is_alive():
            try:
                child.conn.send("stop")
            except OSError:
                pass
        child.close()
        prestart()  # the next run starts warm


def wait_for_spare(timeout_s: float = READY_TIMEOUT_S) -> bool:
    """Start a spare if needed and wait until it has warmed up; False if it could not."""
    prestart()
    with _lock:
        child = _spare
    return child is not None and child.wait_ready(JobControl(), timeout_s)

