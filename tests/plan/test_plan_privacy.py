"""`hostctl plan --privacy-report`: the audits' best attack per split, in the plan's table.

The reports are real `hostctl privacy audit` reports (a short audit of smallcnn on the digits);
the plan's step times come from a complete profile file, so the plan measures nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from edge_runtime.report import write_report
from host.cli import cli
from host.plan.board_profile import CLOUD_FIELDS, EDGE_FIELDS, FORMAT
from host.privacy import attacks
from host.privacy.audit import AuditOptions, run_audit

AUDITED = (1, 2)


@pytest.fixture(scope="module")
def audits(exported, digits_path: Path, tmp_path_factory) -> dict[int, Path]:
    """A quick audit report of smallcnn (1x8x8) at splits 1 and 2."""
    out = tmp_path_factory.mktemp("audits")
    torch.set_num_threads(1)
    paths = {}
    for split in AUDITED:
        report = run_audit(
            AuditOptions(
                exported("smallcnn", split, input_shape=(1, 8, 8)),
                f"digits:{digits_path}",
                codecs=("int8",),
                stages=("initial",),
                victims=32,
                decoder=attacks.DecoderTraining(epochs=2, width=8),
                whitebox=None,
            )
        )
        paths[split] = write_report(out / f"audit{split}.json", report)
    return paths


@pytest.fixture(scope="module")
def profile(tmp_path_factory) -> Path:
    """Every step figure for smallcnn's four splits: the plan measures nothing."""
    figures = {f: 0.01 for f in EDGE_FIELDS + CLOUD_FIELDS}
    path = tmp_path_factory.mktemp("profile") / "smallcnn.json"
    path.write_text(
        json.dumps(
            {
                "format": FORMAT,
                "model": "smallcnn",
                "batch_size": 32,
                "splits": [{"split": n, **figures} for n in (1, 2, 3, 4)],
            }
        )
    )
    return path


def plan(profile: Path, *reports: Path, shape: str = "1x8x8"):
    args = ["plan", "--model", "smallcnn", "--input-shape", shape, "--link", "2mbit"]
    args += ["--profile", str(profile)]
    for path in reports:
        args += ["--privacy-report", str(path)]
    return CliRunner().invoke(cli, args, terminal_width=250)


def rows(output: str) -> dict[int, list[str]]:
    found = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > 2 and cells[1].isdigit():
            found[int(cells[1])] = cells
    return found


def test_the_plan_shows_each_audited_splits_best_attack(profile: Path, audits) -> None:
    result = plan(profile, *audits.values())
    assert result.exit_code == 0, result.output
    assert "attack dB/SSIM" in result.output
    table = rows(result.output)
    assert sorted(table) == [1, 2, 3, 4]
    for split in (1, 2, 3, 4):
        cell = table[split][9]  # after split, 3 stages, epoch, binds, split learning, ratio
        if split in AUDITED:
            report = json.loads(audits[split].read_text())
            best = max(report["results"], key=lambda r: r["psnr"])
            assert cell == f"{best['psnr']:.1f} / {best['ssim']:.2f}", cell
            assert f"privacy, split {split}: best attack learned (initial, int8)" in result.output
        else:
            assert cell == "-"


def test_without_reports_the_column_is_absent(profile: Path) -> None:
    result = plan(profile)
    assert result.exit_code == 0, result.output
    assert "attack dB/SSIM" not in result.output and "privacy, split" not in result.output


def test_reports_that_do_not_fit_the_plan_are_usage_errors(
    profile: Path, audits, tmp_path: Path
) -> None:
    # Another input shape: the activation at split 1 differs, so the row would be wrong.
    wrong_shape = plan(profile, audits[1], shape="3x32x32")
    assert wrong_shape.exit_code == 2
    assert "activation 16x4x4 at split 1, the plan's is 16x16x16" in wrong_shape.output
    twice = plan(profile, audits[1], audits[1])
    assert twice.exit_code == 2 and "two reports for split 1" in twice.output
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**json.loads(audits[1].read_text()), "model": "resnet18"}))
    assert "audits model resnet18, the plan is for smallcnn" in plan(profile, other).output
    junk = tmp_path / "junk.json"
    junk.write_text('{"mode": "hierarchical"}')
    result = plan(profile, junk)
    assert result.exit_code == 2 and "not a `hostctl privacy audit --report` file" in result.output
    missing = plan(profile, tmp_path / "absent.json")
    assert missing.exit_code == 2 and "absent.json" in missing.output
