"""The one-line messages of the command line: every "effstudio: error: ..." goes through here.

A message can carry text from a file or from a library (torch's load errors span lines, a name read
from a header can be a megabyte long), and a person reads it on one line of a terminal.
"""

from __future__ import annotations

import re
import sys

MAX_MESSAGE = 2000  # long enough for two absolute paths and the advice after them


# control characters (an escape sequence can clear or retitle a terminal) and the marks that reverse the
# direction of the text after them (a name that reads as another): shown as escapes, never sent as they are
_HIDDEN = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff\ud800-\udfff]")


def one_line(text: str) -> str:
    """``text`` as one line of bounded length, its control and direction characters shown as escapes;
    the end, where the advice is, is kept when the middle has to go."""
    line = " ".join(str(text).split())
    line = _HIDDEN.sub(lambda match: match.group().encode("unicode_escape").decode("ascii"), line)
    if len(line) <= MAX_MESSAGE:
        return line
    return line[:MAX_MESSAGE // 2] + " ... " + line[-(MAX_MESSAGE // 2 - 5):]


def print_error(message: str) -> None:
    """``effstudio: error: MESSAGE`` on stderr, as one line."""
    print(f"effstudio: error: {one_line(message)}", file=sys.stderr)
