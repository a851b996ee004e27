"""Digits: labelled images that vary, are deterministic, and carry the digit's shape."""

from __future__ import annotations

import pytest
import torch

from effstudio.config import ConfigError, with_values
from effstudio.tasks.digits import DigitsConfig, DigitsTask, generate_split, glyph_canvases

SMALL = DigitsConfig(train_size=200, val_size=50, test_size=50)


@pytest.mark.parametrize("size", [16, 28])
def test_images_and_labels(size):
    task = DigitsTask(with_values(SMALL, {"image_size": size}))
    spec = task.spec
    assert spec.is_image and spec.image_shape == (1, size, size) and spec.objective == "classify"
    assert spec.num_classes == 10 and spec.class_names == tuple("0123456789")
    split = task.split("train")
    assert split.inputs.shape == (200, 1, size, size) and split.inputs.dtype == torch.float32
    assert split.targets.shape == (200,) and split.targets.dtype == torch.int64
    assert 0.0 <= float(split.inputs.min()) and float(split.inputs.max()) <= 1.0
    assert set(split.targets.tolist()) == set(range(10))
    assert task.decode(split.inputs[0].tolist()) == [f"image {size}\u00d7{size}"]


def test_deterministic_and_splits_differ():
    a, _ = generate_split(SMALL, 20, 0)
    b, _ = generate_split(SMALL, 20, 0)
    c, _ = generate_split(SMALL, 20, 1)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_every_image_is_different_even_for_one_digit():
    images, labels = generate_split(SMALL, 200, 0)
    sevens = images[labels == 7].flatten(1)
    assert len(sevens) > 5
    distances = torch.cdist(sevens, sevens)
    assert (distances + torch.eye(len(sevens)) * 1e3).min() > 0.5


def test_without_noise_the_nearest_glyph_is_the_label():
    """Clean, unjittered images match their own glyph best: the labels are right."""
    clean = with_values(SMALL, {"rotation": 0.0, "shift": 0.0, "noise": 0.0, "image_size": 28})
    images, labels = generate_split(clean, 100, 0)
    glyphs = torch.nn.functional.adaptive_avg_pool2d(glyph_canvases()[:, 0], 28).flatten(1)  # (10, 784)
    glyphs = glyphs / glyphs.norm(dim=1, keepdim=True)
    flat = images.flatten(1)
    scores = (flat / flat.norm(dim=1, keepdim=True)) @ glyphs.T  # cosine similarity (S, 10)
    assert (scores.argmax(dim=1) == labels).float().mean() >= 0.9


def test_bad_size_is_refused():
    with pytest.raises(ConfigError) as info:
        with_values(SMALL, {"image_size": 4})
    assert info.value.field == "image_size"
