"""The console scripts' entry points: import the CLI, then run it.

A CLI's module imports click, rich and the rest of its package before ``run_cli`` can turn a
Ctrl-C into "interrupted" (exit 130), so a Ctrl-C in the first second of `edge-runtime` or
`hostctl` printed a KeyboardInterrupt traceback from deep inside an import. Importing the CLI
here, under a try, closes that window; nothing but the standard library is imported first.
"""

from __future__ import annotations

import importlib
import signal
import sys

# edge_runtime.errors.EXIT_INTERRUPTED, not imported: the interrupted import may be that one.
_EXIT_INTERRUPTED = 130


def start(prog: str, module: str) -> None:
    """Import `module` (a CLI with a `main()`) and run it; a Ctrl-C during the import is one
    line and exit 130, as run_cli ends an interrupted command."""
    try:
        cli = importlib.import_module(module)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not add a traceback
        sys.stderr.write(f"{prog}: interrupted\n")
        sys.exit(_EXIT_INTERRUPTED)
    cli.main()


def edge_runtime_main() -> None:
    """`edge-runtime`."""
    start("edge-runtime", "edge_runtime.cli")


if __name__ == "__main__":  # python -m edge_runtime.launch: how hostctl starts its edge
    edge_runtime_main()
