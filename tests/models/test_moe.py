"""Mixture of experts: routing against a plain oracle, capacity, float32 router, load balancing."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from effstudio.models.base import ModelSpec
from effstudio.models.moe import MoEFeedForward
from effstudio.models.transformer import Transformer, TransformerConfig
from effstudio.registry import get_registry
from effstudio.tasks.base import TaskSpec

VOCAB = ("<pad>",) + tuple(f"t{i}" for i in range(15))
CLASSIFY = TaskSpec("toy-classify", "classify", VOCAB, num_classes=4, max_length=16)
LM = TaskSpec("toy-lm", "lm", VOCAB, num_classes=0, max_length=16)


def model(task: TaskSpec = CLASSIFY, seed: int = 0, **changes) -> Transformer:
    config = TransformerConfig(**{"d_model": 16, "layers": 2, "heads": 2, "ff_mult": 2, "dropout": 0.0,
                                  "ffn": "moe", "experts": 4, "pooling": "mean", **changes})
    torch.manual_seed(seed)
    return Transformer(config, ModelSpec(task, get_registry().get("attention", "sdpa").default_config()))


def oracle(layer: MoEFeedForward, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Token by token: first choices of all tokens (earlier positions first), then second choices."""
    b, n, _ = x.shape
    probs = layer.router(x).softmax(-1)  # (B, N, E)
    gate, choice = probs.topk(layer.top_k, dim=-1)
    if layer.top_k > 1:
        gate = gate / gate.sum(-1, keepdim=True)
    capacity = math.ceil(layer.capacity_factor * layer.top_k * int(mask.sum()) / layer.experts)
    taken = [0] * layer.experts
    out = torch.zeros_like(x)
    dropped = 0
    for rank in range(layer.top_k):
        for j in range(n):
            for i in range(b):
                if not mask[i, j]:
                    continue
                e = int(choice[i, j, rank])
                if taken[e] == capacity:
                    dropped += 1
                    continue
                taken[e] += 1
                hidden = F.gelu(x[i, j] @ layer.w1[e] + layer.b1[e, 0])
                out[i, j] += gate[i, j, rank] * (hidden @ layer.w2[e] + layer.b2[e, 0])
    return out, dropped / (layer.top_k * int(mask.sum()))


@pytest.mark.parametrize("top_k", [1, 2])
@pytest.mark.parametrize("capacity_factor", [0.5, 1.0, 8.0])
@torch.no_grad()
def test_routing_and_capacity_match_the_oracle(top_k: int, capacity_factor: float) -> None:
    torch.manual_seed(0)
    layer = MoEFeedForward(8, 16, experts=4, top_k=top_k, capacity_factor=capacity_factor)
    torch.nn.init.normal_(layer.router.weight, std=1.0)  # decided, uneven routing
    x = torch.randn(3, 6, 8)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[2, 3:] = False
    out, stats = layer(x, mask)
    want, dropped = oracle(layer, x, mask)
    assert torch.allclose(out, want, atol=1e-5)
    assert float(stats.dropped) == pytest.approx(dropped)
    if capacity_factor < 1.0:
        assert dropped > 0  # routing is uneven: a tight capacity must drop
    if capacity_factor >= 4.0:
        assert dropped == 0
    assert (out[~mask] == 0).all()  # padding is not routed
    assert torch.allclose(stats.load.sum(), torch.tensor(1.0))


@torch.no_grad()
def test_dropped_tokens_pass_through_the_block_unchanged() -> None:
    net = model(capacity_factor=0.25).eval()
    block = net.blocks[0]
    torch.nn.init.normal_(block.mlp.router.weight, std=1.0)
    seen = {}
    block.out.register_forward_hook(lambda module, args, result: seen.update(attention=result))
    block.mlp.register_forward_hook(lambda module, args, result: seen.update(fed=result[0], stats=result[1]))
    x = torch.randn(2, 8, 16)
    y, _, stats = block(x, None, False)
    after_attention = x + seen["attention"]
    dropped = (seen["fed"] == 0).all(dim=-1)  # (B, N) tokens no expert took
    assert 0 < int(dropped.sum()) < dropped.numel()
    assert float(stats.dropped) == pytest.approx(float(dropped.float().mean()))
    assert torch.equal(y[dropped], after_attention[dropped])
    assert not torch.allclose(y[~dropped], after_attention[~dropped])


