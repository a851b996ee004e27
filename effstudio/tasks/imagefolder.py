"""Image folder: classify the user's own images, one sub-folder per class.

::

    my_images/
        cat/  001.png 002.jpg ...
        dog/  a.jpeg b.png ...

Every image (PNG, JPEG, BMP, GIF, WebP; read with Pillow, no Qt) is converted to
grayscale or RGB and resized to ``image_size`` x ``image_size`` (the aspect ratio
is not kept), then scaled to [0, 1]. Each class is split on its own, with a
seeded shuffle, into train / validation / test parts by the given fractions, so
every split sees every class in proportion. The decoded tensors are cached; the
cache key includes every file's name, size and modification time, so editing the
folder gives fresh data.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from effstudio.config import ConfigError, param
from effstudio.read_limits import MAX_DECODED_IMAGE_BYTES, MAX_IMAGE_FILES
from effstudio.registry import Entry
from effstudio.tasks.base import SPLIT_NAMES, SavedTaskData
from effstudio.tasks.image import ImageTask, image_spec

TASK_NAME = "imagefolder"
GENERATOR_VERSION = 1
EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
CLASSES_KEY = "effstudio.task.classes"


@dataclass
class ImageFolderConfig:
    # what the task offers before it is built (engine/pairing.py checks a model against it)
    objectives: ClassVar[tuple[str, ...]] = ("classify",)  # the forms it can be posed in, the usual first
    images: ClassVar[bool] = True

    folder: str = param("", label="Folder", help="A folder with one sub-folder of images per class",
                         path="folder")
    image_size: int = param(32, unit="pixels", label="Image size", min=8, max=256,
                            help="Images are resized to this height and width, in pixels")
    color: str = param("grayscale", choices=("grayscale", "rgb"), label="Colour",
                       help="Read images as one grey channel or three RGB channels")
    val_fraction: float = param(0.2, label="Validation share", min=0.0, max=0.9,
                                help="Share of each class kept for validation")
    test_fraction: float = param(0.0, label="Test share", min=0.0, max=0.9,
                                 help="Share of each class kept for the test split")
    seed: int = param(0, label="Seed", min=0, max=2**31 - 1, help="Seed of the split")

    def check(self) -> None:
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ConfigError("val_fraction", "validation and test shares must leave images for training "
                                              f"(they add up to {self.val_fraction + self.test_fraction:g})")


def scan(folder: str) -> dict[str, list[Path]]:
    """Class name -> its image files (sorted), checking the folder is usable: readable, and of at
    most MAX_IMAGE_FILES images (counted while listed, so a folder of millions stops early)."""
    if not folder.strip():
        raise ConfigError("folder", "choose a folder of images: one sub-folder per class")
    root = Path(folder).expanduser()
    if not root.is_dir():
        raise ConfigError("folder", f"{root} is not a folder")
    classes: dict[str, list[Path]] = {}
    counted = 0
    try:
        subs = sorted(p for p in _entries(root) if p.is_dir() and not p.name.startswith("."))
        for sub in subs:
            files = []
            for path in _entries(sub):
                if path.suffix.lower() in EXTENSIONS and path.is_file():
                    counted += 1
                    if counted > MAX_IMAGE_FILES:
                        raise ConfigError("folder", f"{root} holds more than {MAX_IMAGE_FILES:,} images, the "
                                                    "most a folder task reads into memory")
                    files.append(path)
            if files:
                classes[sub.name] = sorted(files)
        loose = [p for p in _entries(root) if p.suffix.lower() in EXTENSIONS and p.is_file()]
    except OSError as err:  # a sub-folder that cannot be listed (permissions) or vanished meanwhile
        where = Path(err.filename) if err.filename else root
        raise ConfigError("folder", f"cannot read {where}: {err.strerror or err}") from None
    if not classes:
        hint = (f"; its {len(loose)} images lie directly in it: move them into one sub-folder per class"
                if loose else "")
        raise ConfigError("folder", f"{root} holds no class sub-folders with images "
                                    f"({', '.join(EXTENSIONS)}){hint}")
    if len(classes) == 1:
        (name,) = classes
        raise ConfigError("folder", f"{root} has one class ({name!r}); classification needs at least two "
                                    "sub-folders of images")
    return classes


def _entries(folder: Path) -> Iterator[Path]:
    with os.scandir(folder) as entries:
        for entry in entries:
            yield Path(entry.path)


def check_decoded_size(count: int, channels: int, size: int, root: str) -> None:
    """Refuse a folder whose images, decoded as float32, would not fit MAX_DECODED_IMAGE_BYTES."""
    decoded = count * channels * size * size * 4
    if decoded > MAX_DECODED_IMAGE_BYTES:
        raise ConfigError("image_size", f"{count:,} images of {channels} x {size} x {size} in {root} would take "
                                        f"{decoded / 1e9:.1f} GB decoded, above the limit of "
                                        f"{MAX_DECODED_IMAGE_BYTES / 1e9:.1f} GB; use a smaller image size or "
                                        "fewer images")


def fingerprint(classes: dict[str, list[Path]]) -> str:
    digest = hashlib.sha256()
    for name, files in classes.items():
        for path in files:
            stat = path.stat()
            digest.update(f"{name}/{path.name}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def read_image(path: Path, size: int, mode: str) -> np.ndarray:
    """(C, size, size) float32 in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
            pixels = np.asarray(image, dtype=np.float32) / 255.0
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise ConfigError("folder", f"cannot read image {path}: {err}") from None
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


