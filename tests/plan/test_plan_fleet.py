"""The fleet model of `hostctl plan --edges N`: its arithmetic, by hand."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import pytest

from host.plan.fleet import fleet_lines, fleet_plan


def test_tail_keeps_up_below_saturation() -> None:
    # Edge: 32 samples per max(0.1 s compute, 0.2 s link) = 160/s. One rank: 32 / 0.01 = 3200/s.
    p = fleet_plan(
        edges=10, batch_size=32, edge_s=0.1, link_s=0.2, cloud_s=0.01, batch_wire_bytes=1000
    )
    assert p.edge_samples_per_s == pytest.approx(160.0)
    assert p.demand_samples_per_s == pytest.approx(1600.0)
    assert p.rank_samples_per_s == pytest.approx(3200.0)
    assert p.throughput_samples_per_s == pytest.approx(1600.0)
    assert p.ranks_needed == 1 and p.saturating_edges == 20 and p.binds == "edges"
    assert p.utilisation == pytest.approx(0.5)
    assert p.ingress_bytes_per_s == pytest.approx(1600 / 32 * 1000)


def test_past_saturation_the_tail_binds_and_ranks_are_counted() -> None:
    p = fleet_plan(
        edges=10_000, batch_size=32, edge_s=0.1, link_s=0.2, cloud_s=0.01, batch_wire_bytes=1000
    )
    # 10,000 x 160 = 1.6 M samples/s against 3200 per rank: 500 ranks.
    assert p.ranks_needed == 500
    assert p.throughput_samples_per_s == pytest.approx(3200.0) and p.binds == "tail"
    two = fleet_plan(
        edges=50,
        batch_size=32,
        edge_s=0.1,
        link_s=0.2,
        cloud_s=0.01,
        batch_wire_bytes=1000,
        ranks=2,
        efficiency=0.5,
    )
    # Capacity 3200 * (1 + 0.5) = 4800 -> saturates at 30 edges; 8000 demand needs
    # 1 + (2.5 - 1) / 0.5 = 4 ranks.
    assert two.capacity_samples_per_s == pytest.approx(4800.0)
    assert two.saturating_edges == 30 and two.ranks_needed == 4
    assert any("saturate at 30 edges" in line for line in fleet_lines(two))


def test_nonsense_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        fleet_plan(edges=0, batch_size=32, edge_s=1, link_s=1, cloud_s=1, batch_wire_bytes=1)
    with pytest.raises(ValueError, match="positive"):
        fleet_plan(edges=1, batch_size=32, edge_s=1, link_s=1, cloud_s=0, batch_wire_bytes=1)


def run_hostctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "host.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_plan_edges_prints_the_fleet_from_the_measured_steps() -> None:
    """A real profiling run of one split; the fleet lines follow from the table's step times."""
    out = run_hostctl(
        "plan", "--model", "smallcnn", "--link", "2mbit", "--splits", "2", "--steps", "1",
        "--edges", "1000", "--ranks", "2",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    (row,) = [line for line in out.stdout.splitlines() if line.startswith("│     2 ")]
    edge_ms, cloud_ms, link_ms = (float(c) for c in row.split("│")[2:5])
    needed = re.search(r"ranks needed to keep up with 1000 edges: (\d+)", out.stdout)
    assert needed is not None, out.stdout
    # The table rounds to 0.1 ms: allow the rank count that rounding can move. An edge trains
    # on one rank, so more ranks than edges never help: where one edge alone outruns a rank
    # (a loaded machine times the tail slow), the count stops at the edges and the plan says so.
    expect = 1000 * cloud_ms / max(edge_ms, link_ms)
    if expect < 990:
        assert abs(int(needed.group(1)) - math.ceil(expect)) <= max(1, 0.01 * expect)
    else:
        assert int(needed.group(1)) == 1000 or abs(int(needed.group(1)) - expect) <= 10
    if cloud_ms > 1.01 * max(edge_ms, link_ms):
        assert "one edge offers more than one rank takes" in out.stdout
    assert "on one shared tail, 2 rank(s)" in out.stdout


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("plan", "--model", "smallcnn", "--edges", "0"), "--edges"),
        (
            ("serve", "--bundle", "nowhere", "--listen", "tcp://127.0.0.1:0", "--shared-tail",
             "--mode", "cloud"),
            "--shared-tail: mode 'cloud' trains no tail to share",
        ),
    ],
)  # fmt: skip
def test_fleet_usage_errors_exit_2_with_one_line(args: tuple[str, ...], says: str) -> None:
    out = run_hostctl(*args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and says in lines[0]
