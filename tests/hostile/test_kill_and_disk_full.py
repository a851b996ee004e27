"""Checkpoints under SIGKILL and a full disk: one consistent unit, the previous one kept, no traceback.

A save is cut at each point of its commit protocol (the folder as a kill there leaves it is
copied aside), its writers and renames fail as on a full disk, a real small tmpfs fills up,
and a training process is SIGKILLed 20 times (``effstudio bench faults``); every time the
newest checkpoint found must be consistent and resume to the losses of an uninterrupted run.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import safetensors
import tomli_w
import torch

from effstudio.bench.faults import SETTINGS, WRITE_POINTS
from effstudio.cli import main
from effstudio.config import ConfigError
from effstudio.engine import checkpoint as ckpt
from effstudio.engine.build import build_model, build_task
from effstudio.engine.events import CheckpointEvent, DoneEvent, LogEvent, StepEvent
from effstudio.engine.run_config import RunConfig
from effstudio.engine.trainer import train
from effstudio.tasks.base import SavedTaskData
from tests.hostile.checkpoint_cases import CASES, make_interrupted_commit, save_pair
from tests.hostile.checkpoint_cases import tiny_config as checkpoint_config

CHECKPOINT = "checkpoint.safetensors"
BEFORE_COMMIT = ("state_write", "state_synced", "weights_write", "weights_synced")


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("EFFSTUDIO_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("EFFSTUDIO_CACHE_DIR", str(root / "cache"))
    monkeypatch.setenv("EFFSTUDIO_RECORD_RUNS", "0")


@pytest.fixture(autouse=True)
def one_thread():
    """Losses compared to 1e-6 between runs: the same number of threads for all of them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(steps: int, **train_settings) -> RunConfig:
    return RunConfig.from_dict({**SETTINGS, "train": {**SETTINGS["train"], "steps": steps, **train_settings}})


def losses(events) -> dict[int, float]:
    return {e.step: e.loss for e in events if isinstance(e, StepEvent)}


def digests(checkpoint: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in (checkpoint, ckpt.state_path(checkpoint)) if p.is_file()}


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".*.tmp"))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict[int, float]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return losses(train(tiny(4), out_dir=tmp_path_factory.mktemp("uninterrupted")))
    finally:
        torch.set_num_threads(threads)


