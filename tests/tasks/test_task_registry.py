"""Every registered task, built-in or plugin, honours the Task contract with a small config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from effstudio.config import with_values
from effstudio.registry import get_registry
from effstudio.tasks.base import IGNORE_INDEX

# Shrunk where a task has these fields, so plugins are exercised too without long generation.
SMALL_SIZES = {"train_size": 24, "val_size": 12, "test_size": 12}

ENTRIES = get_registry().all("tasks")


def image_folder(root: Path) -> Path:
    """Two classes of small PNGs, for tasks that read a folder of the user's images."""
    for label, name in enumerate(("dark", "light")):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(6):
            value = 40 + 150 * label + i
            Image.fromarray(np.full((10, 10), value, dtype=np.uint8)).save(root / name / f"{i}.png")
    return root


def small_config(entry, tmp_path):
    fields = {f.name: f for f in entry.fields()}
    values = {}
    for name, size in SMALL_SIZES.items():
        if name in fields:
            low = fields[name].min
            values[name] = max(size, int(low)) if low is not None else size
    if "folder" in fields:
        values["folder"] = str(image_folder(tmp_path / "images"))
    return with_values(entry.default_config(), values)


def test_builtin_tasks_are_registered():
    registry = get_registry()
    assert {"listops", "copy"} <= set(registry.names("tasks"))
    assert not [e for e in registry.errors if e.group == "effstudio.tasks"]


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_task_honours_its_spec(entry, tmp_path):
    task = entry.factory(small_config(entry, tmp_path))
    spec = task.spec
    assert spec.name == entry.name
    assert spec.objective in ("classify", "lm")
    if spec.is_image:
        check_image_task(task)
        return
    assert 0 <= spec.pad_id < spec.vocab_size and spec.num_classes >= 2
    for name in ("train", "val"):
        split = task.split(name)
        inputs, targets = split.inputs, split.targets
        assert inputs.dtype == torch.int64 and targets.dtype == torch.int64
        # padded to max_length, or to the split's longest example (a task of many short documents)
        assert inputs.ndim == 2 and 0 < inputs.shape[1] <= spec.max_length and len(split) > 0
        assert inputs.min() >= 0 and inputs.max() < spec.vocab_size
        if spec.objective == "classify":
            assert targets.shape == (len(split),)
            assert targets.min() >= 0 and targets.max() < spec.num_classes
        else:
            assert targets.shape == inputs.shape
            scored = targets != IGNORE_INDEX
            assert scored.any(dim=1).all(), "every sequence needs at least one scored position"
            assert targets[scored].min() >= 0 and targets[scored].max() < spec.num_classes
        tokens = task.decode(inputs[0].tolist())
        assert len(tokens) == inputs.shape[1] and all(t in spec.vocab for t in tokens)


def check_image_task(task):
    spec = task.spec
    assert spec.objective == "classify" and spec.num_classes >= 2
    assert spec.channels in (1, 3) and spec.image_size > 0
    assert len(spec.class_names) in (0, spec.num_classes)
    for name in ("train", "val"):
        split = task.split(name)
        inputs, targets = split.inputs, split.targets
        assert inputs.dtype == torch.float32 and targets.dtype == torch.int64
        assert inputs.shape[1:] == spec.image_shape and len(split) > 0
        assert 0.0 <= float(inputs.min()) and float(inputs.max()) <= 1.0
        assert targets.shape == (len(split),)
        assert targets.min() >= 0 and targets.max() < spec.num_classes
        assert task.decode(inputs[0].tolist())  # a label for previews, whatever the pixels
