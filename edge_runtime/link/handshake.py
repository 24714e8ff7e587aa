"""The handshake: HELLO -> CHALLENGE -> AUTH -> WELCOME, or ERROR naming what differs.

The AUTH digest is HMAC-SHA256(key, nonce | u16 len | edge_id | u16 len | run_id | bundle_sha256),
strings UTF-8; the length prefixes keep ("ab", "c") and ("a", "bc") apart.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import secrets
import struct
import time
from collections.abc import Callable
from typing import Any

from edge_runtime.link.control import Auth, Challenge, Error, Hello, Welcome
from edge_runtime.link.errors import AuthError, HandshakeRefused, LinkClosed, LinkTimeout
from edge_runtime.link.header import PROTOCOL_VERSION, Header, MsgType
from edge_runtime.link.messages import Message, decode_message
from edge_runtime.link.stream import FrameIO

REFUSAL_CODES = ("auth", "version", "bundle", "state", "identity")
MAX_ID = 64
# Printable ASCII without blanks or path separators: an id names files and log lines on the host.
_ID = re.compile(rf"[!-.0-\[\]-~]{{1,{MAX_ID}}}")


def id_problem(what: str, value: str) -> str | None:
    """Why ``value`` cannot be an edge or run id, or None if it can."""
    if _ID.fullmatch(value) and value not in (".", ".."):
        return None
    return (
        f"{what} {value[:MAX_ID]!r}{'...' if len(value) > MAX_ID else ''} is not a valid id: "
        f"1 to {MAX_ID} printable ASCII characters, no blanks, no '/' or '\\'"
    )


# What a HELLO's bundle description holds, in the order a refusal names differences.
BUNDLE_FIELDS = ("model", "split", "input_shape", "activation_shape", "num_classes")


def auth_digest(key: bytes, nonce: bytes, edge_id: str, run_id: str, bundle_sha256: str) -> bytes:
    """The HMAC-SHA256 an edge proves its key with."""
    parts = [nonce]
    for text in (edge_id, run_id):
        raw = text.encode()
        parts += [struct.pack("!H", len(raw)), raw]
    parts.append(bundle_sha256.encode())
    return hmac.new(key, b"".join(parts), hashlib.sha256).digest()


def board_key(bundle_key: bytes, edge_id: str) -> bytes:
    """The key of one board: HMAC-SHA256(bundle key, edge id). A host that knows the bundle's
    key derives it from the edge id a HELLO claims; a board holding only its own key can
    authenticate only as itself."""
    return hmac.new(bundle_key, edge_id.encode(), hashlib.sha256).digest()


KeyFor = Callable[[str], bytes]  # edge id -> the key that edge must prove


def bundle_difference(edge: dict[str, Any], host: dict[str, Any]) -> str:
    """What differs between two bundle descriptions: 'split 3 vs split 2 (edge vs host)'.

    Empty when neither side described its bundle or the descriptions agree (then only the
    hashes say they differ: a retrained or re-exported bundle of the same shape).
    """
    diffs = []
    for name in BUNDLE_FIELDS:
        if name in edge and name in host and edge[name] != host[name]:
            a, b = (_shown(edge[name]), _shown(host[name]))
            diffs.append(f"{name.replace('_', ' ')} {a} vs {name.replace('_', ' ')} {b}")
    return f"{', '.join(diffs)} (edge's vs host's)" if diffs else ""


def _shown(value: Any) -> str:
    if isinstance(value, list):
        return "x".join(map(str, value))
    return str(value)


def refusal(code: str, message: str) -> HandshakeRefused:
    """The typed error for a refusal code."""
    return AuthError(message) if code == "auth" else HandshakeRefused(code, message)


def _next(io: FrameIO, deadline: float, wanted: tuple[MsgType, ...], what: str) -> Message:
    """Next frame of a wanted type; an ERROR raises; stale frames of other types are skipped."""
    while True:
        frame = io.read_frame(deadline)
        if frame is None:
            raise LinkTimeout(f"no {what} from the peer in time")
        header, payload = frame
        if header.type == MsgType.ERROR:
            err = decode_message(header, payload)
            assert isinstance(err, Error)
            if err.code in REFUSAL_CODES:
                raise refusal(err.code, err.message)
            raise LinkClosed(f"peer ended the handshake ({err.code}): {err.message}")
        if header.type in wanted:
            return decode_message(header, payload)


def edge_handshake(io: FrameIO, hello: Hello, key: bytes, timeout: float) -> Welcome:
    """Run the edge's half; return the host's WELCOME or raise HandshakeRefused/LinkTimeout."""
    deadline = time.monotonic() + timeout
    io.write_message(hello)
    challenge = _next(io, deadline, (MsgType.CHALLENGE,), "CHALLENGE")
    assert isinstance(challenge, Challenge)
    digest = auth_digest(key, challenge.nonce, hello.edge_id, hello.run_id, hello.bundle_sha256)
    # The host may send the session's first frames right behind WELCOME: readable from here on.
    io.expect_session(challenge.nonce)
    io.write_message(Auth(digest))
    welcome = _next(io, deadline, (MsgType.WELCOME,), "WELCOME")
    assert isinstance(welcome, Welcome)
    io.start_session()
    return welcome


def refuse(io: FrameIO, code: str, message: str) -> HandshakeRefused:
    """Tell the peer why it is refused (best effort) and return the error to raise."""
    # The peer may be gone already; the refusal stands either way.
    with contextlib.suppress(LinkClosed):
        io.write_message(Error(code, message))
    return refusal(code, message)


def check_hello_header(io: FrameIO, header: Header) -> None:
    """Refuse a HELLO in another protocol version before decoding its payload."""
    if header.version != PROTOCOL_VERSION:
        raise refuse(
            io,
            "version",
            f"protocol version differs: edge speaks {header.version}, "
            f"host speaks {PROTOCOL_VERSION}",
        )


def host_handshake(
    io: FrameIO,
    hello: Hello,
    key: bytes | KeyFor,
    bundle_sha256: str | None,
    timeout: float,
    bundle: dict[str, Any] | None = None,
) -> Hello:
    """Run the host's half up to (not including) WELCOME; return the HELLO that was accepted.

    ``key`` is the one key every edge shares, or the key per edge id (``board_key``).
    ``bundle_sha256`` None accepts any bundle (a deploy session: the board's bundle is what
    is about to change); the key is checked all the same. ``bundle`` describes the host's
    bundle, so that a refusal names what differs.

    A HELLO arriving instead of AUTH restarts the handshake with it. Refusals send ERROR and
    raise HandshakeRefused; anything but AUTH or HELLO is refused with code "protocol".
    """
    deadline = time.monotonic() + timeout
    while True:
        if hello.version != PROTOCOL_VERSION:
            raise refuse(
                io,
                "version",
                f"protocol version differs: edge speaks {hello.version}, "
                f"host speaks {PROTOCOL_VERSION}",
            )
        for what, value in (("edge id", hello.edge_id), ("run id", hello.run_id)):
            problem = id_problem(what, value)
            if problem is not None:
                raise refuse(io, "identity", problem)
        nonce = secrets.token_bytes(32)
        io.expect_session(nonce)  # plain frames until WELCOME; then the session's seed
        io.write_message(Challenge(nonce))
        frame = io.read_frame(deadline)
        if frame is None:
            raise LinkTimeout(f"no AUTH from edge {hello.edge_id!r} in time")
        header, payload = frame
        if header.type == MsgType.HELLO:
            check_hello_header(io, header)
            new = decode_message(header, payload)
            assert isinstance(new, Hello)
            hello = new
            continue
        if header.type != MsgType.AUTH:
            raise refuse(io, "protocol", f"expected AUTH, got message type {header.type}")
        auth = decode_message(header, payload)
        assert isinstance(auth, Auth)
        edge_key = key if isinstance(key, bytes) else key(hello.edge_id)
        expected = auth_digest(edge_key, nonce, hello.edge_id, hello.run_id, hello.bundle_sha256)
        if not hmac.compare_digest(expected, auth.hmac):
            # Each export makes a new key: an edge with another export's bundle fails here
            # first, so say how the bundles differ too (the HELLO's claim, unauthenticated,
            # only informs the message).
            other = bundle_difference(hello.bundle, bundle or {})
            raise refuse(
                io,
                "auth",
                f"authentication failed for edge {hello.edge_id!r}: its key differs"
                + (f"; its bundle is another export: {other}" if other else ""),
            )
        if bundle_sha256 is not None and hello.bundle_sha256 != bundle_sha256:
            what = bundle_difference(hello.bundle, bundle or {}) or (
                f"edge has manifest sha256 {hello.bundle_sha256[:16]}..., "
                f"host serves {bundle_sha256[:16]}..."
            )
            raise refuse(
                io,
                "bundle",
                f"bundle differs: {what}; train the edge with the host's bundle (DIR/edge)",
            )
        return hello
