"""Which Python callables a pickle would import, found without unpickling it.

A pickle is a small program: GLOBAL / STACK_GLOBAL opcodes import a callable
and REDUCE calls it, which is how a malicious file runs ``os.system``. This
module walks the opcodes with :func:`pickletools.genops` (a parser; it never
imports or calls anything) and lists the globals. The PyTorch reader refuses a
file whose pickle names anything outside a short list of tensor-rebuilding
functions before ``torch.load(weights_only=True)`` is even called, so a file
is checked twice and never executed.
"""

from __future__ import annotations

import io
import pickletools
import re
from collections.abc import Iterable
from typing import IO

_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING",
               "SHORT_BINSTRING"}
_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
_GET_OPS = {"GET", "BINGET", "LONG_BINGET"}

_TORCH_NAMES = {
    ("torch", "device"), ("torch", "Size"), ("torch", "Tensor"), ("torch._tensor", "Tensor"),
    ("torch.serialization", "_get_layout"), ("torch._tensor", "_rebuild_from_type_v2"),
    ("torch.nn.parameter", "Parameter"), ("torch.storage", "UntypedStorage"), ("torch.storage", "TypedStorage"),
}
_TORCH_ATTRIBUTE = re.compile(r"(u?int\d+|float\d*(_\w+)?|bfloat16|bool|complex\d*|half|double|long|short|"
                              r"q(u)?int\d+(x\d+)?|strided|sparse_\w+|_mkldnn|\w+_format|cfloat|cdouble)")
_READABLE = {"__builtin__": "builtins", "posix": "os", "nt": "os"}  # how pickles spell them, how people do
_BUILTINS = {"set", "frozenset", "slice", "bytearray", "bytes", "complex", "range", "tuple", "list", "dict",
             "int", "float", "bool", "str"}


def is_allowed(module: str, name: str) -> bool:
    """A global that only rebuilds tensors, storages or plain containers."""
    if (module, name) in _TORCH_NAMES:
        return True
    if module == "torch._utils" and name.startswith("_rebuild_"):
        return True
    if module in ("torch", "torch.storage", "torch.cuda") and name.endswith("Storage"):
        return True
    if module == "torch" and _TORCH_ATTRIBUTE.fullmatch(name):
        return True
    if module in ("collections", "builtins", "__builtin__"):
        return name == "OrderedDict" if module == "collections" else name in _BUILTINS
    return (module, name) == ("_codecs", "encode")


def _globals_of_one(stream: IO[bytes]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    strings: list[str] = []
    memo: dict[int, str] = {}
    for opcode, arg, _pos in pickletools.genops(stream):
        name = opcode.name
        if name in _STRING_OPS:
            strings.append(arg.decode("latin-1") if isinstance(arg, bytes) else str(arg))
        elif name == "MEMOIZE" and strings:
            memo[len(memo)] = strings[-1]
        elif name in _PUT_OPS and strings:
            memo[int(arg)] = strings[-1]
        elif name in _GET_OPS and int(arg) in memo:
            strings.append(memo[int(arg)])
        elif name in ("GLOBAL", "INST"):
            module, _, attribute = str(arg).partition(" ")
            found.append((module, attribute))
        elif name == "STACK_GLOBAL":
            pair = (strings[-2], strings[-1]) if len(strings) >= 2 else ("?", "?")
            found.append(pair)
    return found


def pickle_globals(stream: IO[bytes], max_pickles: int = 5) -> list[tuple[str, str]]:
    """The globals of up to ``max_pickles`` pickles stored one after another (torch's legacy format has 5)."""
    found: list[tuple[str, str]] = []
    for index in range(max_pickles):
        start = stream.tell()
        try:
            found += _globals_of_one(stream)
        except ValueError:  # not (or no longer) a pickle: raw storage bytes follow the pickles
            if index == 0:
                stream.seek(start)
                raise
            break
        peek = stream.read(1)
        if peek != b"\x80":
            break
        stream.seek(-1, io.SEEK_CUR)
    return found


def disallowed(found: Iterable[tuple[str, str]]) -> list[str]:
    """The names (module.name) outside the allowed list, without repeats, in order."""
    names: list[str] = []
    for module, name in found:
        if not is_allowed(module, name):
            dotted = f"{_READABLE.get(module, module)}.{name}"
            if dotted not in names:
                names.append(dotted)
    return names
