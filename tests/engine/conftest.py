from pathlib import Path

from effstudio.engine.events import Event, JobControl, StepEvent
from effstudio.engine.run_config import RunConfig
from effstudio.engine.trainer import train


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


def train_stopped_at(config: RunConfig, step: int, out_dir: Path) -> list[Event]:
    """The events of a run into ``out_dir`` that is stopped (JobControl) once it reports ``step``."""
    control = JobControl()
    events = []
    for event in train(config, control=control, out_dir=out_dir):
        events.append(event)
        if isinstance(event, StepEvent) and event.step == step:
            control.stop()
    return events
