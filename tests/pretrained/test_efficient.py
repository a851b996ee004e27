"""make_efficient on ordinary effstudio models: kinds swapped with the trained projections kept, lengths grown."""

from __future__ import annotations

import json

import pytest
import torch

from effstudio.config import ConfigError
from effstudio.engine.build import build_model, model_of_checkpoint
from effstudio.engine.checkpoint import load_weights, read_info, save_checkpoint
from effstudio.engine.run_config import RunConfig
from effstudio.pretrained.efficient import (
    attention_memory,
    attention_memory_estimate,
    make_efficient,
    measured_curves_path,
    parameter_count,
    record_attention_report,
)
from effstudio.tasks.base import TaskSpec

VOCAB = ("<pad>",) + tuple(f"t{i}" for i in range(19))
OLD = 32


def spec_of(config: RunConfig) -> TaskSpec:
    return TaskSpec("listops", "classify", VOCAB, num_classes=3, max_length=config.task.max_length)


def trained(attention: str = "full", settings: dict | None = None, **model: object
            ) -> tuple[torch.nn.Module, RunConfig]:
    overrides = {**{f"attention.{k}": v for k, v in (settings or {}).items()},"model.d_model": 32, "model.layers": 2, "model.heads": 4, "model.ff_mult": 2,
                 "model.attention": attention, "task.max_length": OLD, **{f"model.{k}": v for k, v in model.items()}}
    config = RunConfig.create("transformer", "listops", overrides)
    torch.manual_seed(0)
    return build_model(config, spec_of(config), training=False).eval(), config


