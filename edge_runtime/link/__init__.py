"""The link between an edge board and the host: framing, messages, reliable channel, transports.

Imports only the standard library, numpy, pyserial and cobs: the board runs it as is.
"""

from edge_runtime.link.config import LinkConfig
from edge_runtime.link.edge import EdgeLink
from edge_runtime.link.errors import (
    AuthError,
    FrameError,
    HandshakeRefused,
    LinkClosed,
    LinkError,
    LinkTimeout,
    PeerStopped,
    ProtocolError,
    SpoolError,
)
from edge_runtime.link.header import PROTOCOL_VERSION
from edge_runtime.link.host import HostListener, HostSession

__all__ = [
    "PROTOCOL_VERSION",
    "AuthError",
    "EdgeLink",
    "FrameError",
    "HandshakeRefused",
    "HostListener",
    "HostSession",
    "LinkClosed",
    "LinkConfig",
    "LinkError",
    "LinkTimeout",
    "PeerStopped",
    "ProtocolError",
    "SpoolError",
]
