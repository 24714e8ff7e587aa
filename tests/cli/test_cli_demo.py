"""`hostctl demo` end to end (a shorter run than `make demo`, same code path)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from host.linkemu import kernel_shaping_available
from host.session.links import USER_SPACE


def test_demo_runs_and_reports(tmp_path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "host.cli",
            "demo",
            "--data",
            "synthetic:800",
            "--epochs",
            "1",
            "--link",
            "4g",
            "--work-dir",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    for key in (
        "mode",
        "model",
        "split",
        "link",
        "epochs",
        "runtime_s",
        "bytes_up",
        "bytes_down",
        "batches_sent",
        "batches_trained_cloud",
        "edge_exit_accuracy",
        "final_accuracy",
        "edge_busy_s",
        "link_busy_s",
        "cloud_busy_s",
    ):
        assert key in report, key
    assert report["batches_sent"] == report["batches_trained_cloud"] == 20  # 640 / 32
    assert report["link"].startswith("4g")
    # auto: kernel shaping where it works here (root, iproute2), else the user-space relay.
    if kernel_shaping_available()[0]:
        assert report["link_emulation"].startswith("kernel: tc tbf on a veth pair")
    else:
        assert report["link_emulation"] == USER_SPACE
    assert report["bytes_down"] < report["bytes_up"] / 20  # acks and metrics only come down
    assert "final accuracy" in out.stdout and "pipeline efficiency" in out.stdout


def test_demo_rejects_a_bad_link() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "host.cli", "demo", "--link", "5g"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "3g" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_demo_refuses_an_emulation_that_cannot_run(tmp_path) -> None:
    # Without iproute2 on PATH kernel shaping cannot run, root or not.
    no_tools = {**os.environ, "PATH": str(tmp_path)}
    for args, env, expected in (
        (("--link-emulation", "kernel"), no_tools, "kernel shaping is unavailable here"),
        (("--link", "serial:9600", "--link-emulation", "kernel"), None, "serial line"),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "host.cli", "demo", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert out.returncode == 2, out.stderr
        assert expected in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_demo_exports_its_model_for_the_data(digits_path, tmp_path) -> None:
    """`--data` of another shape than 3x32x32 (the real 1x8x8 digits): the demo's own model is
    exported for it (it was exported at 3x32x32, and the edge refused the data)."""
    work = tmp_path / "demo"
    out = subprocess.run(
        [sys.executable, "-m", "host.cli", "demo", "--data", str(digits_path), "--epochs", "1",
         "--link", "local", "--link-emulation", "user", "--work-dir", str(work)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    manifest = json.loads((work / "bundle" / "manifest.json").read_text())
    assert manifest["input_shape"] == [1, 8, 8] and manifest["num_classes"] == 10
    report = json.loads((work / "report.json").read_text())
    assert report["batches_trained_cloud"] == 45  # 1437 train rows / 32


def test_demo_refuses_a_bundle_the_data_does_not_fit(exported, tmp_path) -> None:
    """--bundle for 1x8x8 with 3x32x32 data: one line and exit 2 before anything runs (it was
    the edge's exit 2 reported as the demo's failure, exit 1)."""
    bundle = exported("smallcnn", 2, input_shape=(1, 8, 8))
    work = tmp_path / "demo"
    out = subprocess.run(
        [sys.executable, "-m", "host.cli", "demo", "--bundle", str(bundle), "--data",
         "synthetic:100", "--link", "local", "--work-dir", str(work)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr[-3000:]
    last = out.stderr.strip().splitlines()[-1]
    assert last == (
        "hostctl: error: data synthetic is 3x32x32 but the bundle expects 1x8x8: "
        "export with --input-shape 3x32x32"
    ), last
    assert "Traceback" not in out.stderr and not (work / "edge-work").exists()


def test_demo_exports_with_the_lr_schedule_asked_for(tmp_path) -> None:
    """`--lr-schedule` on demo as on export and bench: the same option, the same checks. It was
    missing: a demo could not show a schedule at all."""
    work = tmp_path / "demo"
    out = subprocess.run(
        [sys.executable, "-m", "host.cli", "demo", "--data", "synthetic:200", "--epochs", "2",
         "--lr-schedule", "step:every=1,gamma=0.5", "--link", "local", "--link-emulation",
         "user", "--work-dir", str(work)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    manifest = json.loads((work / "bundle" / "manifest.json").read_text())
    schedule = manifest["edge"]["optimizer"]["schedule"]
    assert schedule["kind"] == "step" and schedule["gamma"] == 0.5, schedule
    # Each report says the rate it trained at: the bundle's, its schedule, the last epoch's.
    edge = json.loads((work / "edge.json").read_text())
    run = json.loads((work / "report.json").read_text())
    for report in (edge, run):
        assert report["lr"] == 3e-3 and report["lr_schedule"] == "step:every=1,gamma=0.5"
        assert report["lr_last_epoch"] == 1.5e-3  # epoch 1 of 2 at half the rate


def test_demo_lr_schedule_usage_errors(exported, tmp_path) -> None:
    bundle = exported("smallcnn", 3, lr=3e-3)
    for args, expected in (
        (("--lr-schedule", "cosine"), "--lr-schedule: lr schedule cosine needs epochs=E"),
        (("--lr-schedule", "cosine:epochs=2", "--bundle", str(bundle)), "carries its own"),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "host.cli", "demo", *args, "--work-dir", str(tmp_path / "d")],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 2, out.stderr
        assert expected in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert not (tmp_path / "d").exists()
