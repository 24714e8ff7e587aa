"""`hostctl plan --edges N`: what a fleet of N edges asks of one shared tail (a model).

Each edge has its own link and trains at the pace of its slowest own stage (its compute or its
link: the two overlap, see runtime_model.py), so it offers `batch / max(edge_s, link_s)`
samples per second. The host's shared tail trains every edge's batches; one rank takes
`batch / cloud_s` samples per second; an edge trains on the one rank it reached (edge i on rank
i % R), so a rank takes at most what its own edges offer. The fleet trains at the least of what
the edges offer, what the ranks take and, where cores are counted, what the cores can compute;
past the saturation point more edges add nothing (the link window holds them back) until ranks
are added.

Cores (`host_cores`): a rank trains on one core (torchrun sets one thread per rank), so ranks
past the host's core count add no capacity. `colocated`: the edges run on the same cores as the
ranks (virtual boards, as `benchmarks/bench_ranks.py` runs them): every sample then costs
`edge_s + cloud_s` of one core, and the cores cap the fleet at
`host_cores * batch / (edge_s + cloud_s)`. The step times must be measured at the threads the
processes run with (one each under torchrun and `edge-runtime run --threads 1`).

What the model leaves out: the ranks' collective per optimizer step (an all-reduce of the
tail's gradients and every rank's copy of the optimizer step; `efficiency` discounts every rank
past the first for it, 1.0 by default, not measured by the plan), the edges' and ranks' own
link and framing work, the edges' evaluation passes, start-up and the ramp while edges connect,
and any other load on the cores.
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
    capacity_samples_per_s: float  # what `ranks` ranks take together (on the cores there are)
    throughput_samples_per_s: float  # what the fleet trains
    ranks_needed: int  # for the tail to keep up with every edge (a core each), at most `edges`
    saturating_edges: int  # edges that `ranks` ranks (and the cores) keep up with
    ingress_bytes_per_s: float  # at the host, at the fleet's throughput
    binds: str  # "edges" (the tail keeps up), "tail" (edges wait for the host), "cores"
    host_cores: float | None = None  # cores per host machine (None: a core per rank)
    colocated: bool = False  # the edges compute on the host's cores too
    cores_samples_per_s: float = math.inf  # colocated: what the cores compute, edges and tail

    @property
    def utilisation(self) -> float:
        """Busy fraction of the tail ranks."""
        return self.throughput_samples_per_s / self.capacity_samples_per_s

    @property
    def edge_outruns_rank(self) -> bool:
        """One edge offers more than one rank takes: as an edge trains on one rank, no number
        of ranks keeps up (a faster tail step, or a split with less tail, would)."""
        return self.edge_samples_per_s > self.rank_samples_per_s * (1 + 1e-9)

    @property
    def machines_needed(self) -> int | None:
        """Host machines of `host_cores` cores for `ranks_needed` ranks (None: cores not given)."""
        if self.host_cores is None:
            return None
        return max(1, math.ceil(self.ranks_needed / max(1, math.floor(self.host_cores))))


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
    host_cores: float | None = None,
    colocated: bool = False,
) -> FleetPlan:
    """Fleet figures from one edge's per-batch stage times and the tail's step time.

    `efficiency` scales every rank past the first (1.0: ideal data-parallel scaling).
    `host_cores`: cores of the host machine the ranks share (None: a core per rank).
    `colocated`: the edges compute on those cores too (needs `host_cores`)."""
    if edges < 1 or ranks < 1 or batch_size < 1:
        raise ValueError("edges, ranks and batch size must be at least 1")
    if cloud_s <= 0 or max(edge_s, link_s) <= 0 or not 0 < efficiency <= 1:
        raise ValueError("stage times must be positive and efficiency in (0, 1]")
    if host_cores is not None and host_cores <= 0:
        raise ValueError("host cores must be positive")
    if colocated and host_cores is None:
        raise ValueError("colocated edges share the host's cores: give host_cores")
    per_edge = batch_size / max(edge_s, link_s)
    per_rank = batch_size / cloud_s
    demand = edges * per_edge

    # An edge trains on the one rank it reached (edge i on rank i % R): a rank without edges
    # takes nothing, and a rank takes at most what its own edges offer.
    serving = min(ranks, edges)
    # A rank is one thread: ranks past the cores share them and add nothing.
    busy = serving if host_cores is None else min(serving, host_cores)
    cap = per_rank * (1 + (busy - 1) * efficiency) if busy >= 1 else per_rank * busy
    on_rank = [edges // ranks + (r < edges % ranks) for r in range(serving)]
    taken = sum(min(cap / serving, n * per_edge) for n in on_rank)
    cores_cap = host_cores * batch_size / (edge_s + cloud_s) if colocated else math.inf
    throughput = min(demand, taken, cores_cap)
    # A tie goes to the edges (the tail keeps up), then to the tail; the sums may differ in the
    # last bit.
    if demand <= min(taken, cores_cap) * (1 + 1e-9):
        binds = "edges"
    else:
        binds = "tail" if taken <= cores_cap * (1 + 1e-9) else "cores"
    # Smallest r with r cores' capacity >= demand, solved exactly, then guarded against rounding
    # (edges spread evenly; an edge that alone outruns a rank caps the useful ranks at `edges`).
    needed = max(1, math.ceil(1 + (demand / per_rank - 1) / efficiency - 1e-9))
    while per_rank * (1 + (needed - 1) * efficiency) < demand * (1 - 1e-12):
        needed += 1
    needed = min(needed, edges)
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
        saturating_edges=max(1, math.floor(min(cap, cores_cap) / per_edge + 1e-9)),
        ingress_bytes_per_s=throughput / batch_size * batch_wire_bytes,
        binds=binds,
        host_cores=host_cores,
        colocated=colocated,
        cores_samples_per_s=cores_cap,
    )


def fleet_lines(plan: FleetPlan) -> list[str]:
    """The plan in a few lines for the console."""
    where = (
        f" on {plan.host_cores:g} host cores" + (" shared with the edges" if plan.colocated else "")
        if plan.host_cores is not None
        else ""
    )
    lines = [
        f"fleet of {plan.edges} edges on one shared tail, {plan.ranks} rank(s){where}:",
        f"  each edge offers {plan.edge_samples_per_s:,.1f} samples/s; together "
        f"{plan.demand_samples_per_s:,.1f} samples/s",
        f"  one tail rank takes {plan.rank_samples_per_s:,.1f} samples/s (measured tail step); "
        f"{plan.ranks} take {plan.capacity_samples_per_s:,.1f}",
    ]
    if plan.colocated:
        lines.append(
            f"  the cores compute {plan.cores_samples_per_s:,.1f} samples/s "
            "(edge step + tail step per sample, one thread each)"
        )
    lines += [
        f"  the fleet trains {plan.throughput_samples_per_s:,.1f} samples/s "
        f"({plan.ingress_bytes_per_s / 1e6:,.2f} MB/s into the host), "
        f"tail {100 * plan.utilisation:.0f}% busy; bound by the {plan.binds}",
        f"  ranks needed to keep up with {plan.edges} edges: {plan.ranks_needed}"
        + (
            f" ({plan.machines_needed} machine(s) of {plan.host_cores:g} cores)"
            if plan.machines_needed is not None and not plan.colocated
            else ""
        )
        + f"; {plan.ranks} rank(s) saturate at {plan.saturating_edges} edges",
    ]
    if plan.edge_outruns_rank:
        lines.append(
            f"  one edge offers more than one rank takes ({plan.edge_samples_per_s:,.1f} against "
            f"{plan.rank_samples_per_s:,.1f} samples/s) and trains on one rank: no number of "
            "ranks keeps up; a faster tail step or a deeper split would"
        )
    return lines
