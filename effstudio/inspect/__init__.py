"""Checkpoint inspector: open any model file safely and look at every tensor in it.

Qt-free: the CLI (`effstudio inspect`), the tests and the GUI's Inspect section
all use these functions.
"""

from effstudio.inspect.loader import INSPECTABLE_SUFFIXES, open_model
from effstudio.inspect.tensors import Inspected, InspectError, TensorRef

__all__ = ["INSPECTABLE_SUFFIXES", "Inspected", "InspectError", "TensorRef", "open_model"]
