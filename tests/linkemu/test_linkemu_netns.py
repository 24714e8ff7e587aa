"""The kernel-shaped namespace link: real rates, cleanup after failures and kills, no collisions.

Traffic stays between the two veth ends inside namespaces these tests create.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Literal

import pytest

from host.linkemu import (
    LinkSpec,
    NamespaceLink,
    NamespaceLinkError,
    cleanup_stale,
    kernel_shaping_available,
    parse_link,
)

AVAILABLE, WHY_NOT = kernel_shaping_available()
needs_kernel = [
    pytest.mark.root,
    pytest.mark.timeout(60),
    pytest.mark.skipif(not AVAILABLE, reason=WHY_NOT or "kernel shaping unavailable"),
]
REPO = Path(__file__).resolve().parents[2]
PORT = "5001"  # private to each link's host namespace, so parallel links share it
WAIT_S = 20.0  # no child process is waited on longer than this

# Host side, uplink: read one connection to EOF; print the byte count and when the last came.
SINK = r"""
import socket, sys, time
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
conn, _ = server.accept()
conn.settimeout(15)
n = 0
while data := conn.recv(65536):
    n += len(data)
print(n, time.monotonic(), flush=True)
conn.close()
"""
# Edge side, uplink: send N bytes, half-close, wait for the sink's close; print when it began.
PUSH = r"""
import socket, sys, time
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=15)
started = time.monotonic()
conn.sendall(b"a" * int(sys.argv[3]))
conn.shutdown(socket.SHUT_WR)
conn.recv(1)
print(started, flush=True)
"""
# Host side, downlink: send N bytes on one connection, then wait for the edge's close.
SOURCE = r"""
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
conn, _ = server.accept()
conn.settimeout(15)
conn.sendall(b"d" * int(sys.argv[3]))
conn.shutdown(socket.SHUT_WR)
conn.recv(1)
"""
# Edge side, downlink: read to EOF; print the byte count, when it connected and when it ended.
PULL = r"""
import socket, sys, time
conn = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=15)
started = time.monotonic()
n = 0
while data := conn.recv(65536):
    n += len(data)
print(n, started, time.monotonic(), flush=True)
"""


def _python(
    link: NamespaceLink, side: Literal["edge", "host"], script: str, *args: str
) -> subprocess.Popen[str]:
    return link.run(side, [sys.executable, "-c", script, *args], stdout=subprocess.PIPE, text=True)


def _started(proc: subprocess.Popen[str]) -> subprocess.Popen[str]:
    """Wait (bounded) for a server script's "ready" line."""
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(WAIT_S)
    assert line and line[0].strip() == "ready", f"server did not start: {line}"
    return proc


def _output(proc: subprocess.Popen[str]) -> list[str]:
    out, _ = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 0, f"child failed ({proc.returncode}): {out}"
    return out.split()


def measure_up(link: NamespaceLink, nbytes: int) -> float:
    """Push ``nbytes`` edge -> host; bits per second from send start to the last byte's arrival."""
    sink = _started(_python(link, "host", SINK, link.host_ip, PORT))
    push = _python(link, "edge", PUSH, link.host_ip, PORT, str(nbytes))
    (started,) = _output(push)
    got, last_at = _output(sink)
    assert int(got) == nbytes
    return nbytes * 8 / (float(last_at) - float(started))


def measure_down(link: NamespaceLink, nbytes: int) -> float:
    """Pull ``nbytes`` host -> edge; bits per second from connect to EOF at the edge."""
    source = _started(_python(link, "host", SOURCE, link.host_ip, PORT, str(nbytes)))
    got, started, ended = _output(_python(link, "edge", PULL, link.host_ip, PORT))
    _output(source)
    assert int(got) == nbytes
    return nbytes * 8 / (float(ended) - float(started))


def namespaces() -> set[str]:
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in listing.stdout.splitlines() if line.strip()}


def root_links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout


def test_describe_names_the_namespaces_and_rates_and_no_delay() -> None:
    link = NamespaceLink(parse_link("3g"), name="ht-doc")
    assert link.describe() == (
        "kernel tc tbf on veth between netns ht-doc-e and ht-doc-h: "
        "up 768 kbit/s, down 1.6 Mbit/s (delay: none in kernel)"
    )


def test_default_names_are_unique_and_carry_the_owner_pid() -> None:
    a, b = NamespaceLink(parse_link("3g")), NamespaceLink(parse_link("3g"))
    assert len({a.edge_ns, a.host_ns, b.edge_ns, b.host_ns}) == 4
    assert a.edge_ns.startswith(f"ht-{os.getpid()}-")
    with pytest.raises(NamespaceLinkError, match="not up"):
        a.run("edge", ["true"])
    with pytest.raises(ValueError, match="side"):
        a.run("cloud", ["true"])  # type: ignore[arg-type]


