"""A run killed with SIGKILL mid-training: the store stays readable, the run is marked
interrupted when a store is next opened, and its last checkpoint resumes it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from effstudio.cli import main
from effstudio.engine.checkpoint import read_info
from effstudio.runs.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ["--set", "model.d_model=32", "--set", "model.layers=1", "--set", "model.heads=2",
            "--set", "task.train_size=128", "--set", "task.val_size=16", "--set", "task.max_length=8",
            "--set", "train.batch_size=8", "--set", "train.eval_every=1000000", "--set", "train.attention_every=0",
            "--set", "train.checkpoint_every=5", "--set", "train.device=cpu"]


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_run_then_interrupted_then_resumed(tmp_path, capsys):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(
        [sys.executable, "-m", "effstudio", "train", "--model", "transformer", "--task", "copy",
         "--steps", "100000", "--out", str(out), "--json", *SETTINGS],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        run_id = None
        for line in child.stdout:  # wait until the run is recorded and has saved a checkpoint
            record = json.loads(line)
            if record["event"] == "run":
                run_id = record["id"]
            if record["event"] == "checkpoint" and record["step"] >= 10:
                break
        assert run_id is not None
        deadline = time.time() + 20
        with RunStore(recover=False) as store:  # the checkpoint reaches the store within a flush
            while time.time() < deadline:
                recorded = store.last_checkpoint(run_id)
                if recorded is not None and recorded.step >= 10:
                    break
                time.sleep(0.05)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()

    with RunStore() as store:  # opening a store is "the next start"
        assert store.integrity_check() == "ok"
        run = store.get_run(run_id)
        assert run.status == "interrupted" and run.ended_at is not None
        checkpoint = store.last_checkpoint(run_id)
        assert checkpoint is not None and checkpoint.step >= 10
        assert len(store.metrics(run_id)["loss"]) >= 10
        killed_at = run.steps

    # the file is the truth: the run may have saved again (step 15) after the store's last flush (step 10)
    saved = read_info(checkpoint.path).step
    assert saved >= checkpoint.step
    stop = saved + 5
    code = main(["train", "--resume", checkpoint.path, "--steps", str(stop), "--json"])
    assert code == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    steps = [r["step"] for r in records if r["event"] == "step"]
    assert steps == list(range(saved + 1, stop + 1))
    assert next(r for r in records if r["event"] == "run")["id"] == run_id  # the same run goes on
    with RunStore() as store:
        run = store.get_run(run_id)
        assert (run.status, run.steps) == ("finished", stop)
        losses = store.metrics(run_id)["loss"].steps.tolist()
        assert losses == list(range(1, stop + 1))  # steps past the checkpoint were redone, not doubled
        assert killed_at >= checkpoint.step  # what the store saw before the kill
