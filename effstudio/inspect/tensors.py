"""What a reader returns: an opened model file as named, lazily read tensors.

A :class:`TensorRef` knows its name, shape and dtype from the file's header or
index; its elements are read only when :meth:`TensorRef.raw` is called, and for
memory-mapped formats that read is a view of the file, not a copy.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from effstudio.inspect.dtypes import itemsize

# integer bookkeeping buffers that are not parameters
_BUFFER_SUFFIXES = ("num_batches_tracked", "position_ids", "token_type_ids")


class InspectError(Exception):
    """A file cannot be inspected; the message says why, in words a user can act on."""


@dataclass(eq=False)
class TensorRef:
    name: str
    shape: tuple[int, ...]
    dtype: str
    loader: Callable[[], np.ndarray] = field(repr=False)
    mapped: bool = False  # raw() is a view of a memory-mapped file: its pages may be released

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * itemsize(self.dtype)

    def raw(self) -> np.ndarray:
        """The stored elements (storage dtype, see dtypes.STORAGE) in their shape."""
        array = self.loader()
        if array.shape != self.shape:
            array = array.reshape(self.shape)
        return array

    @property
    def is_parameter(self) -> bool:
        return not (self.dtype.startswith(("int", "uint", "bool")) and self.name.endswith(_BUFFER_SUFFIXES))


@dataclass(eq=False)
class Inspected:
    """An opened model file or folder."""

    path: Path
    format: str  # safetensors, safetensors-sharded, pytorch, pytorch-legacy, onnx, npy, npz
    file_bytes: int
    tensors: list[TensorRef]
    metadata: dict[str, str] = field(default_factory=dict)  # header metadata, stored scalars
    config: dict[str, Any] | None = None  # config.json of a Hugging Face style folder
    graph: dict[str, Any] | None = None  # ONNX: inputs, outputs, opset, operators
    notes: list[str] = field(default_factory=list)  # what the reader did: unwrapped, stripped a prefix
    files: list[Path] = field(default_factory=list)  # the weight files read
    architecture: str = ""
    keepalive: list[Any] = field(default_factory=list, repr=False)  # maps and loaded objects

    @property
    def params(self) -> int:
        return sum(t.numel for t in self.tensors if t.is_parameter)

    @property
    def tensor_bytes(self) -> int:
        return sum(t.nbytes for t in self.tensors)

    def dtypes(self) -> dict[str, int]:
        """Tensor count per dtype, most common first."""
        return dict(Counter(t.dtype for t in self.tensors).most_common())

    def tensor(self, name: str) -> TensorRef:
        for tensor in self.tensors:
            if tensor.name == name:
                return tensor
        raise KeyError(name)

    @property
    def is_effstudio(self) -> bool:
        return self.format == "safetensors" and "effstudio.format" in self.metadata and "config" in self.metadata

    def close(self) -> None:
        """Drop the references to the file's maps; they close once no array uses them."""
        self.keepalive.clear()
