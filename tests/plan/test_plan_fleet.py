"""The fleet model of `hostctl plan --edges N`: its arithmetic, by hand."""

from __future__ import annotations

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
