"""Encoder-decoder: learns to reverse, decodes greedily without the target, exposes its cross-attention."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from effstudio.config import ConfigError
from effstudio.engine.build import build_task
from effstudio.engine.data import make_batch
from effstudio.engine.events import AttentionEvent, EvalEvent
from effstudio.engine.loading import load_model
from effstudio.engine.objective import evaluate, exact_matches
from effstudio.engine.run_config import RunConfig
from effstudio.engine.trainer import train
from effstudio.models.base import ModelSpec
from effstudio.models.seq2seq import Seq2SeqConfig, Seq2SeqTransformer
from effstudio.registry import get_registry
from effstudio.tasks.base import IGNORE_INDEX
from effstudio.tasks.copy import EOS_ID, PAD_ID, CopyConfig, CopyTask

REVERSE = {
    "model.d_model": 32, "model.layers": 2, "model.heads": 2, "model.dropout": 0.0,
    "task.mode": "reverse", "task.vocab_size": 8, "task.min_length": 2, "task.max_length": 6,
    "task.train_size": 2000, "task.val_size": 100,
    "train.batch_size": 64, "train.lr": 3e-3, "train.warmup_steps": 10, "train.device": "cpu",
}


def small_task(mode: str = "reverse") -> CopyTask:
    return CopyTask(CopyConfig(mode=mode, vocab_size=8, min_length=2, max_length=6, train_size=64,
                               val_size=16, test_size=16))


def model_for(task, cross_attention: str = "full", attention: str = "sdpa") -> Seq2SeqTransformer:
    config = Seq2SeqConfig(d_model=32, layers=2, heads=2, dropout=0.0, attention=attention,
                           cross_attention=cross_attention)
    attention_config = get_registry().get("attention", attention).default_config()
    torch.manual_seed(0)
    return Seq2SeqTransformer(config, ModelSpec(task.as_seq2seq().spec, attention_config)).eval()


def test_seq2seq_learns_to_reverse(tmp_path, one_thread):
    config = RunConfig.create("seq2seq", "copy", {**REVERSE, "train.steps": 200, "train.eval_every": 200,
                                                  "train.attention_every": 200})
    events = list(train(config, out_dir=tmp_path))
    assert events[-1].status == "finished"
    accuracy = [e for e in events if isinstance(e, EvalEvent)][-1].val_accuracy
    assert accuracy >= 0.9, f"exact match {accuracy:.2f} on reversing 2-6 symbols"

    # the probe: cross-attention of the decoded sequence over the source, with tokens for both
    probe = [e for e in events if isinstance(e, AttentionEvent)][-1]
    cross = probe.views["cross_attention"]  # (1, L, H, T, S)
    s = cross.shape[-1]
    source, decoded = probe.tokens[:s], probe.tokens[s:]
    assert cross.shape[:3] == (1, 2, 2) and cross.shape[3] == len(decoded) == 7
    n = len(source)
    assert list(decoded[:n]) == list(reversed(source)) and decoded[n] == "<eos>"
    assert np.allclose(cross.sum(-1), 1.0, atol=1e-5)
    # a model that reverses reads source position n-1-i for output i, in some head of some layer
    best = cross[0].max(axis=(0, 1))  # (T, S) strongest weight any head gives
    assert all(best[i, n - 1 - i] > 0.3 for i in range(n))

    # the checkpoint reloads to the same greedy outputs
    model, _, task = load_model(tmp_path / "checkpoint.safetensors")
    assert task.spec.objective == "seq2seq"
    batch = make_batch(task.split("val"), torch.arange(16), task.spec.pad_id)
    assert exact_matches(model.generate(batch.inputs, batch.mask), batch.targets) >= 14


def test_greedy_decoding_never_sees_the_target():
    task = small_task()
    model = model_for(task)
    batch = make_batch(task.as_seq2seq().split("val"), torch.arange(16), PAD_ID)
    greedy = model.generate(batch.inputs, batch.mask)  # (B, T): only the source goes in
    assert greedy.shape == (16, 7)
    assert torch.equal(model(batch.inputs, batch.mask).logits.argmax(-1), greedy)
    # teacher forcing does read the targets: other targets, other predictions
    forced = model(batch.inputs, batch.mask, targets=batch.targets).logits.argmax(-1)
    scrambled = model(batch.inputs, batch.mask, targets=batch.targets.roll(1, dims=0)).logits.argmax(-1)
    assert not torch.equal(forced, scrambled)

    # evaluation scores the greedy outputs: one teacher-forced call (the loss), one without targets
    calls = []

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = model

        def forward(self, inputs, mask=None, need_weights=False, targets=None):
            calls.append(targets is not None)
            return self.inner(inputs, mask, need_weights=need_weights, targets=targets)

    split = task.as_seq2seq().split("val")
    _, accuracy = evaluate(Spy(), split, PAD_ID, "seq2seq", 16, torch.device("cpu"))
    assert calls == [True, False]
    assert accuracy == exact_matches(greedy, batch.targets) / 16


def test_cross_attention_weights_are_distributions_over_the_real_source():
    task = small_task()
    model = model_for(task, cross_attention="sdpa")
    batch = make_batch(task.as_seq2seq().split("val"), torch.arange(8), PAD_ID)
    output = model(batch.inputs, batch.mask, need_weights=True, targets=batch.targets)
    cross = output.extras["cross_attention"]  # (B, L, H, T, S)
    b, s = batch.inputs.shape
    assert cross.shape == (b, 2, 2, batch.targets.shape[1], s)
    assert torch.allclose(cross.sum(-1), torch.ones(cross.shape[:-1]), atol=1e-5)
    padded = ~batch.mask[:, None, None, None, :].expand_as(cross)
    assert padded.any() and cross[padded].abs().max() == 0
    assert output.extras["decoder_attention"].shape == (b, 2, 2, batch.targets.shape[1], batch.targets.shape[1])
    assert len(output.attentions) == 2 and output.attentions[0].shape == (b, 2, s, s)


def test_decoder_self_attention_is_causal():
    task = small_task()
    model = model_for(task)
    batch = make_batch(task.as_seq2seq().split("val"), torch.arange(8), PAD_ID)
    targets = batch.targets.clamp(min=4)
    changed = targets.clone()
    changed[:, 3:] = 5 + (changed[:, 3:] - 3) % 7
    a = model(batch.inputs, batch.mask, targets=targets).logits
    b = model(batch.inputs, batch.mask, targets=changed).logits
    assert torch.allclose(a[:, :4], b[:, :4], atol=1e-5)  # position t reads targets before t only
    assert not torch.allclose(a[:, 4:], b[:, 4:])


@pytest.mark.parametrize("kind", ["local", "reformer", "bigbird"])
def test_cross_attention_refuses_positional_kinds(kind):
    with pytest.raises(ConfigError) as info:
        model_for(small_task(), cross_attention=kind)
    assert info.value.field == "model.cross_attention" and "use full or sdpa" in info.value.message


def test_self_attention_may_be_another_kind():
    task = small_task()
    model = model_for(task, attention="performer")
    batch = make_batch(task.as_seq2seq().split("val"), torch.arange(4), PAD_ID)
    assert model.generate(batch.inputs, batch.mask).shape == (4, 7)


def test_tasks_in_both_forms():
    config = RunConfig.create("seq2seq", "copy", {"task.mode": "sort", "task.max_length": 5})
    task = build_task(config)
    assert task.spec.objective == "seq2seq" and task.spec.source_length == 5 and task.spec.max_length == 6
    split = task.split("val")
    assert not split.aligned and split.inputs.shape[1] == 5 and split.targets.shape[1] == 6
    for source, target in zip(split.inputs.tolist(), split.targets.tolist(), strict=True):
        symbols = [t for t in source if t != PAD_ID]
        assert target[: len(symbols) + 1] == sorted(symbols) + [EOS_ID]
        assert all(t == IGNORE_INDEX for t in target[len(symbols) + 1:])
    # the decoder-only transformer still gets the language-modelling form of the same task
    lm = build_task(RunConfig.create("transformer", "copy", {"task.mode": "sort"}))
    assert lm.spec.objective == "lm"
    with pytest.raises(ConfigError, match="has no such form"):
        build_task(RunConfig.create("seq2seq", "listops"))
