"""`hostctl inspect`: what is in a bundle, and the per-split table a user picks a split from."""

from __future__ import annotations

from rich.table import Table

from edge_runtime.bundle import Bundle
from edge_runtime.train.schedule import ScheduleError, schedule_of


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def human_count(n: float) -> str:
    """12_345_678 -> '12.3M'."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def _schedule_line(m: dict) -> str:
    """The learning-rate schedule both halves follow, as its spec, and its first and last
    scheduled rates (a bundle from before schedules: constant)."""
    config = m["edge"]["optimizer"]
    try:
        schedule = schedule_of(config)
    except ScheduleError as exc:
        return f"unreadable ({exc})"
    if schedule.kind == "constant" and not schedule.warmup:
        return "constant" + ("" if "schedule" in config else " (no schedule in the manifest)")
    last = schedule.epochs - 1 if schedule.kind == "cosine" else None
    tail = f", epoch {last}: lr {schedule.lr(config['lr'], last):.3g}" if last is not None else ""
    return f"{schedule.spec()} (epoch 0: lr {schedule.lr(config['lr'], 0):.3g}{tail})"


def split_table_view(model_name: str, rows: list[dict], chosen: int | None = None) -> Table:
    """Render models.split_table rows: edge params, FLOPs, activation against raw bytes."""
    table = Table(title=f"{model_name}: split points (per sample; edge includes the exit head)")
    for col in (
        "split",
        "last edge block",
        "edge params",
        "edge FLOPs",
        "tail FLOPs",
        "activation",
        "act bytes",
        "raw bytes",
        "act/raw",
    ):
        table.add_column(col, justify="left" if col == "last edge block" else "right")
    for r in rows:
        style = "bold green" if r["split"] == chosen else None
        table.add_row(
            str(r["split"]),
            r["block"],
            human_count(r["edge_params"]),
            human_count(r["edge_flops"]),
            human_count(r["tail_flops"]),
            "x".join(str(d) for d in r["activation_shape"]),
            human_bytes(r["activation_bytes"]),
            human_bytes(r["raw_bytes"]),
            f"{r['activation_ratio']:.2f}",
            style=style,
        )
    return table


def bundle_view(bundle: Bundle) -> Table:
    """A readable summary of a verified bundle."""
    m = bundle.manifest
    table = Table(title=f"bundle {bundle.root}", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    act = m["activation"]
    rows = [
        ("model", f"{m['model']} ({len(m['blocks'])} blocks), {m['num_classes']} classes"),
        *([("classes", ", ".join(m["classes"]))] if m.get("classes") else []),
        (
            "input",
            "x".join(map(str, m["input_shape"]))
            + f" ({human_bytes(m['raw_bytes_per_sample'])} raw/sample)",
        ),
        ("split", f"{m['split']}: edge {', '.join(m['edge_blocks'])}"),
        ("tail", ", ".join(m["tail_blocks"])),
        (
            "activation",
            "x".join(map(str, act["shape"]))
            + f" {act['dtype']} ({human_bytes(m['activation_bytes_per_sample'])}/sample)",
        ),
        (
            "edge",
            f"{human_count(m['edge']['params'])} params, {human_count(m['edge']['flops_per_sample'])} FLOPs/sample, optimizer {m['edge']['optimizer']['type']} lr {m['edge']['optimizer']['lr']}",
        ),
        ("lr schedule", _schedule_line(m)),
        (
            "cloud",
            f"{human_count(m['cloud']['params'])} params, {human_count(m['cloud']['flops_per_sample'])} FLOPs/sample",
        ),
        ("engines", ", ".join(m.get("engines", ["ort", "torch"]))),
        *(
            [("model code", ", ".join(m["code"]["files"]) or "-")]
            if m.get("code", {}).get("files")
            else []
        ),
        *(
            [("requires", ", ".join(m["code"]["requires"]))]
            if m.get("code", {}).get("requires")
            else []
        ),
        *(
            [("privacy", ", ".join(f"{k} {v:g}" for k, v in m["privacy"].items()))]
            if m.get("privacy")
            else []
        ),
        ("files", f"{len(m['files'])} files, sha256 verified"),
        ("manifest sha256", bundle.manifest_sha256),
        ("made with", ", ".join(f"{k} {v}" for k, v in m["versions"].items())),
    ]
    for k, v in rows:
        table.add_row(k, v)
    return table
