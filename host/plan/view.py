"""The plan as a rich table: one row per split, the best one marked."""

from __future__ import annotations

from rich.table import Table

from host.plan.audits import AuditFigures
from host.plan.planner import Plan


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def _short(text: str, limit: int = 100) -> str:
    """A profile's source on one caption line; the JSON keeps it whole."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def plan_table(plan: Plan, audits: dict[int, AuditFigures] | None = None) -> Table:
    """Per split: ms per batch on each stage, predicted epoch time, what binds, split learning's
    epoch at the same split and the ratio; best marked. With `audits`, a column with the best
    reconstruction attack's PSNR / SSIM (and its margin over the mean image) where measured."""
    req = plan.request
    table = Table(
        title=(
            f"hostctl plan: {req.model}, {req.link.describe()}, {plan.codec or req.codec}"
            f"{' (auto)' if req.codec == 'auto' else ''} activations, "
            f"batch {req.batch_size}, {req.train_samples} train + {req.test_samples} test samples"
        ),
        caption=f"step times: {_short(plan.figures.source)} ({plan.figures.measured_on})",
    )
    table.add_column("split", justify="right")
    table.add_column("edge ms/batch", justify="right")
    table.add_column("cloud ms/batch", justify="right")
    table.add_column("link ms/batch", justify="right")
    table.add_column("epoch (predicted)", justify="right")
    table.add_column("binds")
    table.add_column("split learning", justify="right")
    table.add_column("vs split", justify="right")
    if audits is not None:
        table.add_column("attack dB/SSIM", justify="right")
    table.add_column("best")
    for p in plan.predictions:
        is_best = p is plan.choice
        table.add_row(
            str(p.split),
            f"{p.edge_s * 1e3:.1f}",
            f"{p.cloud_s * 1e3:.1f}",
            f"{p.link_s * 1e3:.1f}",
            _duration(p.epoch_s),
            p.bound,
            "" if p.split_runtime_s is None else _duration(p.split_runtime_s / req.epochs),
            "" if p.vs_split is None else f"{p.vs_split:.2f}",
            *([] if audits is None else [audits[p.split].cell() if p.split in audits else "-"]),
            "<- best" if is_best else "",
            style="bold green" if is_best else None,
        )
    return table
