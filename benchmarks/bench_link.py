"""Link benchmark: throughput (TCP loopback, pty pair), wire efficiency, tensor codecs.

Run: python benchmarks/bench_link.py [--quick]. Prints plain tables; numbers depend on the
machine (the CI box has 2 shared cores).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from edge_runtime.link import EdgeLink, HostListener, HostSession, LinkClosed, LinkConfig
from edge_runtime.link.codecs import CODECS, decode_tensor, encode_tensor
from edge_runtime.link.framing import encode_frame
from edge_runtime.link.messages import encode_message
from edge_runtime.train.messages import Batch

KEY = b"bench-key"
BUNDLE = "0" * 64
KiB = 1024


def _consume_all(session: HostSession) -> None:
    while True:
        try:
            msg = session.recv(0.5)
        except LinkClosed:
            return
        if msg is not None and msg.seq:
            session.consumed(msg.seq)


@contextlib.contextmanager
def _pty_pair() -> Iterator[tuple[str, str]]:
    """Two pty pairs bridged master to master: two device paths wired like a null modem."""
    m1, s1 = os.openpty()
    m2, s2 = os.openpty()
    stop = threading.Event()

    def bridge() -> None:
        peer = {m1: m2, m2: m1}
        while not stop.is_set():
            ready, _, _ = select.select([m1, m2], [], [], 0.05)
            for fd in ready:
                view = memoryview(os.read(fd, 65536))
                while view:
                    view = view[os.write(peer[fd], view) :]

    thread = threading.Thread(target=bridge, daemon=True)
    thread.start()
    try:
        yield os.ttyname(s1), os.ttyname(s2)
    finally:
        stop.set()
        thread.join(1)
        for fd in (m1, m2, s1, s2):
            os.close(fd)


def _batch(i: int, nbytes: int) -> Batch:
    x = np.random.default_rng(i).standard_normal(nbytes // 4).astype(np.float32)
    return Batch(0, i, np.arange(32) % 10, x.reshape(1, -1), "fp32")


def _stream(
    serve: Callable[[HostListener], str], count: int, nbytes: int, fsync: bool
) -> dict[str, float]:
    config = LinkConfig(spool_fsync=fsync, link_bytes_per_s=50e6)
    listener = HostListener(KEY, BUNDLE, config=config)
    url = serve(listener)
    batches = [_batch(i, nbytes) for i in range(min(count, 8))]
    with tempfile.TemporaryDirectory() as spool:
        link = EdgeLink.connect(
            url, key=KEY, bundle_sha256=BUNDLE, edge_id="bench", run_id="bench",
            spool_dir=Path(spool), config=config,
        )  # fmt: skip
        start = time.perf_counter()
        for i in range(count):
            link.send(batches[i % len(batches)])
        link.flush(600)
        elapsed = time.perf_counter() - start
        stats = link.stats
        link.close()
    listener.close()
    return {
        "MB/s": count * nbytes / elapsed / 1e6,
        "msg/s": count / elapsed,
        "efficiency": stats["payload_bytes_up"] / stats["bytes_up"],
        "retransmits": stats["retransmits"],
    }


def throughput(quick: bool) -> None:
    size = 256 * KiB
    print(f"\nThroughput, {size // KiB} KiB fp32 activation messages (send -> consumed by host)")
    print(f"{'transport':<26}{'messages':>9}{'MB/s':>9}{'msg/s':>9}{'wire eff.':>11}{'retx':>6}")

    def tcp(listener: HostListener) -> str:
        host, port = listener.serve_tcp("127.0.0.1", 0, _consume_all)
        return f"socket://{host}:{port}"

    n_tcp, n_pty = (40, 12) if quick else (200, 40)
    runs: list[tuple[str, Callable[[HostListener], str], int, bool]] = [
        ("tcp loopback, fsync spool", tcp, n_tcp, True),
        ("tcp loopback, no fsync", tcp, n_tcp, False),
    ]
    for name, serve, count, fsync in runs:
        r = _stream(serve, count, size, fsync)
        print(
            f"{name:<26}{count:>9}{r['MB/s']:>9.1f}{r['msg/s']:>9.1f}"
            f"{r['efficiency']:>11.4f}{r['retransmits']:>6.0f}"
        )
    with _pty_pair() as (edge_path, host_path):

        def pty(listener: HostListener) -> str:
            listener.serve_serial(host_path, _consume_all)
            return edge_path

        r = _stream(pty, n_pty, size, True)
        print(
            f"{'pty pair, fsync spool':<26}{n_pty:>9}{r['MB/s']:>9.1f}{r['msg/s']:>9.1f}"
            f"{r['efficiency']:>11.4f}{r['retransmits']:>6.0f}"
        )


def efficiency() -> None:
    print("\nWire efficiency of one BATCH frame (random fp32 tensor, 32 labels)")
    print(f"{'tensor':>9}{'payload B':>12}{'frame B':>11}{'payload/wire':>14}{'tensor/wire':>13}")
    for size in (4 * KiB, 64 * KiB, 1024 * KiB):
        batch = _batch(1, size)
        payload = batch.encode()
        frame = encode_frame(encode_message(batch, seq=1))
        print(
            f"{size // KiB:>6} KiB{len(payload):>12}{len(frame):>11}"
            f"{len(payload) / len(frame):>14.4f}{size / len(frame):>13.4f}"
        )


def codecs(quick: bool) -> None:
    rng = np.random.default_rng(0)
    x = np.maximum(rng.standard_normal((16, 64, 8, 8)), 0).astype(np.float32)  # ReLU output
    reps = 20 if quick else 100
    print(f"\nCodecs on a {x.nbytes // KiB} KiB fp32 NCHW activation (ReLU of N(0,1)), {reps} reps")
    print(f"{'codec':<7}{'bytes':>9}{'ratio':>8}{'enc+dec ms':>12}{'rel. error':>12}")
    for codec in CODECS:
        start = time.perf_counter()
        for _ in range(reps):
            buf = encode_tensor(x, codec)
            y = decode_tensor(buf)
        ms = (time.perf_counter() - start) / reps * 1e3
        err = float(np.linalg.norm(x - y) / np.linalg.norm(x))
        print(f"{codec:<7}{len(buf):>9}{len(buf) / x.nbytes:>8.3f}{ms:>12.3f}{err:>12.2e}")


def main() -> None:
    """Run every section and print its table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer messages and repetitions")
    args = parser.parse_args()
    throughput(args.quick)
    efficiency()
    codecs(args.quick)


if __name__ == "__main__":
    main()
