"""Every registered attention kind exports to ONNX and computes what PyTorch computes.

Kinds whose fast path the tracer cannot follow take a plain-operations forward
while exporting; these tests hold that forward to the model it stands for, on
padded batches and on batch sizes and lengths other than the traced ones, for
encoders (listops, padded) and causal models (charlm) alike.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from effstudio.attention.base import AttentionSpec
from effstudio.compress.export import (
    PARITY_LIMIT,
    export_job,
    export_onnx,
    parity,
    session,
)
from effstudio.config import ConfigError
from effstudio.engine.build import build_model, build_task
from effstudio.engine.data import Batch
from effstudio.engine.loading import load_checkpoint
from effstudio.engine.run_config import RunConfig
from effstudio.registry import get_registry
from tests.compress.conftest import make_checkpoint

# settings that fit sequences of up to ~40 tokens; a kind not named here (a plugin) runs on its defaults
KIND_SETTINGS = {
    "local": {"attention.window": 3},
    "longformer": {"attention.window": 3, "attention.global_tokens": "0,5"},
    "bigbird": {"attention.block_size": 4, "attention.random_blocks": 2, "attention.global_blocks": 1},
    "sparse": {"attention.stride": 4, "attention.local_span": 3},
    "reformer": {"attention.bucket_size": 4, "attention.n_hashes": 2},
    "performer": {"attention.features": 16},
    "linformer": {"attention.k": 8},
}
VARIANTS = {  # further settings that take other export code
    "sparse-fixed": ("sparse", {"attention.pattern": "fixed", "attention.summary": 2}),
    "local-dilated": ("local", {"attention.dilation": 2}),
    "performer-relu": ("performer", {"attention.kernel": "relu"}),
}
SMALL = {"model.d_model": 16, "model.layers": 2, "model.heads": 2, "model.dropout": 0.0}
KINDS = get_registry().names("attention")
CASES = [(kind, KIND_SETTINGS.get(kind, {})) for kind in KINDS] + [
    (kind, {**KIND_SETTINGS[kind], **extra}) for kind, extra in VARIANTS.values() if kind in KINDS
]
IDS = KINDS + [name for name, v in VARIANTS.items() if v[0] in KINDS]


def encoder_config(kind: str, settings: dict) -> RunConfig:
    return RunConfig.create("transformer", "listops", {
        **SMALL, "model.attention": kind, **settings,
        "task.train_size": 16, "task.val_size": 16, "task.test_size": 8, "task.min_length": 8, "task.max_length": 40,
    })


def decoder_config(kind: str, settings: dict) -> RunConfig:
    return RunConfig.create("transformer", "charlm", {
        **SMALL, "model.attention": kind, **settings, "task.segment_length": 24,
    })


def padded_batch(vocab: int, batch: int, length: int, seed: int) -> Batch:
    """Random tokens, every row but the first ending in padding of a different length."""
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randint(1, vocab, (batch, length), generator=gen)
    mask = torch.ones(batch, length, dtype=torch.bool)
    for row in range(1, batch):
        mask[row, length - min(length - 1, 2 * row):] = False
    return Batch(inputs.masked_fill(~mask, 0), mask, torch.zeros(batch, dtype=torch.long))


def assert_session_matches(loaded, sess, shapes) -> float:  # noqa: ANN001
    worst = 0.0
    for seed, (batch, length) in enumerate(shapes):
        probe = padded_batch(len(loaded.task.spec.vocab), batch, length, seed)
        worst = max(worst, parity(loaded.model, sess, [probe]))
    assert worst <= PARITY_LIMIT
    return worst


@pytest.mark.parametrize(("kind", "settings"), CASES, ids=IDS)
def test_every_kind_exports_with_parity_on_padded_batches(tmp_path, kind, settings):
    ckpt = make_checkpoint(tmp_path / "m.safetensors", encoder_config(kind, settings))
    out = tmp_path / "m.onnx"
    result = list(export_job(ckpt, out, check=True, eval_batch_size=16))[-1]
    assert result.details["parity_ok"], result.details["max_abs_diff"]
    assert result.details["dynamic_axes"] == ["batch", "sequence"]
    assert result.accuracy == pytest.approx(result.baseline_accuracy, abs=1e-9)
    loaded = load_checkpoint(ckpt)
    # none of these is the traced shape (2 rows); lengths cross the kinds' block and bucket sizes
    assert_session_matches(loaded, session(out, threads=1), [(1, 5), (3, 17), (5, 33), (2, 40)])


@pytest.mark.parametrize(("kind", "settings"), CASES, ids=IDS)
def test_causal_kinds_export_with_parity(tmp_path, kind, settings):
    try:
        config = decoder_config(kind, settings)
        ckpt = make_checkpoint(tmp_path / "c.safetensors", config)
    except ConfigError as err:
        pytest.skip(f"{kind} does not build causally here: {err}")
    loaded = load_checkpoint(ckpt)
    model, spec = loaded.model.float().eval(), loaded.task.spec
    example = padded_batch(len(spec.vocab), 2, 24, seed=9)
    out = export_onnx(model, config, spec, example, tmp_path / "c.onnx")
    assert_session_matches(loaded, session(out, threads=1), [(2, 24), (1, 7), (3, 19)])


def test_export_tables_too_large_are_refused_with_the_setting_to_change():
    from effstudio.attention.bigbird import BigBirdAttention, BigBirdAttentionConfig
    from effstudio.attention.reformer import ReformerAttention, ReformerAttentionConfig

    spec = AttentionSpec(16, 2, max_length=1 << 14)
    with pytest.raises(ConfigError, match="larger blocks"):
        BigBirdAttention(BigBirdAttentionConfig(block_size=2, random_blocks=1), spec).prepare_export()
    with pytest.raises(ConfigError, match="larger buckets"):
        ReformerAttention(ReformerAttentionConfig(bucket_size=1), spec).prepare_export()


def test_training_and_inference_never_take_the_export_path(monkeypatch):
    """The plain forward is for tracing only: outside it the fast paths run (a spy on each would fire)."""
    from effstudio.attention import bigbird, kernelized, reformer

    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("export path taken outside export")

    monkeypatch.setattr(bigbird.BigBirdAttention, "export_pattern", refuse)
    monkeypatch.setattr(reformer.ReformerAttention, "export_forward", refuse)
    monkeypatch.setattr(kernelized.KernelizedAttention, "export_forward", refuse)
    for kind in ("bigbird", "reformer", "performer", "linear"):
        config = encoder_config(kind, KIND_SETTINGS.get(kind, {}))
        model = build_model(config, build_task(config).spec)
        inputs = torch.randint(1, 5, (2, 12))
        model(inputs, torch.ones(2, 12, dtype=torch.bool)).logits.sum().backward()
        with torch.no_grad():
            model.eval()(inputs, torch.ones(2, 12, dtype=torch.bool))


@pytest.mark.parametrize("top_k", [1, 2])
def test_mixture_of_experts_exports_with_its_capacity_limit(tmp_path, top_k):
    """A capacity factor low enough to drop tokens: the graph must drop the same ones at every length."""
    config = encoder_config("sdpa", {"model.ffn": "moe", "model.experts": 4, "model.top_k": top_k,
                                     "model.capacity_factor": 0.5})
    ckpt = make_checkpoint(tmp_path / "moe.safetensors", config)
    out = tmp_path / "moe.onnx"
    result = list(export_job(ckpt, out, check=True, eval_batch_size=16))[-1]
    assert result.details["parity_ok"], result.details["max_abs_diff"]
    loaded = load_checkpoint(ckpt)
    probe = padded_batch(len(loaded.task.spec.vocab), 3, 17, seed=1)
    with torch.no_grad():
        dropped = float(loaded.model(probe.inputs, probe.mask).extras["moe_dropped"])
    assert dropped > 0.1  # the case tests the capacity, not only the routing
    assert_session_matches(loaded, session(out, threads=1), [(1, 5), (3, 17), (5, 33), (2, 40)])


def test_the_export_path_follows_this_threads_tracing_not_the_process_wide_export_flag(monkeypatch):
    """Another thread's ONNX export (the Compress section) must not send this thread's forwards
    down the slower plain-operations path."""
    from effstudio.attention.base import exporting

    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    assert not exporting()
    traced = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the ONNX exporter traces with it all the same
        torch.jit.trace(lambda x: (traced.append(exporting()), x * 2)[1], torch.ones(2), check_trace=False)
    assert traced == [True]
