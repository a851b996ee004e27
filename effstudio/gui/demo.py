"""A small, quick run config for screenshots and measurements: a real model on a real task."""

from __future__ import annotations

from effstudio.engine.run_config import RunConfig
from effstudio.registry import Registry, get_registry

DEMO_TASKS = ("copy", "listops")


def demo_config(steps: int, registry: Registry | None = None) -> RunConfig:
    """A few-second CPU run of the smallest built-in model on a generated task."""
    registry = registry or get_registry()
    models = registry.names("models")
    tasks = registry.names("tasks")
    if not models or not tasks:
        raise RuntimeError("no model types or tasks are registered; see `effstudio models` and `effstudio tasks`")
    model = "transformer" if "transformer" in models else models[0]
    task = next((t for t in DEMO_TASKS if t in tasks), tasks[0])
    config = RunConfig.create(model, task, registry=registry)
    wanted = {
        "train.steps": steps,
        "train.batch_size": 32,
        "train.warmup_steps": max(1, steps // 10),
        "train.eval_every": max(1, steps // 6),
        "train.attention_every": max(1, steps // 4),
        "train.device": "cpu",
        "train.lr": 3e-3,
    }
    sizes = {"d_model": 64, "layers": 2, "heads": 4, "d_ff": 128}
    model_fields = {f.name for f in registry.get("models", model).fields()}
    wanted.update({f"model.{k}": v for k, v in sizes.items() if k in model_fields})
    task_fields = {f.name: f for f in registry.get("tasks", task).fields()}
    for name, value in (("train_size", 2000), ("val_size", 256), ("test_size", 256)):
        if name in task_fields:
            wanted[f"task.{name}"] = value
    return config.with_overrides(wanted, registry)
