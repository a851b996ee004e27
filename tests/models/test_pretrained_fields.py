"""The model fields a pretrained import sets (post-LN, pooling, pooler, token heads, embeddings, halting off),
checked against what they mean, without a reference library."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from effstudio.config import ConfigError
from effstudio.engine.build import build_model
from effstudio.engine.run_config import RunConfig
from effstudio.tasks.base import TaskSpec

VOCAB = tuple(f"t{i}" for i in range(20))


def model(model_type: str = "transformer", objective: str = "classify", **settings):
    config = RunConfig.create(model_type, "listops", {"model.d_model": 16, "model.heads": 2, "model.dropout": 0.0,
                                                      **{f"model.{k}": v for k, v in settings.items()}})
    torch.manual_seed(0)
    return build_model(config, TaskSpec("x", objective, VOCAB, num_classes=3, max_length=12), training=False).eval()


def test_a_post_ln_block_normalises_after_each_residual():
    net = model(norm_position="post", layers=1, norm_eps=1e-12, activation="relu")
    block = net.blocks[0]
    x = torch.randn(2, 5, 16)
    attended = block.out(F.scaled_dot_product_attention(*(block._split_heads(p(x)) for p in (block.q, block.k, block.v)))
                         .transpose(1, 2).reshape(2, 5, 16))
    h = block.norm1(x + attended)
    expected = block.norm2(h + block.mlp[2](torch.relu(block.mlp[0](h))))
    assert torch.allclose(block(x, None, False)[0], expected, atol=1e-6)
    assert net.norm is None and net.embed_norm.eps == 1e-12


def test_pooling_reads_the_first_or_the_last_real_token_through_the_pooler():
    ids = torch.randint(0, 20, (2, 6))
    mask = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    last = model(pooling="last", mode="decoder", pooler="tanh")
    hidden = last.hidden_states(ids, mask)
    expected = last.head(torch.tanh(last.pooler[0](hidden[[0, 1], [5, 3]])))
    assert torch.allclose(last(ids, mask).logits, expected, atol=1e-6)
    first = model(pooling="first")
    assert torch.allclose(first(ids, mask).logits, first.head(first.hidden_states(ids, mask)[:, 0]), atol=1e-6)


def test_embeddings_take_their_own_rows_width_offset_and_type():
    net = model(vocab_size=30, embed_dim=8, position_offset=2, token_types=2, token_head="masked")
    assert net.embed.weight.shape == (30, 8) and net.positions.num_embeddings == 14
    ids = torch.randint(0, 20, (1, 4))
    expected = net.embed_project(net.embed(ids) + net.positions.weight[2:6] + net.token_type.weight[0])
    assert torch.allclose(net._embed_tokens(ids), expected)
    assert net.token_head.decoder.weight is net.embed.weight
    assert net.token_logits(ids).shape == (1, 4, 30)
    with pytest.raises(ConfigError, match="more than the 10 rows"):
        model(vocab_size=10)


def test_a_tied_token_head_is_the_embedding():
    net = model(token_head="tied", mode="decoder", pooling="last")
    ids = torch.randint(0, 20, (2, 5))
    assert torch.allclose(net.token_logits(ids), net.hidden_states(ids) @ net.embed.weight.T)


def test_halting_off_applies_the_shared_block_a_fixed_number_of_times():
    net = model("universal", halting="off", max_steps=3, positions="learned")
    assert not hasattr(net, "halt") and len(net.blocks) == 1
    ids = torch.randint(0, 20, (2, 5))
    x = net._embed_tokens(ids)
    x, _ = net._add_cls(x, None)
    for _ in range(3):
        x = net.block(x, None, False)[0]
    assert torch.allclose(net(ids).logits, net.head(net.norm(x)[:, 0]), atol=1e-6)
    with pytest.raises(ConfigError, match="needs halting = off"):
        model("universal", embed_dim=8)


def test_a_distillation_head_averages_the_two_token_heads():
    config = RunConfig.create("vit", "digits", {"model.d_model": 16, "model.heads": 2, "model.layers": 1,
                                                "model.distillation_token": True, "model.distillation_head": True})
    torch.manual_seed(0)
    net = build_model(config, TaskSpec("img", "classify", (), num_classes=3, max_length=8, channels=1,
                                       image_size=8), training=False).eval()
    images = torch.rand(2, 1, 8, 8)
    states = net.hidden_states(images)
    assert states.shape == (2, 2 + 4, 16)
    expected = (net.head(states[:, 0]) + net.distillation_head(states[:, 1])) / 2
    assert torch.allclose(net(images).logits, expected, atol=1e-6)
