"""The one-line messages of the command line: every "effstudio: error: ..." goes through here.

A message can carry text from a file or from a library (torch's load errors span lines, a name read
from a header can be a megabyte long), and a person reads it on one line of a terminal.
"""

from __future__ import annotations

import sys

MAX_MESSAGE = 2000  # long enough for two absolute paths and the advice after them


def one_line(text: str) -> str:
    """``text`` as one line of bounded length; the end, where the advice is, is kept when the middle
    has to go."""
    line = " ".join(str(text).split())
    if len(line) <= MAX_MESSAGE:
        return line
    return line[:MAX_MESSAGE // 2] + " ... " + line[-(MAX_MESSAGE // 2 - 5):]


def print_error(message: str) -> None:
    """``effstudio: error: MESSAGE`` on stderr, as one line."""
    print(f"effstudio: error: {one_line(message)}", file=sys.stderr)
