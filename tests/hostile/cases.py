"""How the hostile-case modules declare their cases: a decorator beside each maker.

A module keeps ``CASES: list[Case] = []`` and ``case = declare_into(CASES)``, then writes
``@case("checkpoint")`` above each ``make_<name>(folder) -> path``; CASES lists
(name, maker, kind of file) in the order the makers are defined.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

Maker = Callable[[Path], Path]
Case = tuple[str, Maker, str]  # (name, make(folder) -> the hostile file or folder, kind of file)


def declare_into(cases: list[Case]) -> Callable[[str], Callable[[Maker], Maker]]:
    """A decorator factory: ``@case(kind)`` adds ``make_<name>`` to ``cases`` as (name, maker, kind)."""

    def case(kind: str) -> Callable[[Maker], Maker]:
        def declare(make: Maker) -> Maker:
            cases.append((make.__name__.removeprefix("make_"), make, kind))
            return make

        return declare

    return case
