"""parse_link: presets, custom rates, up:down, RTT units, and one-line errors."""

from __future__ import annotations

import math

import pytest

from host.linkemu import PRESETS, LinkSpec, LinkSpecError, parse_link


def test_presets_have_the_documented_values() -> None:
    assert parse_link("3g") == LinkSpec("3g", 768e3, 1.6e6, 0.150)
    assert parse_link("4G") == LinkSpec("4g", 10e6, 30e6, 0.050)
    assert parse_link(" wifi ") == LinkSpec("wifi", 50e6, 50e6, 0.005)
    for name in ("local", "none"):
        profile = parse_link(name)
        assert math.isinf(profile.up_bps) and math.isinf(profile.down_bps)
        assert profile.rtt_s == 0


def test_describe() -> None:
    assert PRESETS["3g"].describe() == "3g: up 768 kbit/s, down 1.6 Mbit/s, RTT 150 ms"
    assert PRESETS["4g"].describe() == "4g: up 10 Mbit/s, down 30 Mbit/s, RTT 50 ms"
    assert PRESETS["local"].describe() == "local: up unlimited, down unlimited, RTT 0 ms"


@pytest.mark.parametrize(
    ("spec", "up", "down", "rtt"),
    [
        ("2mbit", 2e6, 2e6, 0.0),
        ("768kbit/150ms", 768e3, 768e3, 0.150),
        ("1.5Mbit/40ms", 1.5e6, 1.5e6, 0.040),
        ("500kbit:2mbit/100ms", 500e3, 2e6, 0.100),
        ("500kbps:2Mbps", 500e3, 2e6, 0.0),
        ("9600bit/0.5s", 9600, 9600, 0.5),
        ("1gbit/1s", 1e9, 1e9, 1.0),
        ("2 mbit / 20 ms", 2e6, 2e6, 0.020),
    ],
)
def test_custom_specs(spec: str, up: float, down: float, rtt: float) -> None:
    profile = parse_link(spec)
    assert profile.up_bps == pytest.approx(up)
    assert profile.down_bps == pytest.approx(down)
    assert profile.rtt_s == pytest.approx(rtt)


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "5g",
        "2",
        "2mb",
        "fast/10ms",
        "2mbit/10",
        "2mbit/10min",
        "0kbit",
        "-1mbit",
        "1mbit::2mbit",
    ],
)
def test_bad_specs_say_what_is_accepted_in_one_line(spec: str) -> None:
    with pytest.raises(LinkSpecError) as info:
        parse_link(spec)
    message = str(info.value)
    assert "\n" not in message
    assert repr(spec) in message
    for form in ("3g", "4g", "wifi", "local", "<rate>[:<down rate>][/<rtt>]", "kbit", "ms"):
        assert form in message
    assert isinstance(info.value, ValueError)


def test_a_serial_line_keeps_its_baud_and_carries_eight_bits_in_ten() -> None:
    profile = parse_link("Serial:115200")
    assert profile == LinkSpec("serial:115200", 92160.0, 92160.0, 0.0, baud=115200)
    assert profile.describe() == "serial:115200: 115200 baud 8N1, 92.16 kbit/s each way"
    assert parse_link("3g").baud is None


@pytest.mark.parametrize("spec", ["serial:0", "serial:fast", "serial:", "serial:9600/10ms"])
def test_bad_serial_specs_say_what_is_accepted(spec: str) -> None:
    with pytest.raises(LinkSpecError) as info:
        parse_link(spec)
    assert "serial:<baud>" in str(info.value) and "\n" not in str(info.value)
