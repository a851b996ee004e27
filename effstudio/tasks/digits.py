"""Digits: a small labelled set of handwriting-like digit images, generated locally.

Each image shows one digit 0-9 drawn from a 5x7 bitmap glyph, with per-image
random jitter so that no two images are the same and memorising pixels does not
work: stroke width (the glyph dilated by 0 or 1 pixel at 4x resolution), rotation,
scale, shear, translation, ink intensity and Gaussian pixel noise. Rendering goes
through an affine sampling grid at twice the output size followed by 2x2
averaging, so strokes are anti-aliased. Labels are uniform over the ten digits;
each split has its own random stream. Nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from effstudio.config import param
from effstudio.registry import Entry
from effstudio.tasks.base import SPLIT_NAMES
from effstudio.tasks.image import ImageTask, image_spec

TASK_NAME = "digits"
# Bump when the glyphs or the rendering change, so stale cache files are not reused.
GENERATOR_VERSION = 1
CLASS_NAMES = tuple(str(d) for d in range(10))

# 5 columns x 7 rows per digit, "#" = ink
GLYPHS = (
    (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    ("#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."),
    ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
)
UPSCALE = 4  # glyph cells are drawn as 4x4 pixel blocks before dilation and resampling
MARGIN = 2  # empty cells around the glyph so rotations do not clip it
THICKNESSES = (0, 1)  # dilation radius at the upscaled resolution


@dataclass
class DigitsConfig:
    # what the task offers before it is built (engine/pairing.py checks a model against it)
    objectives: ClassVar[tuple[str, ...]] = ("classify",)  # the forms it can be posed in, the usual first
    images: ClassVar[bool] = True

    image_size: int = param(16, unit="pixels", label="Image size", min=8, max=64, help="Height and width in pixels")
    train_size: int = param(3000, unit="examples", label="Train examples", min=10, max=200_000)
    val_size: int = param(500, unit="examples", label="Validation examples", min=1, max=100_000)
    test_size: int = param(500, unit="examples", label="Test examples", min=1, max=100_000)
    rotation: float = param(12.0, label="Rotation", min=0.0, max=45.0,
                            help="Largest random rotation, in degrees either way")
    shift: float = param(0.12, label="Shift", min=0.0, max=0.4,
                         help="Largest random translation, as a fraction of the image side")
    noise: float = param(0.15, label="Noise", min=0.0, max=1.0,
                         help="Standard deviation of the Gaussian pixel noise (ink is about 1)")
    seed: int = param(0, label="Seed", min=0, max=2**31 - 1)


def glyph_canvases() -> torch.Tensor:
    """(10, len(THICKNESSES), 1, S, S) float canvases of the glyphs, one per stroke width."""
    rows, cols = len(GLYPHS[0]), len(GLYPHS[0][0])
    side = max(rows, cols) + 2 * MARGIN
    cells = torch.zeros(10, 1, side, side)
    top, left = (side - rows) // 2, (side - cols) // 2
    for digit, glyph in enumerate(GLYPHS):
        for r, line in enumerate(glyph):
            for c, char in enumerate(line):
                if char == "#":
                    cells[digit, 0, top + r, left + c] = 1.0
    big = F.interpolate(cells, scale_factor=UPSCALE, mode="nearest")  # (10, 1, S, S)
    widths = [big if radius == 0 else F.max_pool2d(big, 2 * radius + 1, stride=1, padding=radius)
              for radius in THICKNESSES]
    return torch.stack(widths, dim=1)


def render(labels: np.ndarray, config: DigitsConfig, rng: np.random.Generator) -> torch.Tensor:
    """Images (S, 1, size, size) float32 in [0, 1] of the digits ``labels``."""
    count = len(labels)
    canvases = glyph_canvases()
    thickness = rng.integers(0, len(THICKNESSES), size=count)
    angle = np.radians(rng.uniform(-config.rotation, config.rotation, size=count))
    scale = rng.uniform(0.8, 1.1, size=count)  # > 1 draws the digit larger
    aspect = rng.uniform(0.85, 1.15, size=count)
    shear = rng.uniform(-0.2, 0.2, size=count)
    shift = rng.uniform(-2 * config.shift, 2 * config.shift, size=(count, 2))  # [-1, 1] coordinates
    ink = rng.uniform(0.7, 1.0, size=count)
    # theta maps output coordinates to glyph-canvas coordinates: the inverse of the drawing transform
    cos, sin = np.cos(angle), np.sin(angle)
    a = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)  # (S, 2, 2) rotation
    a = a @ np.stack([np.stack([aspect, shear], -1),
                      np.stack([np.zeros(count), np.ones(count)], -1)], -2)  # aspect and shear
    a = a / scale[:, None, None]
    theta = np.concatenate([a, -(a @ shift[:, :, None])], axis=2)  # (S, 2, 3)
    size = config.image_size
    source = canvases[torch.from_numpy(labels), torch.from_numpy(thickness)]  # (S, 1, side, side)
    grid = F.affine_grid(torch.from_numpy(theta).float(), [count, 1, 2 * size, 2 * size], align_corners=False)
    drawn = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    images = F.avg_pool2d(drawn, 2) * torch.from_numpy(ink).float()[:, None, None, None]  # (S, 1, size, size)
    noise = torch.from_numpy(rng.normal(0.0, 1.0, size=images.shape)).float() * config.noise
    return (images + noise).clamp(0.0, 1.0).contiguous()


def generate_split(config: DigitsConfig, size: int, stream: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng([config.seed, stream])
    labels = rng.integers(0, 10, size=size)
    return render(labels, config, rng), torch.from_numpy(labels.astype(np.int64))


def generate_splits(config: DigitsConfig) -> dict[str, torch.Tensor]:
    sizes = {"train": config.train_size, "val": config.val_size, "test": config.test_size}
    tensors: dict[str, torch.Tensor] = {}
    for stream, name in enumerate(SPLIT_NAMES):
        tensors[f"{name}/inputs"], tensors[f"{name}/targets"] = generate_split(config, sizes[name], stream)
    return tensors


class DigitsTask(ImageTask):
    """Generated digit images: spec (1 channel, image_size), cached splits."""

    name, generator_version, config_cls = TASK_NAME, GENERATOR_VERSION, DigitsConfig

    def __init__(self, config: DigitsConfig | None = None):
        super().__init__(config)
        self.spec = image_spec(TASK_NAME, CLASS_NAMES, channels=1, image_size=self.config.image_size)

    def generate(self) -> dict[str, torch.Tensor]:
        return generate_splits(self.config)


ENTRY = Entry(
    TASK_NAME,
    "Digit images 0-9 drawn from bitmap glyphs with random stroke, rotation, shift and noise (classification)",
    DigitsConfig,
    DigitsTask,
)

