"""One relay, impairments in order: damage what crosses one way, tap what arrives, shape the pace."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from linkemu_servers import IO_TIMEOUT_S

from host.linkemu import Damage, LinkSpec, Relay, Shape, Tap

pytestmark = pytest.mark.timeout(60)
MESSAGE = bytes(range(256)) * 64  # 16 KiB


def _echo_through(relay: Relay, message: bytes) -> bytes:
    """Send ``message`` through the relay to an echo server; what comes back by EOF."""
    with socket.create_connection(relay.address, timeout=IO_TIMEOUT_S) as sock:
        sock.sendall(message)
        sock.shutdown(socket.SHUT_WR)
        back = bytearray()
        while data := sock.recv(65536):
            back += data
    return bytes(back)


def test_without_impairments_the_relay_is_a_plain_proxy(echo) -> None:
    with Relay(echo) as relay:
        assert _echo_through(relay, MESSAGE) == MESSAGE
        stats = relay.stats
    assert stats["bytes_up"] == stats["bytes_down"] == len(MESSAGE)
    assert stats["connections"] == 1 and stats["errors"] == 0


def test_damage_then_tap_records_the_damaged_bytes_in_the_damaged_direction_only(echo) -> None:
    damage = Damage(flip=1.0, directions=("up",), seed=7)
    tap = Tap()
    with Relay(echo, [damage, tap]) as relay:
        back = _echo_through(relay, MESSAGE)
        stats = relay.stats
    flips = damage.counts.flips
    assert flips >= 1 and stats["flips"] == flips
    # One bit per chunk flipped on the way up; the echo returns it unharmed on the way down.
    differing = sum(bin(a ^ b).count("1") for a, b in zip(back, MESSAGE, strict=True))
    assert differing == flips
    assert bytes(tap.captured["up"]) == back == bytes(tap.captured["down"])
    assert stats["tapped_up"] == stats["tapped_down"] == len(MESSAGE)


def test_damage_is_the_same_for_the_same_seed_and_spares_other_directions() -> None:
    live = threading.Event()

    def damaged(seed: int) -> tuple[bytes, float] | None:
        return Damage(flip=0.5, drop=0.5, truncate=0.2, seed=seed).carry("up", MESSAGE, 2.0, live)

    first = damaged(3)
    assert first is not None and first[0] != MESSAGE and first[1] == 2.0  # damage takes no time
    assert damaged(3) == first
    up_only = Damage(flip=1.0, drop=1.0, truncate=1.0)
    assert up_only.carry("down", MESSAGE, 1.0, live) == (MESSAGE, 1.0)
    assert up_only.carry("up", b"", 1.0, live) == (b"", 1.0)  # a FIN passes untouched
    assert up_only.counts.flips == 0


def test_shape_before_tap_paces_what_the_tap_sees(echo) -> None:
    profile = LinkSpec("t", 1e6, float("inf"), 0.050)
    tap = Tap()
    with Relay(echo, [Shape(profile), tap]) as relay:
        started = time.monotonic()
        back = _echo_through(relay, MESSAGE)
        elapsed = time.monotonic() - started
        stats = relay.stats
    assert back == MESSAGE == bytes(tap.captured["up"])
    # 16 KiB at 1 Mbit/s is 0.13 s, plus the delay each way; the burst allowance is 4 KiB.
    assert elapsed >= (len(MESSAGE) - 4096) * 8 / 1e6 + 2 * profile.one_way_s
    assert stats["busy_up_s"] == pytest.approx(len(MESSAGE) * 8 / 1e6)
