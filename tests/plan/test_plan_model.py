"""The runtime model's arithmetic on fixed inputs: no measurement, no I/O."""

from __future__ import annotations

import math

import pytest

from host.linkemu.presets import LinkSpec
from host.plan.runtime_model import (
    RunShape,
    SplitCosts,
    best,
    message_link_s,
    pipeline_s,
    predict,
    why,
)

MBIT = LinkSpec("1mbit", 1e6, 1e6, 0.0)  # 125,000 bytes/s: 12,500 bytes take 0.1 s


def costs(split: int, edge: float, cloud: float, wire: int, **kw: float) -> SplitCosts:
    return SplitCosts(split, edge_step_s=edge, cloud_step_s=cloud, batch_wire_bytes=wire, **kw)


def test_link_time_is_wire_bytes_at_the_uplink_rate() -> None:
    assert message_link_s(12_500, MBIT) == pytest.approx(0.1)
    assert message_link_s(12_500, LinkSpec("local", math.inf, math.inf, 0.0)) == 0.0


def test_a_small_window_on_a_long_round_trip_caps_the_link() -> None:
    slow_rtt = LinkSpec("x", 1e6, 1e6, 1.6)
    # 16 messages of 0.1 s each per (1.6 + 0.1) s round: the window, not the rate, binds.
    assert message_link_s(12_500, slow_rtt, window=16) == pytest.approx(1.7 / 16)
    assert message_link_s(12_500, slow_rtt, window=64) == pytest.approx(0.1)


def test_identical_batches_take_n_minus_one_bottlenecks_plus_one_fill() -> None:
    e, lk, c, n = 0.02, 0.1, 0.05, 40
    assert pipeline_s([(e, lk, c)] * n) == pytest.approx((n - 1) * lk + e + lk + c)
    assert pipeline_s([(0.3, lk, c)] * n) == pytest.approx((n - 1) * 0.3 + 0.3 + lk + c)


def test_link_bound_split() -> None:
    run = RunShape(train_samples=32 * 50, batch_size=32)
    p = predict(costs(3, edge=0.02, cloud=0.01, wire=12_500), MBIT, run)
    assert p.binds == "link" and p.bound == "link-bound"
    assert p.link_s == pytest.approx(0.1)
    assert p.runtime_s == pytest.approx(49 * 0.1 + 0.02 + 0.1 + 0.01)


def test_compute_bound_splits_name_the_side() -> None:
    run = RunShape(train_samples=320, batch_size=32)
    edge = predict(costs(5, edge=0.3, cloud=0.05, wire=1_250), MBIT, run)
    assert edge.bound == "compute-bound (edge)"
    assert edge.runtime_s == pytest.approx(9 * 0.3 + 0.3 + 0.01 + 0.05)
    cloud = predict(costs(1, edge=0.01, cloud=0.2, wire=1_250), MBIT, run)
    assert cloud.bound == "compute-bound (cloud)"


def test_partial_last_batch_counts_as_a_batch() -> None:
    assert RunShape(train_samples=33, batch_size=32).train_batches == 2
    assert RunShape(train_samples=1, test_samples=129, eval_batch_size=128).eval_batches == 2


def test_eval_pass_epoch_end_warm_up_and_round_trip_add_on() -> None:
    base = RunShape(train_samples=320, batch_size=32)
    plain = predict(costs(2, 0.01, 0.01, 12_500), MBIT, base).runtime_s
    with_eval = RunShape(
        train_samples=320, test_samples=256, eval_batch_size=128, epoch_end_bytes=1_250
    )
    c = costs(2, 0.01, 0.01, 12_500, edge_eval_s=0.02, cloud_eval_s=0.0, eval_wire_bytes=25_000)
    # the link stays the bottleneck: two eval batches of 0.2 s, then the EPOCH_END's 0.01 s,
    # while the last training batch's cloud step (0.01 s) now overlaps them
    assert plain == pytest.approx(1.02)
    assert predict(c, MBIT, with_eval).runtime_s == pytest.approx(1.01 + 0.4 + 0.01)
    warm = costs(2, 0.01, 0.01, 12_500, edge_warmup_s=0.5)
    assert predict(warm, MBIT, base).runtime_s == pytest.approx(plain + 0.5)
    rtt = LinkSpec("rtt", 1e6, 1e6, 0.2)
    # half an RTT before the last batch reaches the host, half for its METRICS to come back
    assert predict(costs(2, 0.01, 0.01, 12_500), rtt, base).runtime_s == pytest.approx(plain + 0.2)


def test_epochs_multiply_and_epoch_time_is_the_mean() -> None:
    one = predict(costs(2, 0.01, 0.01, 12_500), MBIT, RunShape(320, epochs=1))
    three = predict(costs(2, 0.01, 0.01, 12_500), MBIT, RunShape(320, epochs=3))
    assert three.runtime_s == pytest.approx(3 * 10 * 0.1 + 0.02)
    assert three.epoch_s == pytest.approx(three.runtime_s / 3)
    assert one.runtime_s == pytest.approx(1.02)  # the fill is paid once, not per epoch


