"""`effstudio train` under torchrun: 2 CPU processes (gloo) train like 1 process with the same global batch.

The same global batch of 16 is split 8 + 8 over the ranks; each micro-batch's loss
is weighted by its share of the step's targets over both ranks, and the logged loss
is the step's mean over all of them, so every step's loss (here of copy, whose
examples differ in length) matches the single-process run up to float rounding.
Only rank 0 prints, records the run and writes the checkpoint. Every task objective
and the final weights: test_distributed_objectives.py.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from effstudio.config import ConfigError
from effstudio.engine.distributed import DistContext
from effstudio.engine.events import EvalEvent, StepEvent
from effstudio.engine.run_config import RunConfig
from effstudio.engine.trainer import train
from effstudio.runs.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
STEPS = 6
SETTINGS = {
    "model.d_model": 32, "model.layers": 1, "model.heads": 2, "model.dropout": 0.0,
    "task.train_size": 256, "task.val_size": 32, "task.min_length": 8, "task.max_length": 40,
    "train.steps": STEPS, "train.batch_size": 16, "train.eval_every": 3, "train.attention_every": 0,
    "train.warmup_steps": 2, "train.device": "cpu",
}


def test_two_gloo_processes_match_one_process(tmp_path):
    config = RunConfig.create("transformer", "copy", SETTINGS)
    single = list(train(config, out_dir=tmp_path / "one"))  # also fills the task cache for the ranks
    single_losses = [e.loss for e in single if isinstance(e, StepEvent)]
    single_evals = [e.val_loss for e in single if isinstance(e, EvalEvent)]

    args = [a for key, value in SETTINGS.items() for a in ("--set", f"{key}={value}")]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "effstudio", "train", "--model", "transformer", "--task", "copy",
         "--out", str(tmp_path / "two"), "--json", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    steps = [r for r in records if r["event"] == "step"]
    assert [r["step"] for r in steps] == list(range(1, STEPS + 1))  # rank 0 only: each step once
    assert [r["loss"] for r in steps] == pytest.approx(single_losses, rel=1e-5)
    assert [r["val_loss"] for r in records if r["event"] == "eval"] == pytest.approx(single_evals, rel=1e-5)
    assert [r["event"] for r in records].count("done") == 1

    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [
        "checkpoint.safetensors", "checkpoint.state.pt", "config.toml", "events.jsonl"]
    with RunStore() as store:
        recorded = [r for r in store.list_runs() if r.run_dir == str(tmp_path / "two")]
        assert len(recorded) == 1
        assert (recorded[0].world_size, recorded[0].status, recorded[0].steps) == (2, "finished", STEPS)


def test_the_global_batch_must_split_evenly_over_processes():
    DistContext(0, 0, 2).check_batch(16, 2)
    DistContext().check_batch(15, 1)  # one process: any batch
    with pytest.raises(ConfigError, match="multiple of 4"):
        DistContext(0, 0, 2).check_batch(18, 2)


def test_compression_steps_after_a_torchrun_training_run_on_rank_0_alone(tmp_path):
    """Rank 0 fine-tunes while pruning after the other rank has left: as a process of its own."""
    from effstudio.engine.run_plan import PruneStep, RunPlan

    config = RunConfig.create("transformer", "listops", SETTINGS)
    plan = RunPlan(config, (PruneStep(prune="heads", amount=0.5, finetune_steps=2, schedule_steps=1),))
    (tmp_path / "plan.toml").write_text(plan.to_toml(), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "effstudio", "train", "--config", str(tmp_path / "plan.toml"), "--out", str(tmp_path / "two"),
         "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["event"] for r in records].count("done") == 1
    result_event = next(r for r in records if r["event"] == "result")
    assert result_event["details"]["finetune_steps"] == 2
    assert Path(result_event["path"]).is_file() and Path(result_event["path"]).parent == tmp_path / "two"
