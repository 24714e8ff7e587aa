"""The local session runner: export, cloud trainer, emulated link and edge process on one
machine, with one merged report. `hostctl demo` runs it with the demo's defaults; `hostctl
bench`, the HIL suite and the benchmarks run it with theirs.

The names below load on first use (PEP 562): `hostctl --help` imports the commands that use
this package and must not pull in torch with the cloud trainer.
"""

from __future__ import annotations

import contextlib
import importlib
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from host.session.runner import SessionOptions, run_session

__all__ = ["SessionOptions", "run_session", "sigterm_as_interrupt"]
_LAZY = ("SessionOptions", "run_session")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """A SIGTERM ends the body as Ctrl-C does, so its cleanup runs (an emulated link's network
    namespaces are not removed at exit after a plain SIGTERM)."""

    def interrupt(signum: int, frame: object) -> None:  # noqa: ARG001 - signal's signature
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module("host.session.runner"), name)
