"""Privacy audit figures for `hostctl plan --privacy-report`: the best attack per split.

The plan works from a model name, not from bundles, so the audits it shows are the reports
`hostctl privacy audit --report PATH` wrote, given explicitly, one per split. Each is checked
against the plan: same model, and the activation shape the plan computes at that split (a report
from another input shape or class count would otherwise sit in the wrong row unnoticed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.errors import UsageFault


@dataclass(frozen=True)
class AuditFigures:
    """The best attack an audit found at one split (highest PSNR over fronts, codecs, attacks)."""

    split: int
    psnr: float
    ssim: float
    psnr_over_baseline: float
    attack: str
    defence: str
    source: Path

    def cell(self) -> str:
        """The plan table's cell: PSNR (dB) / SSIM, and the defence if any (the lines under the
        table give the attack and the margin over the mean image)."""
        text = f"{self.psnr:.1f} / {self.ssim:.2f}"
        return text if self.defence == "none" else f"{text}, {self.defence}"


def _defence(report: dict) -> str:
    parts = []
    noise = report.get("defence")
    if noise:
        parts.append(f"noise {noise['dp_noise']:g}x{noise['dp_clip']:g}")
    trained = report.get("trained_front") or {}
    if trained.get("adv_lambda") is not None:
        parts.append(f"adv {trained['adv_lambda']:g}")
    return " + ".join(parts) or "none"


def read_audit(path: Path) -> tuple[dict, AuditFigures]:
    """One audit report and its best attack; a usage error if it is not one."""
    path = Path(path)
    try:
        report = json.loads(path.read_text())
        best = max(report["results"], key=lambda row: row["psnr"])
        figures = AuditFigures(
            split=int(report["split"]),
            psnr=float(best["psnr"]),
            ssim=float(best["ssim"]),
            psnr_over_baseline=float(best["psnr_over_baseline"]),
            attack=f"{best['attack']} ({best['stage']}, {best['codec']})",
            defence=_defence(report),
            source=path,
        )
    except OSError as exc:
        raise UsageFault(f"--privacy-report {path}: {exc.strerror or exc}") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageFault(
            f"--privacy-report {path}: not a `hostctl privacy audit --report` file ({exc!r})"
        ) from None
    return report, figures


def load_audits(
    paths: tuple[Path, ...], model: str, shapes: dict[int, tuple[int, ...]]
) -> dict[int, AuditFigures]:
    """The audits by split, checked against the plan's model and activation shapes."""
    audits: dict[int, AuditFigures] = {}
    for path in paths:
        report, figures = read_audit(path)
        split = figures.split
        if report.get("model") != model:
            raise UsageFault(
                f"--privacy-report {path}: audits model {report.get('model')}, the plan is for "
                f"{model}"
            )
        if split not in shapes:
            raise UsageFault(
                f"--privacy-report {path}: split {split}; {model} has splits "
                f"{min(shapes)}..{max(shapes)}"
            )
        audited = tuple(report.get("activation_shape", ()))
        if audited != shapes[split]:
            raise UsageFault(
                f"--privacy-report {path}: activation {'x'.join(map(str, audited))} at split "
                f"{split}, the plan's is {'x'.join(map(str, shapes[split]))} (another "
                f"--input-shape or --num-classes?)"
            )
        if split in audits:
            raise UsageFault(
                f"--privacy-report: two reports for split {split} ({audits[split].source}, "
                f"{path}); give one per split"
            )
        audits[split] = figures
    return audits
