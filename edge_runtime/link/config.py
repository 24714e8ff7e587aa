"""LinkConfig: every knob of the link in one place, with defaults that suit a serial board."""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1 << 20


@dataclass
class LinkConfig:
    """Settings shared by both ends of a link.

    Times are in seconds. ``max_frame`` bounds a frame body (header + payload); the two ends
    use the smaller of their values. ``link_bytes_per_s`` seeds the throughput estimate that
    sizes the retransmission timeout before any acknowledgement was measured (None: baudrate/10).
    ``max_frame`` is the largest message; a message travels in frames of at most ``frame_size``
    payload bytes (None: 4 KiB on a serial line, 256 KiB over TCP; the two ends use the smaller),
    cut smaller down to ``min_frame_size`` while the line loses frames (fragments.py).
    ``handshake_frame`` bounds what a host reads from a peer before it authenticated;
    ``max_handshakes`` how many TCP peers may be in their handshake at once.
    """

    baudrate: int = 115200
    window: int = 16
    max_frame: int = 16 * MiB
    frame_size: int | None = None
    min_frame_size: int = 256
    handshake_frame: int = 4096
    # Connections accepted but not yet authenticated: more are closed at once (and counted).
    max_handshakes: int = 64
    listen_backlog: int = 64
    spool_max_messages: int = 256
    spool_max_bytes: int = 256 * MiB
    spool_fsync: bool = True
    rto_min: float = 0.2
    # Over TCP a frame is lost only with its connection (which reconnects and resends) or by a
    # corrupting middlebox (NACK and keepalive probes recover those): a timeout there is only
    # a guard, and a spurious one wastes a slow uplink, so it waits at least this long.
    rto_min_reliable: float = 5.0
    rto_max: float = 600.0
    keepalive_interval: float = 1.0
    dead_timeout: float = 15.0
    handshake_timeout: float = 10.0
    connect_timeout: float | None = None  # the first connect; None: as reconnect_timeout
    reconnect_timeout: float = 60.0
    backoff_initial: float = 0.1
    backoff_max: float = 5.0
    read_timeout: float = 0.05
    link_bytes_per_s: float | None = None

    def initial_throughput(self) -> float:
        """Bytes per second assumed until acknowledgements have been measured."""
        if self.link_bytes_per_s is not None:
            return self.link_bytes_per_s
        return self.baudrate / 10.0
