
from effstudio.engine.run_config import RunConfig


def tiny_listops(**overrides) -> RunConfig:
    settings = {
        "model.d_model": 32, "model.layers": 1, "model.heads": 2, "model.dropout": 0.1,
        "task.train_size": 256, "task.val_size": 64, "task.test_size": 32,
        "task.min_length": 8, "task.max_length": 48,
        "train.steps": 12, "train.batch_size": 16, "train.eval_every": 6, "train.warmup_steps": 2,
        "train.device": "cpu", "train.attention_every": 6,
    }
    settings.update(overrides)
    return RunConfig.create("transformer", "listops", settings)
