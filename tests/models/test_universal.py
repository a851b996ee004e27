"""Universal Transformer with adaptive computation time: halting, weighting, copying, ponder cost."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from effstudio.config import ConfigError
from effstudio.engine.events import StepEvent
from effstudio.engine.run_config import RunConfig
from effstudio.engine.trainer import train
from effstudio.models.base import ModelSpec
from effstudio.models.universal import UniversalConfig, UniversalTransformer
from effstudio.registry import get_registry
from effstudio.tasks.base import TaskSpec

VOCAB = ("<pad>",) + tuple(f"t{i}" for i in range(11))
CLASSIFY = TaskSpec("toy-classify", "classify", VOCAB, num_classes=3, max_length=16)
LM = TaskSpec("toy-lm", "lm", VOCAB, num_classes=0, max_length=16)


def build(task: TaskSpec = CLASSIFY, **changes) -> UniversalTransformer:
    config = UniversalConfig(**{"d_model": 16, "heads": 2, "ff_mult": 2, "dropout": 0.0, **changes})
    torch.manual_seed(0)
    return UniversalTransformer(config, ModelSpec(task, get_registry().get("attention", "sdpa").default_config()))


def tokens(b: int = 3, n: int = 10, seed: int = 0) -> torch.Tensor:
    return torch.randint(1, len(VOCAB), (b, n), generator=torch.Generator().manual_seed(seed))


def make_block_an_identity(model: UniversalTransformer) -> None:
    """The shared block then returns its input, and no position or step vectors are added."""
    block = model.block
    for layer in (block.out, block.mlp[2]):
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)
    nn.init.zeros_(model.positions.weight)
    nn.init.zeros_(model.steps_table.weight)


def expected_steps(p: float, max_steps: int, epsilon: float) -> tuple[int, float]:
    """Graves' rule for a constant halting probability p: (N, R)."""
    total = 0.0
    for n in range(1, max_steps + 1):
        if total + p >= 1 - epsilon or n == max_steps:
            return n, 1 - total
        total += p
    raise AssertionError


@torch.no_grad()
def test_tokens_halt_at_different_steps_and_weights_sum_to_one() -> None:
    model = build(pooling="mean", max_steps=8).eval()
    make_block_an_identity(model)
    nn.init.normal_(model.embed.weight, std=1.0)
    nn.init.normal_(model.halt.weight, std=0.6)
    nn.init.zeros_(model.halt.bias)
    inputs = tokens()
    mask = torch.ones_like(inputs, dtype=torch.bool)
    mask[2, 6:] = False
    # the state never changes, so each token's halting probability is the same at every step
    p = torch.sigmoid(model.halt(model.halt_norm(model.embed(inputs)))).squeeze(-1)  # (B, N)
    want = torch.tensor([[expected_steps(float(q), 8, 0.01)[0] for q in row] for row in p], dtype=torch.float32)

    result = model.ponder(model.embed(inputs), mask, inputs.shape[1])
    steps = model(inputs, mask).extras["ponder_steps"]
    assert torch.equal(steps, want * mask)
    assert len(torch.unique(steps[mask])) >= 3, "tokens must halt at different steps"
    # step weights p_1 .. p_{N-1} then the remainder: they sum to 1 at every real position
    assert result.weights.shape[1:] == inputs.shape
    total = result.weights.sum(dim=0)
    assert torch.allclose(total[mask], torch.ones(int(mask.sum())), atol=1e-6)
    assert (total[~mask] == 0).all()
    remainders = torch.tensor([[expected_steps(float(q), 8, 0.01)[1] for q in row] for row in p])
    assert torch.allclose(result.remainders[mask], remainders[mask], atol=1e-5)
    # so the output, a weighted mean of identical states, is the state itself
    assert torch.allclose(result.output, model.embed(inputs), atol=1e-5)


