import math

import numpy as np
import pytest
import torch

from effstudio.config import ConfigError
from effstudio.engine.checkpoint import load_train_state, read_info
from effstudio.engine.events import (
    AttentionEvent,
    CheckpointEvent,
    DoneEvent,
    EvalEvent,
    JobControl,
    MemoryEvent,
    StartEvent,
    StepEvent,
)
from effstudio.engine.loading import load_model
from effstudio.engine.run_config import RunConfig
from effstudio.engine.trainer import lr_at, train
from tests.engine.conftest import tiny_listops, train_stopped_at


def run(config, **kwargs):
    return list(train(config, **kwargs))


def losses(events):
    return [e.loss for e in events if isinstance(e, StepEvent)]


def test_event_stream_shape(tmp_path):
    events = run(tiny_listops(), out_dir=tmp_path)
    assert isinstance(events[0], StartEvent)
    assert isinstance(events[-1], DoneEvent)
    done = events[-1]
    assert done.status == "finished" and done.steps == 12
    steps = [e.step for e in events if isinstance(e, StepEvent)]
    assert steps == list(range(1, 13))
    evals = [e for e in events if isinstance(e, EvalEvent)]
    assert [e.step for e in evals] == [6, 12]
    assert all(0.0 <= e.val_accuracy <= 1.0 and math.isfinite(e.val_loss) for e in evals)
    maps = [e for e in events if isinstance(e, AttentionEvent)]
    assert maps, "attention probes were requested"
    first = maps[0].maps
    assert first.dtype == np.float32 and first.ndim == 4 and first.shape[0] == 1 and first.shape[1] == 2
    assert first.shape[2] == first.shape[3] == len(maps[0].tokens)
    rows = first.sum(-1)  # a CLS token, if the model has one, takes the rest of each row
    assert (rows <= 1.0 + 1e-4).all() and (rows > 0.2).all()
    assert any(isinstance(e, MemoryEvent) and e.rss_mb > 0 for e in events)
    saved = [e for e in events if isinstance(e, CheckpointEvent)]
    assert saved and saved[-1].path == done.checkpoint
    assert (tmp_path / "checkpoint.safetensors").is_file()
    assert (tmp_path / "config.toml").is_file()
    step = next(e for e in events if isinstance(e, StepEvent))
    assert step.tokens_per_s > 0 and step.lr > 0


def test_training_lowers_loss_and_learns_to_copy(tmp_path):
    config = RunConfig.create("transformer", "copy", {
        "model.d_model": 32, "model.layers": 2, "model.heads": 2, "model.dropout": 0.0,
        "task.vocab_size": 6, "task.min_length": 3, "task.max_length": 6, "task.train_size": 512,
        "task.val_size": 64, "train.steps": 80, "train.lr": 3e-3, "train.batch_size": 32,
        "train.warmup_steps": 5, "train.eval_every": 80, "train.device": "cpu",
    })
    events = run(config, out_dir=tmp_path)
    values = losses(events)
    assert np.mean(values[-5:]) < 0.65 * np.mean(values[:5])
    assert events[-1].val_accuracy > 0.45  # chance is 1 in 10 tokens


def test_same_seed_same_losses(tmp_path):
    config = tiny_listops()
    assert losses(run(config, out_dir=tmp_path / "a")) == losses(run(config, out_dir=tmp_path / "b"))


def test_stop_then_resume_equals_one_run(tmp_path):
    config = tiny_listops(**{"train.steps": 10, "train.grad_accum": 2})
    straight = losses(run(config, out_dir=tmp_path / "straight"))

    first = train_stopped_at(config, 4, tmp_path / "split")
    done = first[-1]
    assert done.status == "stopped" and done.steps == 4
    assert load_train_state(tmp_path / "split" / "checkpoint.safetensors")["step"] == 4

    second = run(config, out_dir=tmp_path / "split", resume=tmp_path / "split" / "checkpoint.safetensors")
    assert second[0].start_step == 4
    combined = losses(first) + losses(second)
    assert combined == pytest.approx(straight, rel=1e-5, abs=1e-6)


def test_resume_refuses_a_different_model(tmp_path):
    run(tiny_listops(**{"train.steps": 2}), out_dir=tmp_path)
    with pytest.raises(ConfigError, match="different model"):
        run(tiny_listops(**{"model.d_model": 64}), resume=tmp_path / "checkpoint.safetensors")


def test_pause_blocks_until_resumed(tmp_path):
    import threading

    control = JobControl()
    events = []
    paused_at = []

    def consume():
        for event in train(tiny_listops(**{"train.steps": 6}), control=control, out_dir=tmp_path):
            events.append(event)
            if isinstance(event, StepEvent) and event.step == 2 and not paused_at:
                control.pause()
                paused_at.append(event.step)

    thread = threading.Thread(target=consume)
    thread.start()
    thread.join(timeout=2.0)
    assert thread.is_alive(), "a paused run must wait"
    assert max(e.step for e in events if isinstance(e, StepEvent)) == 2
    control.resume()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert events[-1].status == "finished" and events[-1].steps == 6


def test_nan_loss_fails_clearly_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    import effstudio.engine.trainer as trainer

    calls = []

    def diverging_loss(output, targets, objective, **options):
        calls.append(1)
        loss = trainer_loss(output, targets, objective, **options)
        return loss * float("nan") if len(calls) > 5 else loss

    trainer_loss = trainer.task_loss
    monkeypatch.setattr(trainer, "task_loss", diverging_loss)
    config = tiny_listops(**{"train.steps": 20, "train.checkpoint_every": 2})
    events = run(config, out_dir=tmp_path)
    done = events[-1]
    assert done.status == "failed" and done.steps == 5
    assert "loss became nan at step 6" in done.error and "learning rate" in done.error
    assert read_info(tmp_path / "checkpoint.safetensors").step == 4
    model, _, _ = load_model(tmp_path / "checkpoint.safetensors")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_schedule_warmup_then_cosine():
    config = tiny_listops(**{"train.steps": 100, "train.warmup_steps": 10, "train.lr": 1.0,
                             "train.min_lr_ratio": 0.1}).train
    assert lr_at(0, config) == pytest.approx(0.1)
    assert lr_at(9, config) == pytest.approx(1.0)
    assert lr_at(55, config) == pytest.approx(0.55)
    assert lr_at(100, config) == pytest.approx(0.1)


def test_fp16_on_cpu_is_refused():
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        run(tiny_listops(**{"train.precision": "fp16"}))


def test_bf16_autocast_trains_on_cpu(tmp_path):
    events = run(tiny_listops(**{"train.precision": "bf16", "train.steps": 3}), out_dir=tmp_path)
    assert events[-1].status == "finished"
    assert all(math.isfinite(v) for v in losses(events))


def test_dataloader_workers_give_the_same_batches(tmp_path):
    config = tiny_listops(**{"train.steps": 4, "train.attention_every": 0})
    in_thread = losses(run(config, out_dir=tmp_path / "a"))
    with_workers = losses(run(tiny_listops(**{"train.steps": 4, "train.attention_every": 0, "train.num_workers": 2}),
                              out_dir=tmp_path / "b"))
    assert with_workers == pytest.approx(in_thread, rel=1e-6)
