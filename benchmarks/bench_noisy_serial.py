"""Goodput of 4 MB messages over a 3 Mbaud-paced pty pair at byte error rates 0 to 1e-5.

Each rate garbles that fraction of the bytes and drops as many (host/linkemu/null_modem.py);
the edge sends fp32 BATCH messages of 4 MiB and the host consumes them. Goodput: message
payload bytes consumed by the host per second; the line carries at most 300 kB/s (8N1).

Run: python benchmarks/bench_noisy_serial.py [--messages N] [--rates 0,1e-7,1e-6,1e-5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from edge_runtime.link import EdgeLink, HostListener, HostSession, LinkClosed, LinkConfig
from edge_runtime.train.messages import Batch
from host.linkemu.null_modem import NullModem

KEY = b"bench-key"
BUNDLE = "0" * 64
BAUD = 3_000_000
MiB = 1 << 20


def _consume_all(session: HostSession) -> None:
    while True:
        try:
            msg = session.recv(0.5)
        except LinkClosed:
            return
        if msg is not None and msg.seq:
            session.consumed(msg.seq)


def run(rate: float, messages: int, size: int) -> dict[str, float]:
    """Send ``messages`` BATCHes of ``size`` bytes over a noisy paced modem; return figures."""
    config = LinkConfig(baudrate=BAUD, spool_fsync=False, window=4, dead_timeout=60.0)
    x = np.random.default_rng(0).standard_normal((1, size // 4)).astype(np.float32)
    with NullModem(baud=BAUD, byte_flip_rate=rate, byte_drop_rate=rate, seed=1) as modem:
        listener = HostListener(KEY, BUNDLE, config=config)
        listener.serve_serial(modem.paths[1], _consume_all)
        with tempfile.TemporaryDirectory() as spool:
            link = EdgeLink.connect(
                modem.paths[0], key=KEY, bundle_sha256=BUNDLE, edge_id="bench",
                run_id=f"noisy-{rate}", spool_dir=Path(spool), config=config,
            )  # fmt: skip
            start = time.perf_counter()
            payload = 0
            for i in range(messages):
                batch = Batch(0, i, np.array([i % 10]), x)
                payload += len(batch.encode())
                link.send(batch)
            link.flush(3600)
            elapsed = time.perf_counter() - start
            stats = link.stats
            link.close()
        listener.close()
        faults = modem.bytes_flipped + modem.bytes_dropped
    return {
        "goodput": payload / elapsed,
        "elapsed": elapsed,
        "faults": faults,
        "resent": stats["fragment_retransmits"] + stats["retransmits"],
        "frames": stats["fragments_sent"],
        "frame": stats["frame_size"],
        "wire": stats["bytes_up"] / payload,
    }


def main() -> None:
    """Print one row per error rate, measured one after another in this run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=3)
    parser.add_argument("--rates", default="0,1e-7,1e-6,1e-5")
    parser.add_argument("--mib", type=int, default=4, help="message size in MiB")
    args = parser.parse_args()
    size = args.mib * MiB
    print(f"{args.messages} x {args.mib} MiB BATCH messages, pty pair paced to {BAUD} baud")
    print(
        f"{'byte err':>9}{'goodput kB/s':>14}{'of line':>9}{'s':>7}{'faults':>8}"
        f"{'frames':>8}{'resent':>8}{'frame B':>9}{'wire/payload':>14}"
    )
    line = BAUD / 10
    for rate in (float(r) for r in args.rates.split(",")):
        r = run(rate, args.messages, size)
        print(
            f"{rate:>9.0e}{r['goodput'] / 1e3:>14.1f}{r['goodput'] / line:>9.3f}"
            f"{r['elapsed']:>7.1f}{r['faults']:>8.0f}{r['frames']:>8.0f}{r['resent']:>8.0f}"
            f"{r['frame']:>9.0f}{r['wire']:>14.4f}"
        )


if __name__ == "__main__":
    main()
