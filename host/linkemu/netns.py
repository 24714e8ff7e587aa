"""A kernel-shaped link: two network namespaces joined by a veth pair, each direction ``tc tbf``.

The edge namespace holds one end of the veth (``edge_ip``), the host namespace the other
(``host_ip``); a process started with ``run("host", ...)`` listens on ``host_ip`` and one
started with ``run("edge", ...)`` connects to it. Traffic never leaves the two namespaces.
``entered(side)`` moves the calling thread into a namespace for a moment instead: sockets
opened there stay in it, so an in-process server can listen inside the host namespace.
The veth ends are created directly inside their namespaces, so their fixed names and the
fixed 10.200.0.0/30 addresses cannot collide between links: only the namespace names are
unique (prefix, owner pid, counter). Needs root and iproute2 (``ip``, ``tc``).

Shaping choices (a token bucket filter on each veth's egress: edge -> up, host -> down):

- Rate. A link's rates are TCP payload rates, as in ``ShapedRelay``. tbf counts whole
  Ethernet frames, so it is set to ``rate * 1514 / 1448`` (frame over payload of a full
  segment with timestamps at MTU 1500). A bulk transfer then delivers the set payload rate
  (uncompensated, 2 Mbit/s measures 1.92).
- Burst: two frames or 2 ms of traffic, whichever is larger. Only the first burst after an
  idle spell leaves at line speed, so it barely skews a transfer; two frames keep a full
  segment (and its GSO split) from being refused outright.
- Queue (``limit``): burst + 50 ms of traffic, at least 8 frames. TCP fills whatever queue it
  is given, so this bounds the delay a bulk transfer adds to everything behind it (50 ms, or
  8 frames' time on slow links: ~130 ms at 768 kbit/s) while keeping enough backlog for the
  link never to idle.

Delay: ``netem`` is not available in this kernel, so this class adds no delay; the veth round
trip is well under a millisecond. A caller that needs the link's RTT puts the user-space
``ShapedRelay`` (rate ``inf``, the link's RTT) in the path, or accepts its absence.

Cleanup: ``down()`` (also on ``__exit__`` and at interpreter exit) stops the processes ``run``
started, deletes the veth and both namespaces, and is safe to call twice or after a failed
``up()``. A SIGKILLed owner leaves its namespaces behind; ``cleanup_stale()`` removes those whose
owner pid is gone.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import itertools
import logging
import math
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Literal

from edge_runtime.errors import HiertrainError

from .presets import LinkSpec, _format_rate

log = logging.getLogger(__name__)

PREFIX = "ht-"
Side = Literal["edge", "host"]

_MTU = 1500
_FRAME = _MTU + 14  # Ethernet header
_PAYLOAD = _MTU - 52  # IPv4 20 + TCP 20 + timestamps 12
_BURST_S = 0.002
_QUEUE_S = 0.05
_MIN_QUEUE_FRAMES = 8
_VETH = {"edge": "veth-edge", "host": "veth-host"}
_ADDR = {"edge": "10.200.0.1", "host": "10.200.0.2"}
_PREFIXLEN = 30
_CMD_TIMEOUT_S = 10.0
_STOP_S = 2.0
_NETNS_DIR = "/var/run/netns"  # where `ip netns add` bind-mounts a namespace
_CLONE_NEWNET = 0x40000000

_counter = itertools.count()


class NamespaceLinkError(HiertrainError, RuntimeError):
    """Setting up or tearing down a namespace link failed; says which step and command."""


def tbf_args(rate_bps: float) -> list[str]:
    """``tc qdisc ... tbf`` arguments that carry ``rate_bps`` of TCP payload (see module doc)."""
    wire_bps = rate_bps * _FRAME / _PAYLOAD
    byte_rate = wire_bps / 8
    burst = max(2 * _FRAME, int(byte_rate * _BURST_S))
    limit = burst + max(_MIN_QUEUE_FRAMES * _FRAME, int(byte_rate * _QUEUE_S))
    return ["tbf", "rate", f"{round(wire_bps)}bit", "burst", str(burst), "limit", str(limit)]


def _run(argv: list[str], what: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run an iproute2 command; on failure raise (``check``) with the step, stderr and command."""
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=_CMD_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        if not check:
            return subprocess.CompletedProcess(argv, -1, "", str(exc))
        raise NamespaceLinkError(f"{what} failed: {exc} (command: {' '.join(argv)})") from exc
    if check and done.returncode != 0:
        reason = done.stderr.strip() or f"exit status {done.returncode}"
        raise NamespaceLinkError(f"{what} failed: {reason} (command: {' '.join(argv)})")
    return done