# ------------------------------------------------- the commit protocol, point by point
@pytest.mark.parametrize("point", ckpt.SAVE_POINTS)
def test_a_save_killed_at_each_point_leaves_a_consistent_checkpoint_that_resumes(point, tmp_path, monkeypatch,
                                                                                 uninterrupted):
    run_dir, killed = tmp_path / "run", tmp_path / "killed"

    def kill_here(at: str, file: Path, step: int) -> None:  # the folder as a SIGKILL at this point leaves it
        if (at, step) == (point, 2):
            shutil.copytree(run_dir, killed)
            if at in WRITE_POINTS:  # killed mid-write: half of the file reached the disk
                copy = killed / file.name
                os.truncate(copy, copy.stat().st_size // 2)

    monkeypatch.setattr(ckpt, "fault_hook", kill_here)
    assert losses(train(tiny(4), out_dir=run_dir)) == uninterrupted  # looking did not change the run
    monkeypatch.setattr(ckpt, "fault_hook", None)

    expected = 1 if point in BEFORE_COMMIT else 2
    assert ckpt.resume_point(killed / CHECKPOINT).step == expected
    resumed = list(train(tiny(4), out_dir=killed, resume=killed / CHECKPOINT))
    assert resumed[0].start_step == expected and resumed[-1].status == "finished"
    assert losses(resumed) == pytest.approx({s: uninterrupted[s] for s in range(expected + 1, 5)}, abs=1e-6)
    assert temporaries(killed) == []
    notes = [e.message for e in resumed if isinstance(e, LogEvent)]
    if point == "committed":
        assert any("completed the save of step 2" in note for note in notes), notes
    elif point in BEFORE_COMMIT:
        assert any("temporary file(s) left by an interrupted save" in note for note in notes), notes


def test_a_failing_commit_rename_keeps_the_previous_pair(tmp_path, monkeypatch):
    path = save_pair(tmp_path, 2)
    before = digests(path)

    def failing_replace(src, dst):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(ckpt.CheckpointError) as err:
        save_pair(tmp_path, 3)
    message = str(err.value)
    assert "step 3" in message and "the checkpoint of step 2 is kept" in message and "\n" not in message
    monkeypatch.undo()
    assert digests(path) == before and temporaries(tmp_path) == []
    assert ckpt.resume_point(path).step == 2


def test_a_failing_state_rename_after_the_commit_is_completed_later(tmp_path, monkeypatch):
    path = save_pair(tmp_path, 2)
    real_replace = os.replace

    def state_rename_fails(src, dst):
        if str(dst).endswith(ckpt.STATE_SUFFIX):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", state_rename_fails)
    with pytest.raises(ckpt.CheckpointError, match="step 3 was written .* next save or resume completes it"):
        save_pair(tmp_path, 3)
    monkeypatch.undo()
    point = ckpt.resume_point(path)  # read-only: the state is read under its temporary name
    assert point.step == 3 and point.state_file.name.endswith(".tmp") and point.note is not None
    notes = ckpt.recover(path)
    assert "completed the save of step 3" in notes[0].message
    assert temporaries(tmp_path) == [] and ckpt.resume_point(path).state_file == ckpt.state_path(path)


def test_recover_removes_what_an_interrupted_write_of_a_task_file_left(tmp_path):
    config = checkpoint_config()
    model = build_model(config, build_task(config).spec)
    path = ckpt.save_checkpoint(tmp_path / "checkpoint.safetensors", model, config, 1, None,
                                task_data=SavedTaskData({"effstudio.task.labels": "[]"}, {"tokenizer.json": b"{}"}))
    assert ckpt.task_file_path(path, "tokenizer.json").read_bytes() == b"{}"
    stale = tmp_path / ".checkpoint.tokenizer.json.k1ll3d.tmp"  # a save killed while writing the file
    stale.write_bytes(b"{")
    other = tmp_path / ".notes.txt.abc.tmp"  # not the checkpoint's: left alone
    other.write_bytes(b"x")
    notes = ckpt.recover(path)
    assert not stale.exists() and other.exists()
    assert "removed 1 temporary file(s)" in notes[-1].message


# ------------------------------------------------------------ full disks, injected
def _fail_from_second_call(real, error: Exception):
    calls = []

    def writer(*args, **kwargs):
        calls.append(1)
        if len(calls) < 2:
            return real(*args, **kwargs)
        target = Path(str(args[1]))
        target.write_bytes(b"\0" * 100)  # what the writer got onto the disk before it filled up
        raise error

    return writer


def _failing_fsync_from_step(monkeypatch, step: int):
    armed = []
    real_fsync = os.fsync

    def arm(at: str, file: Path, at_step: int) -> None:
        if at_step == step:
            armed.append(at)

    def fsync(fd):
        if armed:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(ckpt, "fault_hook", arm)
    monkeypatch.setattr(os, "fsync", fsync)


FULL_DISK = {
    "safetensors": lambda mp: mp.setattr(safetensors.torch, "save_model", _fail_from_second_call(
        safetensors.torch.save_model,
        safetensors.SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"))),
    "torch.save": lambda mp: mp.setattr(torch, "save", _fail_from_second_call(
        torch.save, RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"))),
    "fsync": lambda mp: _failing_fsync_from_step(mp, 2),
}


@pytest.mark.parametrize("writer", sorted(FULL_DISK))
def test_a_full_disk_ends_the_run_failed_and_keeps_the_previous_checkpoint(writer, tmp_path, monkeypatch,
                                                                           uninterrupted):
    FULL_DISK[writer](monkeypatch)
    kept: dict[str, str] = {}
    events = []
    for event in train(tiny(4), out_dir=tmp_path):
        events.append(event)
        if isinstance(event, CheckpointEvent):
            kept = digests(Path(event.path))
    monkeypatch.undo()
    path = tmp_path / CHECKPOINT
    errors = [e.message for e in events if isinstance(e, LogEvent) and e.level == "error"]
    done = events[-1]
    assert isinstance(done, DoneEvent) and (done.status, done.steps, done.checkpoint) == ("failed", 2, str(path))
    assert errors == [done.error] and "\n" not in done.error
    assert done.error.startswith(f"could not save the checkpoint of step 2 to {path}: ")
    assert done.error.endswith("; the checkpoint of step 1 is kept")
    if writer != "torch.save":  # torch's own message does not say why; the free space does, on a real full disk
        assert "No space left on device" in done.error
    assert [e.step for e in events if isinstance(e, CheckpointEvent)] == [1]
    assert digests(path) == kept and temporaries(tmp_path) == []
    resumed = list(train(tiny(4), out_dir=tmp_path, resume=path))
    assert resumed[0].start_step == 1 and resumed[-1].status == "finished"
    assert losses(resumed) == pytest.approx({s: uninterrupted[s] for s in (2, 3, 4)}, abs=1e-6)


def test_continue_trains_on_after_a_failed_save_and_saves_again(tmp_path, monkeypatch, uninterrupted):
    real = torch.save
    calls = []

    def fails_once(obj, file, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("file write failed")
        real(obj, file, *args, **kwargs)

    monkeypatch.setattr(torch, "save", fails_once)
    events = list(train(tiny(4, on_save_error="continue"), out_dir=tmp_path))
    errors = [e.message for e in events if isinstance(e, LogEvent) and e.level == "error"]
    assert len(errors) == 1 and "step 2" in errors[0] and "RuntimeError: file write failed" in errors[0]
    assert [e.step for e in events if isinstance(e, CheckpointEvent)] == [1, 3, 4]
    assert events[-1].status == "finished" and losses(events) == uninterrupted
    assert ckpt.resume_point(tmp_path / CHECKPOINT).step == 4


def test_continue_still_fails_when_the_final_checkpoint_cannot_be_written(tmp_path, monkeypatch):
    monkeypatch.setattr(safetensors.torch, "save_model", _fail_from_second_call(
        safetensors.torch.save_model, OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))))
    events = list(train(tiny(3, on_save_error="continue"), out_dir=tmp_path))
    errors = [e.message for e in events if isinstance(e, LogEvent) and e.level == "error"]
    assert len(errors) == 2 and all("No space left on device" in e for e in errors)  # steps 2 and 3
    done = events[-1]
    assert (done.status, done.steps, done.error) == ("failed", 3, errors[-1])
    assert done.checkpoint == str(tmp_path / CHECKPOINT)
    monkeypatch.undo()
    assert ckpt.resume_point(tmp_path / CHECKPOINT).step == 1


def test_on_save_error_is_a_validated_setting(capsys):
    with pytest.raises(ConfigError, match="on_save_error"):
        tiny(3, on_save_error="ignore")
    code = main(["train", "--model", "transformer", "--task", "copy", "--set", "train.on_save_error=later",
                 "--no-record"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "on_save_error" in err


# -------------------------------------------------------- pairs that do not belong together
REFUSALS = {  # what the one-line refusal names: the steps of both halves, or why the state is unusable
    "weights_ahead_of_state": ("weights are at step 3", "is at step 2"),
    "state_ahead_of_weights": ("weights are at step 2", "is at step 3"),
    "state_of_another_save": ("weights are at step 3", "is at step 3", "another save"),
    "state_cut_short": ("weights are at step 3", "unreadable step", "cut short"),
    "state_bytes_flipped": ("weights are at step 3",),
    "pair_token_escapes_folder": ("weights are at step 3", "is at step 3"),
    "weights_without_pair_token": ("weights are at step 3", "is at step 3", "no pair token"),
    "header_step_differs": ("weights are at step 4", "is at step 3"),
    "legacy_state_not_a_dict": ("not an effstudio training state",),
}


@pytest.mark.parametrize("name, make, kind", CASES, ids=[case[0] for case in CASES])
def test_a_pair_that_does_not_belong_together_is_refused(name, make, kind, tmp_path, capsys):
    path = make(tmp_path / "run")
    before = sorted(p.name for p in tmp_path.rglob("*")), digests(path)
    with pytest.raises(ckpt.CheckpointError):
        ckpt.resume_point(path)
    code = main(["train", "--resume", str(path), "--steps", "6", "--json", "--no-record"])
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("effstudio: error: "), err
    assert all(part in lines[0] for part in REFUSALS[name]), lines[0]
    assert '"event": "step"' not in out  # nothing was trained on the pair
    assert (sorted(p.name for p in tmp_path.rglob("*")), digests(path)) == before  # nor anything changed


def test_a_save_interrupted_between_its_renames_resumes_through_the_cli(tmp_path, capsys):
    path = make_interrupted_commit(tmp_path / "run")
    assert ckpt.resume_point(path).step == 3
    code = main(["train", "--resume", str(path), "--steps", "5", "--json", "--no-record"])
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert next(r for r in records if r["event"] == "start")["start_step"] == 3
    assert any(r["event"] == "log" and "completed the save of step 3" in r["message"] for r in records)
    assert [r["step"] for r in records if r["event"] == "step"] == [4, 5]
    assert temporaries(path.parent) == [] and ckpt.resume_point(path).step == 5


def test_stale_temporaries_are_removed_only_when_they_are_ours(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "sub").mkdir(parents=True)
    ours = [".checkpoint.safetensors.4f2e9a.tmp", ".checkpoint.safetensors.k3j_x1.tmp",
            ".checkpoint.state.pt.a1b2c3d4.tmp", ".config.toml.123.tmp"]
    others = [".other.safetensors.1.tmp", ".checkpoint.safetensors.tmp", "checkpoint.safetensors.1.tmp",
              "notes.tmp", ".checkpoint.safetensors.1.tmp.keep", "sub/.checkpoint.safetensors.1.tmp"]
    for name in ours + others:
        (run_dir / name).write_bytes(b"partial")
    events = list(train(tiny(1), out_dir=run_dir))
    assert [n for n in ours if (run_dir / n).exists()] == []
    assert [n for n in others if not (run_dir / n).exists()] == []
    assert any(isinstance(e, LogEvent) and "removed 3 temporary file(s)" in e.message for e in events)
    # and before every save, in a folder written by something else since
    (run_dir / ours[2]).write_bytes(b"partial")
    save_pair(run_dir, 7)
    assert [n for n in ours if (run_dir / n).exists()] == []
    assert [n for n in others if not (run_dir / n).exists()] == []


# --------------------------------------------------------------- a real full disk
@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (as root where mounting works; skipped otherwise)."""
    if os.name != "posix" or os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _pages(size: int) -> int:
    return -(-size // 4096) * 4096  # tmpfs gives whole pages


@pytest.mark.parametrize("room", ["half a state", "a state and half the weights"])
def test_a_real_full_disk_fails_the_run_in_one_line_and_the_previous_checkpoint_resumes(room, small_disk, tmp_path,
                                                                                       capsys):
    config = tmp_path / "run.toml"
    config.write_text(tomli_w.dumps({**SETTINGS, "train": {**SETTINGS["train"], "steps": 6}}), encoding="utf-8")
    train_cli = ["train", "--config", str(config), "--json", "--no-record"]
    assert main([*train_cli, "--steps", "1", "--out", str(tmp_path / "sizes")]) == 0
    capsys.readouterr()
    sizes = {p.name: _pages(p.stat().st_size) for p in (tmp_path / "sizes").iterdir()}
    weights, state = sizes[CHECKPOINT], sizes["checkpoint.state.pt"]
    # room for the first checkpoint, its config and log, and then only for part of the second:
    # torch.save or safetensors runs out of space
    extra = _pages(state // 2) if room == "half a state" else state + _pages(weights // 2)
    free = weights + state + sizes["config.toml"] + sizes["events.jsonl"] + extra
    filler = small_disk / "filler"
    filler.write_bytes(b"\1" * (shutil.disk_usage(small_disk).free - free))

    run_dir = small_disk / "run"
    code = main([*train_cli, "--out", str(run_dir)])
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.splitlines()]
    done = records[-1]
    saved = [r["step"] for r in records if r["event"] == "checkpoint"]
    assert code == 1 and done["event"] == "done" and done["status"] == "failed", err
    assert saved and saved == list(range(1, saved[-1] + 1)) and saved[-1] < 6  # the disk filled before the end
    failed_at = saved[-1] + 1
    assert "\n" not in done["error"] and "No space left on device" in done["error"]
    assert f"step {failed_at}" in done["error"] and f"the checkpoint of step {saved[-1]} is kept" in done["error"]
    assert "Traceback" not in err
    assert done["checkpoint"] == str(run_dir / CHECKPOINT) and temporaries(run_dir) == []
    assert ckpt.resume_point(run_dir / CHECKPOINT).step == saved[-1]

    filler.unlink()  # room again: the kept checkpoint resumes to the end
    assert main(["train", "--resume", str(run_dir / CHECKPOINT), "--json", "--no-record"]) == 0
    resumed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert next(r for r in resumed if r["event"] == "start")["start_step"] == saved[-1]
    assert resumed[-1]["status"] == "finished" and resumed[-1]["steps"] == 6


# ----------------------------------------------------------------------- SIGKILLs
@pytest.mark.skipif(not hasattr(os, "fork") or not hasattr(signal, "SIGKILL"), reason="needs fork and SIGKILL")
def test_twenty_sigkills_during_training_leave_consistent_checkpoints_that_resume_exactly(capsys):
    """The fault bench: 20 kills (10 at the points of the commit protocol, 10 at random moments),
    each followed by a consistency check and a resume compared with an uninterrupted run; then
    the injected full-disk cases."""
    code = main(["bench", "faults", "--kills", "20", "--json"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["problems"] == []
    assert {k: report[k] for k in ("kills", "consistent_after_kill", "resumed_equal", "temporaries_left")} == {
        "kills": 20, "consistent_after_kill": 20, "resumed_equal": 20, "temporaries_left": 0}
    assert report["disk_full_cases"] == report["kept_previous"] == 4
    assert code == 0
