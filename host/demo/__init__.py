"""The demo: export, serve, edge and a shaped link on one machine, with a final report.

The names below load on first use (PEP 562): `hostctl --help` imports `host.demo.commands`,
which runs this file, and must not pull in torch with the cloud trainer.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from host.demo.run import DemoOptions, run_demo

__all__ = ["DemoOptions", "run_demo"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module("host.demo.run"), name)