def _missing_requirement() -> str:
    """Why kernel shaping cannot even be tried here, or ``""``."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veth and tc need CAP_NET_ADMIN)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return f"needs iproute2: {tool!r} not found on PATH"
    return ""


def kernel_shaping_available() -> tuple[bool, str]:
    """(True, "") if a namespace, a veth and a tbf can be made here; else (False, why)."""
    missing = _missing_requirement()
    if missing:
        return False, missing
    probe = f"{PREFIX}{os.getpid()}-p{next(_counter)}"
    try:
        _run(["ip", "netns", "add", probe], "ip netns add")
        veth = ["type", "veth", "peer", "name", "probe-b"]
        _run(["ip", "-n", probe, "link", "add", "probe-a", *veth], "veth")
        _run(["tc", "-n", probe, "qdisc", "add", "dev", "probe-a", "root", *tbf_args(1e6)], "tbf")
    except NamespaceLinkError as exc:
        return False, str(exc)
    finally:
        _run(["ip", "netns", "delete", probe], "ip netns delete", check=False)
    return True, ""


class NamespaceLink:
    """Two network namespaces joined by a veth pair, each direction shaped with tc tbf."""

    def __init__(self, link: LinkSpec, name: str | None = None) -> None:
        self.link = link
        self.name = name if name is not None else f"{PREFIX}{os.getpid()}-{next(_counter)}"
        self.edge_ns = f"{self.name}-e"
        self.host_ns = f"{self.name}-h"
        self.edge_ip = _ADDR["edge"]
        self.host_ip = _ADDR["host"]
        self._owner_pid = os.getpid()
        self._created: list[str] = []  # namespaces this instance made, so down() removes only those
        self._procs: list[subprocess.Popen[Any]] = []
        self._lock = threading.Lock()

    def namespace(self, side: Side) -> str:
        """The namespace of ``side`` ("edge" or "host")."""
        if side == "edge":
            return self.edge_ns
        if side == "host":
            return self.host_ns
        raise ValueError(f"side must be 'edge' or 'host', not {side!r}")

    def up(self) -> None:
        """Create both namespaces, the veth, addresses and the tbf qdiscs; undo all on failure."""
        missing = _missing_requirement()
        if missing:
            raise NamespaceLinkError(f"namespace link {self.name}: {missing}")
        with self._lock:
            if self._created:
                raise NamespaceLinkError(f"namespace link {self.name} is already up")
            _LIVE.add(self)
        try:
            self._build()
        except BaseException:
            with contextlib.suppress(NamespaceLinkError):  # the build error is the news
                self.down()
            raise
        log.debug("up: %s", self.describe())

    def _build(self) -> None:
        for ns in (self.edge_ns, self.host_ns):
            _run(["ip", "netns", "add", ns], "ip netns add")
            with self._lock:
                self._created.append(ns)
        _run(
            ["ip", "link", "add", _VETH["edge"], "netns", self.edge_ns, "type", "veth"]
            + ["peer", "name", _VETH["host"], "netns", self.host_ns],
            "veth pair",
        )
        rates = {"edge": self.link.up_bps, "host": self.link.down_bps}
        for side in ("edge", "host"):
            ns, dev = self.namespace(side), _VETH[side]
            _run(["ip", "-n", ns, "link", "set", "lo", "up"], "loopback up")
            _run(
                ["ip", "-n", ns, "addr", "add", f"{_ADDR[side]}/{_PREFIXLEN}", "dev", dev],
                "address",
            )
            _run(["ip", "-n", ns, "link", "set", dev, "mtu", str(_MTU), "up"], "veth up")
            if not math.isinf(rates[side]):
                _run(
                    ["tc", "-n", ns, "qdisc", "add", "dev", dev, "root", *tbf_args(rates[side])],
                    "tc qdisc add tbf",
                )

    def down(self) -> None:
        """Stop what ``run`` started, delete the veth and the namespaces made here; idempotent.

        Raises ``NamespaceLinkError`` if a namespace could not be deleted (after trying all).
        """
        with self._lock:
            procs, self._procs = self._procs, []
            created, self._created = self._created, []
            _LIVE.discard(self)
        for proc in procs:
            _stop(proc)
        if self.edge_ns in created:
            # Deleting one end removes the pair, even if a stray process pins a namespace.
            _run(["ip", "-n", self.edge_ns, "link", "delete", _VETH["edge"]], "veth", check=False)
        failures = []
        for ns in reversed(created):
            done = _run(["ip", "netns", "delete", ns], "ip netns delete", check=False)
            if done.returncode != 0:
                failures.append(f"{ns}: {done.stderr.strip()}")
        if failures:
            raise NamespaceLinkError(f"ip netns delete failed: {'; '.join(failures)}")

    def __enter__(self) -> NamespaceLink:
        self.up()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    def run(self, side: Side, argv: list[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` in ``side``'s namespace (``ip netns exec``); ``down()`` stops it."""
        ns = self.namespace(side)
        with self._lock:
            if ns not in self._created:
                raise NamespaceLinkError(f"namespace link {self.name} is not up")
            proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], **popen_kwargs)
            self._procs = [p for p in self._procs if p.poll() is None] + [proc]
        return proc

    @contextlib.contextmanager
    def entered(self, side: Side) -> Iterator[None]:
        """Run the ``with`` body in ``side``'s network namespace; only this thread moves.

        Sockets created in the body belong to that namespace for life, and threads started in
        it are born there, so a server started here listens on ``host_ip`` (or on the
        namespace's own loopback). The thread's namespace is restored on the way out, always.
        """
        ns = self.namespace(side)
        with self._lock:
            if ns not in self._created:
                raise NamespaceLinkError(f"namespace link {self.name} is not up")
        original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        try:
            target = os.open(os.path.join(_NETNS_DIR, ns), os.O_RDONLY)
            try:
                _setns(target, f"enter netns {ns}")
            finally:
                os.close(target)
            try:
                yield
            finally:
                _setns(original, "return to the original netns")
        finally:
            os.close(original)

    def describe(self) -> str:
        """One line for logs and reports: what shapes the link, at what rates."""
        return (
            f"kernel tc tbf on veth between netns {self.edge_ns} and {self.host_ns}: "
            f"up {_format_rate(self.link.up_bps)}, down {_format_rate(self.link.down_bps)} "
            "(delay: none in kernel)"
        )