def split_indices(counts: list[int], val_fraction: float, test_fraction: float,
                  seed: int) -> dict[str, list[tuple[int, int]]]:
    """(class, index within class) per split: each class shuffled and cut on its own."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[tuple[int, int]]] = {name: [] for name in SPLIT_NAMES}
    for label, count in enumerate(counts):
        order = rng.permutation(count)
        n_val = int(round(count * val_fraction))
        n_test = int(round(count * test_fraction))
        if val_fraction > 0 and count > 1:
            n_val = max(n_val, 1)
        n_val = min(n_val, count - 1)  # training keeps at least one image of every class
        n_test = min(n_test, count - 1 - n_val)
        cuts = {"val": order[:n_val], "test": order[n_val:n_val + n_test], "train": order[n_val + n_test:]}
        for name, rows in cuts.items():
            parts[name].extend((label, int(i)) for i in rows)
    return parts


class ImageFolderTask(ImageTask):
    """The user's images: the spec comes from the sub-folders; the pixels are read on first use.

    Checkpoints keep the class names (:meth:`saved_data`): a task rebuilt from one
    (:meth:`from_saved`) has its spec without the folder, which is read, and must hold
    the same classes, only when its images are asked for.
    """

    name, generator_version, config_cls = TASK_NAME, GENERATOR_VERSION, ImageFolderConfig

    def __init__(self, config: ImageFolderConfig | None = None, saved: SavedTaskData | None = None):
        super().__init__(config)
        channels = 1 if self.config.color == "grayscale" else 3
        self._classes: dict[str, list[Path]] | None = None
        names = _saved_classes(saved) if saved is not None else tuple(self.classes)
        self.spec = image_spec(TASK_NAME, names, channels, self.config.image_size)

    @classmethod
    def from_saved(cls, config: ImageFolderConfig, saved: SavedTaskData) -> ImageFolderTask:
        """The task a checkpoint was trained on: its class names, the folder read when needed."""
        return cls(config, saved)

    def saved_data(self) -> SavedTaskData:
        return SavedTaskData({CLASSES_KEY: json.dumps(list(self.spec.class_names))})

    @property
    def classes(self) -> dict[str, list[Path]]:
        """Class name -> its image files, from the folder (scanned on first use)."""
        if self._classes is None:
            found = scan(self.config.folder)
            channels = 1 if self.config.color == "grayscale" else 3
            check_decoded_size(sum(map(len, found.values())), channels, self.config.image_size, self.config.folder)
            expected = getattr(self, "spec", None)
            if expected is not None and tuple(found) != expected.class_names:
                raise ConfigError("folder", f"{self.config.folder} holds the classes {', '.join(list(found)[:8])}; "
                                            f"the model knows {', '.join(expected.class_names[:8])}")
            self._classes = found
        return self._classes

    def cache_identity(self) -> dict[str, object]:
        identity = super().cache_identity()
        identity["folder"] = str(Path(self.config.folder).expanduser().resolve())
        identity["files"] = fingerprint(self.classes)
        return identity

    def generate(self) -> dict[str, torch.Tensor]:
        config = self.config
        mode = "L" if config.color == "grayscale" else "RGB"
        files = list(self.classes.values())
        parts = split_indices([len(f) for f in files], config.val_fraction, config.test_fraction, config.seed)
        c, size, _ = self.spec.image_shape
        tensors: dict[str, torch.Tensor] = {}
        for name in SPLIT_NAMES:
            rows = parts[name]
            images = np.zeros((len(rows), c, size, size), dtype=np.float32)  # (S, C, H, W)
            for row, (label, index) in enumerate(rows):
                images[row] = read_image(files[label][index], size, mode)
            tensors[f"{name}/inputs"] = torch.from_numpy(images)
            tensors[f"{name}/targets"] = torch.tensor([label for label, _ in rows], dtype=torch.int64)
        return tensors


def _saved_classes(saved: SavedTaskData) -> tuple[str, ...]:
    text = saved.metadata.get(CLASSES_KEY)
    try:
        names = json.loads(text) if text is not None else None
    except ValueError:
        names = None
    if not (isinstance(names, list) and len(names) >= 2 and all(isinstance(n, str) for n in names)):
        raise ConfigError("folder", f"the checkpoint keeps no list of class names ({CLASSES_KEY})")
    return tuple(names)


ENTRY = Entry(
    TASK_NAME,
    "Your own images: one sub-folder per class, resized, with a seeded train/validation split",
    ImageFolderConfig,
    ImageFolderTask,
)
