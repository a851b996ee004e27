"""Every registered model type against toy classification, LM, image and seq2seq tasks.

The generic tests run once per registry entry, so a new model type is covered
by registering it; the transformer's own rules are tested at the end.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from effstudio.config import ConfigError, with_values
from effstudio.models.base import ModelSpec
from effstudio.models.transformer import TransformerConfig
from effstudio.registry import Entry, get_registry
from effstudio.tasks.base import IGNORE_INDEX, TaskSpec

VOCAB = ("<pad>",) + tuple(f"t{i}" for i in range(19))  # 20 tokens, pad id 0
B, N = 3, 8
# the tasks allow longer sequences than the batches use, so every attention kind's
# default window or block fits (a window as long as the task is refused as full attention)
MAX_LENGTH = 512
T = 5  # target length of the seq2seq task
TASKS = {
    "classify": TaskSpec("toy-classify", "classify", VOCAB, num_classes=4, max_length=MAX_LENGTH),
    "lm": TaskSpec("toy-lm", "lm", VOCAB, num_classes=0, max_length=MAX_LENGTH),
    "image": TaskSpec("toy-image", "classify", (), num_classes=4, max_length=8, channels=1, image_size=8),
    "seq2seq": TaskSpec("toy-seq2seq", "seq2seq", VOCAB, num_classes=len(VOCAB), max_length=T,
                        source_length=MAX_LENGTH),
}
# a model type that reads none of a task's form refuses it with a ConfigError (and is skipped there)
# tiny sizes for the fields a model type happens to have: tests stay fast
SMALL = {"d_model": 16, "layers": 2, "heads": 2, "ff_mult": 2}
MODELS = get_registry().all("models")


def assert_near(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-5) -> None:
    # not torch.testing.assert_close: its first call imports torch.distributed (seconds)
    assert actual.shape == expected.shape, f"shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    diff = (actual - expected).abs().max().item() if actual.numel() else 0.0
    assert diff <= tol, f"max difference {diff:.3g} > {tol}"


def small_config(entry: Entry, **changes: object) -> object:
    config = entry.default_config()
    names = {f.name for f in dataclasses.fields(config)}
    return with_values(config, {**{k: v for k, v in SMALL.items() if k in names}, **changes})


def build(entry: Entry, config: object, objective: str) -> torch.nn.Module:
    kind = getattr(config, "attention", None)
    attention_config = get_registry().get("attention", kind).default_config() if kind else None
    torch.manual_seed(0)
    return entry.factory(config, ModelSpec(TASKS[objective], attention_config))


def batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """inputs (B, N), mask (B, N) True = real, lengths (B,) with right padding."""
    gen = torch.Generator().manual_seed(0)
    lengths = torch.tensor([N, 5, 2])
    mask = torch.arange(N)[None, :] < lengths[:, None]  # (B, N)
    inputs = torch.randint(1, len(VOCAB), (B, N), generator=gen).masked_fill(~mask, 0)
    return inputs, mask, lengths


def images() -> torch.Tensor:
    """(B, 1, 8, 8) images in [0, 1]."""
    return torch.rand(B, 1, 8, 8, generator=torch.Generator().manual_seed(0))


def seq2seq_targets() -> torch.Tensor:
    """(B, T) target ids, IGNORE_INDEX after each target's end."""
    targets = torch.randint(1, len(VOCAB), (B, T), generator=torch.Generator().manual_seed(1))
    targets[1, 3:] = IGNORE_INDEX
    return targets


def run_model(model, objective: str, need_weights: bool = False):
    """(output, inputs, mask) of the toy batch of this objective; seq2seq with teacher forcing."""
    inputs, mask, _ = batch()
    if objective == "image":
        inputs, mask = images(), torch.ones(B, dtype=torch.bool)
    if objective == "seq2seq":
        return model(inputs, mask, need_weights=need_weights, targets=seq2seq_targets()), inputs, mask
    return model(inputs, mask, need_weights=need_weights), inputs, mask


