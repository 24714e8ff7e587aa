"""Connecting: URL forms checked before the first try, waiting lines, --connect-timeout, and a
refusal that names what differs between the edge's bundle and the host's."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_harness import ENV, edge_cmd, free_port

from edge_runtime.bundle import load_bundle
from host.cloud.server import CloudServer

QUICK = ["--data", "synthetic:64", "--epochs", "1", "--connect-timeout", "1.5"]


def _edge(bundle: Path, url: str, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        edge_cmd(bundle, url, workdir, *QUICK, *args),
        capture_output=True,
        text=True,
        env=ENV,
        cwd=workdir,
        timeout=120,  # a guard only: the connect timeout above ends the run
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("tcp://", "link URL 'tcp://': expected socket://HOST:PORT"),
        ("tcp://127.0.0.1", "link URL 'tcp://127.0.0.1': expected socket://HOST:PORT"),
        ("http://127.0.0.1:80", "unknown scheme 'http'"),
    ],
)
def test_a_url_that_cannot_work_is_a_usage_error_at_once(
    small_bundle, tmp_path, url: str, message: str
) -> None:
    out = _edge(small_bundle, url, tmp_path)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
    assert "waiting for" not in out.stderr  # refused before the first try
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("form", ["tcp://127.0.0.1:{port}", "127.0.0.1:{port}"])
def test_a_dead_port_says_waiting_then_gives_up_within_the_connect_timeout(
    small_bundle, tmp_path, form: str
) -> None:
    port = free_port()  # nothing listens there
    out = _edge(small_bundle, form.format(port=port), tmp_path)
    assert out.returncode == 1, out.stderr
    url = f"socket://127.0.0.1:{port}"  # both forms are taken as TCP, not a serial device
    assert f"waiting for {url} (attempt " in out.stderr, out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith(f"edge-runtime: failed: cannot reach the host at {url}: gave up after")
    assert "in 1.5 s" in last and "Connection refused" in last, last


def test_a_bundle_of_another_split_is_refused_naming_the_split(
    exported, small_bundle, tmp_path, caplog
) -> None:
    other = load_bundle(exported("smallcnn", 2, lr=3e-3))
    server = CloudServer(other, tmp_path / "cloud-state", key=other.key())
    host, port = server.serve_tcp("127.0.0.1", 0)
    try:
        with caplog.at_level(logging.INFO, logger="hiertrain.link"):
            # The edge holds the host's key: only the bundle differs.
            key = other.side_path("cloud", "link.key")
            out = _edge(small_bundle, f"tcp://{host}:{port}", tmp_path, "--key-file", str(key))
    finally:
        server.stop()
    assert out.returncode == 1, out.stderr
    assert "bundle differs: split 3 vs split 2" in out.stderr, out.stderr
    assert "activation shape" in out.stderr  # the cut's shape differs with it
    assert "Traceback" not in out.stderr
    refused = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(
        m.startswith("refused edge 'board0' run ") and "split 3 vs split 2" in m for m in refused
    ), refused


def test_another_exports_key_is_refused_naming_the_split_too(
    exported, small_bundle, tmp_path
) -> None:
    other = load_bundle(exported("smallcnn", 2, lr=3e-3))
    server = CloudServer(other, tmp_path / "cloud-state", key=other.key())
    host, port = server.serve_tcp("127.0.0.1", 0)
    try:
        out = _edge(small_bundle, f"socket://{host}:{port}", tmp_path)
    finally:
        server.stop()
    assert out.returncode == 1, out.stderr
    assert "its key differs; its bundle is another export: split 3 vs split 2" in out.stderr


def _doctor(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "edge_runtime.cli", "doctor", *args],
        capture_output=True,
        text=True,
        env=ENV,
        cwd=cwd,
        timeout=120,
    )


def test_doctor_checks_engines_bundle_and_the_handshake(exported, small_bundle, tmp_path) -> None:
    same = load_bundle(small_bundle)
    other = load_bundle(exported("smallcnn", 2, lr=3e-3))
    servers = [CloudServer(b, tmp_path / f"state-{b.split}", key=b.key()) for b in (same, other)]
    urls = [f"tcp://127.0.0.1:{s.serve_tcp('127.0.0.1', 0)[1]}" for s in servers]
    try:
        good = _doctor("--bundle", str(small_bundle / "edge"), "--connect", urls[0], cwd=tmp_path)
        key = str(other.side_path("cloud", "link.key"))
        bad = _doctor(
            "--bundle",
            str(small_bundle / "edge"),
            "--connect",
            urls[1],
            "--key-file",
            key,
            cwd=tmp_path,
        )
    finally:
        for s in servers:
            s.stop()
    assert good.returncode == 0, good.stdout + good.stderr
    lines = good.stdout.splitlines()
    assert any(line.startswith("ok   engine ort: onnxruntime-training 1.") for line in lines)
    assert "ok   bundle: smallcnn split 3, every file matches its manifest" in lines
    assert any(line.startswith("ok   host: reachable at tcp://127.0.0.1:") for line in lines)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "FAIL host: reachable at" in bad.stdout
    assert "bundle differs: split 3 vs split 2" in bad.stdout
    assert bad.stderr.strip() == "edge-runtime: failed: doctor: host failed"
