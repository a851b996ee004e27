"""Image folder: reads class sub-folders of PNG/JPEG files, splits them by seed, refuses bad folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from effstudio.config import ConfigError
from effstudio.tasks.imagefolder import ImageFolderConfig, ImageFolderTask


def write_folder(root: Path, counts: dict[str, int], size: int = 12) -> Path:
    """Class sub-folders of solid grey images (stored as RGB) whose brightness encodes class and index."""
    for label, (name, count) in enumerate(counts.items()):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(count):
            value = 60 * label + 3 * i  # unique per image, so rows can be traced to files
            pixels = np.full((size, size + 4, 3), value, dtype=np.uint8)
            suffix = ".png" if i % 2 else ".jpg"
            Image.fromarray(pixels).save(folder / f"{i:03d}{suffix}", quality=100)
    return root


def make(root: Path, **changes) -> ImageFolderTask:
    return ImageFolderTask(ImageFolderConfig(folder=str(root), image_size=8, **changes))


def test_reads_classes_resizes_and_splits_by_seed(tmp_path):
    root = write_folder(tmp_path / "images", {"circle": 10, "square": 10, "zigzag": 5})
    task = make(root, val_fraction=0.2, test_fraction=0.2)
    spec = task.spec
    assert spec.class_names == ("circle", "square", "zigzag") and spec.num_classes == 3
    assert spec.image_shape == (1, 8, 8)
    splits = {name: task.split(name) for name in ("train", "val", "test")}
    assert [len(s) for s in splits.values()] == [6 + 6 + 3, 2 + 2 + 1, 2 + 2 + 1]
    for split in splits.values():
        assert split.inputs.shape[1:] == (1, 8, 8) and split.inputs.dtype == torch.float32
        assert 0.0 <= float(split.inputs.min()) and float(split.inputs.max()) <= 1.0
    # no image is in two splits: each image's brightness is unique
    seen = [round(float(x.mean()) * 255) for s in splits.values() for x in s.inputs]
    assert len(set(seen)) == 25
    # labels follow the folders: class k's images are 60k to 60k + 27 bright
    train = splits["train"]
    offset = train.inputs.mean(dim=(1, 2, 3)) * 255 - 60 * train.targets
    assert offset.min() > -1 and offset.max() < 28
    # the same seed gives the same split, another seed another one
    again = make(root, val_fraction=0.2, test_fraction=0.2).split("val").inputs
    other = make(root, val_fraction=0.2, test_fraction=0.2, seed=1).split("val").inputs
    assert torch.equal(again, splits["val"].inputs) and not torch.equal(other, again)


def test_rgb_has_three_channels(tmp_path):
    root = write_folder(tmp_path / "images", {"a": 3, "b": 3})
    red = np.zeros((6, 6, 3), dtype=np.uint8)
    red[..., 0] = 200
    Image.fromarray(red).save(root / "a" / "red.png")
    split = make(root, color="rgb", val_fraction=0.0).split("train")
    assert split.inputs.shape == (7, 3, 8, 8)
    reddest = split.inputs[split.inputs[:, 0].mean(dim=(1, 2)).argmax()]
    assert float(reddest[0].mean()) == pytest.approx(200 / 255, abs=0.01)
    assert float(reddest[1:].max()) == 0.0


def test_changed_folder_is_read_again(tmp_path):
    root = write_folder(tmp_path / "images", {"a": 3, "b": 3})
    assert len(make(root, val_fraction=0.0).split("train")) == 6
    Image.fromarray(np.zeros((5, 5), dtype=np.uint8)).save(root / "a" / "extra.png")
    assert len(make(root, val_fraction=0.0).split("train")) == 7


def test_bad_folders_are_refused_clearly(tmp_path):
    with pytest.raises(ConfigError, match="choose a folder") as info:
        ImageFolderTask(ImageFolderConfig())
    assert info.value.field == "folder"
    with pytest.raises(ConfigError, match="is not a folder"):
        make(tmp_path / "missing")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no class sub-folders"):
        make(empty)
    loose = tmp_path / "loose"
    loose.mkdir()
    Image.fromarray(np.zeros((5, 5), dtype=np.uint8)).save(loose / "x.png")
    with pytest.raises(ConfigError, match="move them into one sub-folder per class"):
        make(loose)
    one = write_folder(tmp_path / "one", {"only": 4})
    with pytest.raises(ConfigError, match="one class \\('only'\\).*at least two"):
        make(one)
    broken = write_folder(tmp_path / "broken", {"a": 2, "b": 2})
    (broken / "b" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ConfigError, match="cannot read image .*bad.png"):
        make(broken).split("train")
    with pytest.raises(ConfigError, match="leave images for training"):
        make(broken, val_fraction=0.5, test_fraction=0.5)


def test_a_task_rebuilt_from_its_saved_classes_reads_the_folder_only_for_images(tmp_path):
    root = write_folder(tmp_path / "images", {"circle": 4, "square": 4})
    saved = make(root).saved_data()
    absent = ImageFolderTask.from_saved(ImageFolderConfig(folder=str(tmp_path / "gone"), image_size=8), saved)
    assert absent.spec.class_names == ("circle", "square")  # no folder needed for the spec
    assert len(ImageFolderTask.from_saved(ImageFolderConfig(folder=str(root), image_size=8), saved).split("train"))
    other = write_folder(tmp_path / "other", {"circle": 4, "star": 4})
    with pytest.raises(ConfigError, match="the model knows circle, square"):
        ImageFolderTask.from_saved(ImageFolderConfig(folder=str(other), image_size=8), saved).split("train")
