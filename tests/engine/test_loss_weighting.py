"""One optimizer step minimises the mean loss over every target of its batch, however it is split.

A micro-batch's loss is weighted by its share of the step's targets, so two
micro-batches with very different target counts give the gradient and the loss
of one batch holding both, and gradient accumulation trains like the whole batch
in one pass. (Two processes: test_distributed_objectives.py.)
"""

import pytest
import torch

from effstudio.engine.data import make_batch
from effstudio.engine.events import JobControl, StepEvent
from effstudio.engine.objective import forward_batch, scored_count, task_loss
from effstudio.engine.run_config import RunConfig
from effstudio.engine.trainer import _Run, train

TINY = {"model.d_model": 32, "model.layers": 1, "model.heads": 2, "model.dropout": 0.0,
        "train.batch_size": 8, "train.device": "cpu", "train.attention_every": 0}
COPY = {"task.train_size": 64, "task.val_size": 8, "task.min_length": 1, "task.max_length": 24}


def step_gradients(run: _Run, batches: list) -> tuple[float, dict[str, torch.Tensor]]:
    """The loss and gradients of one ``_step`` over ``batches`` (the optimizer is not stepped)."""
    captured: dict[str, torch.Tensor] = {}

    def capture() -> None:
        captured.update({name: p.grad.clone() for name, p in run.model.named_parameters() if p.grad is not None})

    run.optimizer.step = capture
    loss, *_ = run._step(iter(batches))
    return loss, captured


@pytest.mark.parametrize("model", ["transformer", "seq2seq"])
def test_micro_batches_of_very_different_target_counts_give_the_gradient_of_one_batch(tmp_path, model):
    def fresh_run(grad_accum: int) -> _Run:
        config = RunConfig.create(model, "copy", {**TINY, **COPY, "train.grad_accum": grad_accum})
        torch.manual_seed(0)
        return _Run(config, JobControl(), tmp_path / str(grad_accum), None)

    split_run, whole_run = fresh_run(2), fresh_run(1)
    whole_run.model.load_state_dict(split_run.model.state_dict())
    split, pad_id = split_run.train_split, split_run.spec.pad_id
    lengths = (split.targets != -100).sum(dim=1)
    order = torch.argsort(lengths)
    short, long = order[:1], order[-6:]  # 1 example with the fewest targets, 6 with the most
    few, many = make_batch(split, short, pad_id), make_batch(split, long, pad_id)
    both = make_batch(split, torch.cat([short, long]), pad_id)
    assert scored_count(few.targets) * 10 < scored_count(many.targets)

    split_loss, split_grads = step_gradients(split_run, [few, many])
    whole_loss, whole_grads = step_gradients(whole_run, [both])

    assert split_loss == pytest.approx(whole_loss, rel=1e-6)
    assert split_grads.keys() == whole_grads.keys() and split_grads
    for name, grad in whole_grads.items():
        torch.testing.assert_close(split_grads[name], grad, rtol=1e-5, atol=1e-7, msg=name)

    # the check tells the weightings apart: the mean of the two micro-batches' means has another gradient
    objective = whole_run.spec.objective
    whole_run.model.zero_grad()
    plain = sum(task_loss(forward_batch(whole_run.model, b, objective), b.targets, objective) for b in (few, many))
    (plain / 2).backward()
    gaps = [float((p.grad - whole_grads[name]).norm() / whole_grads[name].norm())
            for name, p in whole_run.model.named_parameters() if name in whole_grads]
    assert max(gaps) > 0.1


@pytest.mark.parametrize("model", ["transformer", "seq2seq"])
def test_gradient_accumulation_trains_like_the_whole_batch_in_one_pass(tmp_path, model):
    def step_losses(grad_accum: int) -> list[float]:
        settings = {**TINY, **COPY, "train.steps": 4, "train.eval_every": 4, "train.warmup_steps": 1,
                    "train.batch_size": 16, "train.grad_accum": grad_accum}
        events = train(RunConfig.create(model, "copy", settings), out_dir=tmp_path / str(grad_accum))
        return [e.loss for e in events if isinstance(e, StepEvent)]

    whole, accumulated = step_losses(1), step_losses(4)
    assert len(whole) == 4
    assert accumulated == pytest.approx(whole, rel=1e-5)


def test_auxiliary_losses_and_metrics_of_each_pass_are_weighted_by_its_share_of_the_targets(tmp_path):
    """ACT's ponder cost and the MoE balance are means over one forward pass: each pass's is weighted
    like its task loss, by the pass's share of the step's targets (the rule on 1 and N processes)."""
    settings = {**{k: v for k, v in TINY.items() if k != "model.layers"}, **COPY, "model.ponder_weight": 0.5, "model.ffn": "moe", "model.max_steps": 3,
                "train.grad_accum": 2}
    torch.manual_seed(0)
    run = _Run(RunConfig.create("universal", "copy", settings), JobControl(), tmp_path, None)
    split, pad_id = run.train_split, run.spec.pad_id
    order = torch.argsort((split.targets != -100).sum(dim=1))
    few, many = make_batch(split, order[:1], pad_id), make_batch(split, order[-6:], pad_id)
    counts = [scored_count(b.targets) for b in (few, many)]
    shares = [c / sum(counts) for c in counts]

    expected_loss, expected_ponder = 0.0, 0.0
    with torch.no_grad():
        for batch, share in zip((few, many), shares, strict=True):
            output = run.model(batch.inputs, batch.mask)
            assert output.aux_loss is not None and float(output.aux_loss) > 0
            expected_loss += share * float(task_loss(output, batch.targets, "lm") + output.aux_loss)
            expected_ponder += share * float(output.extras["ponder_mean"])

    run.optimizer.step = lambda: None
    loss, _, tokens, _, metrics = run._step(iter([few, many]))
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    assert metrics["ponder_mean"] == pytest.approx(expected_ponder, rel=1e-5)
    assert tokens == few.tokens + many.tokens