class TestKernel:
    """Needs root and a kernel with veth and tbf."""

    pytestmark = needs_kernel

    def test_uplink_measures_within_10_percent_of_the_set_rate(self) -> None:
        with NamespaceLink(LinkSpec("t", 2e6, 50e6, 0.0)) as link:
            rate = measure_up(link, 400_000)
        print(f"netns uplink: set 2 Mbit/s, measured {rate / 1e6:.3f} Mbit/s")
        assert rate == pytest.approx(2e6, rel=0.10)

    def test_downlink_measures_within_10_percent_of_its_own_rate(self) -> None:
        with NamespaceLink(parse_link("3g")) as link:
            rate = measure_down(link, 400_000)
        print(f"netns downlink: set 1.6 Mbit/s, measured {rate / 1e6:.3f} Mbit/s")
        assert rate == pytest.approx(1.6e6, rel=0.10)

    def test_a_failing_run_leaves_no_namespace_veth_or_process(self) -> None:
        link = NamespaceLink(parse_link("3g"))
        with pytest.raises(RuntimeError, match="the run failed"), link:
            sink = _started(_python(link, "host", SINK, link.host_ip, PORT))
            assert {link.edge_ns, link.host_ns} <= namespaces()
            raise RuntimeError("the run failed")
        assert not {link.edge_ns, link.host_ns} & namespaces()
        assert "veth-edge" not in root_links() and "veth-host" not in root_links()
        assert sink.poll() is not None  # down() stopped what run() started
        sink.stdout.close()
        link.down()  # idempotent

    def test_a_failed_up_undoes_its_steps_and_names_the_command(self) -> None:
        link = NamespaceLink(parse_link("3g"))
        subprocess.run(["ip", "netns", "add", link.host_ns], check=True)  # in the way
        try:
            with pytest.raises(NamespaceLinkError, match=r"ip netns add failed: .*\(command: ip"):
                link.up()
            assert link.edge_ns not in namespaces()  # made by up(), so removed
            assert link.host_ns in namespaces()  # not ours: left alone
        finally:
            subprocess.run(["ip", "netns", "delete", link.host_ns], check=False)

    def test_cleanup_stale_removes_what_a_killed_owner_left(self) -> None:
        owner_script = (
            "import time\n"
            "from host.linkemu import NamespaceLink, parse_link\n"
            "link = NamespaceLink(parse_link('3g'))\n"
            "link.up()\n"
            "print(link.edge_ns, link.host_ns, flush=True)\n"
            "time.sleep(60)\n"
        )
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        owner = subprocess.Popen(
            [sys.executable, "-c", owner_script], stdout=subprocess.PIPE, text=True, env=env
        )
        try:
            left = set(owner.stdout.readline().split())
        finally:
            owner.send_signal(signal.SIGKILL)
            owner.wait(WAIT_S)
            owner.stdout.close()
        assert len(left) == 2 and left <= namespaces()
        with NamespaceLink(parse_link("3g")) as mine:  # a live owner's link is left alone
            removed = cleanup_stale("ht-")
            assert {mine.edge_ns, mine.host_ns} <= namespaces()
        assert left <= set(removed)
        assert not left & namespaces()

    def test_two_links_at_once_do_not_collide(self) -> None:
        rates: dict[str, float] = {}
        with (
            NamespaceLink(LinkSpec("a", 2e6, 2e6, 0.0)) as a,
            NamespaceLink(LinkSpec("b", 1e6, 1e6, 0.0)) as b,
        ):
            assert not {a.edge_ns, a.host_ns} & {b.edge_ns, b.host_ns}
            threads = [
                threading.Thread(target=lambda: rates.update(a=measure_up(a, 300_000))),
                threading.Thread(target=lambda: rates.update(b=measure_up(b, 150_000))),
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(WAIT_S)
        print(f"netns side by side: a {rates['a'] / 1e6:.3f}, b {rates['b'] / 1e6:.3f} Mbit/s")
        assert rates["a"] == pytest.approx(2e6, rel=0.10)
        assert rates["b"] == pytest.approx(1e6, rel=0.10)


def _netns_of_this_thread() -> str:
    return os.readlink("/proc/thread-self/ns/net")


def test_entered_needs_a_link_that_is_up() -> None:
    link = NamespaceLink(parse_link("3g"))
    before = _netns_of_this_thread()
    with pytest.raises(NamespaceLinkError, match="not up"), link.entered("host"):
        pass
    assert _netns_of_this_thread() == before


class TestEntered:
    """An in-process server inside the host namespace (needs root)."""

    pytestmark = needs_kernel

    def test_a_socket_made_inside_serves_the_edge_namespace(self) -> None:
        before = _netns_of_this_thread()
        born: list[str] = []
        with NamespaceLink(parse_link("4g")) as link:
            with link.entered("host"):
                inside = _netns_of_this_thread()
                server = socket.create_server((link.host_ip, 0))
                thread = threading.Thread(target=lambda: born.append(_netns_of_this_thread()))
                thread.start()
                thread.join(WAIT_S)
            assert _netns_of_this_thread() == before != inside
            assert born == [inside]  # threads started inside are born there
            with server:
                server.settimeout(WAIT_S)
                port = str(server.getsockname()[1])
                push = _python(link, "edge", PUSH, link.host_ip, port, "1000")
                conn, (peer, _) = server.accept()
                with conn:
                    conn.settimeout(WAIT_S)
                    got = 0
                    while data := conn.recv(65536):
                        got += len(data)
                _output(push)
        assert got == 1000 and peer == link.edge_ip

    def test_the_namespace_is_restored_when_the_body_raises(self) -> None:
        before = _netns_of_this_thread()
        with NamespaceLink(parse_link("3g")) as link:
            with pytest.raises(RuntimeError, match="inside"), link.entered("edge"):
                assert _netns_of_this_thread() != before
                raise RuntimeError("inside")
            assert _netns_of_this_thread() == before
            # Outside, the host namespace's address is not on this machine's network.
            with pytest.raises(OSError):
                socket.create_server((link.host_ip, 0)).close()
