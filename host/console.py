"""hostctl's two consoles: progress and messages on stderr, tables and results on stdout."""

from __future__ import annotations

import sys

from rich.console import Console

console = Console(stderr=True)


def stdout_console() -> Console:
    """Tables go to stdout; when piped, wide enough that a split table does not wrap."""
    return Console(width=None if sys.stdout.isatty() else 160)
