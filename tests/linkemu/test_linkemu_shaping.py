"""The relay paces each direction at the set rate and delays by half the RTT each way."""

from __future__ import annotations

import hashlib
import queue
import socket
import threading
import time

import pytest
from linkemu_servers import IO_TIMEOUT_S, Received, read_all

from host.linkemu import LinkSpec, ShapedRelay, parse_link, shaped

PAYLOAD = bytes(range(256)) * 1200  # 307 kB


def push(address: tuple[str, int], payload: bytes) -> float:
    """Send ``payload`` and half-close; return the monotonic time sending began."""
    with socket.create_connection(address, timeout=IO_TIMEOUT_S) as sock:
        started = time.monotonic()
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        sock.recv(1)  # the sink closes after reading everything
    return started


def test_uplink_runs_at_the_set_rate_and_delivers_intact(sink) -> None:
    address, results = sink
    with ShapedRelay(address, LinkSpec("t", 2e6, 50e6, 0.0)) as relay:
        started = push(relay.address, PAYLOAD)
        got: Received = results.get(timeout=IO_TIMEOUT_S)
    assert (got.nbytes, got.sha256) == (len(PAYLOAD), hashlib.sha256(PAYLOAD).hexdigest())
    rate = len(PAYLOAD) * 8 / (got.last_at - started)
    print(f"uplink: set 2 Mbit/s, measured {rate / 1e6:.3f} Mbit/s")
    assert rate == pytest.approx(2e6, rel=0.10)


def test_downlink_runs_at_its_own_rate(source) -> None:
    address, payload = source
    with (
        ShapedRelay(address, LinkSpec("t", 50e6, 1e6, 0.0)) as relay,
        socket.create_connection(relay.address, timeout=IO_TIMEOUT_S) as sock,
    ):
        started = time.monotonic()
        nbytes, sha = read_all(sock)
        elapsed = time.monotonic() - started
    assert (nbytes, sha) == (len(payload), hashlib.sha256(payload).hexdigest())
    rate = nbytes * 8 / elapsed
    print(f"downlink: set 1 Mbit/s, measured {rate / 1e6:.3f} Mbit/s")
    assert rate == pytest.approx(1e6, rel=0.10)


def test_round_trip_takes_the_set_rtt(echo) -> None:
    rtts = []
    with (
        shaped(echo, "1gbit/200ms") as relay,
        socket.create_connection(relay.address, timeout=IO_TIMEOUT_S) as sock,
    ):
        for i in range(3):
            started = time.monotonic()
            sock.sendall(b"ping %d" % i)
            assert sock.recv(64) == b"ping %d" % i
            rtts.append(time.monotonic() - started)
    print("rtt:", ", ".join(f"{r * 1e3:.1f} ms" for r in rtts))
    assert all(0.19 <= r <= 0.35 for r in rtts), rtts


def test_delay_does_not_reduce_throughput(sink) -> None:
    """Rate and delay compose like a real link: a bulk transfer takes size/rate + one-way."""
    address, results = sink
    with shaped(address, "2mbit:50mbit/200ms") as relay:
        started = push(relay.address, PAYLOAD)
        got: Received = results.get(timeout=IO_TIMEOUT_S)
    elapsed = got.last_at - started
    rate = len(PAYLOAD) * 8 / (elapsed - 0.100)
    print(f"2 Mbit/s with 200 ms RTT: {elapsed:.3f} s, {rate / 1e6:.3f} Mbit/s net of the delay")
    assert rate == pytest.approx(2e6, rel=0.10)


def test_connections_share_one_uplink(sink) -> None:
    address, results = sink
    parts = [PAYLOAD[: len(PAYLOAD) // 3]] * 3
    with ShapedRelay(address, parse_link("2mbit:50mbit")) as relay:
        starts: queue.Queue[float] = queue.Queue()
        pushers = [
            threading.Thread(target=lambda p=part: starts.put(push(relay.address, p)))
            for part in parts
        ]
        for thread in pushers:
            thread.start()
        got = [results.get(timeout=IO_TIMEOUT_S) for _ in parts]
        for thread in pushers:
            thread.join(IO_TIMEOUT_S)
        stats = relay.stats
    started = min(starts.get_nowait() for _ in parts)
    total = sum(r.nbytes for r in got)
    assert total == sum(map(len, parts))
    rate = total * 8 / (max(r.last_at for r in got) - started)
    finish = sorted(r.last_at - started for r in got)
    print(f"3 connections: aggregate {rate / 1e6:.3f} Mbit/s, finished at {finish}")
    assert rate == pytest.approx(2e6, rel=0.10)
    # One pipe shared fairly: nobody finishes while the others have most of theirs to send.
    assert finish[0] > 0.6 * finish[-1]
    assert stats["connections"] == 3


def test_stats_count_bytes_and_link_busy_time(echo) -> None:
    profile = LinkSpec("t", 4e6, 8e6, 0.0)
    message = b"x" * 50_000
    with ShapedRelay(echo, profile) as relay:
        with socket.create_connection(relay.address, timeout=IO_TIMEOUT_S) as sock:
            started = time.monotonic()
            sock.sendall(message)
            received = 0
            while received < len(message):
                received += len(sock.recv(65536))
            elapsed = time.monotonic() - started
        stats = relay.stats
    assert stats["bytes_up"] == stats["bytes_down"] == len(message)
    assert stats["busy_up_s"] == pytest.approx(len(message) * 8 / profile.up_bps)
    assert stats["busy_down_s"] == pytest.approx(len(message) * 8 / profile.down_bps)
    # A link cannot be busier than the time that passed, but for its initial burst (4 kB).
    assert stats["busy_up_s"] - 4096 * 8 / profile.up_bps < elapsed
    assert stats["connections"] == 1


def test_unshaped_profile_only_relays(echo) -> None:
    message = bytes(range(256)) * 4096  # 1 MiB
    with shaped(echo, "local") as relay:
        assert relay.url == f"socket://127.0.0.1:{relay.address[1]}"
        with socket.create_connection(relay.address, timeout=IO_TIMEOUT_S) as sock:
            started = time.monotonic()
            sender = threading.Thread(target=sock.sendall, args=(message,))
            sender.start()
            back = bytearray()
            while len(back) < len(message):
                back += sock.recv(65536)
            sender.join(IO_TIMEOUT_S)
            elapsed = time.monotonic() - started
        stats = relay.stats
    assert bytes(back) == message
    assert stats["busy_up_s"] == stats["busy_down_s"] == 0
    assert elapsed < 2.0
