"""Faults away from the checkpoint's own writes: two writers in one run folder, a torn event log,
config.toml and compression outputs on a full disk, training states of another version, Ctrl+C
in the middle of a save. Nothing is lost, nothing is left inconsistent, no traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

from effstudio.bench.faults import SETTINGS
from effstudio.cli import main
from effstudio.engine import checkpoint as ckpt
from effstudio.engine.run_lock import LOCK_NAME, RunFolderBusy, RunFolderLock
from effstudio.engine.trainer import CHECKPOINT_NAME
from tests.hostile import faults_cases
from tests.hostile.checkpoint_cases import save_pair
from tests.hostile.test_kill_and_disk_full import small_disk  # noqa: F401  (a fixture: a 1 MiB tmpfs)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("EFFSTUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EFFSTUDIO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("EFFSTUDIO_RECORD_RUNS", "0")


def run_config(folder: Path, steps: int, compress: list[dict] | None = None) -> Path:
    path = folder / "run.toml"
    data = {**SETTINGS, "train": {**SETTINGS["train"], "steps": steps}}
    if compress:
        data["compress"] = compress
    path.write_text(tomli_w.dumps(data), encoding="utf-8")
    return path


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("effstudio: error")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------- one writer per run folder
HOLDER = """
import sys, time
from pathlib import Path
from effstudio.engine.run_lock import RunFolderLock
lock = RunFolderLock.acquire(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path):
    """Start a process that holds a run folder's lock (as a run training there would); yield (folder, process)."""
    folder = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], env=env, stdout=subprocess.PIPE,
                               text=True)
    try:
        assert process.stdout.readline().strip() == "held"
        yield folder, process
    finally:
        process.kill()
        process.wait()