def tokens(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(1, len(VOCAB), (3, n), generator=torch.Generator().manual_seed(2))
    mask = torch.ones(3, n, dtype=torch.bool)
    mask[1, n // 2:] = False  # a padded row
    return ids.masked_fill(~mask, 0), mask


def logits(model: torch.nn.Module, n: int) -> torch.Tensor:
    with torch.no_grad():
        return model(*tokens(n)).logits


def test_a_longer_length_keeps_the_outputs_at_the_old_positions() -> None:
    model, config = trained()
    before = logits(model, OLD)
    result = make_efficient(model, config, max_length=4 * OLD)
    assert result.config.task.max_length == 4 * OLD
    assert result.model.positions.num_embeddings == 4 * OLD
    assert torch.equal(logits(result.model, OLD), before)
    assert logits(result.model, 4 * OLD).isfinite().all()
    assert "position table positions: 32 -> 128 rows by copying" in result.notes
    assert model.positions.num_embeddings == OLD  # the original is left as it was


def test_full_to_sdpa_is_the_same_function() -> None:
    model, config = trained()
    result = make_efficient(model, config, attention="sdpa")
    assert result.config.attention_kind == "sdpa" and result.model.config.attention == "sdpa"
    assert (logits(result.model, OLD) - logits(model, OLD)).abs().max() <= 1e-5
    assert any(note.startswith("attention full -> sdpa in 2 layers") for note in result.notes)


def test_longformer_whose_window_covers_the_input_equals_full() -> None:
    model, config = trained()
    result = make_efficient(model, config, attention="longformer", attention_settings={"window": 16},
                            max_length=128)
    assert (logits(result.model, 16) - logits(model, 16)).abs().max() <= 1e-5
    # a window shorter than the input sees less: the function changes
    narrow = make_efficient(model, config, attention="longformer", attention_settings={"window": 2})
    assert (logits(narrow.model, OLD) - logits(model, OLD)).abs().max() > 1e-4


@pytest.mark.parametrize("kind", ["performer", "linear", "linformer"])
def test_other_kinds_keep_the_trained_projections(kind: str) -> None:
    model, config = trained()
    settings = {"k": 8} if kind == "linformer" else None
    result = make_efficient(model, config, attention=kind, attention_settings=settings, max_length=96)
    for old, new in zip(model.blocks, result.model.blocks, strict=True):
        for part in ("q", "k", "v", "out"):
            assert torch.equal(getattr(old, part).weight, getattr(new, part).weight)
    assert logits(result.model, 96).isfinite().all()
    if kind == "linformer":  # its projections are made for the new length (a summary token adds one)
        assert result.model.blocks[0].attention.key_projection.shape == (8, 97)
        assert parameter_count(result.model) > parameter_count(model)


def test_a_converted_model_is_an_ordinary_checkpoint(tmp_path) -> None:
    model, config = trained()
    result = make_efficient(model, config, attention="linformer", attention_settings={"k": 8}, max_length=64)
    path = save_checkpoint(tmp_path / "efficient.safetensors", result.model, result.config, step=0)
    info = read_info(path)
    assert info.config == result.config
    rebuilt = model_of_checkpoint(info, spec_of(info.config))
    load_weights(rebuilt, path)
    assert torch.equal(logits(rebuilt.eval(), 64), logits(result.model, 64))


def test_a_shared_key_space_drops_and_restores_the_key_projection() -> None:
    model, config = trained()
    reformer = make_efficient(model, config, attention="reformer", attention_settings={"bucket_size": 8})
    assert all(block.k is None for block in reformer.model.blocks)
    assert any("key projections dropped" in note for note in reformer.notes)
    back = make_efficient(reformer.model, reformer.config, attention="full")
    assert all(torch.equal(block.k.weight, block.q.weight) for block in back.model.blocks)


def test_the_same_kind_longer_carries_linformer_columns_over() -> None:
    model, config = trained("linformer", {"k": 8})
    before = logits(model, OLD)
    result = make_efficient(model, config, max_length=2 * OLD)
    assert torch.equal(logits(result.model, OLD), before)


def test_sinusoidal_models_only_raise_their_bound() -> None:
    model, config = trained(positions="sinusoidal")
    result = make_efficient(model, config, attention="longformer", attention_settings={"window": 8}, max_length=256)
    assert result.model.max_length == 256 and result.model.positions is None
    assert logits(result.model, 256).isfinite().all()


def test_bad_choices_are_one_config_error() -> None:
    model, config = trained()
    with pytest.raises(ConfigError, match="below the model's own 32"):
        make_efficient(model, config, max_length=16)
    with pytest.raises(ConfigError, match="nosuch"):
        make_efficient(model, config, attention="nosuch")
    with pytest.raises(ConfigError) as err:  # a window covering every position is full attention
        make_efficient(model, config, attention="longformer", attention_settings={"window": 64})
    assert err.value.field.startswith("attention")
    decoder, decoder_config = trained(mode="decoder")
    with pytest.raises(ConfigError, match="causal"):
        make_efficient(decoder, decoder_config, attention="linformer")


def test_memory_estimates_from_the_kind_and_from_measured_curves(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EFFSTUDIO_DATA_DIR", str(tmp_path))  # the recorded report stays with this test
    _, config = trained()
    full = attention_memory(config, "full", 4096, report={})
    longformer = attention_memory(config, "longformer", 4096, report={})
    assert full.source == "estimated" and longformer.source == "estimated"
    assert full.mb > 8 * longformer.mb  # N x N scores against N x (2w + 1)
    # the default window (64 each side) at 4,096 tokens: 4 heads x 4096 x (2 x 129 + 4 x 8) floats
    assert longformer.mb == pytest.approx(4 * 4096 * (2 * 129 + 32) * 4 / 2**20)

    report = {"settings": {"batch": 2, "heads": 8}, "rows": [
        {"kind": "full", "length": 1024, "ms": 1.0, "peak_mb": 40.0, "ok": True},
        {"kind": "full", "length": 2048, "ms": 4.0, "peak_mb": 160.0, "ok": True},
        {"kind": "full", "length": 4096, "ms": None, "peak_mb": None, "ok": False},
    ]}
    record_attention_report(report)
    assert json.loads(measured_curves_path().read_text())["rows"][0]["peak_mb"] == 40.0
    # 4x per doubling, extrapolated to 4,096, from batch 2 x 8 heads to batch 1 x 4 heads: 640 / 4
    assert attention_memory_estimate(config, "full", 4096) == pytest.approx(160.0)
    assert attention_memory(config, "full", 1536).source == "measured"
    assert attention_memory(config, "longformer", 1536).source == "estimated"  # not measured: from its shape
