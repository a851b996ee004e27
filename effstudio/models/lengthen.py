"""Lengthen a trained model's learned position tables by copying, as Longformer grew RoBERTa's.

Beltagy et al. turned RoBERTa (512 learned positions) into a 4,096-token model by
filling the new rows with copies of the old ones, 0..511, 0..511, ...: every
window of 512 consecutive positions then looks like the table the model was
trained on, so attention patterns that depend on relative offsets survive and a
short fine-tune suffices. The same is done here in place, for every learned
table that bounds a sequence's length:

- ``positions`` (transformer, universal and the types derived from them),
- ``source_positions`` / ``target_positions`` (seq2seq),
- ``segment_positions`` (hierarchical: one row per segment).

Tables that do not bound the length are left alone: a ViT's positions belong to
its image grid (a Parameter, not an Embedding), a hierarchical model's token
positions to its segment length, a universal model's step table to its steps.

A model whose positions start at an offset (RoBERTa counts from padding id + 1,
so rows 0 and 1 are never a token's position) says so with an integer attribute
``position_offset`` on the module owning the table; those rows stay in front and
only the rows after them are copied. The bounds stored beside a table (the
model's ``max_length``, seq2seq's ``source_length`` / ``target_length``) and
those of the attention modules sized by the same length (their spec's
``max_length``, Linformer's per-position projections, again by copying) are
raised with it, so outputs at the old lengths stay exactly as they were.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from effstudio.attention.base import Attention
from effstudio.attention.linformer import LinformerAttention

# attribute name of a length-bounding table -> the attribute beside it that stores its bound (or None)
LENGTH_TABLES: dict[str, str | None] = {
    "positions": "max_length",
    "source_positions": "source_length",
    "target_positions": "target_length",
    "segment_positions": None,
}
# memoised export tables sized by an attention module's max_length (BigBird's random blocks,
# Reformer's rotations): dropped when the length grows, so they are drawn again for the new one
_LENGTH_SIZED_CACHES = ("_random_cache", "_rotations")


def learned_position_tables(model: nn.Module) -> dict[str, int]:
    """Qualified name -> rows of every learned position table of the model ({} for sinusoidal / position-free)."""
    return {f"{owner_name}.{attr}".lstrip("."): table.num_embeddings
            for owner_name, _, attr, table in _tables(model)}


def extend_positions(model: nn.Module, max_length: int) -> list[str]:
    """Grow every learned position table shorter than max_length to max_length rows, in place, by copying the
    existing rows cyclically (as Longformer grew RoBERTa's 512 to 4096; a position offset such as RoBERTa's is kept
    in front); returns the names that grew ([] when none had to). Whatever else bounds the length in the model
    (a stored max length) is raised with it."""
    grown: list[str] = []
    raised: dict[int, int] = {}  # an old length bound -> the new one, for the attention modules sized by it
    for owner_name, owner, attr, table in _tables(model):
        offset = int(getattr(owner, "position_offset", 0))
        old = table.num_embeddings - offset
        if old >= max_length:
            continue
        setattr(owner, attr, _copied_table(table, offset, max_length))
        bound = LENGTH_TABLES[attr]
        if bound is not None and getattr(owner, bound, None) == old:
            setattr(owner, bound, max_length)
        raised[old] = max_length
        grown.append(f"{owner_name}.{attr}".lstrip("."))
    for module in model.modules():
        if isinstance(module, Attention):
            _raise_attention_bound(module, raised)
    return grown


def _tables(model: nn.Module) -> list[tuple[str, nn.Module, str, nn.Embedding]]:
    """(owner's qualified name, owner, attribute, table) of every length-bounding learned table."""
    found = []
    for owner_name, owner in model.named_modules():
        for attr in LENGTH_TABLES:
            table = owner._modules.get(attr)
            if isinstance(table, nn.Embedding):
                found.append((owner_name, owner, attr, table))
    return found


def _copied_table(table: nn.Embedding, offset: int, positions: int) -> nn.Embedding:
    """A table of offset + positions rows: the offset rows, then the old position rows repeated cyclically."""
    old = table.weight.detach()  # (offset + L_old, d)
    cycle = torch.arange(positions, device=old.device) % (old.shape[0] - offset) + offset  # (L_new,)
    rows = torch.cat([old[:offset], old[cycle]])  # (offset + L_new, d)
    grown = nn.Embedding(rows.shape[0], rows.shape[1], padding_idx=table.padding_idx,
                         device=old.device, dtype=old.dtype)
    grown.weight.requires_grad_(table.weight.requires_grad)
    with torch.no_grad():
        grown.weight.copy_(rows)
    return grown


def _raise_attention_bound(module: Attention, raised: dict[int, int]) -> None:
    """Raise an attention module's max_length when it was sized by a grown length (a summary token adds 1)."""
    length = module.spec.max_length
    for old, new in raised.items():
        if length in (old, old + 1):
            _set_attention_length(module, length + new - old)
            return


def _set_attention_length(module: Attention, length: int) -> None:
    module.spec = dataclasses.replace(module.spec, max_length=length)
    for cache in _LENGTH_SIZED_CACHES:
        memo = getattr(module, cache, None)
        if isinstance(memo, dict):
            memo.clear()
    if isinstance(module, LinformerAttention):
        # one projection column per position: the new positions reuse the old columns cyclically
        module.key_projection = _copied_columns(module.key_projection, length)
        if module.value_projection is not None:
            module.value_projection = _copied_columns(module.value_projection, length)
        module.max_length = length


def _copied_columns(projection: nn.Parameter, length: int) -> nn.Parameter:
    old = projection.detach()  # (k, L_old)
    cycle = torch.arange(length, device=old.device) % old.shape[1]  # (L_new,)
    return nn.Parameter(old[:, cycle].clone(), requires_grad=projection.requires_grad)  # (k, L_new)
