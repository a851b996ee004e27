"""Hierarchical encoder: segments, pooling with padding, block-diagonal maps, and learning a toy task."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from effstudio.config import ConfigError
from effstudio.models.base import ModelSpec
from effstudio.models.hierarchical import HierarchicalConfig, HierarchicalEncoder, split_segments
from effstudio.tasks.base import TaskSpec

VOCAB = ("<pad>", *"abcdefghi", "x", ".")  # x: the marked token; ".": a sentence separator
X, DOT = VOCAB.index("x"), VOCAB.index(".")
SPEC = TaskSpec("toy-docs", "classify", VOCAB, num_classes=4, max_length=64)


def model(**changes: object) -> HierarchicalEncoder:
    config = HierarchicalConfig(**{"d_model": 32, "heads": 2, "token_layers": 1, "segment_layers": 1,
                                   "segment_length": 4, "dropout": 0.0, "attention": "full", **changes})
    torch.manual_seed(0)
    return HierarchicalEncoder(config, ModelSpec(SPEC, None))


def test_fixed_spans_and_sentences() -> None:
    mask = torch.tensor([[1] * 7 + [0] * 3, [1] * 10]).bool()
    fixed = split_segments(mask, 3)
    assert fixed.segment.tolist() == [[0, 0, 0, 1, 1, 1, 2, -1, -1, -1], [0, 0, 0, 1, 1, 1, 2, 2, 2, 3]]
    assert fixed.index[0, 2].tolist() == [6, -1, -1] and not fixed.segment_real[0, 3]  # all padding
    ends = torch.zeros_like(mask)
    ends[1, 1] = ends[1, 6] = True  # sentences 0-1, 2-6 (longer than 3: goes on), 7-9
    sentences = split_segments(mask, 3, ends)
    assert sentences.segment[1].tolist() == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]
    assert sentences.index[1].tolist() == [[0, 1, -1], [2, 3, 4], [5, 6, -1], [7, 8, 9]]


def test_padding_gets_no_weight_and_changes_nothing() -> None:
    net = model().eval()
    inputs = torch.randint(1, 10, (2, 16), generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 16, dtype=torch.bool)
    mask[0, 6:] = False  # row 0: segments 0 and 1 (half) real, segments 2 and 3 all padding
    inputs = inputs.masked_fill(~mask, 0)
    out = net(inputs, mask, need_weights=True)
    weights = out.extras["segment_attention"]
    assert weights.shape == (2, 4)
    assert torch.all(weights[0, 2:] == 0) and torch.all(weights[0, :2] > 0)
    assert torch.allclose(weights.sum(dim=1), torch.ones(2))
    assert out.extras["token_segments"][0].tolist() == [0] * 4 + [1] * 2 + [-1] * 10
    changed = inputs.masked_fill(~mask, 7)
    assert torch.allclose(net(changed, mask).logits, out.logits, atol=1e-6)
    # a token attends inside its own segment only; padding rows are empty
    first = out.attentions[0][0, 0]  # (N, N)
    assert torch.allclose(first[:4, :4].sum(dim=1), torch.ones(4)) and first[:4, 4:].abs().sum() == 0
    assert first[6:].abs().sum() == 0


def test_separator_segments_and_config_errors() -> None:
    net = model(split="separator", separator=".").eval()
    inputs = torch.tensor([[1, 2, DOT, 3, 4, 5, 6, 7, DOT, 8]])
    assert net(inputs).extras["token_segments"][0].tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2, 3]
    with pytest.raises(ConfigError) as err:
        model(split="separator", separator="<sep>")
    assert err.value.field == "separator"
    lm = TaskSpec("toy-lm", "lm", VOCAB, num_classes=len(VOCAB), max_length=64)
    with pytest.raises(ConfigError):
        HierarchicalEncoder(HierarchicalConfig(d_model=16, heads=2), ModelSpec(lm, None))


def documents(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Four segments of four tokens; the label is the segment that holds the one x.
    Documents end early (padding) but always after their x."""
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randint(1, 10, (count, 16), generator=gen)
    labels = torch.randint(0, 4, (count,), generator=gen)
    slot = labels * 4 + torch.randint(0, 4, (count,), generator=gen)
    inputs[torch.arange(count), slot] = X
    lengths = slot + 1 + torch.randint(0, 16, (count,), generator=gen)
    mask = torch.arange(16)[None, :] < lengths.clamp(max=16)[:, None]
    return inputs.masked_fill(~mask, 0), mask, labels


def test_learns_which_segment_holds_the_marked_token() -> None:
    net = model()
    optimizer = torch.optim.AdamW(net.parameters(), lr=3e-3)
    inputs, mask, labels = documents(2048, seed=0)
    for step in range(150):
        rows = slice(step * 32 % 2048, step * 32 % 2048 + 32)
        loss = F.cross_entropy(net(inputs[rows], mask[rows]).logits, labels[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    test_inputs, test_mask, test_labels = documents(256, seed=1)
    with torch.no_grad():
        accuracy = (net(test_inputs, test_mask).logits.argmax(-1) == test_labels).float().mean()
    assert accuracy > 0.9
