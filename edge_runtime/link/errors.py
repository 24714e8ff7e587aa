"""Typed errors of the link: every failure the link raises is a ``LinkError``."""

from __future__ import annotations

from typing import ClassVar

from edge_runtime.errors import HiertrainError


class LinkError(HiertrainError):
    """Base of every error the link raises."""


class FrameError(LinkError):
    """A frame could not be decoded: bad COBS, bad CRC, bad header or a length out of bounds."""


class ProtocolError(LinkError):
    """A well-formed frame that breaks the protocol: unknown type, bad payload, wrong state."""


class LinkClosed(LinkError):
    """The peer or the transport is gone."""


class LinkTimeout(LinkError, TimeoutError):
    """An operation on the link did not complete in the time given."""


class SpoolError(LinkError):
    """The on-disk spool is unusable (unreadable entry, bad directory, message too large)."""


class PeerStopped(LinkError):
    """The peer ended the session for good with an ERROR (a host that failed mid-run and is
    stopping): reconnecting would find nobody, so the link ends at once with its message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class HandshakeRefused(LinkError):
    """The host refused the session; ``code`` says why ("auth", "version", "bundle", ...)."""

    label: ClassVar[str] = "refused by the host"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"handshake refused ({code}): {message}")
        self.code = code
        self.message = message


class AuthError(HandshakeRefused):
    """The keys of the two ends differ (HMAC check failed)."""

    def __init__(self, message: str) -> None:
        super().__init__("auth", message)
