"""Evaluation throughput against training throughput of the same model on the same examples.

A ListOps `transformer` (untrained: speed does not depend on the weights) reads the same examples in two
ways, alternately, ``repeats`` times: evaluation as `effstudio evaluate` runs it (inference mode, batches
of 64, :func:`effstudio.evaluate.predict.predict_classes`) and training steps (batches of 32, forward,
backward, clipping and AdamW, as the engine's loop does). Figures are the median over rounds, with the
slowest and fastest round, since the machine may be busy with other work.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from effstudio.engine.build import build_model, build_task
from effstudio.engine.data import make_batch
from effstudio.engine.objective import task_loss
from effstudio.engine.run_config import RunConfig
from effstudio.engine.trainer import make_optimizer
from effstudio.evaluate.model_file import Evaluable
from effstudio.evaluate.predict import predict_classes
from effstudio.tasks.base import Split

TRAIN_BATCH = 32


def bench_config(examples: int, max_length: int) -> RunConfig:
    return RunConfig.create("transformer", "listops", {
        "model.d_model": 128, "model.layers": 2, "model.heads": 4,
        "task.max_length": max_length, "task.min_length": min(32, max_length), "task.train_size": 10,
        "task.val_size": examples, "task.test_size": 1, "train.batch_size": TRAIN_BATCH, "train.device": "cpu",
    })


def _train_examples_per_s(model: torch.nn.Module, split: Split, config: RunConfig, pad_id: int) -> float:
    optimizer = make_optimizer(model, config.train)
    model.train()
    started = time.perf_counter()
    for begin in range(0, len(split), TRAIN_BATCH):
        batch = make_batch(split, torch.arange(begin, min(begin + TRAIN_BATCH, len(split))), pad_id)
        loss = task_loss(model(batch.inputs, batch.mask), batch.targets, "classify")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.train.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        float(loss.detach())
    return len(split) / (time.perf_counter() - started)


def _eval_examples_per_s(evaluable: Evaluable, split: Split) -> float:
    evaluable.model.eval()
    started = time.perf_counter()
    predict_classes(evaluable, split)
    return len(split) / (time.perf_counter() - started)


def measure_evaluate(repeats: int = 3, examples: int = 256, max_length: int = 256) -> dict[str, float | int | str]:
    config = bench_config(examples, max_length)
    task = build_task(config)
    split = task.split("val")
    torch.manual_seed(0)
    model = build_model(config, task.spec)
    evaluable = Evaluable(Path("bench"), task, config, model=model)
    _eval_examples_per_s(evaluable, Split(split.inputs[:64], split.targets[:64]))  # warm-up
    evals, trains = [], []
    for _ in range(repeats):
        evals.append(_eval_examples_per_s(evaluable, split))
        trains.append(_train_examples_per_s(model, split, config, task.spec.pad_id))
    evaluation, training = statistics.median(evals), statistics.median(trains)
    return {"eval_examples_per_s": round(evaluation, 1), "train_examples_per_s": round(training, 1),
            "ratio": round(evaluation / training, 2),
            "eval_spread": f"{min(evals):.1f}-{max(evals):.1f}", "train_spread": f"{min(trains):.1f}-{max(trains):.1f}",
            "examples": len(split), "max_length": max_length, "threads": torch.get_num_threads()}
