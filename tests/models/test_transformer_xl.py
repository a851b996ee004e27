"""Transformer-XL: relative shift, causality, detached memory, and memory that helps across segments."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from effstudio.config import ConfigError
from effstudio.engine.events import AttentionEvent, EvalEvent, StepEvent
from effstudio.engine.run_config import RunConfig
from effstudio.engine.trainer import train
from effstudio.models.base import ModelSpec
from effstudio.models.transformer_xl import TransformerXL, TransformerXLConfig, relative_shift
from effstudio.tasks.base import TaskSpec
from tests.engine.conftest import train_stopped_at

VOCAB = ("<pad>",) + tuple("abcdefgh")
SPEC = TaskSpec("toy-lm", "lm", VOCAB, num_classes=len(VOCAB), max_length=32)


def model(**changes: object) -> TransformerXL:
    config = TransformerXLConfig(**{"d_model": 16, "heads": 2, "layers": 2, "ff_mult": 2, "dropout": 0.0,
                                    "mem_len": 6, "eval_mem_len": 10, **changes})
    torch.manual_seed(0)
    return TransformerXL(config, ModelSpec(SPEC, None))


def tokens(b: int, n: int, seed: int) -> torch.Tensor:
    return torch.randint(1, len(VOCAB), (b, n), generator=torch.Generator().manual_seed(seed))


def test_relative_shift_puts_each_distance_under_its_key() -> None:
    b, h, n, m = 2, 3, 5, 4
    k = m + n
    by_distance = torch.randn(b, h, n, k)  # column c: distance k - 1 - c
    shifted = relative_shift(by_distance)
    for i in range(n):
        for j in range(m + i + 1):  # every key query i may see
            assert torch.equal(shifted[:, :, i, j], by_distance[:, :, i, k - 1 - (m + i - j)])


def test_relative_attention_is_causal_with_and_without_memory() -> None:
    net = model().eval()
    memory = net(tokens(2, 8, 0)).memory
    inputs = tokens(2, 8, 1)
    changed = inputs.clone()
    changed[:, 5:] = tokens(2, 3, 2)
    for past in (None, memory):
        before, after = net(inputs, memory=past).logits, net(changed, memory=past).logits
        assert torch.allclose(before[:, :5], after[:, :5], atol=1e-6)
        assert not torch.allclose(before[:, 5:], after[:, 5:])
    # and the memory itself matters
    assert not torch.allclose(net(inputs, memory=memory).logits, net(inputs).logits)


def test_memory_is_detached_and_bounded() -> None:
    net = model().train()
    out = net(tokens(2, 8, 0))
    assert [m.shape for m in out.memory] == [(2, 6, 16)] * 2  # mem_len newest states per layer
    assert all(not m.requires_grad for m in out.memory)
    follow = net(tokens(2, 8, 1), memory=out.memory)
    follow.logits.sum().backward()  # no error: nothing flows back into the first segment's graph
    net.eval()
    longer = net(tokens(2, 8, 2), memory=net(tokens(2, 8, 3)).memory).memory
    assert longer[0].shape == (2, 10, 16)  # eval_mem_len in evaluation
    assert model(mem_len=0).train()(tokens(2, 8, 0)).memory is None


def test_memory_gradient_does_not_reach_the_previous_segment() -> None:
    net = model().train()
    first = tokens(2, 8, 0)
    embedded = []
    def keep(_module, _inputs, out):  # the embedded tokens of each pass, with their gradient
        embedded.append(out)
        if out.requires_grad:  # not the gradient-free comparison pass
            out.retain_grad()

    hook = net.embed.register_forward_hook(keep)
    memory = net(first).memory
    net(tokens(2, 8, 1), memory=memory).logits.sum().backward()
    hook.remove()
    assert embedded[0].grad is None  # the first segment's activations got no gradient
    assert embedded[1].grad is not None


def test_compare_extras_and_maps() -> None:
    net = model().eval()
    memory = net(tokens(1, 8, 0)).memory
    out = net(tokens(1, 8, 1), memory=memory, need_weights=True)
    assert set(out.extras) == {"loss_memory", "loss_no_memory", "memory_loss"}
    assert out.extras["memory_loss"].shape == (2, 7)
    assert torch.isclose(out.extras["memory_loss"][0].mean(), out.extras["loss_memory"])
    assert [a.shape for a in out.attentions] == [(1, 2, 8, 8)] * 2  # the segment's own tokens
    assert net(tokens(1, 8, 1)).extras == {}  # nothing to compare without memory


def test_refuses_classification() -> None:
    spec = TaskSpec("toy-classify", "classify", VOCAB, num_classes=3, max_length=32)
    with pytest.raises(ConfigError):
        TransformerXL(TransformerXLConfig(d_model=16, heads=2), ModelSpec(spec, None))


def copy_text(path, blocks: int, length: int, seed: int) -> None:
    """Random blocks of ``length`` letters, each followed by its copy: the copy's letters
    can only be predicted from the previous segment."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefgh"))
    parts = []
    for _ in range(blocks):
        block = "".join(rng.choice(letters, length))
        parts += [block, block]
    path.write_text("".join(parts), encoding="utf-8")


