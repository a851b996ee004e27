"""The exit codes every command shares, and the usage error that maps to code 2."""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # what a shell reports for a program ended by Ctrl+C (128 + SIGINT)


class UsageError(Exception):
    """Bad input from the user: printed as one clear line, exit code 2."""
