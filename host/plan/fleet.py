"""`hostctl plan --edges N`: what a fleet of N edges asks of one shared tail (a model).

Each edge has its own link and trains at the pace of its slowest own stage (its compute or its
link: the two overlap, see runtime_model.py), so it offers `batch / max(edge_s, link_s)`
samples per second. The host's shared tail trains every edge's batches; one rank takes
`batch / cloud_s` samples per second. The fleet trains at the lesser of what the edges offer
and what the ranks take; past the saturation point more edges add nothing (the link window
holds them back) until ranks are added. Ranks are assumed to scale linearly with a given
efficiency (data-parallel all-reduce costs not measured here; see docs/architecture.md, Fleet).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class FleetPlan:
    """The fleet's figures for one split: demand, capacity, ranks needed, saturation."""

    edges: int
    ranks: int
    batch_size: int
    edge_samples_per_s: float  # what one edge offers (its own compute or link binds)
    demand_samples_per_s: float  # what all edges offer together
    rank_samples_per_s: float  # what one rank's tail takes (measured tail step time)
    capacity_samples_per_s: float  # what `ranks` ranks take together
    throughput_samples_per_s: float  # what the fleet trains
    ranks_needed: int  # for the tail to keep up with every edge
    saturating_edges: int  # edges that `ranks` ranks keep up with
    ingress_bytes_per_s: float  # at the host, at the fleet's throughput
    binds: str  # "edges" (the tail keeps up) or "tail" (edges wait for the host)

    @property
    def utilisation(self) -> float:
        """Busy fraction of the tail ranks."""
        return self.throughput_samples_per_s / self.capacity_samples_per_s


def fleet_plan(
    *,
    edges: int,
    batch_size: int,
    edge_s: float,
    link_s: float,
    cloud_s: float,
    batch_wire_bytes: int,
    ranks: int = 1,
    efficiency: float = 1.0,
) -> FleetPlan:
    """Fleet figures from one edge's per-batch stage times and the tail's step time.

    `efficiency` scales every rank past the first (1.0: ideal data-parallel scaling)."""
    if edges < 1 or ranks < 1 or batch_size < 1:
        raise ValueError("edges, ranks and batch size must be at least 1")
    if cloud_s <= 0 or max(edge_s, link_s) <= 0 or not 0 < efficiency <= 1:
        raise ValueError("stage times must be positive and efficiency in (0, 1]")
    per_edge = batch_size / max(edge_s, link_s)
    per_rank = batch_size / cloud_s
    demand = edges * per_edge

    def capacity(r: int) -> float:
        return per_rank * (1 + (r - 1) * efficiency)

    cap = capacity(ranks)
    throughput = min(demand, cap)
    # Smallest r with capacity(r) >= demand, solved exactly, then guarded against rounding.
    needed = max(1, math.ceil(1 + (demand / per_rank - 1) / efficiency - 1e-9))
    while capacity(needed) < demand * (1 - 1e-12):
        needed += 1
    return FleetPlan(
        edges=edges,
        ranks=ranks,
        batch_size=batch_size,
        edge_samples_per_s=per_edge,
        demand_samples_per_s=demand,
        rank_samples_per_s=per_rank,
        capacity_samples_per_s=cap,
        throughput_samples_per_s=throughput,
        ranks_needed=needed,
        saturating_edges=max(1, math.floor(cap / per_edge + 1e-9)),
        ingress_bytes_per_s=throughput / batch_size * batch_wire_bytes,
        binds="edges" if demand <= cap else "tail",
    )


def fleet_lines(plan: FleetPlan) -> list[str]:
    """The plan in a few lines for the console."""
    return [
        f"fleet of {plan.edges} edges on one shared tail, {plan.ranks} rank(s):",
        f"  each edge offers {plan.edge_samples_per_s:,.1f} samples/s; together "
        f"{plan.demand_samples_per_s:,.1f} samples/s",
        f"  one tail rank takes {plan.rank_samples_per_s:,.1f} samples/s (measured tail step); "
        f"{plan.ranks} take {plan.capacity_samples_per_s:,.1f}",
        f"  the fleet trains {plan.throughput_samples_per_s:,.1f} samples/s "
        f"({plan.ingress_bytes_per_s / 1e6:,.2f} MB/s into the host), "
        f"tail {100 * plan.utilisation:.0f}% busy; bound by the {plan.binds}",
        f"  ranks needed to keep up with {plan.edges} edges: {plan.ranks_needed}; "
        f"{plan.ranks} rank(s) saturate at {plan.saturating_edges} edges",
    ]
