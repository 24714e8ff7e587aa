"""The HIL suite on the virtual board, run as CI runs it: a pytest subprocess and its reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
VIRTUAL = REPO / "hw_tests" / "boards" / "virtual.toml"
FIGURES = (
    "edge_step_s_median",
    "epoch_s",
    "link_throughput_bps",
    "pipeline_efficiency",
    "deploy_s",
    "runtime_s",
    "bytes_up",
)


@pytest.fixture(scope="module")
def virtual_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path_factory.mktemp("hil-out")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "hw_tests",
            "-q",
            "-p",
            "no:cacheprovider",
            "--board",
            str(VIRTUAL),
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    return result, out


@pytest.mark.slow
def test_virtual_board_suite_passes(virtual_run) -> None:
    result, out = virtual_run
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "hil report:" in result.stdout


@pytest.mark.slow
def test_virtual_board_json_report(virtual_run) -> None:
    _, out = virtual_run
    report = json.loads((out / "hil-report.json").read_text())
    assert report["board"]["name"] == "virtual"
    assert report["board"]["arch"] == report["board"]["reported_arch"] == "x86_64"
    assert report["board"]["engine"] == "ort"
    assert report["passed"] is True and report["counts"]["failed"] == 0
    for key in FIGURES:
        assert report["figures"][key] is not None, key
    f = report["figures"]
    assert 0 < f["edge_step_s_median"] < f["epoch_s"]
    # The 3g emulation sends at 768 kbit/s: what crossed while busy cannot beat that by much.
    assert 100_000 < f["link_throughput_bps"] < 1_000_000
    assert f["batches_trained_cloud"] == f["batches_sent"] > 0
    names = {t["name"] for t in report["tests"]}
    assert {"test_reachable", "test_architecture", "test_deploy", "test_hierarchical_run"} <= names
    # The run's model out and early-exit inference on the board.
    assert {"test_model_out_on_board", "test_early_exit_inference_on_board"} <= names
    assert f["board_vs_host_edge_max_diff"] < 1e-3
    assert f["infer_samples"] > 0 and 0 < f["infer_fraction_at_edge"] <= 1
    assert f["infer_latency_ms_p50"] > 0


@pytest.mark.slow
def test_virtual_board_markdown_report(virtual_run) -> None:
    _, out = virtual_run
    md = (out / "hil-report.md").read_text()
    assert md.startswith("# HIL report: virtual")
    header = next(line for line in md.splitlines() if line.startswith("| board |"))
    for column in (
        "arch",
        "engine",
        "edge step",
        "epoch",
        "link throughput",
        "overlap",
        "inference p50",
    ):
        assert column in header
    assert "| virtual | x86_64 | ort |" in md


@pytest.mark.slow
def test_virtual_board_over_an_emulated_serial_line(tmp_path: Path) -> None:
    """`emulate = "serial:<baud>"`: the edge trains over a pty pair paced to the baud rate."""
    baud = 460800
    board = tmp_path / "virtual-serial.toml"
    text = VIRTUAL.read_text().replace('name = "virtual"', 'name = "virtual-serial"')
    text = text.replace("boards/virtual", "boards/virtual-serial")
    board.write_text(text.replace('emulate = "3g"', f'emulate = "serial:{baud}"'))
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "hw_tests", "-q", "-p", "no:cacheprovider"]
        + ["--board", str(board), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    report = json.loads((out / "hil-report.json").read_text())
    assert report["board"]["link"] == f"serial:{baud}"
    f = report["figures"]
    assert f["batches_trained_cloud"] == f["batches_sent"] > 0
    # 8N1 carries 8 data bits in 10: the line cannot beat 0.8 x baud, and it is what binds.
    assert 0.3 * baud < f["link_throughput_bps"] <= 0.8 * baud * 1.02


def test_hil_missing_board_file_exits_2_with_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-board.toml"
    result = subprocess.run(
        [sys.executable, "-m", "host.cli", "hil", "--board", str(missing), "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(missing) in lines[0] and "does not exist" in lines[0]
    assert not (tmp_path / "hil-report.json").exists()


def test_hil_bad_board_file_names_the_key(tmp_path: Path) -> None:
    board = tmp_path / "bad.toml"
    board.write_text(VIRTUAL.read_text().replace('arch = "x86_64"', 'arch = "arm64"'))
    result = subprocess.run(
        [sys.executable, "-m", "host.cli", "hil", "--board", str(board)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "arch" in result.stderr and "aarch64" in result.stderr


def test_board_that_cannot_be_opened_skips_with_the_reason(tmp_path: Path) -> None:
    """The qemu board before `make qemu-rootfs`: every test skips, the report says why."""
    qemu = (REPO / "hw_tests" / "boards" / "qemu-aarch64.toml").read_text()
    board = tmp_path / "qemu-unbuilt.toml"
    board.write_text(
        qemu.replace('"../../build/qemu-aarch64-rootfs"', f'"{tmp_path / "no-rootfs"}"')
    )
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "hw_tests",
            "-q",
            "-p",
            "no:cacheprovider",
            "--board",
            str(board),
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    report = json.loads((out / "hil-report.json").read_text())
    assert report["board"]["name"] == "qemu-aarch64" and report["board"]["arch"] == "aarch64"
    assert report["counts"]["passed"] == report["counts"]["failed"] == 0
    assert report["counts"]["skipped"] == len(report["tests"]) > 0
    assert all("make qemu-rootfs" in t["reason"] for t in report["tests"])
    assert "| qemu-aarch64 | aarch64 | ort |" in (out / "hil-report.md").read_text()


def test_hostctl_hil_runs_the_suite_and_exits_with_its_code(tmp_path: Path) -> None:
    """`hostctl hil` is pytest hw_tests: extra arguments after -- reach pytest."""
    out = tmp_path / "out"
    base = [sys.executable, "-m", "host.cli", "hil", "--board", str(VIRTUAL), "--out", str(out)]
    ok = subprocess.run(
        [*base, "--", "-q", "-p", "no:cacheprovider", "-k", "reachable or architecture"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]
    report = json.loads((out / "hil-report.json").read_text())
    assert [t["name"] for t in report["tests"]] == ["test_reachable", "test_architecture"]
    # A board file that says aarch64 for this x86_64 machine: the architecture check fails.
    wrong = tmp_path / "wrong-arch.toml"
    wrong.write_text(VIRTUAL.read_text().replace('arch = "x86_64"', 'arch = "aarch64"'))
    failed = subprocess.run(
        [
            sys.executable,
            "-m",
            "host.cli",
            "hil",
            "--board",
            str(wrong),
            "--out",
            str(out),
            "--",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "architecture",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert failed.returncode == 1, failed.stdout[-2000:]
    report = json.loads((out / "hil-report.json").read_text())
    assert report["passed"] is False
    assert "`uname -m` says x86_64" in report["tests"][0]["reason"]
