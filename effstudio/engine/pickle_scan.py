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

Naming an allowed global is not enough to be called. The opcodes that call
(REDUCE, NEWOBJ, NEWOBJ_EX, OBJ, INST, and the function that
``torch._tensor._rebuild_from_type_v2`` calls for it) may only call a shorter
list: functions that rebuild tensors from the file's own storages, and
containers filled from the file. ``torch.Tensor(n)``, ``UntypedStorage(n)`` or
``bytearray(n)`` from a 100-byte pickle would allocate gigabytes the file does
not hold (PyTorch's safe loader accepts the last two), so a type may appear
as a value (a dtype, a storage class) but never be called; a call of anything
the scan cannot name (the result of another call: ``getattr`` chains), and a
BUILD that would set attributes on an imported class or function, are refused.

:mod:`effstudio.engine.torch_file` refuses a file whose pickle does any of this
before ``torch.load(weights_only=True)`` is even called, so a file is checked
twice and never executed.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickletools
import re
from dataclasses import dataclass, field
from typing import IO

from effstudio import read_limits

# the tensor-rebuilding functions of torch._utils that a checkpoint of plain tensors calls; others (a
# wrapper subclass, a tensor from numpy or another device) are not needed for weights
_REBUILDERS = {"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3", "_rebuild_parameter",
               "_rebuild_parameter_with_state", "_rebuild_qtensor", "_rebuild_sparse_tensor",
               "_rebuild_nested_tensor", "_rebuild_meta_tensor_no_storage"}
# what a pickle may call: each builds its result from values the file holds, so it allocates no more than
# the file's size (a storage's bytes come from the file, checked against what torch reads)
_CALLABLE = {("torch._utils", name) for name in _REBUILDERS} | {
    ("collections", "OrderedDict"), ("torch._tensor", "_rebuild_from_type_v2"), ("_codecs", "encode"),
    ("torch", "device"), ("torch", "Size"), ("torch.serialization", "_get_layout"),
    ("torch.nn.parameter", "Parameter"), ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "slice"),
    ("builtins", "complex"),
}
_TORCH_NAMES = {
    ("torch", "device"), ("torch", "Size"), ("torch", "Tensor"), ("torch._tensor", "Tensor"),
    ("torch.serialization", "_get_layout"), ("torch._tensor", "_rebuild_from_type_v2"),
    ("torch.nn.parameter", "Parameter"), ("torch.storage", "UntypedStorage"), ("torch.storage", "TypedStorage"),
}
_TORCH_ATTRIBUTE = re.compile(r"(u?int\d+|float\d*(_\w+)?|bfloat16|bool|complex\d*|half|double|long|short|"
                              r"q(u)?int\d+(x\d+)?|strided|sparse_\w+|_mkldnn|\w+_format|cfloat|cdouble)")
# modules that Python 3 still has under a platform name people do not know
_PLATFORM_NAMES = {"posix": "os", "nt": "os"}
# builtins that may appear as values; `range` never (set(range(10**12)) would be a loop of hours)
_BUILTINS = {"set", "frozenset", "slice", "bytearray", "bytes", "complex", "tuple", "list", "dict", "int", "float",
             "bool", "str"}
_UNKNOWN = ("?", "?")  # a STACK_GLOBAL whose names are not plain strings: never allowed


class PickleTooLarge(ValueError):
    """The pickle is longer than the scan reads."""


class _Placeholder:
    """Any stack value that is not a string, a global or a tuple of those."""


class _Global(tuple):
    """A global pushed by GLOBAL / STACK_GLOBAL: (module, name) as Python 3 imports it."""


@dataclass
class Scan:
    """What a pickle would import, and what it would call (an import, or UNKNOWN_CALL)."""

    imports: list[tuple[str, str]] = field(default_factory=list)
    calls: list[tuple[str, str]] = field(default_factory=list)
    builds_on: list[tuple[str, str]] = field(default_factory=list)  # imports whose attributes BUILD would set
    # the persistent ids of BINPERSID as modelled (torch's ("storage", type, key, location, numel) tuples)
    persistent_ids: list[object] = field(default_factory=list)

    def __iadd__(self, other: Scan) -> Scan:
        self.imports += other.imports
        self.calls += other.calls
        self.builds_on += other.builds_on
        self.persistent_ids += other.persistent_ids
        return self


UNKNOWN_CALL = ("?", "an object the pickle built (not a name it imports)")


_ANY = _Placeholder()
_MARK = object()


def is_allowed(module: str, name: str) -> bool:
    """A global that only rebuilds tensors, storages or plain containers (names as Python 3 imports them)."""
    if (module, name) in _TORCH_NAMES:
        return True
    if module == "torch._utils" and name in _REBUILDERS:
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


def _callee(name: str, stack: list) -> object | None:
    """What the calling opcode ``name`` calls, from the stack before it runs; None for other opcodes."""
    depth = {"REDUCE": 2, "NEWOBJ": 2, "NEWOBJ_EX": 3}.get(name)
    if depth is not None:
        return stack[-depth] if len(stack) >= depth else _ANY
    if name == "OBJ":  # MARK cls args... OBJ
        for index in range(len(stack) - 1, -1, -1):
            if stack[index] is _MARK:
                return stack[index + 1] if index + 1 < len(stack) else _ANY
    return None


def _called(callee: object, args: object) -> list[tuple[str, str]]:
    """The names a call runs: the callee, and the function _rebuild_from_type_v2 calls with its arguments."""
    if not isinstance(callee, _Global):
        return [UNKNOWN_CALL]
    if callee == ("torch._tensor", "_rebuild_from_type_v2"):
        inner = args[0] if isinstance(args, tuple) and args else _ANY
        return [tuple(callee), *_called(inner, None)]
    return [tuple(callee)]


