"""Learned position tables grow by cyclic copying; outputs at the old lengths do not change."""

from __future__ import annotations

import pytest
import torch

from effstudio.config import with_values
from effstudio.models.base import ModelSpec
from effstudio.models.lengthen import extend_positions, learned_position_tables
from effstudio.registry import get_registry
from effstudio.tasks.base import TaskSpec

VOCAB = ("<pad>",) + tuple(f"t{i}" for i in range(19))
OLD = 12  # positions the models learned


def model(kind: str = "transformer", attention: str = "full", objective: str = "classify", **changes):
    entry = get_registry().get("models", kind)
    config = entry.default_config()
    sizes = {"d_model": 16, "layers": 2, "heads": 2, "ff_mult": 2, "attention": attention, **changes}
    config = with_values(config, {k: v for k, v in sizes.items() if hasattr(config, k)})
    task = TaskSpec("toy", objective, VOCAB, num_classes=3 if objective == "classify" else 0, max_length=OLD)
    attention_entry = get_registry().get("attention", attention)
    attention_config = attention_entry.default_config()
    if attention == "linformer":
        attention_config = with_values(attention_config, {"k": 4})
    torch.manual_seed(0)
    return entry.factory(config, ModelSpec(task, attention_config)).eval()


def tokens(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(1, len(VOCAB), (2, n), generator=torch.Generator().manual_seed(1))
    mask = torch.ones(2, n, dtype=torch.bool)
    mask[1, n - 3:] = False  # right padding in the second row
    return ids.masked_fill(~mask, 0), mask


def test_rows_are_copied_cyclically_and_the_bound_is_raised() -> None:
    net = model()
    assert learned_position_tables(net) == {"positions": OLD}
    old = net.positions.weight.detach().clone()
    assert extend_positions(net, 30) == ["positions"]
    assert learned_position_tables(net) == {"positions": 30}
    grown = net.positions.weight.detach()
    for row in range(30):
        assert torch.equal(grown[row], old[row % OLD])
    assert net.max_length == 30
    assert all(block.attention.spec.max_length == 31 for block in net.blocks)  # summary token + 30 tokens
    assert net(*tokens(30)).logits.shape == (2, 3)  # a length it refused before
    assert extend_positions(net, 20) == []  # already long enough: nothing grows


@pytest.mark.parametrize("objective,attention", [("classify", "full"), ("lm", "full"), ("classify", "linformer")])
def test_outputs_at_the_old_lengths_are_unchanged(objective: str, attention: str) -> None:
    net = model(objective=objective, attention=attention)
    ids, mask = tokens(OLD)
    before = net(ids, mask).logits
    extend_positions(net, 40)
    assert torch.equal(net(ids, mask).logits, before)
    assert net(*tokens(40)).logits.isfinite().all()


def test_linformer_projection_columns_follow_the_positions() -> None:
    net = model(attention="linformer")
    attention = net.blocks[0].attention
    old = attention.key_projection.detach().clone()  # (k, OLD + 1)
    extend_positions(net, 30)
    assert attention.key_projection.shape == (4, 31) and attention.max_length == 31
    assert torch.equal(attention.key_projection[:, :OLD + 1], old)
    assert torch.equal(attention.key_projection[:, OLD + 1], old[:, 0])


def test_an_offset_stays_in_front() -> None:
    net = model()
    net.position_offset = 2  # as RoBERTa: rows 0 and 1 are never a token's position
    old = net.positions.weight.detach().clone()  # 2 offset rows + 10 positions
    extend_positions(net, 25)
    grown = net.positions.weight.detach()
    assert grown.shape[0] == 27
    assert torch.equal(grown[:2], old[:2])
    for position in range(25):
        assert torch.equal(grown[2 + position], old[2 + position % 10])


def test_sinusoidal_positions_are_untouched() -> None:
    net = model(positions="sinusoidal")
    before = {name: p.detach().clone() for name, p in net.state_dict().items()}
    assert learned_position_tables(net) == {}
    assert extend_positions(net, 50) == []
    assert all(torch.equal(before[name], p) for name, p in net.state_dict().items())


def test_seq2seq_and_hierarchical_tables() -> None:
    source_task = TaskSpec("toy", "seq2seq", VOCAB, num_classes=len(VOCAB), max_length=5, source_length=OLD)
    entry = get_registry().get("models", "seq2seq")
    config = with_values(entry.default_config(), {"d_model": 16, "heads": 2})
    net = entry.factory(config, ModelSpec(source_task, None))
    assert learned_position_tables(net) == {"source_positions": OLD, "target_positions": 5}
    assert extend_positions(net, 8) == ["target_positions"]
    assert net.target_length == 8 and net.source_length == OLD

    docs = model("hierarchical")
    assert "segment_positions" in learned_position_tables(docs)
    assert "token_positions" not in learned_position_tables(docs)  # bound to the segment length, not the input
    assert extend_positions(docs, 40) == ["segment_positions"]


def test_vit_grid_positions_are_not_length_tables() -> None:
    entry = get_registry().get("models", "vit")
    task = TaskSpec("img", "classify", (), num_classes=3, max_length=8, channels=1, image_size=8)
    net = entry.factory(entry.default_config(), ModelSpec(task, None))
    assert learned_position_tables(net) == {}
