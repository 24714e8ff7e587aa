"""`hostctl bench`: modes side by side in one run, with the report and the figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def hostctl(*args: str, cwd=None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "host.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
    )


def test_bench_compares_modes_with_split_learning(tmp_path) -> None:
    out = hostctl(
        "bench",
        "--modes",
        "hierarchical,split",
        "--codec",
        "fp32,int8",
        "--data",
        "synthetic:300",
        "--link",
        "local",
        "--profile",
        "rpi4",
        "--edge-threads",
        "1",
        "--out",
        str(tmp_path / "b"),
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "b" / "bench.json").read_text())
    modes = report["modes"]
    assert set(modes) == {"hierarchical-fp32", "hierarchical-int8", "split"}
    assert modes["split"]["runtime_vs_split"] == modes["split"]["train_vs_split"] == 1.0
    assert all(m["runtime_vs_split"] > 0 for m in modes.values())
    for m in modes.values():  # the training phase: the runtime less the final evaluation
        assert 0 < m["train_s"] < m["runtime_s"]
        assert m["train_vs_split"] == round(m["train_s"] / modes["split"]["train_s"], 3)
    assert modes["hierarchical-int8"]["bytes_up"] < modes["hierarchical-fp32"]["bytes_up"] / 2
    assert modes["split"]["bytes_down"] > 10 * modes["hierarchical-fp32"]["bytes_down"]
    assert "Raspberry Pi 4" in report["edge_profile"]
    # One edge thread: every run's board was paced by its steps' CPU time, 16x.
    assert {(m["pacing_clock"], m["edge_slowdown"]) for m in modes.values()} == {("cpu", 16.0)}
    for png in ("timeline.png", "runtime_accuracy.png"):
        assert (tmp_path / "b" / png).read_bytes()[:4] == b"\x89PNG"
    assert "vs split" in out.stdout
    # The report and the table say which emulation carried the runs (all the same here).
    used = {m["link_emulation"] for m in modes.values()}
    assert len(used) == 1 and report["link_emulation"] == used.pop()
    assert f"link emulation: {report['link_emulation']}" in out.stdout
    # Where every output went, one line each.
    said = out.stdout + out.stderr
    assert f"report: {tmp_path / 'b' / 'bench.json'}" in said
    for png in ("timeline.png", "runtime_accuracy.png"):
        assert f"figure: {tmp_path / 'b' / png}" in said
    assert f"edge log {tmp_path / 'b' / 'split-edge.log'}" in said


def test_bench_usage_errors(tmp_path) -> None:
    no_tools = {**os.environ, "PATH": str(tmp_path)}  # kernel shaping needs iproute2
    for args, env, expected in (
        (("--modes", "fast"), None, "choose from hierarchical"),
        (("--codec", "bf16"), None, "choose from fp32"),
        (("--profile", "nosuchboard"), None, "rpi4"),
        (("--link-emulation", "kernel"), no_tools, "kernel shaping is unavailable here"),
        (("--modes", "split,edge", "--model-out", "m"), None, "trains an early exit"),
        (("--lr-schedule", "cosine"), None, "--lr-schedule: lr schedule cosine needs epochs=E"),
    ):
        out = hostctl("bench", *args, env=env)
        assert out.returncode == 2, out.stderr
        assert expected in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_bench_speed_profile_by_name_and_file(tmp_path) -> None:
    """--profile: a named speed profile, a JSON file, and clear usage errors for bad files."""
    from edge_runtime.errors import UsageFault
    from host.bench.commands import load_speed_profile

    rpi4 = load_speed_profile("rpi4")
    assert rpi4.slowdown == 16 and "Pi 4" in rpi4.name and rpi4.source
    own = tmp_path / "board.json"
    own.write_text('{"slowdown": 4, "source": "measured"}')
    assert load_speed_profile(str(own)).slowdown == 4
    for text, why in (("{", "not a speed profile"), ('{"slowdown": 0.5}', "slowdown >= 1")):
        own.write_text(text)
        with pytest.raises(UsageFault, match=why):
            load_speed_profile(str(own))
    with pytest.raises(UsageFault, match="use one of rpi4"):
        load_speed_profile("nope")


def test_bench_model_takes_the_datas_shape_unless_told(digits_path, tmp_path) -> None:
    """Without --input-shape the bench's model fits the data (1x8x8 digits); with one that
    does not fit, exit 2 and one line before any mode runs."""
    out = hostctl(
        "bench", "--modes", "edge", "--data", str(digits_path), "--out", "b1",
        "--lr-schedule", "step:every=1,gamma=0.5", cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    manifest = json.loads((tmp_path / "b1" / "bundle" / "manifest.json").read_text())
    assert manifest["input_shape"] == [1, 8, 8] and manifest["num_classes"] == 10
    assert manifest["edge"]["optimizer"]["schedule"]["kind"] == "step"  # --lr-schedule: its bundle
    assert json.loads((tmp_path / "b1" / "bench.json").read_text())["modes"]["edge"][
        "final_accuracy"
    ]
    out = hostctl(
        "bench",
        "--modes",
        "edge",
        "--data",
        str(digits_path),
        "--input-shape",
        "3x32x32",
        "--out",
        "b2",
        cwd=tmp_path,
    )
    assert out.returncode == 2, out.stderr[-3000:]
    assert out.stderr.strip().splitlines()[-1] == (
        "hostctl: error: data digits:digits.csv.gz is 1x8x8 but the bundle expects 3x32x32: "
        "export with --input-shape 1x8x8"
    )
    assert not (tmp_path / "b2" / "edge-edge.log").exists()  # no edge ran
