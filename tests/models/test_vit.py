"""Vision Transformer: learns the digits, works with other attention kinds, reports its cls-to-patch map."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from effstudio.config import ConfigError
from effstudio.engine.data import make_batch
from effstudio.engine.events import AttentionEvent, EvalEvent
from effstudio.engine.loading import load_model
from effstudio.engine.run_config import RunConfig
from effstudio.engine.trainer import train
from effstudio.models.base import ModelSpec
from effstudio.models.vit import PatchEmbedding, VisionTransformer, ViTConfig
from effstudio.registry import get_registry
from effstudio.tasks.base import TaskSpec
from effstudio.tasks.digits import DigitsConfig, DigitsTask

SPEC = DigitsTask(DigitsConfig(train_size=10, val_size=10, test_size=10)).spec  # (1, 16, 16), 10 classes
TINY = {"model.d_model": 32, "model.layers": 2, "model.heads": 2, "model.dropout": 0.0, "model.patch_size": 4,
        "train.device": "cpu", "train.batch_size": 64, "train.warmup_steps": 10}


def vit(spec: TaskSpec = SPEC, attention: str = "full", attention_config=None, **changes) -> VisionTransformer:
    config = ViTConfig(**{"d_model": 32, "layers": 2, "heads": 2, "dropout": 0.0, "attention": attention, **changes})
    if attention_config is None:
        attention_config = get_registry().get("attention", attention).default_config()
    torch.manual_seed(0)
    return VisionTransformer(config, ModelSpec(spec, attention_config))


def test_vit_learns_digits(tmp_path, one_thread):
    config = RunConfig.create("vit", "digits", {
        **TINY, "task.rotation": 5.0, "task.noise": 0.05, "task.shift": 0.06, "task.train_size": 2000,
        "task.val_size": 200, "train.steps": 300, "train.lr": 3e-3, "train.eval_every": 300,
        "train.attention_every": 300,
    })
    events = list(train(config, out_dir=tmp_path))
    assert events[-1].status == "finished"
    accuracy = [e for e in events if isinstance(e, EvalEvent)][-1].val_accuracy
    assert accuracy >= 0.85, f"validation accuracy {accuracy:.2f} after 300 steps (chance 0.1)"

    probe = [e for e in events if isinstance(e, AttentionEvent)][-1]
    assert probe.maps.shape == (2, 2, 17, 17)  # class token + 4 x 4 patches
    cls_map, image = probe.views["cls_patch_attention"], probe.views["image"]
    assert cls_map.shape == (1, 4, 4) and image.shape == (1, 1, 16, 16)
    # the class token's row of the last layer, heads averaged, without its weight on itself
    row = probe.maps[-1].mean(axis=0)[0]
    assert np.allclose(cls_map[0].ravel(), row[1:], atol=1e-6)
    assert cls_map.min() >= 0 and cls_map.sum() <= 1 + 1e-5
    val = DigitsTask(config.task).split("val")
    assert np.allclose(image[0], val.inputs[0].numpy())  # the probe is the first validation image

    # the checkpoint loads into an identical model
    model, loaded, task = load_model(tmp_path / "checkpoint.safetensors")
    batch = make_batch(task.split("val"), torch.arange(32), task.spec.pad_id)
    with torch.no_grad():
        again = model(batch.inputs, batch.mask).logits.argmax(-1)
    assert loaded.model_type == "vit" and (again == batch.targets).float().mean() >= 0.8


@pytest.mark.parametrize("attention,settings", [("performer", {}), ("local", {"window": 4}), ("linear", {})])
def test_vit_with_other_attention_kinds(attention, settings):
    entry = get_registry().get("attention", attention)
    model = vit(attention=attention, attention_config=entry.config_cls(**settings))
    images = torch.rand(3, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    output = model(images, need_weights=True)
    assert output.logits.shape == (3, 10)
    output.logits.logsumexp(-1).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert len(output.attentions) == 2 and output.attentions[0].shape == (3, 2, 17, 17)
    assert output.extras["cls_patch_attention"].shape == (3, 4, 4)


def test_patches_are_read_row_by_row():
    """Patch token r * grid + c covers rows 4r..4r+3 and columns 4c..4c+3: the view's layout."""
    embed = PatchEmbedding(channels=1, patch=4, dim=1)
    with torch.no_grad():
        embed.project.weight.fill_(1.0)
        embed.project.bias.zero_()
    image = torch.zeros(1, 1, 16, 16)
    image[0, 0, 8:12, 4:8] = 1.0  # patch row 2, column 1
    tokens = embed(image)[0, :, 0]  # (16,)
    assert int(tokens.argmax()) == 2 * 4 + 1 and tokens.max() == 16.0


def test_rgb_and_other_patch_sizes():
    spec = TaskSpec("rgb", "classify", (), num_classes=3, max_length=24, channels=3, image_size=24)
    model = vit(spec, patch_size=6)
    output = model(torch.rand(2, 3, 24, 24), need_weights=True)
    assert output.logits.shape == (2, 3) and output.extras["cls_patch_attention"].shape == (2, 4, 4)
    assert output.extras["image"].shape == (2, 3, 24, 24)
    with pytest.raises(ValueError, match="expected images of shape"):
        model(torch.rand(2, 1, 24, 24))


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError) as info:
        vit(patch_size=5)
    assert info.value.field == "patch_size" and "does not divide the image size 16" in info.value.message
    tokens = TaskSpec("toy", "classify", ("<pad>", "a"), num_classes=2, max_length=8)
    with pytest.raises(ConfigError, match="vit classifies images"):
        vit(tokens)
    with pytest.raises(ConfigError, match="use the vit model type"):
        RunConfig.create("transformer", "digits", {"train.steps": 1})
        list(train(RunConfig.create("transformer", "digits", {"train.steps": 1, "train.device": "cpu"})))
