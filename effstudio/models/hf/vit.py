"""Placeholder."""

from __future__ import annotations

from typing import Any

from effstudio.models.hf.base import Converted, MappingError, Tensors


def convert(config: dict[str, Any], tensors: Tensors) -> Converted:
    raise MappingError(f"{config['model_type']} is not mapped yet")
