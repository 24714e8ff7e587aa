"""hostctl's two consoles: progress and messages on stderr, tables and results on stdout."""

from __future__ import annotations

import sys

from rich.console import Console

# soft_wrap: a message is one line in a log or a pipe, whatever the width (rich wraps at 80
# columns where stderr is not a terminal; a terminal wraps long lines by itself). emoji=False:
# user names pass through both consoles, and rich read `tiny.py:factory: ...` as :factory:.
console = Console(stderr=True, soft_wrap=True, emoji=False)


def stdout_console() -> Console:
    """Tables go to stdout; when piped, wide enough that a split table does not wrap.

    Neither markup nor emoji codes: its tables hold the user's paths, model and data names
    verbatim (a bundle `run[v2]` printed as `run`); style goes in as Text or style=.
    """
    return Console(width=None if sys.stdout.isatty() else 160, markup=False, emoji=False)