@torch.no_grad()
def test_halted_positions_are_copied_forward_unchanged() -> None:
    model = build(pooling="mean", max_steps=6).eval()
    nn.init.normal_(model.halt.weight, std=0.8)
    nn.init.zeros_(model.halt.bias)
    inputs = tokens(seed=1)
    x = model.embed(inputs)
    full = model.ponder(x, None, inputs.shape[1])
    assert full.steps.min() < full.steps.max()
    for n in range(1, 6):
        # a run cut at n steps has the same first n steps, so it holds every state after step n
        model.config = dataclasses.replace(model.config, max_steps=n)
        cut = model.ponder(x, None, inputs.shape[1])
        halted = full.steps <= n
        assert torch.equal(full.state[halted], cut.state[halted])
        if (~halted).any():
            assert not torch.allclose(full.state[~halted], cut.state[~halted])


@torch.no_grad()
def test_decoder_never_sees_later_tokens() -> None:
    model = build(LM, max_steps=5).eval()
    nn.init.normal_(model.halt.weight, std=0.8)
    inputs = tokens(n=8)
    changed = inputs.clone()
    changed[:, 5:] = changed[:, 5:] % (len(VOCAB) - 1) + 1
    out, out2 = model(inputs), model(changed)
    assert torch.allclose(out.logits[:, :5], out2.logits[:, :5], atol=1e-5)
    assert torch.equal(out.extras["ponder_steps"][:, :5], out2.extras["ponder_steps"][:, :5])
    assert not torch.allclose(out.logits[:, 5:], out2.logits[:, 5:])


@torch.no_grad()
def test_extras_maps_and_ponder_cost() -> None:
    model = build(max_steps=4, ponder_weight=0.5).eval()  # cls pooling: a summary token ponders too
    inputs = tokens(n=7)
    mask = torch.ones_like(inputs, dtype=torch.bool)
    mask[1, 4:] = False
    out = model(inputs, mask, need_weights=True)
    steps = out.extras["ponder_steps"]
    assert steps.shape == inputs.shape and (steps[~mask] == 0).all() and (steps[mask] >= 1).all()
    assert out.extras["ponder_mean"].dim() == 0
    assert out.aux_loss == pytest.approx(0.5 * float(out.extras["ponder_mean"]))
    assert 1 <= len(out.attentions) <= 4  # one map per step taken
    assert all(m.shape == (3, 2, 7, 7) for m in out.attentions)
    assert build(ponder_weight=0.0)(inputs, mask).aux_loss is None


def test_config_checks() -> None:
    with pytest.raises(ConfigError) as info:
        build(d_model=18, heads=4)
    assert info.value.field == "heads"
    with pytest.raises(ConfigError) as info:
        build(ffn="moe", experts=2, top_k=3)
    assert info.value.field == "top_k"


def test_moe_in_the_shared_block_reports_one_load_row_per_step() -> None:
    model = build(max_steps=3, ffn="moe", experts=4).eval()
    nn.init.constant_(model.halt.bias, -5.0)  # nobody halts early: three steps
    out = model(tokens())
    assert out.extras["expert_load"].shape == (3, 4)
    assert torch.allclose(out.extras["expert_load"].sum(-1), torch.ones(3))
    assert {"moe_dropped", "moe_balance_loss", "ponder_mean"} <= set(out.extras)


def ponder_after_training(tau: float, tmp_path) -> float:
    config = RunConfig.create("universal", "copy", {
        "model.d_model": 16, "model.heads": 2, "model.ff_mult": 2, "model.dropout": 0.0,
        "model.max_steps": 4, "model.ponder_weight": tau,
        "task.train_size": 256, "task.val_size": 16, "task.max_length": 6, "task.vocab_size": 6,
        "train.steps": 25, "train.batch_size": 16, "train.lr": 1e-2, "train.warmup_steps": 1,
        "train.eval_every": 1000, "train.attention_every": 0, "train.device": "cpu",
    })
    steps = [e for e in train(config, out_dir=tmp_path / f"tau{tau}") if isinstance(e, StepEvent)]
    return sum(e.metrics["ponder_mean"] for e in steps[-5:]) / 5


def test_larger_ponder_weight_lowers_ponder_time(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EFFSTUDIO_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("EFFSTUDIO_CACHE_DIR", str(tmp_path / "cache"))
    free, costly = ponder_after_training(0.0, tmp_path), ponder_after_training(1.0, tmp_path)
    assert costly < free - 0.2
    assert costly < 2.1  # from about 2.27 at the start (p = sigmoid(1) on both steps)
