"""Shared pieces for the link tests: a fast config, a collecting host, a pty bridge.

Imported by the tests by its (unique) module name; fixtures are in conftest.py."""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from dataclasses import dataclass, field

from edge_runtime.link import HostSession, LinkClosed, LinkConfig
from edge_runtime.link.messages import Message

KEY = b"test-key-0123456789"
BUNDLE = "ab" * 32


def fast_config(**overrides: object) -> LinkConfig:
    """Short timeouts so that failures show in seconds, not minutes."""
    base: dict[str, object] = {
        "spool_fsync": False,
        "rto_min": 0.1,
        "keepalive_interval": 0.2,
        "dead_timeout": 3.0,
        "handshake_timeout": 1.0,
        "reconnect_timeout": 15.0,
        "backoff_initial": 0.05,
        "backoff_max": 0.5,
        "read_timeout": 0.02,
        "link_bytes_per_s": 1e6,
    }
    base.update(overrides)
    return LinkConfig(**base)  # type: ignore[arg-type]


@dataclass
class Collector:
    """A host application: records every message, consumes it at once."""

    messages: list[Message] = field(default_factory=list)
    sessions: list[HostSession] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    consume: bool = True
    delay: float = 0.0

    def __call__(self, session: HostSession) -> None:
        with self.lock:
            self.sessions.append(session)
        while True:
            try:
                msg = session.recv(0.5)
            except LinkClosed:
                return
            if msg is None:
                continue
            with self.lock:
                self.messages.append(msg)
            if self.consume and msg.seq:
                time.sleep(self.delay)  # a slow tail trainer
                session.consumed(msg.seq)

    def wait_for(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.data()) >= count:
                    return
            time.sleep(0.02)
        raise AssertionError(f"only {len(self.data())} of {count} messages arrived")

    def data(self) -> list[Message]:
        return [m for m in self.messages if m.seq]

    def stat(self, name: str) -> int:
        return sum(s.stats[name] for s in self.sessions)


class PtyBridge:
    """Two pty pairs joined master to master: two device paths wired like a null-modem cable.

    One thread per direction, as a cable's two wires are independent: with one thread for
    both, a side that stopped reading (a host that has stopped) filled its input queue, the
    thread blocked writing to it, and what that side wrote last (its final ERROR) was never
    carried to the other side.
    """

    def __init__(self) -> None:
        self._m1, s1 = os.openpty()
        self._m2, s2 = os.openpty()
        self.paths = (os.ttyname(s1), os.ttyname(s2))
        self._slaves = (s1, s2)  # keep them open so the masters never see EIO
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._carry, args=(src, dst), daemon=True)
            for src, dst in ((self._m1, self._m2), (self._m2, self._m1))
        ]
        for thread in self._threads:
            thread.start()

    def _carry(self, src: int, dst: int) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([src], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(src, 65536)
            except OSError:
                continue
            view = memoryview(data)
            try:
                while view:
                    n = os.write(dst, view)
                    view = view[n:]
            except OSError:  # closed under a blocked write: the bridge is closing
                return

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(1.0)
        for fd in (self._m1, self._m2, *self._slaves):
            with contextlib.suppress(OSError):
                os.close(fd)