def test_router_runs_in_float32_under_bf16_autocast() -> None:
    net = model()
    layer = net.blocks[0].mlp
    seen = []
    layer.router.register_forward_hook(lambda module, args, result: seen.append((args[0].dtype, result.dtype)))
    inputs = torch.randint(1, len(VOCAB), (4, 10), generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = net(inputs)
    assert seen and all(d == (torch.float32, torch.float32) for d in seen)
    assert out.logits.dtype == torch.bfloat16  # the rest does run in bf16
    out.aux_loss.backward()
    assert net.blocks[0].mlp.router.weight.grad is not None


@torch.no_grad()
def test_decoder_with_capacity_never_sees_later_tokens() -> None:
    net = model(LM, capacity_factor=0.5).eval()
    for block in net.blocks:
        torch.nn.init.normal_(block.mlp.router.weight, std=1.0)
    inputs = torch.randint(1, len(VOCAB), (3, 8), generator=torch.Generator().manual_seed(0))
    changed = inputs.clone()
    changed[:, 5:] = changed[:, 5:] % (len(VOCAB) - 1) + 1
    out, out2 = net(inputs), net(changed)
    assert float(out.extras["moe_dropped"]) > 0
    assert torch.allclose(out.logits[:, :5], out2.logits[:, :5], atol=1e-5)


@torch.no_grad()
def test_aux_loss_and_extras() -> None:
    net = model(balance_weight=0.1, layers=3).eval()
    inputs = torch.randint(1, len(VOCAB), (2, 9), generator=torch.Generator().manual_seed(0))
    out = net(inputs)
    load = out.extras["expert_load"]
    assert load.shape == (3, 4) and torch.allclose(load.sum(-1), torch.ones(3))
    assert out.extras["moe_dropped"].dim() == 0 and out.extras["moe_balance_loss"].dim() == 0
    # each layer's router gets the weight: 0.1 * the sum over layers of a balance near 1
    assert float(out.aux_loss) == pytest.approx(0.1 * 3 * float(out.extras["moe_balance_loss"]), rel=1e-5)
    assert model(balance_weight=0.0)(inputs).aux_loss is None
    assert model(ffn="dense")(inputs).extras == {}


def load_spread_after_training(alpha: float, steps: int = 20) -> float:
    """Coefficient of variation of the expert load (mean over layers) on held-out inputs."""
    net = model(seed=0, capacity_factor=4.0, balance_weight=alpha)
    for block in net.blocks:
        torch.nn.init.normal_(block.mlp.router.weight, std=0.5)  # a router that starts out lopsided
    gen = torch.Generator().manual_seed(1)
    inputs = torch.randint(1, len(VOCAB), (256, 12), generator=gen)
    labels = inputs[:, 0] % 4
    held_out = torch.randint(1, len(VOCAB), (128, 12), generator=gen)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(steps):
        batch = torch.randint(0, 256, (32,), generator=gen)
        out = net(inputs[batch])
        loss = F.cross_entropy(out.logits, labels[batch])
        if out.aux_loss is not None:
            loss = loss + out.aux_loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        load = net(held_out).extras["expert_load"]  # (L, E)
    return float((load.std(-1, unbiased=False) / load.mean(-1)).mean())


def test_balancing_loss_evens_the_expert_load() -> None:
    unbalanced, balanced = load_spread_after_training(0.0), load_spread_after_training(1.0)
    assert balanced < 0.5 * unbalanced
    assert balanced < 0.3
