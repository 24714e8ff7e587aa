"""Board pacing (edge_runtime/train/pacing.py): a step lasts `slowdown` x its compute here.

On the "cpu" clock (a single-threaded engine) the compute is the step's thread CPU time, so time
the step spent without a core (here: a sleep standing in for preemption by other work) is not
multiplied; on the "wall" clock it is, which is what made loaded benchmark runs unusable.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest
from test_modes_inprocess import run_in_process

from edge_runtime.train.pacing import Elapsed, Pacer, Stopwatch, pacing_clock


def _burn(cpu_s: float) -> None:
    """Spend ``cpu_s`` of this thread's CPU time."""
    end = time.thread_time() + cpu_s
    while time.thread_time() < end:
        pass


def _step(cpu_s: float, off_core_s: float) -> Elapsed:
    """A step of ``cpu_s`` compute that also waited ``off_core_s`` without a core."""
    watch = Stopwatch()
    _burn(cpu_s)
    time.sleep(off_core_s)
    return watch.elapsed()


def test_the_cpu_clock_does_not_stretch_time_without_a_core() -> None:
    step = _step(0.02, 0.3)
    assert step.cpu_s < step.wall_s / 4  # the sleep took wall time, not CPU time
    assert Pacer(4, "cpu").pace(step) == step.wall_s  # already past 4x its compute: no sleep
    watch = Stopwatch()
    assert Pacer(4, "wall").pace(step) == pytest.approx(4 * step.wall_s)
    assert watch.elapsed().wall_s >= 3 * step.wall_s  # the wall clock slept the rest out


def test_the_cpu_clock_paces_compute_to_the_board() -> None:
    step = _step(0.05, 0.0)
    watch = Stopwatch()
    paced = Pacer(3, "cpu").pace(step)
    assert paced == max(3 * step.cpu_s, step.wall_s)
    assert step.wall_s + watch.elapsed().wall_s >= paced - 1e-3  # it slept until the board's time


def test_no_slowdown_is_the_step_as_measured() -> None:
    step = Elapsed(0.5, 0.1)
    assert Pacer(1, "cpu").pace(step) == Pacer(1, "wall").pace(step) == 0.5
    assert Elapsed(1, 2) + Elapsed(3, 4) == Elapsed(4, 6)


def test_the_clock_follows_the_engine_threads() -> None:
    assert pacing_clock(1) == "cpu"
    assert pacing_clock(None) == pacing_clock(2) == "wall"  # other threads' work is unseen
    with pytest.raises(ValueError, match="pacing clock 'gpu'"):
        Pacer(2, "gpu")


@pytest.mark.parametrize("mode", ["hierarchical", "split"])
def test_a_paced_run_says_its_clock_and_paces_every_step(
    exported, mode: str, tmp_path: Path
) -> None:
    bundle_dir = exported("smallcnn", 2, baselines=True)
    edge, host, n_batches = run_in_process(
        bundle_dir, mode, tmp_path, slowdown=3.0, pacing_clock="cpu"
    )
    (one,) = host["edges"]
    assert one["unique_batches_trained"] == n_batches
    assert edge["pacing_clock"] == "cpu" and edge["slowdown"] == 3.0
    with open(tmp_path / "edge" / "edge_metrics.csv") as f:
        steps = [float(r["step_s"]) for r in csv.DictReader(f) if r["phase"] == "train"]
    assert len(steps) == n_batches and all(s > 0 for s in steps)
    assert edge["edge_busy_s"] >= sum(steps)