def _scan_one(stream: IO[bytes]) -> Scan:
    """The globals and calls of one pickle, read up to its STOP, as Python 3 names."""
    protocol = 0  # until a PROTO opcode says otherwise, as for the unpickler
    scan = Scan()
    stack: list = []
    memo: dict[int, object] = {}
    for opcode, arg, _pos in pickletools.genops(stream):
        name = opcode.name
        pushed: object = _ANY  # what the opcode leaves on the stack, when it leaves one value
        if name == "PROTO":
            protocol = int(arg)
        if name in ("GLOBAL", "INST"):
            module, _, attribute = str(arg).partition(" ")
            pushed = _Global(python3_name(module, attribute, protocol))
            scan.imports.append(tuple(pushed))
            if name == "INST":  # MARK args... INST module name: calls the global it names
                scan.calls.append(tuple(pushed))
                pushed = _ANY
        elif name == "STACK_GLOBAL":
            if len(stack) < 2:
                raise ValueError("STACK_GLOBAL on a stack of fewer than two items")
            module, attribute = stack[-2], stack[-1]
            known = isinstance(module, str) and isinstance(attribute, str)
            pushed = _Global(python3_name(module, attribute, protocol)) if known else _ANY
            scan.imports.append(tuple(pushed) if known else _UNKNOWN)
        elif name in ("EXT1", "EXT2", "EXT4"):  # a callable from the copyreg extension registry
            scan.imports.append(("copyreg extension", str(arg)))
        callee = _callee(name, stack)
        if callee is not None:
            scan.calls += _called(callee, stack[-1] if name == "REDUCE" and stack else None)
        if name == "BINPERSID" and stack:
            scan.persistent_ids.append(stack[-1])
        if name == "BUILD" and len(stack) >= 2 and isinstance(stack[-2], _Global):
            scan.builds_on.append(tuple(stack[-2]))
        if name in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):  # they keep the stack as it is
            memo[len(memo) if name == "MEMOIZE" else int(arg)] = stack[-1] if stack else _ANY
            continue
        # the opcode's effect on the stack, as pickletools documents it
        before, after = opcode.stack_before, opcode.stack_after
        items: list = []
        if pickletools.markobject in before or (name == "POP" and stack and stack[-1] is _MARK):
            items = _pop_mark(stack)
            below = before.index(pickletools.markobject) if pickletools.markobject in before else 0
        else:
            below = len(before)
        if below:
            if len(stack) < below:
                raise ValueError(f"{name} on a stack of {len(stack)} items")
            top = stack[-1]
            items = stack[-below:]
            del stack[-below:]
        else:
            top = _ANY
        if name in ("GET", "BINGET", "LONG_BINGET"):
            stack.append(memo.get(int(arg), _ANY))
        elif name == "DUP":
            stack.append(top)
            stack.append(top)
        elif name in ("TUPLE", "TUPLE1", "TUPLE2", "TUPLE3"):  # kept, to see what _rebuild_from_type_v2 calls
            stack.append(tuple(items))
        elif name == "EMPTY_TUPLE":
            stack.append(())
        elif isinstance(arg, str) and after == [pickletools.pyunicode]:
            stack.append(arg)
        elif name in ("STRING", "BINSTRING", "SHORT_BINSTRING"):  # protocol 0-2 str: latin-1, as fix_imports reads
            stack.append(arg.decode("latin-1") if isinstance(arg, bytes) else str(arg))
        elif name in ("GLOBAL", "STACK_GLOBAL"):
            stack.append(pushed)
        elif len(after) == 1 and after[0].name in ("int", "int_or_bool") and type(arg) is int:
            stack.append(arg)  # kept: a storage's size in its persistent id
        else:
            for item in after:
                stack.append(_MARK if item is pickletools.markobject else _ANY)
    return scan


def scan_pickles(stream: IO[bytes], max_pickles: int = 5, limit: int | None = None) -> Scan:
    """The globals and calls of up to ``max_pickles`` pickles stored one after another (torch's legacy
    format has 5).

    At most ``limit`` bytes (default :data:`read_limits.MAX_PICKLE_BYTES`) are read; PickleTooLarge beyond.
    """
    capped = io.BufferedReader(_Capped(stream, read_limits.MAX_PICKLE_BYTES if limit is None else limit))
    scan = Scan()
    for index in range(max_pickles):
        try:
            scan += _scan_one(capped)
        except PickleTooLarge:
            raise
        except ValueError:  # not (or no longer) a pickle: raw storage bytes follow the pickles
            if index == 0:
                raise
            break
        if capped.peek(1)[:1] != b"\x80":
            break
    return scan


def _dotted(module: str, name: str) -> str:
    return f"{_PLATFORM_NAMES.get(module, module)}.{name}"


def disallowed(scan: Scan) -> list[str]:
    """What the pickle would do that a checkpoint of plain tensors never does, without repeats, in order:
    an import outside the allowed list (module.name), a call of something that may only be a value
    ("module.name(...)", or an unknown callee), a BUILD on an imported name."""
    problems: list[str] = []
    for module, name in scan.imports:
        if not is_allowed(module, name):
            problems.append(_dotted(module, name))
    for call in scan.calls:
        if call == UNKNOWN_CALL:
            problems.append(f"a call of {UNKNOWN_CALL[1]}")
        elif is_allowed(*call) and call not in _CALLABLE:
            problems.append(f"{_dotted(*call)}(...) (an allowed value, but calling it builds data the file does "
                            "not hold)")
    for module, name in scan.builds_on:
        problems.append(f"a BUILD that sets attributes of {_dotted(module, name)}")
    return list(dict.fromkeys(problems))
