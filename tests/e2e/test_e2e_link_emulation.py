"""`hostctl demo` over each link emulation: kernel shaping (root), the user-space relay, and a
serial line paced on a pty pair; the report says which ran, and no namespace outlives a run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from e2e_harness import ENV, wait_until

from host.linkemu import kernel_shaping_available
from host.session.links import USER_SPACE

AVAILABLE, WHY_NOT = kernel_shaping_available()
DATA = "synthetic:256"  # 204 train -> 7 batches of 32, 52 test
BATCHES = 7
UP_3G_BPS = 768e3


def demo_cmd(bundle: Path, work: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "host.cli",
        "demo",
        "--bundle",
        str(bundle),
        "--data",
        DATA,
        "--epochs",
        "1",
        "--work-dir",
        str(work),
        *args,
    ]


def run_session(bundle: Path, work: Path, *args: str, env: dict | None = None) -> tuple[dict, int]:
    """Run the demo to the end; returns its report and its pid (namespace names carry it)."""
    proc = subprocess.Popen(
        demo_cmd(bundle, work, *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env or ENV,
    )
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out + err)[-3000:]
    return json.loads((work / "report.json").read_text()), proc.pid


def namespaces_of(pid: int) -> list[str]:
    """The `ip netns` namespaces a process with this pid made (``ht-<pid>-...``)."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    names = [line.split()[0] for line in listing.stdout.splitlines() if line.strip()]
    return [n for n in names if n.startswith(f"ht-{pid}-")]


def check_trained(report: dict) -> None:
    assert report["batches_sent"] == report["batches_trained_cloud"] == BATCHES
    assert report["bytes_up"] > 50_000  # int8 activations of 256 samples, framed


@pytest.mark.root
@pytest.mark.skipif(not AVAILABLE, reason=f"kernel shaping unavailable: {WHY_NOT}")
def test_kernel_shaping_carries_the_run_and_leaves_no_namespace(small_bundle, tmp_path) -> None:
    report, pid = run_session(
        small_bundle, tmp_path / "k", "--link", "3g", "--link-emulation", "kernel"
    )
    assert report["link_emulation"] == (
        "kernel: tc tbf on a veth pair between two network namespaces, RTT by user-space delay"
    )
    check_trained(report)
    # tbf let the bytes through at the 3G uplink rate: the run cannot beat the link.
    link_s = report["bytes_up"] * 8 / UP_3G_BPS
    assert report["runtime_s"] >= 0.95 * link_s, (report["runtime_s"], link_s)
    assert report["link_busy_s"] == pytest.approx(link_s, rel=0.05)
    assert namespaces_of(pid) == []


@pytest.mark.root
@pytest.mark.skipif(not AVAILABLE, reason=f"kernel shaping unavailable: {WHY_NOT}")
@pytest.mark.parametrize(
    ("sig", "group"),
    [(signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["ctrl-c", "sigterm-to-the-demo-alone"],
)
def test_an_interrupted_kernel_run_leaves_no_namespace(
    small_bundle, tmp_path, sig: int, group: bool
) -> None:
    cmd = demo_cmd(small_bundle, tmp_path / "i", "--link", "3g", "--link-emulation", "kernel")
    cmd[cmd.index(DATA)] = "synthetic:3000"  # long enough to be interrupted mid-run
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        start_new_session=True,  # Ctrl-C reaches the terminal's whole process group
    )
    try:
        wait_until(lambda: f"ht-{proc.pid}-" in " ".join(namespaces_of(proc.pid)), 60, "the link")
        wait_until(lambda: (tmp_path / "i" / "edge-work").is_dir(), 60, "the edge to start")
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err[-2000:]
    assert "interrupted" in err
    assert namespaces_of(proc.pid) == []


def signal_the_edge(
    bundle: Path, work: Path, emulation: str, sig: signal.Signals
) -> tuple[subprocess.Popen, str]:
    """`hostctl demo` on `3g` with `emulation`; `sig` to its edge process alone once the edge
    has started. Returns the finished demo and its stderr (killed if it outlives 120 s)."""
    cmd = demo_cmd(bundle, work, "--link", "3g", "--link-emulation", emulation)
    cmd[cmd.index(DATA)] = "synthetic:3000"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: (work / "edge-work" / "spool").is_dir(), 60, "the edge to start")
        edges = subprocess.run(
            ["pgrep", "-f", f"edge_runtime[.](cli|launch) run .*{work / 'edge-work'}"],
            capture_output=True,
            text=True,
        ).stdout.split()
        assert len(edges) == 1, edges
        os.kill(int(edges[0]), sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc, err


@pytest.mark.root
@pytest.mark.skipif(not AVAILABLE, reason=f"kernel shaping unavailable: {WHY_NOT}")
def test_a_failed_kernel_run_leaves_no_namespace(small_bundle, tmp_path) -> None:
    """The edge dies (SIGKILL) mid-run on the kernel-shaped link: the demo fails in one line
    and leaves no network namespace behind. (Bad data no longer gets this far: the demo
    refuses it before any namespace is made.)"""
    proc, err = signal_the_edge(small_bundle, tmp_path / "f", "kernel", signal.SIGKILL)
    assert proc.returncode == 1, err[-2000:]
    assert "the edge runtime exited with -9" in err
    assert namespaces_of(proc.pid) == []


def test_a_serial_link_is_paced_to_its_baud_rate(small_bundle, tmp_path) -> None:
    baud = 115200
    report, _ = run_session(small_bundle, tmp_path / "s", "--link", f"serial:{baud}")
    assert report["link_emulation"] == f"serial: pty pair paced to {baud} baud (8N1)"
    assert report["link"].startswith(f"serial:{baud}: {baud} baud 8N1")
    check_trained(report)
    # 8N1: ten bits a byte. Unpaced, this run takes a fraction of that time.
    link_s = report["bytes_up"] * 10 / baud
    # The edge counts a byte when the pty takes it; the kernel's pty buffer (up to ~8 KiB)
    # may still hold the last ones when the edge stops its clock.
    in_buffer_s = 8192 * 10 / baud
    assert link_s <= report["runtime_s"] + in_buffer_s, (link_s, report["runtime_s"])
    # Busy time is what crossed the pty pair: at least what the edge counted (a spurious
    # retransmission after the edge's report can add to it).
    assert report["link_busy_s"] >= 0.98 * link_s


def test_the_user_space_choice_reports_user_space(small_bundle, tmp_path) -> None:
    report, pid = run_session(
        small_bundle, tmp_path / "u", "--link", "3g", "--link-emulation", "user"
    )
    assert report["link_emulation"] == USER_SPACE
    check_trained(report)
    assert report["link_busy_s"] >= 0.95 * report["bytes_up"] * 8 / UP_3G_BPS


def test_auto_falls_back_to_user_space_without_kernel_shaping(small_bundle, tmp_path) -> None:
    # No iproute2 on PATH (and, unless root, no CAP_NET_ADMIN): kernel shaping cannot run.
    env = {**ENV, "PATH": str(tmp_path)}
    report, _ = run_session(small_bundle, tmp_path / "a", "--link", "4g", env=env)
    assert report["link_emulation"] == USER_SPACE
    check_trained(report)


def test_an_edge_stopped_alone_ends_the_demo_instead_of_hanging(small_bundle, tmp_path) -> None:
    """SIGTERM to the edge only: it checkpoints and exits 0; the demo must not wait on."""
    proc, err = signal_the_edge(small_bundle, tmp_path / "e", "user", signal.SIGTERM)
    assert proc.returncode == 1, err[-2000:]
    assert "stopped before the run's end" in err
