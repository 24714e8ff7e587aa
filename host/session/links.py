"""The emulated link between the demo's cloud trainer and its edge runtime process.

Three emulations, chosen by name (``--link-emulation``, see ``choose_emulation``):

``kernel``  Two network namespaces joined by a veth pair, each direction shaped by ``tc tbf``
            (``host/linkemu/netns.py``; needs root). The edge runtime runs in the edge
            namespace (``ip netns exec``); the cloud listens on the host namespace's loopback.
            This kernel has no ``netem``, so the RTT comes from a user-space relay in the host
            namespace with unlimited rate and the link's delay, listening on the host veth
            address. Link busy time is the bytes the relay carried each way (TCP payload) over
            the link's rate: the time tbf needed to let them through.
``user``    The user-space token bucket relay (``host/linkemu/shaper.py``) on loopback: rate and
            delay in one; its own busy counters.
``serial``  For ``serial:<baud>`` links: a pty pair paced to the baud rate, 8N1
            (``host/linkemu/null_modem.py``); the cloud serves one end, the edge opens the
            other. Link busy time is bytes * 10 / baud each way.
"""

from __future__ import annotations

import math
import subprocess
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Protocol

from edge_runtime.errors import UsageFault
from edge_runtime.link import LinkConfig
from host.linkemu import (
    EMULATION_CHOICES,
    LinkSpec,
    NamespaceLink,
    ShapedRelay,
    cleanup_stale,
    kernel_shaping_available,
)
from host.linkemu.null_modem import NullModem

USER_SPACE = "user-space token bucket (host/linkemu/shaper.py)"


class EmulationUnavailable(UsageFault, ValueError):
    """The asked-for emulation cannot run here; says why and what to choose instead."""


class Listener(Protocol):
    """What a link is put in front of: the cloud trainer, or the inference host."""

    def serve_tcp(self, host: str, port: int) -> tuple[str, int]: ...

    def serve_serial(self, url: str) -> None: ...


