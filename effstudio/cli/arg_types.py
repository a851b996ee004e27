"""argparse value types: a bad value is argparse's usage error (exit 2) naming what was expected."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def non_negative(text: str) -> int:
    """A whole number, 0 or more (a count of kills)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number, 0 or more, got {text!r}")
    return value


def whole(low: int, high: int) -> Callable[[str], int]:
    """A whole number from ``low`` to ``high`` (a count of passes, threads)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high:,}, got {text!r}")
        return value

    return parse


def amount(text: str) -> float:
    """A fraction; whether it lies in (0, 1) is the job settings' check, with their message."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}") from None


def comma_list(kind: Callable[[str], T]) -> Callable[[str], list[T]]:
    """A comma-separated list of ``kind`` ("1024,2048")."""

    def parse(text: str) -> list[T]:
        try:
            return [kind(item) for item in text.split(",") if item.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {getattr(kind, '__name__', kind)}, got {text!r}") from None

    return parse
