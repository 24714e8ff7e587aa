"""`hostctl report RUN_DIR`: the curves of every run under RUN_DIR, one PNG each.

Reads the event files with TensorBoard's own reader (what `tensorboard --logdir` shows) and
draws, per (edge, run): loss per epoch and accuracy per epoch for the early exit and the final
exit, and the link's rate over time.
"""

from __future__ import annotations

from pathlib import Path

from edge_runtime.errors import UsageFault

EVENT_GLOB = "events.out.tfevents.*"


def event_dirs(run_dir: Path) -> list[Path]:
    """Every directory under ``run_dir`` that holds TensorBoard event files."""
    return sorted({p.parent for p in Path(run_dir).rglob(EVENT_GLOB)})


def read_scalars(log_dir: Path) -> dict[str, list[tuple[float, float]]]:
    """{tag: [(step, value), ...]} of one event directory."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})  # 0: keep every point
    acc.Reload()
    return {
        tag: [(float(e.step), float(e.value)) for e in acc.Scalars(tag)]
        for tag in acc.Tags()["scalars"]
    }


def draw(scalars: dict[str, list[tuple[float, float]]], title: str, out: Path) -> None:
    """Three panels: loss per epoch, accuracy per epoch (percent), link rate over time."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a host or in CI
    import matplotlib.pyplot as plt

    fig, (loss_ax, acc_ax, link_ax) = plt.subplots(1, 3, figsize=(15, 4.2))
    styles = {"exit": ("tab:orange", "early exit (edge)"), "final": ("tab:blue", "final (cloud)")}
    for side, (color, label) in styles.items():
        for split, dash in (("train", "--"), ("test", "-")):
            points = scalars.get(f"{side}/{split}_accuracy", [])
            if points:
                xs, ys = zip(*points, strict=True)
                acc_ax.plot(
                    xs,
                    [100 * y for y in ys],
                    dash,
                    color=color,
                    marker="o",
                    label=f"{label}, {split}",
                )
        points = scalars.get(f"{side}/train_loss", [])
        if points:
            xs, ys = zip(*points, strict=True)
            loss_ax.plot(xs, ys, "-", color=color, marker="o", label=f"{label}, train")
    loss_ax.set(title="loss per epoch", xlabel="epoch", ylabel="cross-entropy")
    acc_ax.set(title="accuracy per epoch", xlabel="epoch", ylabel="accuracy (%)")
    for ax in (loss_ax, acc_ax):
        ax.xaxis.get_major_locator().set_params(integer=True)
        if ax.lines:
            ax.legend(fontsize="small")
        ax.grid(alpha=0.3)
    rate = scalars.get("link/rate_kBps", [])
    if rate:
        xs, ys = zip(*rate, strict=True)
        link_ax.plot([x / 1000 for x in xs], ys, color="tab:green", marker=".")  # ms -> s
    link_ax.set(
        title="link rate (activations up)", xlabel="seconds since the first batch", ylabel="kB/s"
    )
    link_ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def write_report_figures(run_dir: Path, out_dir: Path | None = None) -> list[Path]:
    """One PNG per run under ``run_dir`` (in ``out_dir``, default ``run_dir``); their paths."""
    dirs = event_dirs(run_dir)
    if not dirs:
        raise UsageFault(
            f"{run_dir} holds no TensorBoard event files: give the directory `hostctl serve "
            "--state-dir` or `hostctl demo --work-dir` used"
        )
    written = []
    for log_dir in dirs:
        out = (out_dir or Path(run_dir)) / f"curves-{log_dir.name}.png"
        draw(read_scalars(log_dir), f"training curves: {log_dir.name}", out)
        written.append(out)
    return written
