"""How `edge-runtime` takes SIGINT and SIGTERM: recorded while it imports and trains, and
breaking off at once the waits that know nothing of a stop (connecting, the final drain).

Ctrl-C ends a command as interrupted (exit 130, with how to resume); SIGTERM, as systemd sends
it, as a clean stop (exit 0).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator

import click

from edge_runtime.errors import Interrupted


class _Signalled(BaseException):
    """Raised by the handler inside ``StopSignals.at_once``; BaseException, so that a wait's
    ``except Exception`` retry loop does not swallow it."""


class StopSignals:
    """SIGINT and SIGTERM for ``edge-runtime run`` (and ``infer``'s start), installed on the
    command's first line.

    By default a signal is only recorded and ``event`` set: the trainer finishes the batch in
    hand, and start-up's imports (onnxruntime, torch) complete, where a KeyboardInterrupt in
    the middle of ``import onnxruntime`` fails as "ImportError: initialization failed". Inside
    ``at_once()`` a signal ends the wait at once: connecting to a host that is not there knows
    nothing of ``event`` and would otherwise hold a Ctrl-C for all of --connect-timeout.
    Ctrl-C ends the command as interrupted (130); SIGTERM, as systemd sends it, as a clean
    stop (0).
    """

    def __init__(self, say: Callable[[str], object] = print) -> None:
        self._say = say  # where a SIGTERM's "stopped ..." line goes
        self.event = threading.Event()
        self.by: list[int] = []
        self._at_once = False
        self._previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)
        }

    def _on_signal(self, signum: int, frame: object) -> None:  # noqa: ARG002 - signal's signature
        self.by.append(signum)
        self.event.set()
        if self._at_once:
            raise _Signalled

    def restore(self) -> None:
        """Put back the handlers that were there before (a process that goes on keeps its own)."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @property
    def interrupted(self) -> bool:
        """Whether Ctrl-C (SIGINT) was among the signals: the run ends as interrupted."""
        return signal.SIGINT in self.by

    def check(self, what: str) -> None:
        """End the command now if a signal came; ``what`` says where it stopped and what next."""
        if not self.by:
            return
        if self.interrupted:
            raise Interrupted(what)
        self._say(what)
        raise click.exceptions.Exit(0)

    @contextlib.contextmanager
    def at_once(self, what: str) -> Iterator[None]:
        """A block a signal breaks off at once, ending the command as ``check(what)`` does."""
        self.check(what)  # one that came before the block
        self._at_once = True
        try:
            yield
        except _Signalled:
            self._at_once = False
            self.check(what)
        finally:
            self._at_once = False

    def wait(self, blocking: Callable[[], object]) -> bool:
        """Run `blocking` (a wait); a signal, before or during it, breaks it off at once.
        Returns whether it ran to its end."""
        if self.by:
            return False
        self._at_once = True
        try:
            blocking()
            return True
        except _Signalled:
            return False
        finally:
            self._at_once = False
