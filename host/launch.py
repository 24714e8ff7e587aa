"""`hostctl`'s entry point: the CLI imported where a Ctrl-C is one line (edge_runtime.launch)."""

from __future__ import annotations

from edge_runtime.launch import start


def hostctl_main() -> None:
    """`hostctl`."""
    start("hostctl", "host.cli")