def val_loss_after_training(tmp_path, text, mem_len: int) -> tuple[float, list[StepEvent]]:
    config = RunConfig.create("transformer_xl", "charlm", {
        "model.d_model": 32, "model.heads": 2, "model.layers": 1, "model.ff_mult": 2, "model.dropout": 0.0,
        "model.mem_len": mem_len, "model.eval_mem_len": mem_len,
        "task.path": str(text), "task.segment_length": 8, "task.val_fraction": 0.2, "task.test_fraction": 0.0,
        "train.steps": 80, "train.batch_size": 16, "train.lr": 1e-2, "train.warmup_steps": 10,
        "train.eval_every": 1000, "train.attention_every": 0, "train.device": "cpu", "train.seed": 0,
    })
    events = list(train(config, out_dir=tmp_path / f"mem{mem_len}"))
    evals = [e for e in events if isinstance(e, EvalEvent)]
    assert evals[-1].metrics["val_bits_per_char"] == pytest.approx(evals[-1].val_loss / np.log(2))
    return evals[-1].val_loss, [e for e in events if isinstance(e, StepEvent)]


def test_memory_lowers_the_loss_across_segment_boundaries(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EFFSTUDIO_DATA_DIR", str(tmp_path / "data"))
    text = tmp_path / "copies.txt"
    copy_text(text, blocks=200, length=8, seed=0)  # 3200 letters: train and val start on a block
    with_memory, steps = val_loss_after_training(tmp_path, text, mem_len=8)
    without, _ = val_loss_after_training(tmp_path, text, mem_len=0)
    assert without > 0.85 * np.log(8)  # every other segment is a fresh random block
    assert with_memory < without - 0.3
    # the model's own comparison on the training segments says the same (a step that starts
    # the streams again has no memory to compare)
    late = [e for e in steps if "loss_memory" in e.metrics][-10:]
    assert sum(e.metrics["loss_memory"] for e in late) < sum(e.metrics["loss_no_memory"] for e in late) - 3.0
    assert "bits_per_char" in late[-1].metrics


def test_stop_then_resume_keeps_the_memory_and_equals_one_run(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EFFSTUDIO_DATA_DIR", str(tmp_path / "data"))
    text = tmp_path / "copies.txt"
    copy_text(text, blocks=40, length=8, seed=1)
    cfg = RunConfig.create("transformer_xl", "charlm", {
        "model.d_model": 16, "model.heads": 2, "model.layers": 1, "model.dropout": 0.0, "model.mem_len": 8,
        "task.path": str(text), "task.segment_length": 8, "task.val_fraction": 0.2, "task.test_fraction": 0.0,
        "train.steps": 6, "train.batch_size": 4, "train.warmup_steps": 1, "train.eval_every": 3,
        "train.attention_every": 3, "train.device": "cpu",
    })

    def history(events):
        return [(e.loss, e.metrics) for e in events if isinstance(e, StepEvent)]

    straight = list(train(cfg, out_dir=tmp_path / "straight"))
    first = train_stopped_at(cfg, 3, tmp_path / "split")
    second = list(train(cfg, out_dir=tmp_path / "split", resume=tmp_path / "split" / "checkpoint.safetensors"))
    combined = history(first) + history(second)
    assert [loss for loss, _ in combined] == pytest.approx([loss for loss, _ in history(straight)], rel=1e-5)
    assert "loss_no_memory" in combined[4][1]  # step 5 reads the memory that step 4 left, after the resume
    probes = [e for e in straight if isinstance(e, AttentionEvent)]
    assert probes and probes[-1].views["memory_loss"].shape == (2, 7)  # the probe read the segment before it
