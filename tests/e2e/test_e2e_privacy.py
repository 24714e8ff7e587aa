"""Privacy: in hierarchical mode no training image crosses the link, as stored or normalised.

Every byte between the edge and the host goes through a recording relay (a wiretap). We look
for any 32-byte window of any training image, raw uint8 and normalised float32, both in the
bytes as sent and in the decoded frame bodies (COBS rewrites zero bytes on the wire).
"""

from __future__ import annotations

import numpy as np
from e2e_harness import run_edge, start_cloud

from edge_runtime.data import load_dataset
from edge_runtime.link.framing import FrameDecoder, encode_frame
from edge_runtime.link.header import Header
from edge_runtime.train.messages import RawBatch
from host.linkemu import Relay, Tap

WINDOW = 32


def image_windows(images: list[bytes]) -> set[bytes]:
    """Every WINDOW-byte slice (stride WINDOW) of the images that is distinctive enough to count."""
    out = set()
    for img in images:
        for i in range(0, len(img) - WINDOW + 1, WINDOW):
            chunk = img[i : i + WINDOW]
            if len(set(chunk)) >= 8:  # flat runs (e.g. all zeros) could match by chance
                out.add(chunk)
    return out


def leaks(capture: bytes, windows: set[bytes]) -> int:
    """How many positions of `capture` (raw and deframed) hold one of `windows`."""
    decoder = FrameDecoder(max_frame=64 << 20, observer=True)
    bodies = b"".join(bytes(b) for b in decoder.feed(capture))
    hits = 0
    for haystack in (capture, bodies):
        view = memoryview(haystack)
        hits += sum(1 for i in range(len(haystack) - WINDOW + 1) if view[i : i + WINDOW] in windows)
    return hits


def training_images(spec: str) -> tuple[list[bytes], list[bytes], np.ndarray]:
    ds = load_dataset(spec)
    raw = [x.tobytes() for x in ds.x_train]
    normalised = [x.tobytes() for x in ds.normalise(ds.x_train)]
    return raw, normalised, ds.x_train


def test_the_detector_finds_a_raw_batch() -> None:
    """Positive control: a RAW_BATCH (what cloud-only training would send) is caught."""
    raw, normalised, x = training_images("synthetic:200")
    payload = RawBatch(0, 0, np.zeros(2, np.int64), x[:2]).encode()
    header = Header(type=RawBatch.TYPE, seq=1, length=len(payload))
    frame = encode_frame(header.pack() + payload)
    assert leaks(frame, image_windows(raw)) > 0


def test_no_training_image_crosses_the_link(small_bundle, tmp_path) -> None:
    spec = "synthetic:500"
    cloud = start_cloud(small_bundle, tmp_path)
    tap = Tap()
    relay = Relay(("127.0.0.1", cloud.port), [tap])
    relay.start()
    try:
        edge = run_edge(small_bundle, relay.url, tmp_path, "--data", spec, "--epochs", "1")
        cloud.finish()
    finally:
        relay.stop()
    assert edge["batches_sent"] > 0
    capture = bytes(tap.captured["up"]) + bytes(tap.captured["down"])
    assert len(capture) >= edge["bytes_up"]  # the tap saw the whole run
    raw, normalised, _ = training_images(spec)
    assert leaks(capture, image_windows(raw)) == 0
    assert leaks(capture, image_windows(normalised)) == 0
