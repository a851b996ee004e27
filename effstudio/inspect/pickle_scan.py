"""Which Python callables a pickle would import, found without unpickling it.

A pickle is a small program: GLOBAL / STACK_GLOBAL opcodes import a callable
and REDUCE calls it, which is how a malicious file runs ``os.system``. This
module walks the opcodes with :func:`pickletools.genops` (a parser; it never
imports or calls anything) and lists the globals. STACK_GLOBAL takes its module
and name from the stack, possibly through the memo, so the walk keeps a model of
the stack and memo (strings as themselves, everything else as a placeholder),
driven by each opcode's documented stack effect: a name built in a roundabout
way is still read as the unpickler would read it, and one that cannot be known
is reported as unknown (and refused).

Names are given as Python 3 imports them: a protocol 0-2 pickle may say
``__builtin__`` or ``commands``, which the unpickler maps to ``builtins`` and
``subprocess`` (the table is :mod:`_compat_pickle`'s, the one the unpickler
uses). The scan reads at most :data:`read_limits.MAX_PICKLE_BYTES`.

The PyTorch reader refuses a file whose pickle names anything outside a short
list of tensor-rebuilding functions before ``torch.load(weights_only=True)`` is
even called, so a file is checked twice and never executed.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickletools
import re
from collections.abc import Iterable
from typing import IO

from effstudio import read_limits

_TORCH_NAMES = {
    ("torch", "device"), ("torch", "Size"), ("torch", "Tensor"), ("torch._tensor", "Tensor"),
    ("torch.serialization", "_get_layout"), ("torch._tensor", "_rebuild_from_type_v2"),
    ("torch.nn.parameter", "Parameter"), ("torch.storage", "UntypedStorage"), ("torch.storage", "TypedStorage"),
}
_TORCH_ATTRIBUTE = re.compile(r"(u?int\d+|float\d*(_\w+)?|bfloat16|bool|complex\d*|half|double|long|short|"
                              r"q(u)?int\d+(x\d+)?|strided|sparse_\w+|_mkldnn|\w+_format|cfloat|cdouble)")
# modules that Python 3 still has under a platform name people do not know
_PLATFORM_NAMES = {"posix": "os", "nt": "os"}
_BUILTINS = {"set", "frozenset", "slice", "bytearray", "bytes", "complex", "range", "tuple", "list", "dict",
             "int", "float", "bool", "str"}
_UNKNOWN = ("?", "?")  # a STACK_GLOBAL whose names are not plain strings: never allowed


class PickleTooLarge(ValueError):
    """The pickle is longer than the scan reads."""


class _Placeholder:
    """Any stack value that is not a string."""


_ANY = _Placeholder()
_MARK = object()


def is_allowed(module: str, name: str) -> bool:
    """A global that only rebuilds tensors, storages or plain containers (names as Python 3 imports them)."""
    if (module, name) in _TORCH_NAMES:
        return True
    if module == "torch._utils" and name.startswith("_rebuild_"):
        return True
    if module in ("torch", "torch.storage", "torch.cuda") and name.endswith("Storage"):
        return True
    if module == "torch" and _TORCH_ATTRIBUTE.fullmatch(name):
        return True
    if module in ("collections", "builtins"):
        return name == "OrderedDict" if module == "collections" else name in _BUILTINS
    return (module, name) == ("_codecs", "encode")


def python3_name(module: str, name: str, protocol: int) -> tuple[str, str]:
    """What the unpickler imports for ``module.name``: protocols below 3 map Python 2 names (fix_imports)."""
    if protocol < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
    return module, name


class _Capped(io.RawIOBase):
    """A read-only view of a stream that refuses to give more than ``limit`` bytes in all."""

    def __init__(self, stream: IO[bytes], limit: int):
        self.stream, self.left, self.limit = stream, limit, limit

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.limit - self.left

    def readinto(self, buffer) -> int:  # type: ignore[override]
        if self.left == 0:
            if self.stream.read(1):  # the reader wants more, and there is more
                raise PickleTooLarge(f"the pickle is longer than {self.limit:,} bytes, the most effstudio reads "
                                     "(MAX_PICKLE_BYTES)")
            return 0
        data = self.stream.read(min(len(buffer), self.left))
        self.left -= len(data)
        buffer[:len(data)] = data
        return len(data)


def _pop_mark(stack: list) -> list:
    """Pop down to and including the topmost MARK; the items above it, bottom first."""
    for index in range(len(stack) - 1, -1, -1):
        if stack[index] is _MARK:
            items = stack[index + 1:]
            del stack[index:]
            return items
    raise ValueError("the pickle pops a MARK it never pushed")


def _globals_of_one(stream: IO[bytes]) -> list[tuple[str, str]]:
    """The globals of one pickle, read up to its STOP, as Python 3 names."""
    protocol = 0  # until a PROTO opcode says otherwise, as for the unpickler
    found: list[tuple[str, str]] = []
    stack: list = []
    memo: dict[int, object] = {}
    for opcode, arg, _pos in pickletools.genops(stream):
        name = opcode.name
        if name == "PROTO":
            protocol = int(arg)
        if name in ("GLOBAL", "INST"):
            module, _, attribute = str(arg).partition(" ")
            found.append(python3_name(module, attribute, protocol))
        elif name == "STACK_GLOBAL":
            if len(stack) < 2:
                raise ValueError("STACK_GLOBAL on a stack of fewer than two items")
            module, attribute = stack[-2], stack[-1]
            found.append(python3_name(module, attribute, protocol)
                         if isinstance(module, str) and isinstance(attribute, str) else _UNKNOWN)
        elif name in ("EXT1", "EXT2", "EXT4"):  # a callable from the copyreg extension registry
            found.append(("copyreg extension", str(arg)))
        if name in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):  # they keep the stack as it is
            memo[len(memo) if name == "MEMOIZE" else int(arg)] = stack[-1] if stack else _ANY
            continue
        # the opcode's effect on the stack, as pickletools documents it
        before, after = opcode.stack_before, opcode.stack_after
        if pickletools.markobject in before or (name == "POP" and stack and stack[-1] is _MARK):
            _pop_mark(stack)
            below = before.index(pickletools.markobject) if pickletools.markobject in before else 0
        else:
            below = len(before)
        if below:
            if len(stack) < below:
                raise ValueError(f"{name} on a stack of {len(stack)} items")
            top = stack[-1]
            del stack[-below:]
        else:
            top = _ANY
        if name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo.get(int(arg), _ANY))
        elif name == "DUP":
            stack.append(top)
            stack.append(top)
        elif isinstance(arg, str) and after == [pickletools.pyunicode]:
            stack.append(arg)
        elif name in ("STRING", "BINSTRING", "SHORT_BINSTRING"):  # protocol 0-2 str: latin-1, as fix_imports reads
            stack.append(arg.decode("latin-1") if isinstance(arg, bytes) else str(arg))
        else:
            for item in after:
                stack.append(_MARK if item is pickletools.markobject else _ANY)
    return found


def pickle_globals(stream: IO[bytes], max_pickles: int = 5, limit: int | None = None) -> list[tuple[str, str]]:
    """The globals of up to ``max_pickles`` pickles stored one after another (torch's legacy format has 5).

    At most ``limit`` bytes (default :data:`read_limits.MAX_PICKLE_BYTES`) are read; PickleTooLarge beyond.
    """
    capped = io.BufferedReader(_Capped(stream, read_limits.MAX_PICKLE_BYTES if limit is None else limit))
    found: list[tuple[str, str]] = []
    for index in range(max_pickles):
        try:
            found += _globals_of_one(capped)
        except PickleTooLarge:
            raise
        except ValueError:  # not (or no longer) a pickle: raw storage bytes follow the pickles
            if index == 0:
                raise
            break
        if capped.peek(1)[:1] != b"\x80":
            break
    return found


def disallowed(found: Iterable[tuple[str, str]]) -> list[str]:
    """The names (module.name) outside the allowed list, without repeats, in order."""
    names: list[str] = []
    for module, name in found:
        if not is_allowed(module, name):
            dotted = f"{_PLATFORM_NAMES.get(module, module)}.{name}"
            if dotted not in names:
                names.append(dotted)
    return names
