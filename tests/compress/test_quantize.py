import pytest
import safetensors
import torch

from effstudio.compress.quantize import quantize_job
from effstudio.engine.loading import load_checkpoint, quantize_dynamic_int8
from effstudio.engine.objective import evaluate


def last(job):
    events = list(job)
    assert events[-1].kind == "result"
    return events[-1]


def test_dynamic_int8_round_trips_through_its_saved_format_and_evaluates(tiny_checkpoint, tmp_path):
    out = tmp_path / "int8.safetensors"
    result = last(quantize_job(tiny_checkpoint, "dynamic-int8", out))
    assert result.details["linear_weight_ratio"] >= 3.5
    assert result.file_bytes < tiny_checkpoint.stat().st_size
    with safetensors.safe_open(str(out), framework="pt") as handle:
        meta = handle.metadata()
        assert meta["effstudio.quantization"] == "dynamic-int8"
        assert handle.get_tensor("blocks.0.q.weight").dtype == torch.int8
        assert handle.get_tensor("blocks.0.q.weight_scale").shape == (1,)
    original = load_checkpoint(tiny_checkpoint)
    in_memory = quantize_dynamic_int8(original.model)
    reloaded = load_checkpoint(out)
    assert reloaded.kind == "dynamic-int8"
    inputs = original.task.split("val").inputs[:4, :16]
    mask = inputs != original.task.spec.pad_id
    with torch.no_grad():
        assert torch.equal(reloaded.model(inputs, mask).logits, in_memory(inputs, mask).logits)
    spec = reloaded.task.spec
    _, accuracy = evaluate(reloaded.model, reloaded.task.split("val"), spec.pad_id, spec.objective, 64,
                           torch.device("cpu"))
    assert accuracy == result.accuracy


def test_half_precision_weights(tiny_checkpoint, tmp_path):
    for method, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        out = tmp_path / f"{method}.safetensors"
        result = last(quantize_job(tiny_checkpoint, method, out))
        reloaded = load_checkpoint(out)
        assert next(reloaded.model.parameters()).dtype == dtype
        assert result.details["linear_weight_ratio"] == 2.0
        assert abs(result.accuracy - result.baseline_accuracy) <= 0.1


def test_onnx_int8_dynamic_and_static_with_calibration(tiny_checkpoint, tmp_path):
    dynamic = last(quantize_job(tiny_checkpoint, "onnx-int8", tmp_path / "d.onnx"))
    assert dynamic.accuracy is not None and (tmp_path / "d.onnx").is_file()
    static = last(quantize_job(tiny_checkpoint, "onnx-int8-static", tmp_path / "s.onnx", calibration_batches=3))
    assert static.details["calibration_batches"] == 3  # the calibration reader was read to its end
    assert static.details["calibration_batch_size"] == 16
    assert abs(static.accuracy - static.baseline_accuracy) <= 0.15


def test_a_quantized_checkpoint_is_not_quantized_again(tiny_checkpoint, tmp_path):
    import pytest

    from effstudio.engine.loading import CompressError

    out = tmp_path / "int8.safetensors"
    last(quantize_job(tiny_checkpoint, "dynamic-int8", out))
    with pytest.raises(CompressError, match="already a dynamic-int8"):
        list(quantize_job(out, "fp16", tmp_path / "again.safetensors"))
    assert not (tmp_path / "again.safetensors").exists()


# one small configuration of every model type that compresses, on a task it takes
MODEL_CASES = {
    "transformer": ("listops", {}),
    "universal": ("listops", {"model.max_steps": 3}),
    "hierarchical": ("listops", {}),
    "transformer_xl": ("charlm", {"task.segment_length": 16}),
    "seq2seq": ("copy", {}),
    "vit": ("digits", {"task.train_size": 64, "task.val_size": 32, "task.test_size": 16}),
}


@pytest.mark.parametrize("method", ["fp16", "bf16"])
@pytest.mark.parametrize("model_type", sorted(MODEL_CASES))
def test_half_precision_for_every_model_type_evaluates_on_the_cpu(model_type, method, tmp_path):
    """A half-precision model evaluates on the CPU too: inputs (pixels) follow the weights, and
    the float32 parts (ACT's halting) read half-precision weights."""
    from effstudio.engine.run_config import RunConfig
    from tests.compress.conftest import make_checkpoint

    task, extra = MODEL_CASES[model_type]
    small = {"model.d_model": 32, "model.heads": 2, "model.dropout": 0.0}
    if task in ("listops", "copy"):
        small.update({"task.train_size": 64, "task.val_size": 32, "task.test_size": 16})
    config = RunConfig.create(model_type, task, {**small, **extra})
    source = make_checkpoint(tmp_path / "m.safetensors", config)
    out = tmp_path / f"m-{method}.safetensors"
    result = list(quantize_job(source, method, out))[-1]
    assert result.kind == "result" and out.is_file()
    assert abs(result.accuracy - result.baseline_accuracy) <= 0.1  # evaluated, close to the float32 model
