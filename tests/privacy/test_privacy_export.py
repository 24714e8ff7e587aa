"""`hostctl export --dp-clip/--dp-noise/--adv-lambda`: the defence a bundle asks its edge to
apply. Bad values are usage errors naming the valid range (the edge's own checks); good ones
land in the manifest's `privacy` entry, which loading the bundle checks again."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge_runtime.bundle import BundleError, load_bundle
from edge_runtime.privacy import PrivacyOptionError, defence_entry, exported_defence
from host.cli import cli


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--dp-clip", "0"], "--dp-clip: clip norm must be a finite number > 0"),
        (["--dp-clip", "-3"], "--dp-clip: clip norm must be a finite number > 0"),
        (["--dp-clip", "nan"], "--dp-clip: clip norm must be a finite number > 0"),
        (
            ["--dp-clip", "1", "--dp-noise", "-0.5"],
            "--dp-noise: noise multiplier must be a finite number >= 0",
        ),
        (["--dp-noise", "1"], "--dp-noise needs --dp-clip"),
        (
            ["--adv-lambda", "-1"],
            "--adv-lambda: adversarial exit weight lambda must be a finite number >= 0",
        ),
        (
            ["--adv-lambda", "inf"],
            "--adv-lambda: adversarial exit weight lambda must be a finite number >= 0",
        ),
    ],
)
def test_export_rejects_bad_privacy_options(argv: list[str], says: str, tmp_path: Path) -> None:
    out = tmp_path / "b"
    args = ["export", "--model", "smallcnn", "--split", "1", "--out", str(out), *argv]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert not out.exists()  # refused before anything was written


def test_defence_entry_keeps_what_was_given() -> None:
    assert defence_entry(None, None, None) is None
    assert defence_entry(8, None, None) == {"dp_clip": 8.0}
    assert defence_entry(8, 0.5, 2) == {"dp_clip": 8.0, "dp_noise": 0.5, "adv_lambda": 2.0}
    assert exported_defence({"adv_lambda": 0}) == {"adv_lambda": 0.0}
    for bad in ({"dp_clip": 0}, {"dp_noise": 1}, {"sigma": 1}, {"dp_clip": "8"}, [8]):
        with pytest.raises(PrivacyOptionError):
            exported_defence(bad)


@pytest.mark.slow
def test_the_defence_lands_in_the_manifest_and_is_checked_at_load(tmp_path: Path) -> None:
    out = tmp_path / "b"
    args = ["export", "--model", "smallcnn", "--split", "1", "--input-shape", "1x8x8"]
    args += ["--out", str(out), "--dp-clip", "8", "--dp-noise", "0.5", "--adv-lambda", "2"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "adv_lambda 2, dp_clip 8, dp_noise 0.5" in result.output  # the bundle's summary
    bundle = load_bundle(out / "edge")
    assert bundle.manifest["privacy"] == {"dp_clip": 8.0, "dp_noise": 0.5, "adv_lambda": 2.0}
    # A manifest edited to an out-of-range defence is refused at load, naming the field.
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    manifest = json.loads((broken / "edge" / "manifest.json").read_text())
    manifest["privacy"]["dp_clip"] = 0
    (broken / "edge" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="field 'privacy': --dp-clip: clip norm must be"):
        load_bundle(broken / "edge")
