import numpy as np
import pytest
import torch

from effstudio.compress.export import export_job, run_session, session
from effstudio.engine.loading import load_checkpoint, read_onnx_metadata
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


def test_a_model_the_tracer_cannot_take_is_refused_with_its_names(tmp_path, monkeypatch):
    """A tracer failure names the model type and attention kind and leaves no file behind.

    Every built-in model type exports (tests/compress/test_export_kinds.py, test_export_models.py); the
    hierarchical encoder given back its eager segmenting (scatter_reduce without its own values, which
    the tracer refuses) stands for a model that does not.
    """
    from effstudio.engine.loading import CompressError
    from effstudio.engine.run_config import RunConfig
    from effstudio.models import hierarchical

    monkeypatch.setattr(hierarchical, "split_segments_traceable", hierarchical.split_segments)
    config = RunConfig.create("hierarchical", "listops", {
        "model.d_model": 16, "model.heads": 2, "model.dropout": 0.0,
        "task.train_size": 16, "task.val_size": 16, "task.test_size": 8, "task.min_length": 8, "task.max_length": 40,
    })
    ckpt = make_checkpoint(tmp_path / "h.safetensors", config)
    out = tmp_path / "h.onnx"
    with pytest.raises(CompressError) as err:
        list(export_job(ckpt, out, check=True))
    assert f"model type 'hierarchical' with attention kind {config.attention_kind!r} cannot be exported" in str(
        err.value)
    assert not out.exists()
