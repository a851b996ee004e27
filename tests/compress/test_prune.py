import safetensors
import torch

from effstudio.compress.prune import (
    PruneSettings,
    cubic_schedule,
    prunable_weights,
    prune_job,
    sparsity_report,
)
from effstudio.engine.loading import load_checkpoint, load_model
from effstudio.models.structure import blocks_of


def run(job):
    events = list(job)
    return events, events[-1]


def test_layerwise_magnitude_reaches_the_amount_in_every_layer_and_is_permanent(tiny_checkpoint, tmp_path):
    out = tmp_path / "pruned.safetensors"
    events, result = run(prune_job(tiny_checkpoint, PruneSettings("magnitude", 0.5), out))
    assert result.kind == "result" and result.path == str(out)
    for name, sparsity in result.details["layers"].items():
        assert abs(sparsity - 0.5) < 0.01, name
    loaded = load_checkpoint(out)
    for name, sparsity in sparsity_report(loaded.model).items():
        assert abs(sparsity - 0.5) < 0.01, name
    with safetensors.safe_open(str(out), framework="pt") as handle:
        names = list(handle.keys())
    assert not any("mask" in n or "orig" in n for n in names)  # permanent: plain weights with zeros
    assert [e.step for e in events if e.kind == "prune_step"] == [0, 1]


def test_global_magnitude_reaches_the_amount_overall_with_uneven_layers(tiny_checkpoint, tmp_path):
    out = tmp_path / "global.safetensors"
    _, result = run(prune_job(tiny_checkpoint, PruneSettings("global-magnitude", 0.6), out))
    assert abs(result.details["sparsity"] - 0.6) < 0.005
    layers = result.details["layers"].values()
    assert max(layers) - min(layers) > 0.01  # global pruning does not give every layer the same share
    model, _, _ = load_model(out)
    total = sum(w.tensor.numel() for w in prunable_weights(model))
    zeros = sum(int((w.tensor == 0).sum()) for w in prunable_weights(model))
    assert abs(zeros / total - 0.6) < 0.005


def test_structured_pruning_gives_a_smaller_model_that_loads_without_masks(tiny_checkpoint, tmp_path):
    out = tmp_path / "heads.safetensors"
    _, result = run(prune_job(tiny_checkpoint, PruneSettings("structured", 0.5), out))
    assert result.params < result.baseline_params
    loaded = load_checkpoint(out)
    assert [b.heads for b in blocks_of(loaded.model)] == [2, 2]
    assert [b.mlp[0].out_features for b in blocks_of(loaded.model)] == [64, 64]
    model, _, task = load_model(out)  # the engine's loader honours the recorded structure too
    assert sum(p.numel() for p in model.parameters()) == result.params
    batch_inputs = task.split("val").inputs[:2, :10]
    assert model(batch_inputs).logits.shape == (2, task.spec.num_classes)


def _zero_half(model):
    """Make heads 2 and 3 and the upper half of the neurons contribute nothing: their output weights are 0."""
    with torch.no_grad():
        for block in blocks_of(model):
            dh = block.q.out_features // block.heads
            block.out.weight[:, 2 * dh:] = 0.0
            ff = block.mlp[0].out_features
            block.mlp[2].weight[:, ff // 2:] = 0.0


def test_removing_zero_importance_units_keeps_the_outputs(tmp_path):
    from effstudio.compress.formats import save_float
    from tests.compress.conftest import make_checkpoint

    source = make_checkpoint(tmp_path / "a.safetensors")
    loaded = load_checkpoint(source)
    _zero_half(loaded.model)
    zeroed = save_float(tmp_path / "zeroed.safetensors", loaded.model, loaded.config)
    inputs = loaded.task.split("val").inputs[:4, :20]
    mask = inputs != loaded.task.spec.pad_id
    with torch.no_grad():
        expected = loaded.model(inputs, mask).logits
    for importance in ("magnitude", "gradient"):
        out = tmp_path / f"cut-{importance}.safetensors"
        run(prune_job(zeroed, PruneSettings("structured", 0.5, importance=importance), out))
        pruned = load_checkpoint(out)
        assert [b.heads for b in blocks_of(pruned.model)] == [2, 2]
        with torch.no_grad():
            got = pruned.model(inputs, mask).logits
        assert torch.allclose(got, expected, atol=1e-5), importance


def test_iterative_schedule_fine_tunes_between_steps(tiny_checkpoint, tmp_path):
    out = tmp_path / "gradual.safetensors"
    settings = PruneSettings("magnitude", 0.5, finetune_steps=4, schedule_steps=2)
    events, result = run(prune_job(tiny_checkpoint, settings, out))
    steps = [e for e in events if e.kind == "prune_step"]
    assert [round(e.sparsity, 3) for e in steps] == [0.0, round(cubic_schedule(0.5, 2)[0], 3), 0.5]
    assert all(0.0 <= e.accuracy <= 1.0 for e in steps)
    assert any(e.kind == "eval" for e in events)  # the trainer evaluated while fine-tuning
    assert result.details["finetune_steps"] == 4
    assert abs(result.details["sparsity"] - 0.5) < 0.01


def test_cubic_schedule_ends_at_the_amount():
    schedule = cubic_schedule(0.8, 4)
    assert schedule[-1] == 0.8 and schedule == sorted(schedule)
    assert schedule[0] > 0.8 / 4  # prunes fast first, slowly at the end


def _moe_checkpoint(tmp_path):
    from tests.compress.conftest import make_checkpoint, tiny_config

    config = tiny_config(**{"model.ffn": "moe", "model.experts": 4, "model.top_k": 2,
                            "model.capacity_factor": 4.0})
    return make_checkpoint(tmp_path / "moe.safetensors", config)


def test_neuron_pruning_of_experts_keeps_each_experts_strongest_units(tmp_path):
    source = _moe_checkpoint(tmp_path)
    loaded = load_checkpoint(source)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # in every expert a different half of the units writes nothing: they are the ones to go
        for block in blocks_of(loaded.model):
            for expert in range(4):
                block.mlp.w2[expert, torch.randperm(128, generator=generator)[:64]] = 0.0
    from effstudio.compress.formats import save_float

    zeroed = save_float(tmp_path / "zeroed.safetensors", loaded.model, loaded.config)
    inputs = loaded.task.split("val").inputs[:4, :20]
    mask = inputs != loaded.task.spec.pad_id
    with torch.no_grad():
        expected = loaded.model(inputs, mask).logits
    out = tmp_path / "experts.safetensors"
    _, result = run(prune_job(zeroed, PruneSettings("neurons", 0.5), out))
    assert result.details["ff"] == [64, 64]
    pruned = load_checkpoint(out)
    for block in blocks_of(pruned.model):
        assert tuple(block.mlp.w1.shape) == (4, 32, 64) and tuple(block.mlp.w2.shape) == (4, 64, 32)
    with torch.no_grad():
        assert torch.allclose(pruned.model(inputs, mask).logits, expected, atol=1e-5)


def test_magnitude_pruning_reaches_expert_weights_but_not_the_router(tmp_path):
    out = tmp_path / "moe-magnitude.safetensors"
    _, result = run(prune_job(_moe_checkpoint(tmp_path), PruneSettings("magnitude", 0.5), out))
    layers = result.details["layers"]
    assert any(name.endswith("mlp.w1") for name in layers) and not any("router" in name for name in layers)
    loaded = load_checkpoint(out)
    for block in blocks_of(loaded.model):
        assert abs(float((block.mlp.w1 == 0).float().mean()) - 0.5) < 0.01
        assert float((block.mlp.router.weight == 0).float().mean()) == 0.0
