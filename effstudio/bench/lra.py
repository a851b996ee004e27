"""ListOps at one budget for every attention kind, beside the Long Range Arena paper's ListOps column.

Every kind trains the same `transformer` (same width, depth, heads, data, seed, learning-rate
schedule and steps) on the same generated ListOps splits, then is evaluated on the test split.
The paper (Tay et al. 2021, Table 1) trained far longer on expressions of up to 2,000 tokens;
this bench is the same question at a laptop's scale, not a reproduction of its numbers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from effstudio.config import ConfigError
from effstudio.engine.build import build_model, build_task
from effstudio.engine.events import DoneEvent, Event
from effstudio.engine.objective import evaluate
from effstudio.engine.run_config import RunConfig
from effstudio.engine.trainer import train
from effstudio.registry import get_registry

# ListOps test accuracy (%) in the Long Range Arena paper, by the name of the kind here
PAPER_LISTOPS = {"sdpa": 36.37, "full": 36.37, "reformer": 37.27, "bigbird": 36.05, "linformer": 35.70,
                 "longformer": 35.63, "performer": 18.01, "linear": 16.13, "local": 15.82}


# settings a kind needs to be an efficient kind at this length (its defaults suit longer inputs)
KIND_SETTINGS = {"linformer": lambda length: {"attention.k": max(8, length // 4)}}


@dataclass
class LraRow:
    kind: str
    steps: int
    test_accuracy: float | None  # fraction of the test split
    seconds: float
    error: str | None = None

    def to_json(self) -> dict:
        return {"kind": self.kind, "steps": self.steps,
                "test_accuracy": None if self.test_accuracy is None else round(self.test_accuracy, 4),
                "seconds": round(self.seconds, 1)}


def lra_config(kind: str, steps: int, *, max_length: int = 256, train_size: int = 5000, test_size: int = 500,
               d_model: int = 128) -> RunConfig:
    """The one setting every kind is trained at; only the attention kind differs."""
    return RunConfig.create("transformer", "listops", {
        "model.attention": kind, "model.d_model": d_model, "model.layers": 2, "model.heads": 4,
        "model.pooling": "mean",
        "task.max_length": max_length, "task.min_length": min(32, max_length), "task.train_size": train_size,
        "task.val_size": 200, "task.test_size": test_size,
        "train.steps": steps, "train.batch_size": 32, "train.warmup_steps": max(1, steps // 10),
        "train.device": "cpu", "train.eval_every": 1_000_000, "train.attention_every": 0,
        "train.log_every": max(1, steps),
        **KIND_SETTINGS.get(kind, lambda length: {})(max_length),
    })


def train_and_test(config: RunConfig) -> float:
    """Test accuracy of the model trained in memory (no run folder) at ``config``."""
    torch.manual_seed(config.train.seed)
    task = build_task(config)
    model = build_model(config, task.spec)
    for event in train(config, model=model, keep_checkpoints=False, task=task):
        if isinstance(event, DoneEvent) and event.status != "finished":
            raise RuntimeError(event.error or f"training ended {event.status}")
    spec = task.spec
    return evaluate(model, task.split("test"), spec.pad_id, spec.objective, 64, torch.device("cpu"))[1]


def run_lra(steps: int = 300, kinds: tuple[str, ...] = (), **sizes: int) -> Iterator[Event | LraRow]:
    """One LraRow per kind (all registered kinds by default); a kind that cannot be built at this
    setting gets a row with its error and no accuracy."""
    for kind in kinds or tuple(get_registry().names("attention")):
        started = time.perf_counter()
        try:
            accuracy: float | None = train_and_test(lra_config(kind, steps, **sizes))
            error = None
        except (ConfigError, RuntimeError) as err:
            accuracy, error = None, str(err)
        yield LraRow(kind, steps, accuracy, time.perf_counter() - started, error)


def format_row(row: LraRow) -> str:
    ours = "-" if row.test_accuracy is None else f"{100 * row.test_accuracy:.2f}"
    paper = PAPER_LISTOPS.get(row.kind)
    note = f"  {row.error}" if row.error else ""
    return f"{row.kind:<12} {row.steps:>6} {ours:>9} {'-' if paper is None else f'{paper:.2f}':>9} " \
           f"{row.seconds:>9.1f}{note}"


HEADER = f"{'kind':<12} {'steps':>6} {'test %':>9} {'LRA %':>9} {'seconds':>9}"
