"""Engine overhead: steps/s of ``train()`` against a bare PyTorch loop.

Both loops train the same model (same seed, same config) on the same task
split with the same batches, optimizer and clipping; the engine adds its events,
schedule, memory readings and checkpointing. Timing starts after a warm-up and
excludes data generation and the final checkpoint.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import torch

from effstudio.engine.build import build_model, build_task
from effstudio.engine.data import MicroBatchIndices, make_batch
from effstudio.engine.events import StepEvent
from effstudio.engine.objective import task_loss
from effstudio.engine.run_config import RunConfig
from effstudio.engine.trainer import make_optimizer, train

WARMUP_STEPS = 10


def bench_config(steps: int) -> RunConfig:
    """A small ListOps model whose steps take milliseconds on a laptop CPU."""
    return RunConfig.create("transformer", "listops", {
        "model.d_model": 64, "model.layers": 2, "model.heads": 4,
        "task.train_size": 2000, "task.val_size": 200, "task.max_length": 128,
        "train.steps": steps + WARMUP_STEPS, "train.batch_size": 16, "train.device": "cpu",
        "train.eval_every": 1_000_000, "train.attention_every": 0,
    })


def bare_steps_per_s(config: RunConfig) -> float:
    torch.manual_seed(config.train.seed)
    task = build_task(config)
    split = task.split("train")
    model = build_model(config, task.spec)
    optimizer = make_optimizer(model, config.train)
    indices = iter(MicroBatchIndices(len(split), config.train.batch_size, 1, config.train.seed))
    model.train()
    start = 0.0
    for step in range(config.train.steps):
        if step == WARMUP_STEPS:
            start = time.perf_counter()
        batch = make_batch(split, next(indices), task.spec.pad_id)
        loss = task_loss(model(batch.inputs, batch.mask), batch.targets, task.spec.objective)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        float(loss.detach())  # the engine reads every loss; so does a bare loop that logs
    return (config.train.steps - WARMUP_STEPS) / (time.perf_counter() - start)


def engine_steps_per_s(config: RunConfig) -> float:
    start = end = 0.0
    with tempfile.TemporaryDirectory() as folder:
        for event in train(config, out_dir=Path(folder)):
            if isinstance(event, StepEvent):
                if event.step == WARMUP_STEPS:
                    start = time.perf_counter()
                elif event.step == config.train.steps:
                    end = time.perf_counter()
    return (config.train.steps - WARMUP_STEPS) / (end - start)


def measure_overhead(steps: int = 200, repeats: int = 3) -> dict[str, float]:
    """Best of ``repeats`` alternating runs of each loop, to damp noise from other processes."""
    config = bench_config(steps)
    build_task(config).split("train")  # generate the data before timing anything
    engine, bare = [], []
    for _ in range(repeats):
        bare.append(bare_steps_per_s(config))
        engine.append(engine_steps_per_s(config))
    engine_best, bare_best = max(engine), max(bare)
    return {"engine_steps_per_s": engine_best, "bare_steps_per_s": bare_best, "ratio": engine_best / bare_best}
