"""benchmarks/bench_converge.py at its smallest: one epoch on a tiny subset, end to end.

The real paths run (export, the whole-network trainer, the edge's training loop and the cloud
server over a socket pair with each codec), in a subprocess so that the benchmark's
torch.set_num_threads(1) stays out of the test session. The resume check reads the results file
in-process: every run of that configuration is found there, so a rerun trains nothing.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "bench_converge.py"
DIGITS = REPO.parent / "shared" / "data" / "digits.csv.gz"
EPOCHS, WIDTH, LIMIT = 1, 4, 48
TINY = ["--nets", "vgg16", "--data", "digits", "--epochs", str(EPOCHS), "--width", str(WIDTH)]


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=600,  # generous: the machine is shared; the runs take seconds when quiet
        cwd=REPO,
    )


def _module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_converge", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_converge"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_smallest_configuration_runs_end_to_end(tmp_path: Path) -> None:
    if not DIGITS.is_file():
        pytest.skip(f"{DIGITS} is absent (a fresh clone has no ../shared/data)")
    out, png = tmp_path / "out", tmp_path / "curves.png"
    result = _bench(*TINY, "--limit", str(LIMIT), "--out", str(out), "--png", str(png))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| digits | vgg16 split 10 |" in result.stdout
    assert "target vgg16: hierarchical within 1 point" in result.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (entry,) = json.loads((out / "converge.json").read_text())["entries"]
    assert "upscaled to 3x32x32" in entry["curves"]["end-to-end"]["data"]
    assert f"limit: {LIMIT} of 1437" in entry["curves"]["end-to-end"]["data"]
    assert set(entry["final_accuracy"]) == {"end-to-end", "fp32", "fp32+z", "int8+z"}
    assert all(0.0 <= a <= 1.0 for a in entry["final_accuracy"].values())
    assert isinstance(entry["target_met"], bool)
    assert entry["last5"]["accuracy"] == entry["final_accuracy"]  # one epoch: the same figure
    # Lossless coding: the tail trained on the very same tensors, so the very same curve.
    assert entry["lossless_curve_equals_fp32"] is True
    ratios = entry["bytes_up_over_fp32"]
    assert ratios["int8+z"] < ratios["fp32+z"] < ratios["fp32"] == 1.0

    bench = _module()
    params = bench.Params(epochs=EPOCHS, width=WIDTH, limit=LIMIT)
    results = bench.Results(out / "results.jsonl")
    for column in bench.COLUMNS:  # what a rerun looks up before it trains
        assert results.find(bench.run_key("digits", "vgg16", 10, column, params)) is not None
    assert results.find(bench.run_key("digits", "vgg16", 10, "fp32", bench.Params())) is None


def test_unknown_network_is_a_usage_error() -> None:
    result = _bench("--nets", "alexnet")
    assert result.returncode == 2
    assert result.stderr.strip() == "error: unknown network alexnet: valid are resnet18, vgg16"


def test_lr_schedules_side_by_side_and_in_the_resume_key(tmp_path: Path) -> None:
    if not DIGITS.is_file():
        pytest.skip(f"{DIGITS} is absent (a fresh clone has no ../shared/data)")
    out = tmp_path / "out"
    args = [*TINY[:-4], "--epochs", "2", "--width", str(WIDTH), "--limit", str(LIMIT)]
    args += ["--columns", "end-to-end,fp32", "--out", str(out)]
    result = _bench(*args, "--lr-schedule", "constant", "--lr-schedule", "cosine")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| digits | vgg16 split 10 | constant |" in result.stdout
    assert "| digits | vgg16 split 10 | cosine:epochs=2 |" in result.stdout
    assert "largest drop" in result.stdout
    (bundle,) = (out / "bundles").glob("*cosine*")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["edge"]["optimizer"]["schedule"]["kind"] == "cosine"
    assert manifest["cloud"]["optimizer"]["schedule"]["epochs"] == 2

    bench = _module()
    results = bench.Results(out / "results.jsonl")
    cosine = bench.Params(epochs=2, width=WIDTH, limit=LIMIT, lr_schedule="cosine:epochs=2")
    constant = bench.Params(epochs=2, width=WIDTH, limit=LIMIT)
    curves = {}
    for p in (cosine, constant):
        for column in ("end-to-end", "fp32"):
            row = results.find(bench.run_key("digits", "vgg16", 10, column, p))
            assert row is not None and len(row["test_accuracy"]) == 2
            curves[(p.lr_schedule, column)] = row["test_accuracy"]
    assert "lr_schedule" not in bench.run_key("digits", "vgg16", 10, "fp32", constant)
    # Same weights, same batches: epoch 1 is at the full rate under both schedules.
    for column in ("end-to-end", "fp32"):
        assert curves[("constant", column)][0] == curves[("cosine:epochs=2", column)][0]
    # A rerun finds every run of the cosine in the results and trains nothing.
    again = _bench(*args, "--lr-schedule", "cosine")
    assert again.returncode == 0 and "training 2 epochs" not in again.stdout, again.stdout


def test_a_bad_lr_schedule_is_a_usage_error() -> None:
    result = _bench("--lr-schedule", "cosine:warmup=x")
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "error: --lr-schedule: lr schedule cosine: warmup=x is not an integer"
    )