def loss_of(output, objective: str, inputs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    if objective in ("classify", "image"):
        loss = F.cross_entropy(output.logits, torch.tensor([0, 1, 3]))
    elif objective == "seq2seq":
        loss = F.cross_entropy(output.logits.flatten(0, 1), seq2seq_targets().flatten(),
                               ignore_index=IGNORE_INDEX)
    else:
        # next-token targets; the last position and padding are not scored
        targets = torch.full_like(inputs, IGNORE_INDEX)
        targets[:, :-1] = inputs[:, 1:].masked_fill(~mask[:, 1:], IGNORE_INDEX)
        loss = F.cross_entropy(
            output.logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX
        )
    return loss if output.aux_loss is None else loss + output.aux_loss


def model_params() -> list:
    return [
        pytest.param(entry, objective, id=f"{entry.name}-{objective}")
        for entry in MODELS
        for objective in TASKS
    ]


@pytest.mark.parametrize("entry,objective", model_params())
def test_default_model_trains_one_step(entry: Entry, objective: str) -> None:
    config = entry.default_config()
    try:
        model = build(entry, config, objective)
    except ConfigError as err:
        pytest.skip(f"{entry.name} refuses {objective} tasks: {err}")
    output, inputs, mask = run_model(model, objective)
    expected = {"classify": (B, 4), "image": (B, 4), "lm": (B, N, len(VOCAB)), "seq2seq": (B, T, len(VOCAB))}
    assert output.logits.shape == expected[objective]
    loss = loss_of(output, objective, inputs, mask)
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("entry,objective", model_params())
def test_attention_maps_per_layer(entry: Entry, objective: str) -> None:
    config = small_config(entry)
    try:
        model = build(entry, config, objective).eval()
    except ConfigError as err:
        pytest.skip(f"{entry.name} refuses {objective} tasks: {err}")
    maps = run_model(model, objective, need_weights=True)[0].attentions
    assert maps is not None
    if hasattr(config, "layers"):
        assert len(maps) == config.layers
    heads = getattr(config, "heads", None)
    for layer_map in maps:
        assert layer_map.shape[0] == B and torch.isfinite(layer_map).all()
        assert heads is None or layer_map.shape[1] == heads
        if objective == "image":  # one row and column per patch (and summary token)
            assert layer_map.shape[-1] == layer_map.shape[-2] > 1
        else:  # aligned with the input tokens (the source, for seq2seq)
            assert layer_map.shape[-2:] == (N, N)
    assert run_model(model, objective)[0].attentions is None


@pytest.mark.parametrize("entry", MODELS, ids=[e.name for e in MODELS])
def test_every_model_type_reads_some_toy_task(entry: Entry) -> None:
    """A model type refused by every toy task would be skipped by every generic test above."""
    accepted = []
    for objective in TASKS:
        try:
            build(entry, small_config(entry), objective)
        except ConfigError:
            continue
        accepted.append(objective)
    assert accepted, f"{entry.name} refuses every toy task form ({', '.join(TASKS)})"


# ---------------------------------------------------------------- transformer

TRANSFORMER = get_registry().get("models", "transformer")
ATTENTION_KINDS = get_registry().names("attention")


def test_encoder_refuses_language_modelling() -> None:
    config = small_config(TRANSFORMER, mode="encoder")
    with pytest.raises(ConfigError) as info:
        build(TRANSFORMER, config, "lm")
    assert info.value.field == "mode"


def test_heads_must_divide_width() -> None:
    with pytest.raises(ConfigError) as info:
        TransformerConfig(d_model=30, heads=4).check()
    assert info.value.field == "heads"
    with pytest.raises(ConfigError) as info:
        with_values(TransformerConfig(), {"d_model": 30, "heads": 4})
    assert info.value.field == "heads"


@pytest.mark.parametrize("attention", ATTENTION_KINDS)
@pytest.mark.parametrize("pooling", ["cls", "mean"])
@pytest.mark.parametrize("mode", ["encoder", "decoder"])
def test_classifier_ignores_padding(attention: str, pooling: str, mode: str) -> None:
    config = small_config(TRANSFORMER, attention=attention, pooling=pooling, mode=mode)
    try:
        model = build(TRANSFORMER, config, "classify").eval()
    except ConfigError as err:
        pytest.skip(str(err))
    inputs, mask, _ = batch()
    changed = inputs.masked_fill(~mask, 7)  # other ids where the mask says padding
    out, out2 = model(inputs, mask), model(changed, mask)
    assert_near(out2.logits, out.logits)
    assert out.logits.shape == (B, 4)


@pytest.mark.parametrize("attention", ATTENTION_KINDS)
@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_decoder_never_sees_later_tokens(attention: str, positions: str) -> None:
    config = small_config(TRANSFORMER, attention=attention, positions=positions)
    try:
        model = build(TRANSFORMER, config, "lm").eval()
    except ConfigError as err:
        pytest.skip(str(err))
    inputs, mask, _ = batch()
    changed = inputs.clone()
    changed[:, 4:] = (changed[:, 4:] + 3) % len(VOCAB)
    logits, logits2 = model(inputs, mask).logits, model(changed, mask).logits
    assert_near(logits2[:, :4], logits[:, :4])
    assert not torch.allclose(logits2[0, 4:], logits[0, 4:])


def test_maps_align_with_input_tokens_when_cls_is_used() -> None:
    config = small_config(TRANSFORMER, pooling="cls", mode="decoder")
    model = build(TRANSFORMER, config, "classify").eval()
    inputs, mask, _ = batch()
    maps = model(inputs, mask, need_weights=True).attentions
    assert all(m.shape == (B, config.heads, N, N) for m in maps)
    # decoder: tokens never attend to the summary token appended after them
    assert_near(maps[0][0].sum(-1), torch.ones(config.heads, N))


def test_lm_head_is_tied_to_the_embedding() -> None:
    tied = build(TRANSFORMER, small_config(TRANSFORMER), "lm")
    assert tied.head.weight is tied.embed.weight
    untied = build(TRANSFORMER, small_config(TRANSFORMER, tie_embeddings=False), "lm")
    assert untied.head.weight is not untied.embed.weight


def test_learned_positions_refuse_longer_inputs() -> None:
    model = build(TRANSFORMER, small_config(TRANSFORMER), "classify")
    with pytest.raises(ValueError, match="longer"):
        model(torch.ones(1, MAX_LENGTH + 1, dtype=torch.long))


def test_mask_may_be_omitted() -> None:
    model = build(TRANSFORMER, small_config(TRANSFORMER, pooling="mean"), "classify").eval()
    inputs, _, _ = batch()
    full_mask = torch.ones_like(inputs, dtype=torch.bool)
    assert_near(model(inputs).logits, model(inputs, full_mask).logits)
