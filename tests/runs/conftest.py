import pytest

from effstudio.engine.events import (
    CheckpointEvent,
    DoneEvent,
    EvalEvent,
    MemoryEvent,
    StartEvent,
    StepEvent,
)
from effstudio.engine.run_config import RunConfig


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path, tmp_path_factory, monkeypatch):
    """Each test its own data folder (so its own run store); the task cache is shared."""
    monkeypatch.setenv("EFFSTUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EFFSTUDIO_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


TINY = {
    "model.d_model": 32, "model.layers": 1, "model.heads": 2, "model.dropout": 0.0,
    "task.train_size": 128, "task.val_size": 32, "task.test_size": 16, "task.max_length": 8,
    "train.steps": 8, "train.batch_size": 16, "train.eval_every": 4, "train.attention_every": 0,
    "train.warmup_steps": 2, "train.device": "cpu",
}


def tiny_config(**overrides) -> RunConfig:
    return RunConfig.create("transformer", "copy", {**TINY, **overrides})


def fake_events(run_dir, steps=20, eval_every=5, start_step=0, status="finished", checkpoint=None):
    """The event stream of a run, without training anything."""
    yield StartEvent(str(run_dir), "cpu", 1000, steps, start_step)
    for step in range(start_step + 1, steps + 1):
        yield StepEvent(step, steps, 3.0 / step, 1e-3, 1000.0 + step, 100.0, 1.0, 0.01 * step)
        if step % 10 == 0:
            yield MemoryEvent(step, 120.0 + step, "cpu")
        if step % eval_every == 0:
            yield EvalEvent(step, 2.0 / step, min(1.0, 0.05 * step))
    if checkpoint is not None:
        yield CheckpointEvent(steps, str(checkpoint))
    yield DoneEvent(steps, 3.0 / steps, min(1.0, 0.05 * steps), str(checkpoint) if checkpoint else None, 1.0,
                    status)
