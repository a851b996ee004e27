import numpy as np
import pytest
import torch

from effstudio.compress.export import export_job, read_onnx_metadata, run_session, session
from effstudio.compress.formats import load_checkpoint
from tests.compress.conftest import make_checkpoint, tiny_config


@pytest.mark.parametrize(("task", "attention"), [("listops", "sdpa"), ("listops", "full"), ("copy", "sdpa")])
def test_onnx_matches_pytorch_with_dynamic_batch_and_length(tmp_path, task, attention):
    ckpt = make_checkpoint(tmp_path / "m.safetensors", tiny_config(task, **{"model.attention": attention}))
    out = tmp_path / "m.onnx"
    events = list(export_job(ckpt, out, check=True))
    result = events[-1]
    assert result.details["max_abs_diff"] <= 1e-4 and result.details["parity_ok"]
    assert result.accuracy == pytest.approx(result.baseline_accuracy, abs=1e-9)
    loaded = load_checkpoint(ckpt)
    sess = session(out)
    for batch, length in ((1, 5), (3, 8), (7, 3)):  # none of them the traced shape
        inputs = torch.randint(1, len(loaded.task.spec.vocab), (batch, length))
        mask = torch.ones(batch, length, dtype=torch.bool)
        mask[0, length - 1:] = False
        with torch.no_grad():
            expected = loaded.model(inputs, mask).logits.numpy()
        assert np.abs(run_session(sess, inputs, mask) - expected).max() <= 1e-4
    assert read_onnx_metadata(out)["task"] == task


def test_a_kind_the_tracer_cannot_take_is_refused_with_its_name(tmp_path):
    from effstudio.compress.formats import CompressError
    from effstudio.registry import get_registry

    if "performer" not in get_registry().names("attention"):
        pytest.skip("performer attention is not registered")
    config = tiny_config("listops", **{"model.attention": "performer"})
    ckpt = make_checkpoint(tmp_path / "p.safetensors", config)
    out = tmp_path / "p.onnx"
    try:
        events = list(export_job(ckpt, out, check=True))
    except CompressError as err:
        assert "'performer' cannot be exported" in str(err)
        assert not out.exists()
    else:  # a future exporter may take it: then it must match PyTorch
        assert events[-1].details["parity_ok"]