def test_a_second_run_into_a_folder_in_use_is_refused_and_a_killed_holder_blocks_nothing(holder, tmp_path,
                                                                                          capsys):
    folder, process = holder
    # what the running one is writing: a save in progress, which a second run's clean-up would remove
    in_progress = folder / f".{CHECKPOINT_NAME}.0123456789abcdef.tmp"
    in_progress.write_bytes(b"half a save")
    config = run_config(tmp_path, 2)
    assert main(["train", "--config", str(config), "--out", str(folder), "--no-record"]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert f"in use by process {process.pid}" in line and str(folder) in line
    assert in_progress.read_bytes() == b"half a save"
    assert not (folder / CHECKPOINT_NAME).exists() and not (folder / "events.jsonl").exists()

    process.send_signal(signal.SIGKILL)  # the holder dies without letting go: its lock file stays
    process.wait()
    assert (folder / LOCK_NAME).exists()
    assert main(["train", "--config", str(config), "--out", str(folder), "--no-record", "--json"]) == 0
    capsys.readouterr()
    assert ckpt.resume_point(folder / CHECKPOINT_NAME).step == 2
    assert not (folder / LOCK_NAME).exists()  # let go at the end, file and all


def test_resuming_a_run_that_is_still_training_is_refused(tmp_path, capsys):
    folder = tmp_path / "run"
    path = save_pair(folder, 2)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    with RunFolderLock.acquire(folder):  # the run still trains there (this process holds it)
        assert main(["train", "--resume", str(path), "--steps", "4", "--no-record"]) == 2
        assert f"in use by process {os.getpid()}" in one_line_error(capsys.readouterr().err)
        with pytest.raises(RunFolderBusy):
            RunFolderLock.acquire(folder)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert main(["train", "--resume", str(path), "--steps", "4", "--no-record", "--json"]) == 0


def test_compression_steps_do_not_run_on_a_folder_another_run_took_after_training(tmp_path, monkeypatch, capsys):
    import effstudio.engine.trainer as trainer

    config = run_config(tmp_path, 2, [{"method": "quantize", "quantize": "fp16", "out": "half.safetensors"}])
    folder, taken, real_train = tmp_path / "run", [], trainer.train

    def train_then_another_run_starts(*args, **kwargs):
        yield from real_train(*args, **kwargs)
        taken.append(RunFolderLock.acquire(folder))  # between the training and its steps

    monkeypatch.setattr(trainer, "train", train_then_another_run_starts)
    try:
        assert main(["train", "--config", str(config), "--out", str(folder), "--no-record"]) == 1
    finally:
        for lock in taken:
            lock.release()
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    line = next(line for line in captured.out.splitlines() if "compression steps failed" in line)
    assert "compression steps did not run" in line and f"in use by process {os.getpid()}" in line
    assert not (folder / "half.safetensors").exists()


def test_a_lock_file_of_another_kind_still_gives_one_line(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK_NAME).write_text("[" * 5000, encoding="utf-8")  # not a description: too deep to parse
    with RunFolderLock.acquire(folder):
        with pytest.raises(RunFolderBusy, match="in use by"):
            RunFolderLock.acquire(folder)


def test_a_new_run_into_a_folder_that_holds_another_runs_checkpoint_is_refused(tmp_path, capsys):
    folder, other = tmp_path / "run", tmp_path / "other"
    path, other_path = save_pair(folder, 2), save_pair(other, 3)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    config = run_config(tmp_path, 2)
    for command in (["--config", str(config)], ["--init", str(path)], ["--resume", str(other_path), "--steps", "4"]):
        assert main(["train", *command, "--out", str(folder), "--no-record"]) == 2
        line = one_line_error(capsys.readouterr().err)
        assert "already holds the checkpoint of another run" in line and f"--resume {path}" in line
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert main(["train", "--resume", str(path), "--steps", "3", "--out", str(folder), "--no-record"]) == 0
    # a resume refused after the lock was taken leaves no empty folder behind
    damaged = save_pair(tmp_path / "damaged", 2)
    ckpt.state_path(damaged).write_bytes(b"cut short")
    assert main(["train", "--resume", str(damaged), "--steps", "4", "--out", str(tmp_path / "new"),
                 "--no-record"]) == 2
    assert "cannot resume" in one_line_error(capsys.readouterr().err) and not (tmp_path / "new").exists()


@pytest.mark.skipif(os.name != "posix", reason="fcntl locks")
def test_a_file_system_without_locks_still_trains(tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with RunFolderLock.acquire(tmp_path / "run"):
        pass
    assert list((tmp_path / "run").iterdir()) == []


# ----------------------------------------------------------------------- the event log
def test_a_torn_last_line_of_the_event_log_does_not_swallow_the_resumed_run(tmp_path, capsys):
    folder = tmp_path / "run"
    config = run_config(tmp_path, 2)
    assert main(["train", "--config", str(config), "--out", str(folder), "--no-record", "--json"]) == 0
    log = folder / "events.jsonl"
    log.write_bytes(log.read_bytes()[:-30])  # killed while writing its last record
    assert main(["train", "--resume", str(folder / CHECKPOINT_NAME), "--steps", "4", "--no-record",
                 "--json"]) == 0
    capsys.readouterr()
    lines = log.read_text(encoding="utf-8").splitlines()
    parsed = []
    for line in lines[:-1]:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            parsed.append(None)
    parsed.append(json.loads(lines[-1]))
    assert parsed.count(None) == 1  # the torn line alone, not the resumed run's first record with it
    assert [r["start_step"] for r in parsed if r and r["event"] == "start"] == [0, 2]

    assert main(["runs", "import", str(folder), "--json"]) == 0
    run_id = json.loads(capsys.readouterr().out)["id"]
    assert main(["runs", "show", str(run_id), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["status"], shown["steps"], shown["metrics"]["loss"]["count"]) == ("finished", 4, 4)


# ------------------------------------------------------------ config.toml, compression
def test_a_config_toml_that_cannot_be_written_keeps_the_whole_old_file(tmp_path, monkeypatch):
    from effstudio.engine.run_config import write_text_atomic

    path = tmp_path / "config.toml"
    path.write_text("old = 1\n", encoding="utf-8")

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError):
        write_text_atomic(path, "new = 2\n" * 1000)
    monkeypatch.undo()
    assert path.read_text(encoding="utf-8") == "old = 1\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]


def test_a_full_disk_during_a_compression_step_keeps_the_trained_run(small_disk, tmp_path, monkeypatch,  # noqa: F811
                                                                     capsys):
    import effstudio.pipeline as pipeline

    config = run_config(tmp_path, 2, [{"method": "quantize", "quantize": "fp16", "out": "half.safetensors"}])
    folder = small_disk / "run"
    steps_after_training = pipeline.steps_after_training
    trained = {}

    def fill_the_disk_first(*args, **kwargs):  # the disk fills up once training is over
        names = ("config.toml", CHECKPOINT_NAME, ckpt.state_path(folder / CHECKPOINT_NAME).name)
        trained.update({name: (folder / name).read_bytes() for name in names})
        (small_disk / "filler").write_bytes(b"\1" * shutil.disk_usage(small_disk).free)
        yield from steps_after_training(*args, **kwargs)

    monkeypatch.setattr(pipeline, "steps_after_training", fill_the_disk_first)
    code = main(["train", "--config", str(config), "--out", str(folder), "--no-record"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err, err
    failed = [line for line in err.splitlines() if "compress[1]" in line and "failed" in line]
    assert len(failed) == 1 and "No space left on device" in failed[0], err
    # the trained checkpoint and the run's config.toml are whole (rewriting it as the plan failed)
    assert {name: (folder / name).read_bytes() for name in trained} == trained
    assert ckpt.resume_point(folder / CHECKPOINT_NAME).step == 2
    assert not (folder / "half.safetensors").exists() and list(folder.glob(".*.tmp")) == []


# ---------------------------------------------------------------- training states on resume
@pytest.mark.parametrize(("name", "make", "kind"), faults_cases.CASES, ids=[c[0] for c in faults_cases.CASES])
def test_a_training_state_that_does_not_fit_is_refused_in_one_line(name, make, kind, tmp_path, capsys):
    path = make(tmp_path)
    assert main(["train", "--resume", str(path), "--steps", "4", "--no-record"]) == 2
    line = one_line_error(capsys.readouterr().err)
    assert f"cannot resume from {path}" in line and "--init" in line


# ---------------------------------------------------------------- Ctrl+C during a save
def test_ctrl_c_in_the_middle_of_a_save_keeps_the_previous_pair(tmp_path, monkeypatch):
    path = save_pair(tmp_path, 2)

    def interrupt(point, file, step):
        if point == "weights_write":
            raise KeyboardInterrupt

    monkeypatch.setattr(ckpt, "fault_hook", interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_pair(tmp_path, 3)
    monkeypatch.setattr(ckpt, "fault_hook", None)
    assert ckpt.resume_point(path).step == 2 and list(tmp_path.glob(".*.tmp")) == []


def test_ctrl_c_right_after_the_commit_rename_keeps_the_new_pair(tmp_path, monkeypatch):
    """The signal handler runs as the rename returns, before the save notes that it committed."""
    path = save_pair(tmp_path, 2)
    replace = os.replace

    def rename_then_interrupt(src, dst):
        replace(src, dst)
        if Path(dst) == path:
            raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", rename_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        save_pair(tmp_path, 3)
    monkeypatch.undo()
    assert ckpt.resume_point(path).step == 3  # its state, still under the temporary name, completes it
    ckpt.recover(path)
    assert ckpt.resume_point(path).step == 3 and list(tmp_path.glob(".*.tmp")) == []


# ------------------------------------------------------- fine-tunes of prune and distill
@pytest.mark.parametrize("command", [
    ["prune", "--method", "heads", "--amount", "0.5", "--finetune-steps", "4"],
    ["distill", "--student-model", "transformer", "--steps", "2"],
])
def test_a_fine_tune_writes_nothing_but_its_output(command, small_disk, tmp_path, monkeypatch,  # noqa: F811
                                                   capsys):
    """The model being fine-tuned is kept in memory: a full temporary folder fails nothing, and a
    kill leaves no checkpoints of it behind there."""
    import tempfile

    checkpoint = save_pair(tmp_path / "trained", 2)
    (small_disk / "filler").write_bytes(b"\1" * shutil.disk_usage(small_disk).free)
    monkeypatch.setattr(tempfile, "tempdir", str(small_disk))
    source = ["--teacher", str(checkpoint)] if command[0] == "distill" else [str(checkpoint)]
    out = tmp_path / "out.safetensors"
    assert main([command[0], *source, *command[1:], "--out", str(out)]) == 0, capsys.readouterr().err
    assert out.is_file() and sorted(p.name for p in small_disk.iterdir()) == ["filler"]


# ---------------------------------------------------------------------- the run store
def test_the_run_store_can_be_read_while_another_process_holds_its_write_lock(tmp_path, monkeypatch, capsys):
    import sqlite3

    import effstudio.runs.store as store

    config = run_config(tmp_path, 2)
    monkeypatch.setenv("EFFSTUDIO_RECORD_RUNS", "1")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run"), "--json"]) == 0
    capsys.readouterr()
    monkeypatch.setattr(store, "BUSY_TIMEOUT_S", 1.0)  # a wait for the lock fails fast instead of hanging
    writer = sqlite3.connect(str(store.default_path()), isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # a long import, a database browser...
        assert main(["runs", "list", "--json"]) == 0, capsys.readouterr().err
        listed = json.loads(capsys.readouterr().out)["runs"]
        assert [(r["status"], r["steps"]) for r in listed] == [("finished", 2)]
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_settings_edited_by_hand_in_a_run_folder_are_named_when_a_resume_does_not_use_them(tmp_path, capsys):
    folder = tmp_path / "run"
    path = save_pair(folder, 2)
    assert main(["train", "--resume", str(path), "--steps", "3", "--no-record", "--json"]) == 0
    config = folder / "config.toml"
    config.write_text(config.read_text(encoding="utf-8").replace("lr = 0.003", "lr = 0.01"), encoding="utf-8")
    capsys.readouterr()
    assert main(["train", "--resume", str(path), "--steps", "4", "--no-record", "--json"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "train.lr = 0.01" in warnings[0] and "steps" not in warnings[0], warnings
    assert "lr = 0.003" in config.read_text(encoding="utf-8")  # the file says what the run used
