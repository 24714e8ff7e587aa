"""Board-profile pacing: stretch a step measured here to the time a slower board would take.

A profile says "this many times slower than here". Multiplying a step's *wall* time by it also
multiplies whatever preempted the step: on a shared machine a step that waited 2 s for a core
becomes 32 s of "board" at 16x. A single-threaded engine's step runs on the calling thread, so
that thread's CPU time (``time.thread_time``) is its compute alone, whatever else the machine
runs (measured: ResNet-18 split 4, batch 32, 0.38 s of CPU quiet and 0.38 s with three busy
loops beside it, 0.40 s against 0.77 s of wall). Pacing by it makes a board whose speed does not
depend on the load here. With more than one engine thread the work is spread over threads this
one cannot see, so the wall clock is all there is (and the report says which clock paced).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

CLOCKS = ("wall", "cpu")


@dataclass(frozen=True)
class Elapsed:
    """Time a piece of a step took: wall seconds and the calling thread's CPU seconds."""

    wall_s: float = 0.0
    cpu_s: float = 0.0

    def __add__(self, other: Elapsed) -> Elapsed:
        return Elapsed(self.wall_s + other.wall_s, self.cpu_s + other.cpu_s)


class Stopwatch:
    """Started on creation; ``elapsed()`` is the wall and thread-CPU time since."""

    __slots__ = ("_wall", "_cpu")

    def __init__(self) -> None:
        self._wall = time.perf_counter()
        self._cpu = time.thread_time()

    def elapsed(self) -> Elapsed:
        return Elapsed(time.perf_counter() - self._wall, time.thread_time() - self._cpu)


def pacing_clock(threads: int | None) -> str:
    """The clock a step is paced by: "cpu" for an engine on one thread, else "wall"."""
    return "cpu" if threads == 1 else "wall"


@dataclass(frozen=True)
class Pacer:
    """Makes each step last ``slowdown`` times its compute here, measured on ``clock``."""

    slowdown: float = 1.0
    clock: str = "wall"

    def __post_init__(self) -> None:
        if self.clock not in CLOCKS:
            raise ValueError(f"pacing clock {self.clock!r}: expected one of {', '.join(CLOCKS)}")

    def pace(self, step: Elapsed) -> float:
        """Sleep out the rest of the board's time for ``step``; returns the paced duration.

        The board's time is ``slowdown`` x the step's compute (its CPU time on the "cpu"
        clock). Time the step already spent waiting for a core counts against it, so a
        preempted step is not stretched; one that took longer than the board would still
        counts as what it took.
        """
        if self.slowdown <= 1:
            return step.wall_s
        compute = step.cpu_s if self.clock == "cpu" else step.wall_s
        board = self.slowdown * compute
        if board > step.wall_s:
            time.sleep(board - step.wall_s)
            return board
        return step.wall_s
