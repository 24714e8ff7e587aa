"""Issue 17, finding 1, end to end: 4 MB activation batches over a pty pair that garbles and
drops one byte in a million each, between a real `hostctl serve --serial` and a real edge.
With one frame per message (protocol version 1) no batch ever arrived; now every batch trains
exactly once, each fault costing one 4 KiB frame."""

from __future__ import annotations

from e2e_harness import expected_ids, run_edge, start_cloud

from host.linkemu.null_modem import NullModem

# smallcnn split 3 sends 32x4x4 fp32 (2 KiB) a sample: 2048 samples make a 4 MiB BATCH.
TRAIN, BATCH, EPOCHS = 4096, 2048, 1
RUN = ["--data", "synthetic:5120", "--epochs", "1", "--batch-size", str(BATCH)]


def test_4mb_batches_train_over_a_pty_that_garbles_and_drops_bytes(small_bundle, tmp_path) -> None:
    with NullModem(byte_flip_rate=1e-6, byte_drop_rate=1e-6, seed=7) as modem:
        cloud = start_cloud(small_bundle, tmp_path, serial=modem.paths[1])
        edge = run_edge(small_bundle, modem.paths[0], tmp_path, *RUN, timeout=600)
        report = cloud.finish(timeout=120)
        faults = modem.bytes_flipped + modem.bytes_dropped
    record = report["edges"][0]
    assert record["trained_ids"] == expected_ids(TRAIN, BATCH, EPOCHS)  # each batch once
    assert edge["batches_sent"] == TRAIN // BATCH
    assert faults >= 2, f"only {faults} faults on the line: the test proves nothing"
