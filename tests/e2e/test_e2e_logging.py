"""Runs nobody watches (nohup, a redirect, systemd) write timestamped progress lines."""

from __future__ import annotations

import re
import subprocess

from e2e_harness import ENV, edge_cmd, free_port, start_cloud

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}"
EDGE_LINE = re.compile(
    rf"^{STAMP} INFO hiertrain\.edge: epoch 0 train batch (\d+)/(\d+): loss \d+\.\d+, "
    r"exit acc \d+\.\d%, link \d+\.\d kB/s up, backlog \d+$",
    re.M,
)


def test_edge_and_host_write_progress_lines_into_files(small_bundle, tmp_path) -> None:
    # --progress-every 0: a line per batch, so what is asserted does not depend on timing.
    cloud = start_cloud(
        small_bundle,
        tmp_path,
        "--progress-every",
        "0",
        "--log-file",
        str(tmp_path / "serve.log"),
        listen=f"tcp://127.0.0.1:{free_port()}",
    )
    args = ["--data", "synthetic:400", "--epochs", "1", "--progress-every", "0"]
    args += ["--log-file", str(tmp_path / "edge-file.log")]
    with open(tmp_path / "edge.out", "w") as out:
        rc = subprocess.call(
            edge_cmd(small_bundle, cloud.url, tmp_path, *args),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=ENV,
            cwd=tmp_path,
            timeout=240,
        )
    edge_out = (tmp_path / "edge.out").read_text()
    assert rc == 0, edge_out[-3000:]
    cloud.finish()

    batches = [(int(a), int(b)) for a, b in EDGE_LINE.findall(edge_out)]
    assert batches, edge_out[-3000:]
    total = batches[0][1]
    assert [done for done, _ in batches] == list(range(1, total + 1))
    assert re.search(
        rf"^{STAMP} INFO hiertrain\.edge: edge board0 run \w+: hierarchical", edge_out, re.M
    )
    # The log file holds the same progress lines as the redirected stderr.
    assert EDGE_LINE.findall((tmp_path / "edge-file.log").read_text()) == EDGE_LINE.findall(
        edge_out
    )

    host = (tmp_path / "serve.log").read_text()
    for pattern in (
        rf"^{STAMP} INFO hiertrain\.link: connection from 127\.0\.0\.1:\d+$",
        rf"^{STAMP} INFO hiertrain\.cloud: edge 'board0' connected \(run \w+",
        rf"^{STAMP} INFO hiertrain\.cloud: edge 'board0' epoch 0 batch \d+: tail loss \d+\.\d+",
        rf"^{STAMP} INFO hiertrain\.cloud: edge 'board0' epoch 0 done: final accuracy \d+\.\d%",
        rf"^{STAMP} INFO hiertrain\.cloud: edge 'board0' disconnected; {total} batches trained$",
    ):
        assert re.search(pattern, host, re.M), (pattern, host[-3000:])
    # The same lines reach serve's stderr when it is a file.
    assert "hiertrain.cloud: edge 'board0' disconnected" in cloud.log.read_text()


def test_quiet_edge_writes_no_progress_lines(small_bundle, tmp_path) -> None:
    cloud = start_cloud(small_bundle, tmp_path, listen=f"tcp://127.0.0.1:{free_port()}")
    args = ["--data", "synthetic:200", "--epochs", "1", "--progress-every", "0", "--quiet"]
    out = subprocess.run(
        edge_cmd(small_bundle, cloud.url, tmp_path, *args),
        capture_output=True,
        text=True,
        env=ENV,
        cwd=tmp_path,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    cloud.finish()
    assert not EDGE_LINE.search(out.stderr), out.stderr[-2000:]
    assert "edge done:" in out.stderr  # the result is still said
