"""What every family converter shares: the tensors looked up by name, the result, config reading."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

# config.json's hidden_act -> effstudio's activation field
MAX_LABELS = 1 << 16  # classes a classification head may have
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}


# buffers older checkpoints saved beside the weights (position index tables, causal masks): nothing to keep
BUFFERS = ("position_ids", "token_type_ids", "attn.bias", "attn.masked_bias")


class MappingError(ValueError):
    """The checkpoint cannot be mapped: one line naming the config key or the tensor."""


@dataclass
class Converted:
    """A Hugging Face checkpoint in effstudio's terms.

    model_type / model: the effstudio model type and its settings (field -> value).
    task: "text" or "image"; max_length: tokens the positions cover (image side for images);
    image: (channels, image side, mean, std) of an image model's inputs; labels: class names.
    state: effstudio parameter name -> tensor; sources: the same names -> the Hugging Face tensor
    each came from; fresh: prefixes of modules the import adds, initialised at random (a new head).
    """

    model_type: str
    model: dict[str, Any]
    task: str
    max_length: int
    labels: list[str]
    attention: dict[str, Any] = field(default_factory=dict)
    image: tuple[int, int, list[float], list[float]] | None = None
    state: dict[str, torch.Tensor] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    fresh: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class Tensors:
    """The folder's tensors, read under a base prefix ("bert." for a BertFor... model, "" for BertModel)."""

    def __init__(self, weights: Mapping[str, torch.Tensor]):
        self.weights = weights
        self.base = ""
        self.used: set[str] = set()

    def find_base(self, candidates: Iterable[str], probe: str) -> None:
        """Take the first prefix under which ``probe`` exists (else the first, so the error names it)."""
        candidates = list(candidates)
        self.base = next((c for c in candidates if c + probe in self.weights), candidates[0])

    def has(self, name: str, base: bool = True) -> bool:
        return ((self.base if base else "") + name) in self.weights

    def take(self, name: str, base: bool = True) -> tuple[str, torch.Tensor]:
        full = (self.base if base else "") + name
        if full not in self.weights:
            raise MappingError(f"tensor {full} is missing (config.json says the model has it)")
        self.used.add(full)
        return full, self.weights[full]

    def unused(self) -> list[str]:
        return sorted(set(self.weights) - self.used)


class StateBuilder:
    """Fills a Converted's state and sources."""

    def __init__(self, tensors: Tensors, converted: Converted):
        self.tensors, self.converted = tensors, converted

    def put(self, ours: str, theirs: str, *, base: bool = True,
            transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        name, tensor = self.tensors.take(theirs, base)
        self.converted.state[ours] = tensor if transform is None else transform(tensor)
        self.converted.sources[ours] = name

    def linear(self, ours: str, theirs: str, *, base: bool = True, bias: bool = True) -> None:
        self.put(f"{ours}.weight", f"{theirs}.weight", base=base)
        if bias:
            self.put(f"{ours}.bias", f"{theirs}.bias", base=base)

    def norm(self, ours: str, theirs: str, *, base: bool = True) -> None:
        self.linear(ours, theirs, base=base)


def setting(config: Mapping[str, Any], key: str, default: Any = None, kind: type = int) -> Any:
    """A config.json value of ``kind``; missing -> ``default`` (None: required)."""
    value = config.get(key, default)
    if value is None:
        raise MappingError(f"config.json has no {key!r}")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            value = float(value)
        except OverflowError:
            raise MappingError(f"config.json's {key!r} is too large a number") from None
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise MappingError(f"config.json's {key!r} is {str(value)[:80]!r}, not "
                           f"{'a number' if kind in (int, float) else kind.__name__}")
    if kind is int and value < 0:
        raise MappingError(f"config.json's {key!r} is {value}, below 0")
    return value


def activation(config: Mapping[str, Any], key: str, default: str) -> str:
    name = config.get(key, default)
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise MappingError(f"config.json's {key} {str(name)[:80]!r} is not an activation effstudio has "
                           f"({', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[name]


def labels_of(config: Mapping[str, Any]) -> list[str]:
    """Class names by id from id2label (at least two: Hugging Face's default is LABEL_0, LABEL_1)."""
    raw = config.get("id2label")
    if isinstance(raw, Mapping) and raw:
        try:
            pairs = sorted((int(k), str(v)) for k, v in raw.items())
        except (TypeError, ValueError):
            raise MappingError("config.json's id2label has keys that are not class numbers") from None
        if len(pairs) > MAX_LABELS:
            raise MappingError(f"config.json's id2label names {len(pairs):,} classes, more than the limit of "
                               f"{MAX_LABELS:,}")
        if [k for k, _ in pairs] != list(range(len(pairs))):
            raise MappingError("config.json's id2label does not number its classes 0, 1, 2, ...")
        names = [v for _, v in pairs]
    else:
        count = setting(config, "num_labels", 2)
        if count > MAX_LABELS:
            raise MappingError(f"config.json's num_labels is {count:,}, more than the limit of {MAX_LABELS:,}")
        names = [f"LABEL_{i}" for i in range(count)]
    if len(names) < 2:
        names += [f"LABEL_{i}" for i in range(len(names), 2)]
    if len(set(names)) != len(names):
        names = [f"{i}:{name}" for i, name in enumerate(names)]
    return names


def ff_mult_of(width: int, hidden: int) -> int:
    """The nearest feed-forward multiplier within its range (the exact width is in ff_width)."""
    return max(1, min(16, round(hidden / max(width, 1))))


def check_heads(width: int, heads: int) -> None:
    if heads < 1 or width % heads:
        raise MappingError(f"config.json's width {width} is not divisible by its {heads} attention heads")


def note_unused(tensors: Tensors, converted: Converted, what: Mapping[str, str]) -> None:
    """Say which of the file's tensors the import leaves out, by the part they belong to."""
    unused = [name for name in tensors.unused() if not name.endswith(BUFFERS)]
    for prefix, meaning in what.items():
        hit = [name for name in unused if name.startswith(prefix)]
        if hit:
            converted.notes.append(f"left out {meaning} ({len(hit)} tensors under {prefix})")
            unused = [name for name in unused if name not in hit]
    if unused:
        converted.notes.append(f"left out {len(unused)} tensors the model does not use: {', '.join(unused[:3])}")
