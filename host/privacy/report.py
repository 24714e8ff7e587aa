"""The audit's outputs for people: a PNG grid of originals next to reconstructions, a table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rich.table import Table


def write_grid(path: Path, rows: dict[str, np.ndarray]) -> Path:
    """One labelled row per entry of `rows` ((N, C, H, W) in [0, 1]; one image is repeated)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max(len(images) for images in rows.values())
    fig, axes = plt.subplots(
        len(rows), columns, figsize=(1.1 * columns + 1.6, 1.1 * len(rows)), squeeze=False
    )
    for r, (label, images) in enumerate(rows.items()):
        for c in range(columns):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            image = images[c if len(images) > 1 else 0]
            picture = image[0] if image.shape[0] == 1 else np.transpose(image, (1, 2, 0))
            ax.imshow(np.clip(picture, 0, 1), cmap="gray", vmin=0, vmax=1)
        axes[r][0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def audit_table(report: dict[str, Any]) -> Table:
    """Every attack's PSNR and SSIM, with the margin over the mean-image baseline."""
    base = report["baseline"]
    table = Table(
        title=(
            f"{report['model']} split {report['split']}: reconstruction of "
            f"{report['attacked_samples']} victim samples (mean-image baseline "
            f"{base['psnr']:.2f} dB, SSIM {base['ssim']:.3f})"
        )
    )
    for name in ("front", "codec", "attack", "PSNR dB", "over baseline", "SSIM"):
        table.add_column(name, justify="left" if name in ("front", "codec", "attack") else "right")
    for row in report["results"]:
        table.add_row(
            row["stage"],
            row["codec"],
            row["attack"],
            f"{row['psnr']:.2f}",
            f"{row['psnr_over_baseline']:+.2f}",
            f"{row['ssim']:.3f}",
        )
    return table