def test_best_split_trades_bytes_against_edge_compute() -> None:
    run = RunShape(train_samples=3200, batch_size=32)
    candidates = [
        costs(1, edge=0.01, cloud=0.03, wire=50_000),  # big activation: link 0.4 s
        costs(2, edge=0.05, cloud=0.1, wire=12_500),  # link 0.1 s
        costs(3, edge=0.15, cloud=0.01, wire=2_000),  # small activation, slow edge: 0.15 s
    ]
    preds = [predict(c, MBIT, run) for c in candidates]
    choice = best(preds)
    assert choice.split == 2 and choice.bound == "link-bound"
    line = why(choice, preds)
    assert "split 2 is fastest: link-bound" in line and "next best split 3" in line
    assert "\n" not in line
    # Best against best: split learning waits on every gradient; the smallest cut suits it.
    sl = min(preds, key=lambda p: p.split_runtime_s)
    assert sl.split == 3
    assert (
        f"split learning is fastest at split 3, and this run takes {choice.runtime_s / sl.split_runtime_s:.2f}"
        in line
    )
    # A link ten times faster makes the edge the bottleneck: the shallowest cut wins.
    fast = LinkSpec("10mbit", 1e7, 1e7, 0.0)
    assert best([predict(c, fast, run) for c in candidates]).split == 1


def test_ties_go_to_the_shallower_split() -> None:
    run = RunShape(train_samples=320)
    preds = [predict(costs(n, 0.01, 0.01, 12_500), MBIT, run) for n in (4, 2, 3)]
    assert best(preds).split == 2


def test_colocated_edge_and_host_add_their_compute() -> None:
    """A virtual board shares the host's cores: the pace is max(e + c, l), not max(e, l, c)."""
    run = RunShape(train_samples=32 * 20, batch_size=32)
    split = costs(2, edge=0.1, cloud=0.08, wire=6_250)  # link 0.05 s
    apart = predict(split, MBIT, run)
    together = predict(split, MBIT, run, colocated=True)
    assert apart.runtime_s == pytest.approx(19 * 0.1 + 0.1 + 0.05 + 0.08)
    assert together.runtime_s == pytest.approx(19 * 0.18 + 0.18 + 0.05 + 0.08)
    assert together.bound == "compute-bound (edge+cloud)" and together.edge_s == 0.1
    # Link-bound, sharing the cores costs only the pipeline's fill.
    slow_link = costs(2, edge=0.01, cloud=0.01, wire=12_500)
    diff = predict(slow_link, MBIT, run, colocated=True).runtime_s
    diff -= predict(slow_link, MBIT, run).runtime_s
    assert diff == pytest.approx(0.01)
    assert predict(slow_link, MBIT, run, colocated=True).bound == "link-bound"


def test_split_learning_waits_for_every_gradient() -> None:
    """Per batch: edge + up + cloud + down + RTT, nothing overlapped; the gradient at the
    downlink rate, which is why an asymmetric link flatters split learning."""
    run = RunShape(train_samples=32 * 10, batch_size=32)
    asym = LinkSpec("asym", 1e6, 2e6, 0.1)  # down twice the up, RTT 0.1 s
    c = costs(3, edge=0.1, cloud=0.02, wire=12_500)  # 0.1 s up, 0.05 s down
    p = predict(c, asym, run)
    assert p.split_train_s == pytest.approx(10 * (0.1 + 0.1 + 0.02 + 0.05 + 0.1))
    assert p.split_runtime_s == pytest.approx(p.split_train_s + 0.05 + 0.05)  # METRICS back
    # Hierarchical: link-bound pipeline, and its training phase ends when the host trained.
    assert p.train_s == pytest.approx(9 * 0.1 + 0.1 + 0.1 + 0.05 + 0.02)
    assert p.vs_split == pytest.approx(p.runtime_s / p.split_runtime_s)
    # Edge time equal to the uplink's: the best hierarchical can do is 1 / (1 + 1 + down/up).
    assert p.train_vs_split == pytest.approx(1.17 / 3.7)
    symmetric = predict(c, LinkSpec("sym", 1e6, 1e6, 0.1), run)
    assert symmetric.split_train_s == pytest.approx(10 * 0.42)
    assert symmetric.train_vs_split < p.train_vs_split


def test_split_learning_sends_fp32_whatever_the_codec() -> None:
    run = RunShape(train_samples=32 * 10, batch_size=32)
    int8 = costs(3, 0.01, 0.01, wire=3_125, split_batch_wire_bytes=12_500, grad_wire_bytes=12_500)
    p = predict(int8, MBIT, run)
    assert p.split_train_s == pytest.approx(10 * (0.01 + 0.1 + 0.01 + 0.1))
    assert p.link_s == pytest.approx(0.025)  # hierarchical sends the int8 activation
