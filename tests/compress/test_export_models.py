"""The model types whose eager forward the tracer cannot follow export faithfully too.

The Universal Transformer stops its ACT loop once every position has halted (a
step count that depends on the data), and the hierarchical encoder cuts the
input into a data-dependent number of segments with scatter_reduce. While
exporting both take a forward of plain tensor operations; these tests hold it
to the eager model on padded batches of sizes, lengths and segment counts
other than the traced example's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from effstudio.compress.export import export_job, export_onnx, session
from effstudio.engine.build import build_model, build_task
from effstudio.engine.checkpoint import save_checkpoint
from effstudio.engine.data import Batch
from effstudio.engine.loading import load_checkpoint
from effstudio.engine.run_config import RunConfig
from effstudio.models import hierarchical, universal
from tests.compress.conftest import make_checkpoint
from tests.compress.test_export_kinds import assert_session_matches, padded_batch

SHAPES = [(1, 5), (3, 17), (5, 33), (2, 40)]  # none of them the traced example (2 rows of the val split)
LISTOPS = {"task.train_size": 16, "task.val_size": 16, "task.test_size": 8, "task.min_length": 8,
           "task.max_length": 40}
UNIVERSAL = {"model.d_model": 16, "model.heads": 2, "model.dropout": 0.0, "model.max_steps": 4}
HIERARCHICAL = {"model.d_model": 16, "model.heads": 2, "model.dropout": 0.0, "model.segment_length": 8,
                "model.token_layers": 1}


def universal_checkpoint(path: Path, config: RunConfig) -> Path:
    """A Universal Transformer whose positions halt after 1 to max_steps steps, not all after the same."""
    torch.manual_seed(0)
    model = build_model(config, build_task(config).spec)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        model.halt.weight.normal_(0.0, 2.0)  # spread the halting probabilities over (0, 1)
        model.halt.bias.fill_(0.5)
    return save_checkpoint(path, model, config, step=0)


def ponder_steps(model: torch.nn.Module, probe: Batch) -> torch.Tensor:
    with torch.no_grad():
        return model(probe.inputs, probe.mask).extras["ponder_steps"][probe.mask]  # (real tokens,)


def export_checked(ckpt: Path, out: Path) -> None:
    """Export with the parity check: it passes, and the exported model scores what the checkpoint does."""
    result = list(export_job(ckpt, out, check=True, eval_batch_size=16))[-1]
    assert result.details["parity_ok"], result.details["max_abs_diff"]
    assert result.accuracy == pytest.approx(result.baseline_accuracy, abs=1e-9)


@pytest.mark.parametrize(("max_steps", "ffn"), [(4, "dense"), (6, "dense"), (4, "moe")])
def test_universal_transformer_exports_its_adaptive_loop(tmp_path, max_steps, ffn):
    moe = {"model.ffn": "moe", "model.experts": 4, "model.top_k": 2, "model.capacity_factor": 0.5} if ffn == "moe" else {}
    config = RunConfig.create("universal", "listops", {**UNIVERSAL, "model.max_steps": max_steps, **moe, **LISTOPS})
    ckpt = universal_checkpoint(tmp_path / "u.safetensors", config)
    out = tmp_path / "u.onnx"
    export_checked(ckpt, out)
    loaded = load_checkpoint(ckpt)
    vocab = len(loaded.task.spec.vocab)
    steps = torch.cat([ponder_steps(loaded.model, padded_batch(vocab, b, n, seed)) for seed, (b, n) in
                       enumerate(SHAPES)])
    assert steps.min() == 1 and steps.max() > 1  # positions halt after different step counts
    if max_steps == 4:  # some positions are halted by the last step
        assert steps.max() == max_steps
    else:  # every eager loop stopped early, while the graph runs all the steps
        assert steps.max() < max_steps
    assert_session_matches(loaded, session(out, threads=1), SHAPES)


def test_causal_universal_transformer_exports(tmp_path):
    config = RunConfig.create("universal", "charlm", {**UNIVERSAL, "task.segment_length": 24})
    ckpt = universal_checkpoint(tmp_path / "c.safetensors", config)
    loaded = load_checkpoint(ckpt)
    model, spec = loaded.model.float().eval(), loaded.task.spec
    out = export_onnx(model, config, spec, padded_batch(len(spec.vocab), 2, 24, seed=9), tmp_path / "c.onnx")
    assert_session_matches(loaded, session(out, threads=1), [(2, 24), (1, 7), (3, 19)])


@pytest.mark.parametrize("max_steps", [4, 6])
def test_the_exported_ponder_loop_is_the_eager_one_exactly(monkeypatch, tmp_path, max_steps):
    """Running every step after all positions halted adds exact zeros: the same bits, not only close."""
    config = RunConfig.create("universal", "listops", {**UNIVERSAL, "model.max_steps": max_steps, **LISTOPS})
    model = load_checkpoint(universal_checkpoint(tmp_path / "u.safetensors", config)).model
    probes = [padded_batch(16, b, n, seed) for seed, (b, n) in enumerate(SHAPES)]
    with torch.no_grad():
        eager = [model(p.inputs, p.mask).logits for p in probes]
        monkeypatch.setattr(universal, "exporting", lambda: True)
        every_step = [model(p.inputs, p.mask).logits for p in probes]
    for a, b in zip(eager, every_step, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("split", ["fixed", "separator"])
def test_hierarchical_encoder_exports_with_dynamic_segment_counts(tmp_path, split):
    sentences = {"model.split": "separator", "model.separator": "]"} if split == "separator" else {}
    config = RunConfig.create("hierarchical", "listops", {**HIERARCHICAL, **sentences, **LISTOPS})
    ckpt = make_checkpoint(tmp_path / "h.safetensors", config)
    out = tmp_path / "h.onnx"
    export_checked(ckpt, out)
    loaded = load_checkpoint(ckpt)
    sess = session(out, threads=1)
    assert_session_matches(loaded, sess, SHAPES)  # 1 to 5 segments of 8 tokens (more with sentences)
    # padding inside the rows, not only at their ends, and one row with no real token at all
    gen = torch.Generator().manual_seed(3)
    inputs = torch.randint(1, len(loaded.task.spec.vocab), (4, 29), generator=gen)
    mask = torch.rand(4, 29, generator=gen) < 0.7
    mask[3] = False
    probe = Batch(inputs.masked_fill(~mask, 0), mask, torch.zeros(4, dtype=torch.long))
    assert_session_matches_batch(loaded, sess, probe)


def assert_session_matches_batch(loaded, sess, probe: Batch) -> None:  # noqa: ANN001
    from effstudio.compress.export import PARITY_LIMIT, run_session

    with torch.no_grad():
        expected = loaded.model(probe.inputs, probe.mask).logits
    got = torch.from_numpy(run_session(sess, probe.inputs, probe.mask))
    real_rows = probe.mask.any(dim=1)  # a row without tokens has no document to compare
    assert (got[real_rows] - expected[real_rows]).abs().max() <= PARITY_LIMIT


def test_traceable_segments_are_the_eager_segments():
    gen = torch.Generator().manual_seed(0)
    for trial in range(200):
        b, n, length = (int(torch.randint(lo, hi, (1,), generator=gen)) for lo, hi in ((1, 5), (1, 30), (1, 7)))
        mask = torch.rand(b, n, generator=gen) < torch.rand(1, generator=gen)
        separators = torch.rand(b, n, generator=gen) < 0.3 if trial % 2 else None
        eager = hierarchical.split_segments(mask, length, separators)
        traced = hierarchical.split_segments_traceable(mask, length, separators)
        assert torch.equal(eager.index, traced.index) and torch.equal(eager.segment, traced.segment)


def test_training_and_inference_never_take_the_model_export_paths(monkeypatch):
    """Outside export the ACT loop stops when every position has halted and the hierarchical encoder
    encodes only its filled segments."""

    def refuse(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("export path taken outside export")

    monkeypatch.setattr(hierarchical.HierarchicalEncoder, "_export_forward", refuse)
    monkeypatch.setattr(hierarchical, "split_segments_traceable", refuse)
    inputs, mask = torch.randint(1, 5, (2, 12)), torch.ones(2, 12, dtype=torch.bool)
    mask[1, 7:] = False
    for model_type, settings in (("hierarchical", HIERARCHICAL), ("universal", {**UNIVERSAL, "model.max_steps": 8})):
        config = RunConfig.create(model_type, "listops", {**settings, **LISTOPS})
        model = build_model(config, build_task(config).spec)
        calls: list[int] = []
        if model_type == "universal":
            model.block.register_forward_hook(lambda *_, calls=calls: calls.append(1))
        output = model(inputs, mask)
        output.logits.sum().backward()
        with torch.no_grad():
            model.eval()(inputs, mask)
        if model_type == "universal":  # a fresh model halts after about two steps, well before 8
            steps = int(output.extras["ponder_steps"].max())
            assert steps < 8 and len(calls) == 2 * steps
