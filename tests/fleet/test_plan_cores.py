"""`hostctl plan --edges N --host-cores C [--colocated]`: the fleet model with the cores counted,
by hand, and through the CLI from a profile file (nothing measured)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from host.plan.fleet import fleet_lines, fleet_plan

# One edge: 16 samples / 0.1 s = 160/s; one rank: 16 / 0.3 s = 53.3/s.
STEPS = {"batch_size": 16, "edge_s": 0.1, "link_s": 0.0, "cloud_s": 0.3, "batch_wire_bytes": 1}


def test_ranks_past_the_cores_add_nothing() -> None:
    fast_tail = {**STEPS, "cloud_s": 0.03}  # one rank: 16 / 0.03 = 533.3 samples/s
    free = fleet_plan(edges=100, ranks=4, **fast_tail)
    two_cores = fleet_plan(edges=100, ranks=4, host_cores=2, **fast_tail)
    assert free.capacity_samples_per_s == pytest.approx(4 * 16 / 0.03)
    assert two_cores.capacity_samples_per_s == pytest.approx(2 * 16 / 0.03)
    assert two_cores.binds == "tail"
    # 16,000 samples/s of demand needs 30 ranks, 15 machines of two cores.
    assert two_cores.ranks_needed == 30 and two_cores.machines_needed == 15
    assert any("15 machine(s) of 2 cores" in line for line in fleet_lines(two_cores))
    assert not two_cores.edge_outruns_rank


def test_an_edge_that_outruns_a_rank_is_said() -> None:
    # One edge offers 160/s, a rank takes 53.3/s: an edge trains on one rank, so no number of
    # ranks keeps up; the ranks that help are at most the edges.
    p = fleet_plan(edges=100, ranks=4, **STEPS)
    assert p.edge_outruns_rank and p.ranks_needed == 100
    assert any("no number of ranks keeps up" in line for line in fleet_lines(p))


def test_colocated_edges_and_ranks_share_the_cores() -> None:
    # Each sample costs 0.4 s / 16 of one core: two cores compute 2 * 16 / 0.4 = 80 samples/s.
    four = fleet_plan(edges=4, ranks=2, host_cores=2, colocated=True, **STEPS)
    assert four.cores_samples_per_s == pytest.approx(80.0)
    assert four.throughput_samples_per_s == pytest.approx(80.0) and four.binds == "cores"
    # One rank binds first: 53.3 < 80.
    one = fleet_plan(edges=4, ranks=1, host_cores=2, colocated=True, **STEPS)
    assert one.throughput_samples_per_s == pytest.approx(16 / 0.3) and one.binds == "tail"
    # Two edges offer 320/s, two ranks take 106.7/s, the cores compute 80/s.
    two = fleet_plan(edges=2, ranks=2, host_cores=2, colocated=True, **STEPS)
    assert two.throughput_samples_per_s == pytest.approx(80.0) and two.binds == "cores"
    # Edge i trains on rank i % 2: one edge leaves the second rank without work.
    one_edge = fleet_plan(edges=1, ranks=2, host_cores=2, colocated=True, **STEPS)
    assert one_edge.throughput_samples_per_s == pytest.approx(16 / 0.3)
    assert one_edge.binds == "tail"
    with pytest.raises(ValueError, match="host_cores"):
        fleet_plan(edges=1, colocated=True, **STEPS)


def test_a_rank_takes_at_most_what_its_own_edges_offer() -> None:
    # Three edges on two ranks: rank 0 has two (320/s offered), rank 1 one (160/s); each rank
    # could take 200/s (0.08 s a batch): 200 + 160 = 360, not 400.
    fast_tail = {**STEPS, "cloud_s": 0.08}
    p = fleet_plan(edges=3, ranks=2, **fast_tail)
    assert p.capacity_samples_per_s == pytest.approx(400.0)
    assert p.throughput_samples_per_s == pytest.approx(360.0) and p.binds == "tail"


def run_plan(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "host.cli", "plan", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_plan_cli_takes_the_profile_and_the_cores(tmp_path: Path) -> None:
    profile = tmp_path / "profile.json"
    figures = {"edge_step_s": 0.1, "edge_eval_s": 0.1, "edge_warmup_s": 0.0}
    figures |= {"cloud_step_s": 0.3, "cloud_eval_s": 0.1, "cloud_warmup_s": 0.0}
    profile.write_text(
        json.dumps({"model": "smallcnn", "batch_size": 16, "splits": [{"split": 2, **figures}]})
    )
    out = run_plan(
        "--model", "smallcnn", "--splits", "2", "--batch-size", "16", "--link", "local",
        "--codec", "fp32", "--profile", str(profile), "--colocated", "--host-cores", "2",
        "--edges", "4", "--ranks", "2",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "2 rank(s) on 2 host cores shared with the edges" in out.stdout, out.stdout
    assert "the cores compute 80.0 samples/s" in out.stdout, out.stdout
    assert "the fleet trains 80.0 samples/s" in out.stdout and "bound by the cores" in out.stdout


def test_host_cores_without_edges_is_a_usage_error() -> None:
    out = run_plan("--model", "smallcnn", "--host-cores", "2")
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "--host-cores goes with --edges" in lines[0], out.stderr
