"""Byte transports: pyserial URLs on the edge, serial devices and TCP sockets on the host.

A transport moves bytes and knows nothing of frames. ``read`` waits at most the configured
read timeout and returns b"" when nothing came; a transport that is gone raises LinkClosed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import select
import socket
import time
from typing import Protocol

import serial

from edge_runtime.errors import UsageFault
from edge_runtime.link.errors import LinkClosed

CHUNK = 1 << 16
# What pyserial raises from a port that was closed under a blocked read or write.
_PORT_ERRORS = (serial.SerialException, OSError, ValueError, TypeError, AttributeError)


class Transport(Protocol):
    """The small interface the link needs from a byte stream."""

    def read(self) -> bytes:
        """Bytes available now or within the read timeout; b"" if none."""
        ...

    def write(self, data: bytes) -> None:
        """Write all of ``data`` (blocking)."""
        ...

    def close(self) -> None:
        """Close; a blocked read or write ends with LinkClosed."""
        ...

    def finish(self, timeout: float) -> None:
        """Close once what was written last can reach the peer (at most ``timeout`` s more)."""
        ...

    @property
    def reliable(self) -> bool:
        """True over TCP: bytes are not lost while the connection lives."""
        ...


class SocketTransport:
    """A connected TCP socket."""

    reliable = True

    def __init__(self, sock: socket.socket, read_timeout: float) -> None:
        sock.setblocking(True)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        self._timeout = read_timeout
        self._closed = False

    def read(self) -> bytes:
        """Bytes available within the read timeout; b"" if none."""
        if self._closed:
            raise LinkClosed("socket closed")
        try:
            ready, _, _ = select.select([self._sock], [], [], self._timeout)
            if not ready:
                return b""
            data = self._sock.recv(CHUNK)
        except (OSError, ValueError) as exc:
            raise LinkClosed(f"socket read failed: {exc}") from exc
        if not data:
            raise LinkClosed("peer closed the connection")
        return data

    def write(self, data: bytes) -> None:
        """Write all of ``data``."""
        if self._closed:
            raise LinkClosed("socket closed")
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise LinkClosed(f"socket write failed: {exc}") from exc

    def close(self) -> None:
        """Shut down and close the socket."""
        if self._closed:
            return
        self._closed = True
        # Already disconnected: closing is all that is left.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()

    def finish(self, timeout: float) -> None:
        """Close so that the last thing written (a host's final ERROR) reaches the peer."""
        if self._closed:
            return
        self._closed = True  # a read on another thread now ends with LinkClosed
        _drain_to_eof(self._sock, timeout)
        self._sock.close()


class SerialTransport:
    """A pyserial port (any URL serial_for_url takes: device, pty, socket://, rfc2217://, loop://)."""

    def __init__(self, port: serial.SerialBase) -> None:
        self._port = port
        # pyserial's socket:// handler reports 1 byte waiting at most, which would make us read
        # byte by byte; read its socket directly instead (writes still go through pyserial).
        self._sock: socket.socket | None = getattr(port, "_socket", None)
        self._closed = False

    @property
    def port(self) -> serial.SerialBase:
        """The underlying pyserial port."""
        return self._port

    @property
    def reliable(self) -> bool:
        """socket:// and rfc2217:// run over TCP; a UART or a pty line can lose bytes."""
        return self._sock is not None

    def read(self) -> bytes:
        """Bytes available now or within the port timeout; b"" if none."""
        if self._closed:
            raise LinkClosed("port closed")
        try:
            if self._sock is not None:
                return self._read_socket(self._sock)
            waiting = self._port.in_waiting
            data = self._port.read(min(max(waiting, 1), CHUNK))
            if data and self._port.in_waiting:
                data += self._port.read(min(self._port.in_waiting, CHUNK))
            return data
        except _PORT_ERRORS as exc:
            raise LinkClosed(f"port read failed: {exc}") from exc

    def _read_socket(self, sock: socket.socket) -> bytes:
        ready, _, _ = select.select([sock], [], [], self._port.timeout)
        if not ready:
            return b""
        data = sock.recv(CHUNK)
        if not data:
            raise LinkClosed("peer closed the connection")
        return data

    def write(self, data: bytes) -> None:
        """Write all of ``data``."""
        if self._closed:
            raise LinkClosed("port closed")
        try:
            self._port.write(data)
        except _PORT_ERRORS as exc:
            raise LinkClosed(f"port write failed: {exc}") from exc

    def close(self) -> None:
        """Close the port."""
        if self._closed:
            return
        self._closed = True
        # The port is unusable either way; nothing else to release.
        with contextlib.suppress(*_PORT_ERRORS):
            self._port.close()

    def finish(self, timeout: float) -> None:
        """Close so that the last thing written reaches the peer. Over socket:// as a TCP
        socket does (see SocketTransport.finish); a device keeps what was written in its
        queue and sends it out on close (the tty's closing wait), so it just closes."""
        if self._sock is not None and not self._closed:
            self._closed = True
            _drain_to_eof(self._sock, timeout)
            with contextlib.suppress(*_PORT_ERRORS):
                self._port.close()
        self.close()


def _drain_to_eof(sock: socket.socket, timeout: float) -> None:
    """Half-close ``sock`` and read (dropping it) what the peer still sends until it closes too
    or ``timeout`` passes.

    Closing a TCP socket with unread bytes in its receive buffer makes the kernel answer with
    RST, and an RST destroys what the peer has not read yet: a host's final ERROR, sent while
    the edge still streams batches, never reached the edge (it retried for its reconnect
    timeout instead). A FIN after the last byte (SHUT_WR) and an empty receive buffer at close
    let the ERROR through; the peer, having read it, closes, and that EOF ends the wait.
    """
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            ready, _, _ = select.select([sock], [], [], left)
            # Non-blocking: a reader on another thread may have taken what select saw.
            if ready and not sock.recv(CHUNK, socket.MSG_DONTWAIT):
                return  # EOF: the peer closed
        except BlockingIOError:
            continue
        except (OSError, ValueError):
            return  # reset or closed under us: nothing left to protect


def socket_pair(read_timeout: float) -> tuple[SocketTransport, SocketTransport]:
    """Two connected ends of one in-process stream (edge, host): both halves of a run in one
    process with no network, as tests run each training mode."""
    a, b = socket.socketpair()
    return SocketTransport(a, read_timeout), SocketTransport(b, read_timeout)


URL_FORMS = "socket://HOST:PORT (or tcp://HOST:PORT), /dev/ttyUSB0, rfc2217://HOST:PORT, loop://"
_HOST_PORT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d+)$")
# Schemes that are TCP addresses and need HOST:PORT after them.
_NETWORK_SCHEMES = ("socket", "rfc2217")


