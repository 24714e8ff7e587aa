"""Calibrating the exit threshold on a validation split the run does not answer.

The held-out split of `--data` (its test split) is cut in two by a fixed random permutation,
the same on every run: the first `count` samples of it are the validation split, the rest are
the samples the run answers. `--target-accuracy` and `--max-offload` need, per validation
sample, the exit's confidence and answer and the full model's answer; the board has only the
front and exit, so it offloads every validation sample to the host once (a calibration pass
over the same link) and builds the early-exit table from the answers. Nothing about the
answered samples enters the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_runtime.data import draws
from edge_runtime.errors import UsageFault
from edge_runtime.infer.policy import ALWAYS_OFFLOAD, ExitPolicy, calibrate, exit_table
from edge_runtime.infer.runner import InferRun

# Stream tag of the validation permutation, apart from the data package's own draws.
VALIDATION = 0xCA1B
# Default validation size: half the held-out split, at most this many samples.
MAX_DEFAULT_VALIDATION = 1000


@dataclass(frozen=True)
class ValidationSplit:
    """Indices into the held-out split: validation (calibration) and answered, disjoint."""

    validation: np.ndarray
    answered: np.ndarray

    def describe(self) -> str:
        """One line for logs and the report."""
        return (
            f"validation: {len(self.validation)} of the {len(self.validation) + len(self.answered)}"
            f" held-out samples (fixed random subset), {len(self.answered)} answered"
        )


def validation_split(n: int, count: int | None = None) -> ValidationSplit:
    """Cut `n` held-out samples into `count` validation and `n - count` answered (sorted).

    Default count: half of `n`, at most MAX_DEFAULT_VALIDATION.
    """
    if count is None:
        count = min(n // 2, MAX_DEFAULT_VALIDATION)
    if not 1 <= count < n:
        raise UsageFault(
            f"--calibration-samples {count}: need 1..{n - 1} (the held-out split has {n} "
            "samples and at least one must be left to answer)"
        )
    order = draws.permutation(n, 0, VALIDATION)
    return ValidationSplit(np.sort(order[:count]), np.sort(order[count:]))


def calibrate_on_validation(
    run: InferRun,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    target_accuracy: float | None,
    max_offload: float | None,
) -> tuple[float, str, dict[str, Any]]:
    """(threshold, why, summary): offload every validation sample through `run` (a run of its
    own: its policy is replaced by always-offload), then read the threshold off the table.

    The summary is for the report: validation size, the chosen row's validation figures, the
    bytes the pass cost. A host that does not answer every validation sample leaves nothing to
    calibrate on: threshold NaN and `incomplete` in the summary says why (the answering run is
    then degraded anyway: every sample is answered at the edge).
    """
    run.policy = ExitPolicy(ALWAYS_OFFLOAD, "calibration pass")
    answers = run.run(x_val)
    cloud = [a for a in answers if a.path == "cloud"]
    summary: dict[str, Any] = {"validation_samples": len(x_val)}
    if run.link is not None:
        summary["bytes_up"] = run.link.stats.get("bytes_up", 0)
        summary["bytes_down"] = run.link.stats.get("bytes_down", 0)
    if len(cloud) != len(answers):
        summary["incomplete"] = run.host_lost or "the host did not answer every sample"
        return float("nan"), "not calibrated", summary
    conf = np.array([a.confidence for a in answers])
    exit_ok = np.array([a.exit_class for a in answers]) == y_val
    final_ok = np.array([a.predicted for a in answers]) == y_val
    table = exit_table(conf, exit_ok, final_ok)
    threshold, why = calibrate(table, target_accuracy=target_accuracy, max_offload=max_offload)
    (row,) = [r for r in table if r["threshold"] == threshold]
    summary.update(
        validation_accuracy=round(row["accuracy"], 4),
        validation_fraction_at_edge=round(row["fraction_at_edge"], 4),
        validation_exit_accuracy=round(float(exit_ok.mean()), 4),
        validation_final_accuracy=round(float(final_ok.mean()), 4),
    )
    return threshold, f"calibrated on validation ({why})", summary