class Emulation(ABC):
    """One way of putting ``link``'s link between a CloudServer and an edge process.

    ``open`` makes the cloud listen behind the link; ``edge_options`` are the `edge-runtime run`
    options that reach it; ``start_edge`` starts that command where the edge belongs;
    ``stats`` says what crossed (also after ``close``); ``close`` undoes everything, also after
    a failed ``open``, and is safe to call twice.
    """

    name: ClassVar[str]

    def __init__(self, link: LinkSpec) -> None:
        self.link = link

    def link_config(self) -> LinkConfig:
        """The cloud's link settings (the serial emulation sets the baud rate)."""
        return LinkConfig()

    @abstractmethod
    def open(self, cloud: Listener) -> None:
        """Bring the link up and make ``cloud`` listen at its host end."""

    @abstractmethod
    def edge_options(self) -> dict[str, Any]:
        """`edge-runtime run` options (by parameter name, see ``run_argv``) for the edge end."""

    def start_edge(self, argv: list[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        """Start the edge runtime command; it runs on this machine's network by default."""
        return subprocess.Popen(argv, **popen_kwargs)

    @abstractmethod
    def stats(self) -> dict[str, float]:
        """``bytes_up``, ``bytes_down``, ``busy_up_s``, ``busy_down_s`` (up: edge to host)."""

    @abstractmethod
    def describe(self) -> str:
        """The report's ``link_emulation`` line: what shaped the link."""

    @abstractmethod
    def close(self) -> None:
        """Take the link down."""


class UserSpaceLink(Emulation):
    """The user-space token bucket relay on loopback."""

    name = "user"

    def __init__(self, link: LinkSpec) -> None:
        super().__init__(link)
        self.relay: ShapedRelay | None = None

    def open(self, cloud: Listener) -> None:
        self.relay = ShapedRelay(cloud.serve_tcp("127.0.0.1", 0), self.link)
        self.relay.start()

    def edge_options(self) -> dict[str, Any]:
        assert self.relay is not None, "open() first"
        return {"url": self.relay.url}

    def stats(self) -> dict[str, float]:
        assert self.relay is not None, "open() first"
        return dict(self.relay.stats)

    def describe(self) -> str:
        return USER_SPACE

    def close(self) -> None:
        if self.relay is not None:
            self.relay.stop()  # idempotent


class KernelLink(Emulation):
    """tc tbf on a veth pair between two namespaces; the RTT by a user-space delay relay."""

    name = "kernel"

    def __init__(self, link: LinkSpec) -> None:
        super().__init__(link)
        self.netns = NamespaceLink(link)
        self.relay: ShapedRelay | None = None

    def open(self, cloud: Listener) -> None:
        cleanup_stale()  # namespaces left by a killed run (only those whose owner is gone)
        self.netns.up()
        # Sockets made in here stay in the host namespace, and so do the accept threads
        # started here (the relay connects to the cloud from its accept thread). On failure
        # the caller's close() takes the namespaces down.
        with self.netns.entered("host"):
            target = cloud.serve_tcp("127.0.0.1", 0)
            delay = LinkSpec(f"{self.link.name} delay", math.inf, math.inf, self.link.rtt_s)
            self.relay = ShapedRelay(target, delay, listen=(self.netns.host_ip, 0))
            self.relay.start()

    def edge_options(self) -> dict[str, Any]:
        assert self.relay is not None, "open() first"
        return {"url": self.relay.url}

    def start_edge(self, argv: list[str], **popen_kwargs: Any) -> subprocess.Popen[Any]:
        return self.netns.run("edge", argv, **popen_kwargs)

    def stats(self) -> dict[str, float]:
        assert self.relay is not None, "open() first"
        relay = self.relay.stats
        return {
            "bytes_up": relay["bytes_up"],
            "bytes_down": relay["bytes_down"],
            "busy_up_s": _seconds_at(relay["bytes_up"], self.link.up_bps),
            "busy_down_s": _seconds_at(relay["bytes_down"], self.link.down_bps),
        }

    def describe(self) -> str:
        shaped = not (math.isinf(self.link.up_bps) and math.isinf(self.link.down_bps))
        what = "tc tbf on a veth pair" if shaped else "an unshaped veth pair"
        rtt = ", RTT by user-space delay" if self.link.rtt_s > 0 else ""
        return f"kernel: {what} between two network namespaces{rtt}"

    def close(self) -> None:
        try:
            if self.relay is not None:
                self.relay.stop()
        finally:
            self.netns.down()  # also stops the edge if it still runs


class SerialLink(Emulation):
    """A pty pair paced to the baud rate; the edge on end 0, the cloud on end 1."""

    name = "serial"

    def __init__(self, link: LinkSpec) -> None:
        super().__init__(link)
        if link.baud is None:
            raise ValueError(f"link {link.name} is not a serial line (serial:<baud>)")
        self.baud = link.baud
        self.modem: NullModem | None = None
        self._closed = False

    def link_config(self) -> LinkConfig:
        return LinkConfig(baudrate=self.baud)

    def open(self, cloud: Listener) -> None:
        self.modem = NullModem(self.baud)
        cloud.serve_serial(self.modem.paths[1])

    def edge_options(self) -> dict[str, Any]:
        assert self.modem is not None, "open() first"
        return {"url": self.modem.paths[0], "baud": self.baud}

    def stats(self) -> dict[str, float]:
        assert self.modem is not None, "open() first"
        up, down = self.modem.bytes_forwarded
        bytes_per_s = self.baud / 10  # 8N1
        return {
            "bytes_up": up,
            "bytes_down": down,
            "busy_up_s": up / bytes_per_s,
            "busy_down_s": down / bytes_per_s,
        }

    def describe(self) -> str:
        return f"serial: pty pair paced to {self.baud} baud (8N1)"

    def close(self) -> None:
        if self.modem is not None and not self._closed:
            self._closed = True  # closing the ptys twice could close someone else's fds
            self.modem.close()


EMULATIONS: dict[str, type[Emulation]] = {
    cls.name: cls for cls in (KernelLink, UserSpaceLink, SerialLink)
}


def _seconds_at(nbytes: float, rate_bps: float) -> float:
    return 0.0 if math.isinf(rate_bps) else nbytes * 8 / rate_bps


def choose_emulation(link: LinkSpec, choice: str) -> str:
    """The emulation that runs ``link`` for ``--link-emulation choice`` (auto|kernel|user).

    A serial link is always the paced pty pair (``user`` allows that; ``kernel`` is refused).
    ``auto`` is ``kernel`` where kernel shaping works here (root, iproute2, a namespace could
    be made), else ``user``. Raises ``EmulationUnavailable`` with the reason.
    """
    if choice not in EMULATION_CHOICES:
        raise EmulationUnavailable(
            f"--link-emulation {choice!r}: choose from {', '.join(EMULATION_CHOICES)}"
        )
    if link.baud is not None:
        if choice == "kernel":
            raise EmulationUnavailable(
                f"--link-emulation kernel: --link {link.name} is a serial line, paced on a "
                "pty pair; kernel shaping is for network links (use auto or user)"
            )
        return "serial"
    if choice == "user":
        return "user"
    available, why = kernel_shaping_available()
    if available:
        return "kernel"
    if choice == "kernel":
        raise EmulationUnavailable(
            f"--link-emulation kernel: kernel shaping is unavailable here: {why} (use auto or user)"
        )
    return "user"


def make_emulation(link: LinkSpec, choice: str) -> Emulation:
    """A not yet opened emulation of ``link`` for ``choice`` (see ``choose_emulation``)."""
    return EMULATIONS[choose_emulation(link, choice)](link)
