"""What image-classification tasks share: a spec with (C, H, W) inputs and decoding for previews.

An image task's splits hold inputs (S, C, H, W) float32 in [0, 1] and labels
(S,) int64; the engine batches them whole (nothing to pad) and the models that
read images (``vit``) size their patch embedding from ``spec.channels`` and
``spec.image_size``. Token models refuse image tasks by their spec.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from effstudio.tasks.base import GeneratedTask, TaskSpec

TIMES = "\u00d7"


def image_spec(name: str, class_names: Sequence[str], channels: int, image_size: int) -> TaskSpec:
    return TaskSpec(
        name=name,
        objective="classify",
        vocab=(),
        num_classes=len(class_names),
        max_length=image_size,
        pad_id=0,
        channels=channels,
        image_size=image_size,
        class_names=tuple(class_names),
    )


def describe_image(values: Any) -> list[str]:
    """One label for an image given as nested lists (C, H, W) or (H, W): its shape."""
    shape = []
    while isinstance(values, (list, tuple)) and values:
        shape.append(len(values))
        values = values[0]
    if len(shape) == 3 and shape[0] == 1:
        shape = shape[1:]
    size = TIMES.join(str(n) for n in shape) or "?"
    return [f"image {size}"]


class ImageTask(GeneratedTask):
    """A generated (or read, then cached) image task; ``decode`` names the image, not its pixels."""

    def decode(self, ids: Sequence[Any]) -> list[str]:
        return describe_image(list(ids))
