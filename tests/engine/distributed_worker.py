"""One rank of the equivalence check in test_distributed_objectives.py, started by torchrun.

Usage: torchrun --nproc_per_node N distributed_worker.py SPEC.json
SPEC holds {"out": folder, "cases": {name: [model, task, settings]}}. Every rank
trains every case in the same process group (one start-up for all of them);
rank 0 writes {name: {"step": [step losses], "val": [val losses]}} to
<out>/losses.json and each case's checkpoint to <out>/<name>/.
"""

import json
import sys
from pathlib import Path

import torch

from effstudio.engine.distributed import context_from_env, leave_process_group
from effstudio.engine.events import DoneEvent, EvalEvent, StepEvent
from effstudio.engine.run_config import RunConfig
from effstudio.engine.trainer import train


def main(spec_path: str) -> None:
    torch.set_num_threads(1)
    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    out = Path(spec["out"])
    losses: dict[str, dict[str, list[float]]] = {}
    for name, (model, task, settings) in spec["cases"].items():
        events = list(train(RunConfig.create(model, task, settings), out_dir=out / name))
        done = events[-1]
        if not isinstance(done, DoneEvent) or done.status != "finished":
            raise SystemExit(f"{name}: training did not finish: {done}")
        losses[name] = {"step": [e.loss for e in events if isinstance(e, StepEvent)],
                        "val": [e.val_loss for e in events if isinstance(e, EvalEvent)]}
    if context_from_env().is_main:
        (out / "losses.json").write_text(json.dumps(losses), encoding="utf-8")
    leave_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
