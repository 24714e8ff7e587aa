"""hostctl's two consoles: progress and messages on stderr, tables and results on stdout."""

from __future__ import annotations

import sys

from rich.console import Console

# soft_wrap: a message is one line in a log or a pipe, whatever the width (rich wraps at 80
# columns where stderr is not a terminal; a terminal wraps long lines by itself).
console = Console(stderr=True, soft_wrap=True)


def stdout_console() -> Console:
    """Tables go to stdout; when piped, wide enough that a split table does not wrap."""
    return Console(width=None if sys.stdout.isatty() else 160)