def check_url(url: str) -> str:
    """The pyserial URL to open for what a user wrote, or a UsageFault naming the forms.

    ``tcp://HOST:PORT`` (serve's form) and a bare ``HOST:PORT`` mean ``socket://HOST:PORT``;
    an unknown scheme or a network URL without a port is refused here, before the first try,
    rather than after a minute of retrying something that cannot work.
    """
    if _HOST_PORT.match(url):
        url = f"socket://{url}"
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url  # a device path (/dev/ttyUSB0, COM3)
    scheme = scheme.lower()
    if scheme == "tcp":
        scheme = "socket"
    if importlib.util.find_spec(f"serial.urlhandler.protocol_{scheme}") is None:
        raise UsageFault(f"link URL {url!r}: unknown scheme {scheme!r}; expected {URL_FORMS}")
    if scheme in _NETWORK_SCHEMES:
        match = _HOST_PORT.match(rest.split("?", 1)[0].rstrip("/"))
        if match is None or not 0 < int(match.group(2)) < 65536:
            raise UsageFault(f"link URL {url!r}: expected {scheme}://HOST:PORT")
    return f"{scheme}://{rest}"


def open_url(url: str, baudrate: int, read_timeout: float) -> SerialTransport:
    """Open any pyserial URL (a device path is a URL too); LinkClosed if it cannot be opened."""
    try:
        port = serial.serial_for_url(
            url, baudrate=baudrate, timeout=read_timeout, write_timeout=None
        )
    except (serial.SerialException, OSError, ValueError) as exc:
        # pyserial names the port again ("Could not open port URL: ..."): say it once.
        reason = str(exc).removeprefix(f"Could not open port {url}: ")
        raise LinkClosed(f"cannot open {url}: {reason}") from exc
    return SerialTransport(port)


def listen_tcp(host: str, port: int, backlog: int = 64) -> socket.socket:
    """A listening TCP socket on (host, port); port 0 picks a free one."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    return sock
