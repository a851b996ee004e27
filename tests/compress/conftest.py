from pathlib import Path

import pytest
import torch

from effstudio.engine.build import build_model, build_task
from effstudio.engine.checkpoint import save_checkpoint
from effstudio.engine.run_config import RunConfig

TINY = {
    "model.d_model": 32, "model.layers": 2, "model.heads": 4, "model.dropout": 0.0,
    "task.train_size": 128, "task.val_size": 48, "task.test_size": 16,
    "task.min_length": 8, "task.max_length": 40,
    "train.batch_size": 16, "train.eval_every": 4, "train.warmup_steps": 1, "train.device": "cpu",
    "train.attention_every": 0, "train.steps": 4,
}


def tiny_config(task: str = "listops", **overrides) -> RunConfig:
    settings = dict(TINY)
    if task == "copy":
        settings = {k: v for k, v in settings.items() if not k.startswith("task.")}
        settings.update({"task.train_size": 128, "task.val_size": 32, "task.min_length": 4, "task.max_length": 8})
    settings.update(overrides)
    return RunConfig.create("transformer", task, settings)


def make_checkpoint(path: Path, config: RunConfig | None = None, seed: int = 0) -> Path:
    """An untrained model saved as an ordinary checkpoint (random weights are enough to compare variants)."""
    config = config or tiny_config()
    torch.manual_seed(seed)
    task = build_task(config)
    model = build_model(config, task.spec)
    # make the weights less uniform than the init so that pruning and quantization have something to do
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return save_checkpoint(path, model, config, step=0)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ckpt")
    import os

    os.environ.setdefault("EFFSTUDIO_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    return make_checkpoint(folder / "tiny.safetensors")


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """Timings in these tests only need to be positive; one thread keeps them quick on a busy machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
