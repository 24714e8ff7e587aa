"""benchmarks/bench_paper.py without training: its command line and its resume logic.

A rerun must skip every row already in the results file for the same parameters (the full
benchmark runs for hours and is meant to be restarted), and measure again what was measured
with other parameters. The rows here are written by hand; nothing is exported or trained, which
the test checks: no bundle directory appears.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from host.linkemu import parse_link
from host.plan.board_profile import STEP_FIELDS

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_paper.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_paper", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_paper"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def _profile_figures(bench: ModuleType) -> dict:
    """Plausible Pi-class figures for ResNet-18 split 8 (seconds a batch; coded over fp32)."""
    figures = {k: 0.0 for k in STEP_FIELDS} | {"edge_step_s": 8.0, "cloud_step_s": 0.05}
    for _, codec in bench.COLUMNS:
        for side, ratio in (("codec", 0.45), ("grad", 0.85)):
            figures[f"{side}:{codec}:ratio"] = 1.0 if codec == "fp32" else ratio
            figures[f"{side}:{codec}:encode_s"] = 0.01
            figures[f"{side}:{codec}:decode_s"] = 0.01
    return {"activation_shape": [512, 4, 4], "load_factor": 1.0, "figures": figures}


def _measured(train_s: float) -> dict:
    return {
        "runtime_s": train_s + 80.0,
        "train_s": train_s,
        "edge_busy_s": 250.0,
        "edge_slowdown": 1.5,
        "bytes_up": 1,
        "bytes_down": 1,
    }


def test_help_works() -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "--quick" in out.stdout and "--measure" in out.stdout and "--results" in out.stdout


def test_rerun_skips_measured_rows(bench: ModuleType, tmp_path: Path, capsys) -> None:
    (setting,) = [s for s in bench.SETTINGS if s.name == "resnet18-cifar"]
    p = bench.Params()
    results = bench.Results(tmp_path / "rows.jsonl")
    results.add(bench.profile_key(setting, p), _profile_figures(bench))
    results.add(bench.run_key(setting, p, "3g", "split", "fp32"), _measured(780.0))
    results.add(bench.run_key(setting, p, "3g", "hierarchical", "fp32+z"), _measured(300.0))
    argv = [
        "--settings", "resnet18-cifar", "--links", "3g", "--out", str(tmp_path / "out"),
        "--results", str(tmp_path / "rows.jsonl"),
        "--measure", "resnet18-cifar/3g/split-fp32,resnet18-cifar/3g/hierarchical-fp32+z",
    ]  # fmt: skip

    assert bench.main(argv) == 0

    out = capsys.readouterr().out
    assert "resnet18-cifar: every row already in" in out
    assert not (tmp_path / "out" / "bundles").exists()  # nothing exported, nothing trained
    assert len((tmp_path / "rows.jsonl").read_text().splitlines()) == 3  # nothing appended
    # The two measured runs give the ratio, marked as measured (bold); the rest is modelled.
    (row,) = [r for r in out.splitlines() if "| 3g | hierarchical-fp32+z |" in r]
    assert "300.0" in row and f"**{300.0 / 780.0:.2f}**" in row
    table = (tmp_path / "out" / "table.md").read_text()
    verdict = (
        "FAIL: resnet18-cifar split 8 hierarchical-fp32+z on 3g, training 0.38 of split "
        "learning's at that split"
    )
    assert f"{verdict} (target 0.30; measured)" in table
    # 32 batches of 8.01 s (step and coding) and 2 evaluations of none: 256 s by the profile.
    assert "edge busy 250 s against the profile's 256 s (paced x1.50" in table
    assert "faster than the profile" not in table  # 2% off: within what the clock promises


def test_a_measured_ratio_whose_edge_missed_the_board_says_so(
    bench: ModuleType, tmp_path: Path, capsys
) -> None:
    (setting,) = [s for s in bench.SETTINGS if s.name == "resnet18-cifar"]
    p = bench.Params()
    results = bench.Results(tmp_path / "rows.jsonl")
    results.add(bench.profile_key(setting, p), _profile_figures(bench))
    results.add(bench.run_key(setting, p, "3g", "split", "fp32"), _measured(780.0))
    fast = _measured(220.0) | {"edge_busy_s": 200.0}  # the profile says 256 s: 22% faster
    results.add(bench.run_key(setting, p, "3g", "hierarchical", "int8+z"), fast)
    argv = [
        "--settings", "resnet18-cifar", "--links", "3g", "--out", str(tmp_path / "out"),
        "--results", str(tmp_path / "rows.jsonl"),
        "--measure", "resnet18-cifar/3g/split-fp32,resnet18-cifar/3g/hierarchical-int8+z",
    ]  # fmt: skip
    assert bench.main(argv) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if "hierarchical-int8+z on 3g" in x]
    assert f"training {220 / 780:.2f} of split learning's" in line
    assert "an edge ran 22% faster than the profile's board: modelled" in line


def test_other_parameters_are_not_a_match(bench: ModuleType, tmp_path: Path) -> None:
    (setting,) = [s for s in bench.SETTINGS if s.name == "resnet18-cifar"]
    path = tmp_path / "rows.jsonl"
    results = bench.Results(path)
    results.add(bench.run_key(setting, bench.Params(), "3g", "split", "fp32"), _measured(780.0))
    with open(path, "a") as fh:
        fh.write('{"format": "hiertrain-bench-paper/1", "key": {"ki')  # killed mid-write
    again = bench.Results(path)  # read back: the cut line is ignored, the good row kept
    assert again.find(bench.run_key(setting, bench.Params(), "3g", "split", "fp32")) is not None
    others = (bench.Params(samples=2000), bench.Params(slowdown=8.0), bench.Params(pacing="wall"))
    for other in others:
        assert again.find(bench.run_key(setting, other, "3g", "split", "fp32")) is None
    assert again.find(bench.run_key(setting, bench.Params(), "3g-sym", "split", "fp32")) is None


def test_cpu_pacing_anchors_the_board_on_the_reference_step(bench: ModuleType) -> None:
    # The Pi-class board takes the reference step in 16 x 0.30 s whatever its CPU time here.
    p = bench.Params()
    assert p.pacing == "cpu"
    for cpu_s in (0.25, 0.4, 0.9):
        assert bench.pi_class_slowdown(p, cpu_s) * cpu_s == pytest.approx(16 * 0.30)


def test_runs_at_two_splits_keep_apart(bench: ModuleType) -> None:
    (s,) = [s for s in bench.SETTINGS if s.name == "resnet18-cifar"]
    six = bench.replace(s, split=6)
    assert bench.run_label(s, "3g", "hierarchical", "int8+z") != bench.run_label(
        six, "3g", "hierarchical", "int8+z"
    )


def test_bad_arguments_exit_with_one_line(tmp_path: Path) -> None:
    for args, says in (
        (["--measure", "vgg16-cifar/5g/split-fp32"], "is not a row of this run"),
        (["--settings", "mnist"], "unknown setting 'mnist'"),
        (["--samples", "500"], "at least 1000"),
        (["--profile", "pi9", "--measure", "none"], "no profile 'pi9'"),
        (["--pacing", "gpu"], "invalid choice: 'gpu'"),
    ):
        out = subprocess.run(
            [sys.executable, str(SCRIPT), *args, "--out", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 2 and says in out.stderr, (args, out.stderr)
        assert "Traceback" not in out.stderr


def test_symmetric_3g_preset() -> None:
    link = parse_link("3g-sym")
    assert link.up_bps == link.down_bps == parse_link("3g").up_bps == 768e3
    assert link.rtt_s == parse_link("3g").rtt_s
