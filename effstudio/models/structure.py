"""Per-layer widths of a structurally pruned Transformer.

A Transformer config gives every block the same number of heads and the same
feed-forward width. Structured pruning removes whole heads and feed-forward
neurons, block by block, so a pruned model's blocks differ. That is recorded
beside the config, in the checkpoint header under ``effstudio.structure``::

    {"heads": [4, 2], "head_dim": 32, "ff": [512, 256]}

``heads[i]`` and ``ff[i]`` are block i's heads and feed-forward width;
``head_dim`` is the (unchanged) width of one head; with a mixture of experts
``ff[i]`` is the width of each of block i's experts. Building from the config and
then calling :func:`apply_structure` gives a model of exactly the pruned
shapes, with plain ``nn.Linear`` layers: it loads without masks and computes
only what is left.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from effstudio.bounded_parse import loads_json
from effstudio.config import ConfigError, describe_kind, record_values
from effstudio.models.fields import ff_hidden
from effstudio.models.moe import MoEFeedForward

METADATA_KEY = "effstudio.structure"


class StructureError(ValueError):
    """A structure record does not fit the model it is applied to."""


@dataclass(frozen=True)
class Structure:
    heads: tuple[int, ...]
    head_dim: int
    ff: tuple[int, ...]

    def to_json(self) -> str:
        return json.dumps({"heads": list(self.heads), "head_dim": self.head_dim, "ff": list(self.ff)})

    @classmethod
    def from_json(cls, text: str) -> Structure:
        try:
            data = loads_json(text, source="header", field=METADATA_KEY)
            if not isinstance(data, Mapping):
                raise ConfigError(METADATA_KEY, f"expected a table, got {describe_kind(data)}")
            return cls(**record_values(cls, data))
        except ConfigError as err:
            raise StructureError(f"unreadable structure record {text[:80]!r}: {err}") from None


def blocks_of(model: nn.Module) -> list[nn.Module]:
    """The model's Transformer blocks (modules with q/v/out projections and an mlp)."""
    blocks = getattr(model, "blocks", None)
    if blocks is None or not all(hasattr(b, "q") and hasattr(b, "mlp") and hasattr(b, "out") for b in blocks):
        raise StructureError(f"{type(model).__name__} has no Transformer blocks with q/k/v/out and mlp layers")
    return list(blocks)


def structure_of(model: nn.Module) -> Structure:
    """The current per-block widths of a model."""
    blocks = blocks_of(model)
    head_dim = blocks[0].q.out_features // blocks[0].heads
    return Structure(tuple(int(b.heads) for b in blocks), head_dim, tuple(ff_width(b.mlp) for b in blocks))


def ff_width(mlp: nn.Module) -> int:
    """Hidden width of a feed-forward part: the dense MLP's, or each expert's."""
    if isinstance(mlp, MoEFeedForward):
        return mlp.hidden
    return int(mlp[0].out_features)


def is_uniform(structure: Structure, heads: int, d_model: int, ff: int) -> bool:
    """Whether every block has ``heads`` heads of d_model / heads features and ``ff`` feed-forward neurons."""
    return (all(h == heads for h in structure.heads) and structure.head_dim * heads == d_model
            and all(f == ff for f in structure.ff))


def structure_metadata(model: nn.Module, model_config: Any) -> dict[str, str]:
    """The header entry that rebuilds ``model``'s widths, or nothing when the config alone gives them."""
    try:
        structure = structure_of(model)
    except StructureError:  # a model type without prunable blocks
        return {}
    heads, d_model, ff_mult = (getattr(model_config, name, None) for name in ("heads", "d_model", "ff_mult"))
    if heads is not None and d_model is not None and ff_mult is not None and is_uniform(
            structure, heads, d_model, ff_hidden(model_config)):
        return {}
    return {METADATA_KEY: structure.to_json()}


def _linear(source: nn.Linear, in_features: int, out_features: int) -> nn.Linear:
    layer = nn.Linear(in_features, out_features, bias=source.bias is not None)
    return layer.to(dtype=source.weight.dtype, device=source.weight.device)


def apply_structure(model: nn.Module, structure: Structure) -> nn.Module:
    """Resize every block's projections and feed-forward layers to ``structure`` (weights uninitialised)."""
    blocks = blocks_of(model)
    if len(structure.heads) != len(blocks) or len(structure.ff) != len(blocks):
        raise StructureError(f"structure is for {len(structure.heads)} blocks, the model has {len(blocks)}")
    for block, heads, ff in zip(blocks, structure.heads, structure.ff, strict=True):
        if heads < 1 or ff < 1:
            raise StructureError("every block keeps at least one head and one feed-forward neuron")
        d = block.q.in_features
        inner = heads * structure.head_dim
        block.q = _linear(block.q, d, inner)
        block.v = _linear(block.v, d, inner)
        if block.k is not None:
            block.k = _linear(block.k, d, inner)
        block.out = _linear(block.out, inner, d)
        block.heads = heads
        if isinstance(block.mlp, MoEFeedForward):
            block.mlp.keep_hidden(torch.arange(ff).repeat(block.mlp.experts, 1))  # shapes only: weights load next
        else:
            block.mlp[0] = _linear(block.mlp[0], d, ff)
            block.mlp[2] = _linear(block.mlp[2], ff, d)
    return model
