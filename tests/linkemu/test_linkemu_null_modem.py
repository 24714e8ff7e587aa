"""The pty null-modem: real pyserial on real pseudo-terminals, paced to a baud rate."""

from __future__ import annotations

import threading
import time

import pytest
import serial

from host.linkemu.null_modem import NullModem


def _transfer(modem: NullModem, payload: bytes, limit_s: float = 15.0) -> tuple[bytes, float]:
    a = serial.serial_for_url(modem.paths[0], baudrate=115200, timeout=0.1)
    b = serial.serial_for_url(modem.paths[1], baudrate=115200, timeout=0.1)
    got = bytearray()

    def read() -> None:
        deadline = time.monotonic() + limit_s
        while len(got) < len(payload) and time.monotonic() < deadline:
            got.extend(b.read(65536))

    reader = threading.Thread(target=read)
    t0 = time.monotonic()
    reader.start()
    a.write(payload)
    reader.join()
    elapsed = time.monotonic() - t0
    a.close()
    b.close()
    return bytes(got), elapsed


def test_unpaced_null_modem_carries_binary_intact() -> None:
    payload = bytes(range(256)) * 400  # every byte value, 0x00 and XON/XOFF included
    with NullModem() as modem:
        got, _ = _transfer(modem, payload)
        assert got == payload
        assert modem.bytes_forwarded[0] == len(payload)


def test_paced_null_modem_runs_at_the_baud_rate() -> None:
    baud = 115200
    payload = bytes(range(256)) * 100  # 25.6 kB: ~2.2 s at 11.52 kB/s
    with NullModem(baud=baud) as modem:
        got, elapsed = _transfer(modem, payload)
    assert got == payload
    rate = len(payload) / elapsed
    assert 0.85 * baud / 10 < rate < 1.10 * baud / 10, rate


def test_a_noisy_null_modem_flips_bits_at_its_rate() -> None:
    payload = bytes(range(256)) * 400  # 819,200 bits
    with NullModem(bit_error_rate=1e-4, seed=1) as modem:
        got, _ = _transfer(modem, payload)
    assert len(got) == len(payload)  # flipped, never lost or added
    differing = sum(bin(x ^ y).count("1") for x, y in zip(got, payload, strict=True))
    assert 40 <= modem.bits_flipped <= 130  # expected 82
    assert modem.bits_flipped - 2 <= differing <= modem.bits_flipped  # a bit hit twice cancels


def test_bit_error_rate_must_be_a_fraction() -> None:
    with pytest.raises(ValueError, match="bit_error_rate"):
        NullModem(bit_error_rate=1.5)
