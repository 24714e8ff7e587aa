"""Link profiles: the rates and round-trip time of the link a demo or test emulates.

A profile names an uplink rate (edge -> host), a downlink rate (host -> edge) and a round-trip
time, split half each way. The presets are nominal round figures, chosen so that demos and
benchmarks are reproducible; they are not measurements of any particular network:

``3g``    up 768 kbit/s, down 1.6 Mbit/s, RTT 150 ms. Typical of a 3G HSPA cell in use: HSUPA
          uplinks deliver a few hundred kbit/s to ~1.5 Mbit/s, HSDPA downlinks 1-7 Mbit/s, with
          round trips of 100-200 ms. The uplink is the figure that matters for hierarchical
          training (activations go up) and is kept at the low end, as in the paper's
          low-bit-rate setting. The faster downlink carries split learning's gradients, so
          against split learning a fp32 hierarchical run can save at most 60% here (at 0.40
          of its time when edge and uplink take equally long); ``768kbit/150ms`` is the same
          uplink with one rate both ways (docs/results.md measures both).
``4g``    up 10 Mbit/s, down 30 Mbit/s, RTT 50 ms. Typical LTE figures in a loaded cell.
``wifi``  up 50 Mbit/s, down 50 Mbit/s, RTT 5 ms. A good 802.11n/ac link to a nearby host.
``local`` (alias ``none``) unshaped: no rate limit, no added delay.

``parse_link`` also takes custom specs: ``<rate>[:<down rate>][/<rtt>]``, e.g. ``2mbit``,
``768kbit/150ms``, ``1.5Mbit/40ms``, ``500kbit:2mbit/100ms``. Rates are in bits per second
(``bit``, ``kbit``, ``mbit``, ``gbit``; ``bps``, ``kbps``, ``mbps``, ``gbps`` also mean bits);
the RTT is in ``ms`` or ``s``. One rate shapes both directions alike.

``serial:<baud>`` (e.g. ``serial:115200``) is a serial line, 8N1: ten bits on the wire per data
byte, so ``baud * 8 / 10`` bits per second of data each way and no added delay. The profile
keeps the baud rate (``baud``) so that an emulator can pace a pty pair to it rather than shape
a TCP link.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from edge_runtime.errors import UsageFault

_UNITS = {
    "bit": 1.0,
    "bps": 1.0,
    "kbit": 1e3,
    "kbps": 1e3,
    "mbit": 1e6,
    "mbps": 1e6,
    "gbit": 1e9,
    "gbps": 1e9,
}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_RATE = rf"({_NUMBER})\s*(bit|bps|kbit|kbps|mbit|mbps|gbit|gbps)"
_SPEC = re.compile(rf"^{_RATE}(?:\s*:\s*{_RATE})?(?:\s*/\s*({_NUMBER})\s*(ms|s))?$")
_SERIAL = re.compile(r"^serial\s*:\s*(\d+)$")
_BITS_PER_BYTE_8N1 = 10  # start bit, 8 data bits, stop bit


class LinkSpecError(UsageFault, ValueError):
    """A link spec that is not a preset, ``<rate>[:<down rate>][/<rtt>]`` or ``serial:<baud>``."""


@dataclass(frozen=True)
class LinkSpec:
    """Rates (bits per second) and round-trip time of an emulated link; ``inf`` rate = unshaped.

    ``baud`` is set for a serial line (``serial:<baud>``); its rates are then the data rate.
    """

    name: str
    up_bps: float  # edge -> host
    down_bps: float  # host -> edge
    rtt_s: float  # round trip, applied half each way
    baud: int | None = None

    def describe(self) -> str:
        """One line for logs and reports: ``3g: up 768 kbit/s, down 1.6 Mbit/s, RTT 150 ms``."""
        if self.baud is not None:
            return f"{self.name}: {self.baud} baud 8N1, {_format_rate(self.up_bps)} each way"
        rtt_ms = round(self.rtt_s * 1e3, 3)
        return (
            f"{self.name}: up {_format_rate(self.up_bps)}, down {_format_rate(self.down_bps)}, "
            f"RTT {rtt_ms:g} ms"
        )

    @property
    def one_way_s(self) -> float:
        """Delay added to each direction."""
        return self.rtt_s / 2


def _format_rate(bps: float) -> str:
    if math.isinf(bps):
        return "unlimited"
    for scale, unit in ((1e9, "Gbit/s"), (1e6, "Mbit/s"), (1e3, "kbit/s")):
        if bps >= scale:
            return f"{round(bps / scale, 3):g} {unit}"
    return f"{round(bps, 3):g} bit/s"


PRESETS: dict[str, LinkSpec] = {
    "3g": LinkSpec("3g", 768e3, 1.6e6, 0.150),
    "4g": LinkSpec("4g", 10e6, 30e6, 0.050),
    "wifi": LinkSpec("wifi", 50e6, 50e6, 0.005),
    "local": LinkSpec("local", math.inf, math.inf, 0.0),
    "none": LinkSpec("none", math.inf, math.inf, 0.0),
}

ACCEPTED_FORMS = (
    f"a preset ({', '.join(PRESETS)}), <rate>[:<down rate>][/<rtt>] "
    "with rates in bit|kbit|mbit|gbit (kbps, mbps: bits) and rtt in ms|s, "
    "e.g. 2mbit, 768kbit/150ms, 500kbit:2mbit/100ms, or serial:<baud>, e.g. serial:115200"
)


def parse_link(spec: str) -> LinkSpec:
    """Turn ``"3g"``, ``"768kbit/150ms"`` or ``"serial:115200"`` (see the module doc) into a
    ``LinkSpec``."""
    text = spec.strip().lower()
    if text in PRESETS:
        return PRESETS[text]
    serial = _SERIAL.match(text)
    if serial is not None:
        baud = int(serial[1])
        if baud <= 0:
            raise LinkSpecError(
                f"bad link spec {spec!r}: the baud rate must be above 0; {ACCEPTED_FORMS}"
            )
        data_bps = baud * 8 / _BITS_PER_BYTE_8N1
        return LinkSpec(f"serial:{baud}", data_bps, data_bps, 0.0, baud=baud)
    match = _SPEC.match(text)
    if match is None:
        raise LinkSpecError(f"bad link spec {spec!r}: expected {ACCEPTED_FORMS}")
    up_num, up_unit, down_num, down_unit, rtt_num, rtt_unit = match.groups()
    up = float(up_num) * _UNITS[up_unit]
    down = float(down_num) * _UNITS[down_unit] if down_num is not None else up
    rtt = float(rtt_num) * (1e-3 if rtt_unit == "ms" else 1.0) if rtt_num is not None else 0.0
    if up <= 0 or down <= 0:
        raise LinkSpecError(f"bad link spec {spec!r}: rates must be above 0; {ACCEPTED_FORMS}")
    return LinkSpec(text, up, down, rtt)
