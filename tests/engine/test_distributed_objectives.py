"""Two gloo processes under torchrun train the same model as one process, for every task objective.

With dropout off and the same seed, each step's loss (the global mean over every
target of the step, StepEvent.loss) and the final weights must match the
single-process run. The cases differ in how many targets an example has: one
label (classify), the answer's tokens (lm on copy, whose examples differ in
length, so the ranks hold different token counts), every character of a segment
read as parallel streams by a recurrent model (lm on charlm), a target sequence
of its own (seq2seq); and gradient accumulation on every rank (2 processes x 2
micro-batches against 1 process x 2). Every rank evaluates the whole validation
split, so the validation losses must match too.

All the cases run in one torchrun job (one start-up) and one single-process
pass, shared by the tests through a module fixture.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from effstudio.engine.events import EvalEvent, StepEvent
from effstudio.engine.run_config import RunConfig
from effstudio.engine.trainer import CHECKPOINT_NAME, train

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("distributed_worker.py")
STEPS = 5
LOSS_RTOL = 1e-5
# AdamW normalises each gradient element, so a rounding difference in a gradient near zero can move
# a weight by up to about lr (1e-3 a step). Observed: under 2e-6; unweighted ranks gave 5e-3.
WEIGHT_ATOL = 1e-4
TINY = {"model.d_model": 32, "model.layers": 1, "model.heads": 2, "model.dropout": 0.0}
TRAIN = {"train.steps": STEPS, "train.batch_size": 16, "train.eval_every": STEPS, "train.attention_every": 0,
         "train.warmup_steps": 2, "train.device": "cpu"}
COPY = {"task.train_size": 128, "task.val_size": 16, "task.min_length": 1, "task.max_length": 24}
CASES = {
    "classify-listops": ("transformer", "listops", {
        **TINY, **TRAIN, "task.train_size": 128, "task.val_size": 16, "task.min_length": 8,
        "task.max_length": 40}),
    "lm-copy": ("transformer", "copy", {**TINY, **TRAIN, **COPY}),
    "lm-charlm-streams": ("transformer_xl", "charlm", {
        **TINY, **TRAIN, "model.mem_len": 16, "task.segment_length": 32}),
    "seq2seq-copy": ("seq2seq", "copy", {**TINY, **TRAIN, **COPY}),
    "lm-copy-grad-accum": ("transformer", "copy", {**TINY, **TRAIN, **COPY, "train.grad_accum": 2}),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """{case: {"step"|"val": (single-process losses, two-process losses)}} and the folder of both runs'
    checkpoints."""
    root = tmp_path_factory.mktemp("objectives")
    base = tmp_path_factory.getbasetemp()
    with pytest.MonkeyPatch.context() as env:  # the same folders as conftest's per-test isolation
        env.setenv("EFFSTUDIO_DATA_DIR", str(base / "data"))
        env.setenv("EFFSTUDIO_CACHE_DIR", str(base / "cache"))
        single = {}
        for name, (model, task, settings) in CASES.items():  # also fills the task caches for the ranks
            events = list(train(RunConfig.create(model, task, settings), out_dir=root / "one" / name))
            single[name] = {"step": [e.loss for e in events if isinstance(e, StepEvent)],
                            "val": [e.val_loss for e in events if isinstance(e, EvalEvent)]}

        spec = root / "spec.json"
        spec.write_text(json.dumps({"out": str(root / "two"), "cases": CASES}), encoding="utf-8")
        result = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
             str(WORKER), str(spec)],
            cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    double = json.loads((root / "two" / "losses.json").read_text(encoding="utf-8"))
    return {name: {kind: (single[name][kind], double[name][kind]) for kind in ("step", "val")}
            for name in CASES}, root


def max_relative_difference(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) / abs(x) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("case", list(CASES))
def test_two_processes_log_the_losses_of_one_process(runs, case):
    losses, _ = runs
    single, double = losses[case]["step"]
    assert len(single) == len(double) == STEPS
    difference = max_relative_difference(single, double)
    print(f"{case}: max step-loss difference 1 vs 2 processes: {difference:.3g} relative, "
          f"{max(abs(x - y) for x, y in zip(single, double, strict=True)):.3g} absolute")
    assert difference <= LOSS_RTOL, f"{case}: {single} vs {double}"
    single_val, double_val = losses[case]["val"]
    assert len(single_val) == 1 and double_val == pytest.approx(single_val, rel=LOSS_RTOL)


@pytest.mark.parametrize("case", list(CASES))
def test_two_processes_train_the_weights_of_one_process(runs, case):
    _, root = runs
    single = load_file(root / "one" / case / CHECKPOINT_NAME)
    double = load_file(root / "two" / case / CHECKPOINT_NAME)
    assert single.keys() == double.keys()
    gaps = {key: float((single[key].float() - double[key].float()).abs().max()) for key in single}
    worst = max(gaps, key=gaps.get)
    assert gaps[worst] <= WEIGHT_ATOL, f"{case}: {worst} differs by {gaps[worst]:.3g}"
