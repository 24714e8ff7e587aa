"""The lines a host serves edges on: a TCP connection or a serial line, behind one interface.

A TCP connection is one peer: a refusal, a failed handshake or a lost session ends it. A serial
line outlives its peers: noise, refusals and lost sessions leave it open for the next HELLO.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod

from edge_runtime.link.config import LinkConfig
from edge_runtime.link.stream import FrameIO, LinkStats
from edge_runtime.link.transports import Transport


class HostLine(ABC):
    """One transport the listener serves edges on, with its frame reader and writer."""

    def __init__(self, transport: Transport, config: LinkConfig, peer: str = "?") -> None:
        self.transport = transport
        self.peer = peer  # where the peer is, for the log: "host:port" or the device
        self.in_handshake = True  # counted against the listener's max_handshakes until cleared
        # Until a peer authenticates it may send only small frames (HELLO and AUTH are a few
        # hundred bytes): an unauthenticated peer costs the host at most handshake_frame.
        self.io = FrameIO(
            transport,
            config.max_frame,
            LinkStats(),
            config.frame_size,
            read_limit=config.handshake_frame,
        )
        self._handshake_frame = config.handshake_frame
        self._hello_timeout = config.handshake_timeout

    @property
    @abstractmethod
    def keeps_listening(self) -> bool:
        """True if the line serves the next HELLO after a refusal or a lost session."""

    @abstractmethod
    def hello_deadline(self) -> float | None:
        """When to stop waiting for a HELLO (time.monotonic), None to wait as long as it lives."""

    @abstractmethod
    def end_session(self) -> None:
        """A session on this line is over: what becomes of the line."""

    def await_peer(self) -> None:
        """Between sessions: back to the small frames a peer may send before it authenticates;
        frames of the session that was (late on the line) are stale."""
        self.io.decoder.set_limit(self._handshake_frame)
        self.io.end_session()

    def close(self) -> None:
        """Close the transport; a read or write blocked on it ends with LinkClosed."""
        self.transport.close()

    def finish(self, timeout: float) -> None:
        """Close the line once its last frame can reach the peer (the host stops after it)."""
        self.transport.finish(timeout)


class TcpConnection(HostLine):
    """One edge's TCP connection: a session, or several if the edge starts over; then gone."""

    @property
    def keeps_listening(self) -> bool:
        """A TCP peer that fails the handshake or loses its session is dropped."""
        return False

    def hello_deadline(self) -> float | None:
        """A peer that does not say HELLO in the handshake timeout is dropped."""
        return time.monotonic() + self._hello_timeout

    def end_session(self) -> None:
        """The connection ends with the session the host closed."""
        self.close()


class SerialLine(HostLine):
    """A serial device: sessions follow one another on it; noise and refusals never close it."""

    @property
    def keeps_listening(self) -> bool:
        """The line is there for the next edge (or the same one, restarted)."""
        return True

    def hello_deadline(self) -> float | None:
        """An edge may come at any time."""
        return None

    def end_session(self) -> None:
        """The port stays open for the next HELLO."""