def _setns(fd: int, what: str) -> None:
    """setns(2) for the calling thread only (Python 3.11 has no os.setns)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise NamespaceLinkError(f"{what} failed: {os.strerror(err)}")


def _stop(proc: subprocess.Popen[Any]) -> None:
    """Terminate a process ``run`` started, kill it if it lingers, and reap it."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(_STOP_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(_STOP_S)


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a running (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def cleanup_stale(prefix: str = PREFIX) -> list[str]:
    """Delete namespaces named ``<prefix><pid>-...`` whose owner pid is gone; return their names.

    Namespaces of live owners (this process included) are left alone, so parallel runs are
    safe. Processes still inside a stale namespace keep running, cut off from the link.
    """
    if _missing_requirement():
        return []
    listing = _run(["ip", "netns", "list"], "ip netns list")
    owned = re.compile(rf"^{re.escape(prefix)}(\d+)-")
    removed = []
    for line in listing.stdout.splitlines():
        name = line.split(maxsplit=1)[0] if line.strip() else ""
        match = owned.match(name)
        if match is None or _pid_alive(int(match[1])):
            continue
        for dev in _VETH.values():
            _run(["ip", "-n", name, "link", "delete", dev], "veth", check=False)
        if _run(["ip", "netns", "delete", name], "ip netns delete", check=False).returncode == 0:
            removed.append(name)
    return removed


_LIVE: set[NamespaceLink] = set()


@atexit.register
def _down_all() -> None:
    """At interpreter exit, take down the links this process brought up (not a fork's parent's)."""
    for link in list(_LIVE):
        if link._owner_pid != os.getpid():
            continue
        try:
            link.down()
        except NamespaceLinkError as exc:
            log.warning("at exit: %s", exc)
