"""The plan and codecs: coding time on the edge, coded bytes on the link, `--codec auto`."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edge_runtime.link.codecs import BY_NAME, CODECS
from host.linkemu import parse_link
from host.plan import planner
from host.plan.board_profile import STEP_FIELDS, BoardProfile, codec_key, save_profile
from host.plan.planner import PlanRequest, make_plan
from host.plan.runtime_model import best

# Figures of the shape measured on smallcnn's activations here: coded ratios well under the
# plain codecs', coding a few times the plain codecs' time (bench_codecs.py).
RATIO = {"fp32": 1.0, "fp16": 0.5, "int8": 0.25, "fp32+z": 0.6, "fp16+z": 0.3, "int8+z": 0.18}
ENCODE = {"fp32": 4e-5, "fp16": 3e-4, "int8": 2e-4, "fp32+z": 1e-3, "fp16+z": 9e-4, "int8+z": 6e-4}


def figures(edge_step_s: float, codecs: bool = True) -> dict[str, float]:
    f = {k: 0.002 for k in STEP_FIELDS} | {"edge_step_s": edge_step_s}
    if codecs:
        for c in CODECS:
            f |= {
                codec_key(c, "ratio"): RATIO[c],
                codec_key(c, "encode_s"): ENCODE[c],
                codec_key(c, "decode_s"): ENCODE[c] / 2,
            }
    return f


def board(edge_step_s: float) -> BoardProfile:
    return BoardProfile(
        model="smallcnn", splits={n: figures(edge_step_s) for n in (1, 2, 3, 4)}, source="test"
    )


def plan(link: str, edge_step_s: float, **kw) -> planner.Plan:
    req = PlanRequest("smallcnn", parse_link(link), train_samples=3200, test_samples=640, **kw)
    return make_plan(req, board(edge_step_s))


@pytest.fixture(autouse=True)
def no_measuring(monkeypatch) -> None:
    """Every figure is in the profile: profiling must not run (a real one would take a minute)."""

    def refuse(setup, splits, progress=lambda _m: None):
        assert not list(splits), "the plan measured although the profile is complete"
        return []

    monkeypatch.setattr(planner, "profile_splits", refuse)


def test_link_bound_picks_a_coded_codec() -> None:
    lossless = plan("3g", 0.01, codec="auto", lossless_only=True)
    assert lossless.codec == "fp32+z"
    assert set(lossless.by_codec) == {"fp32", "fp32+z"}
    assert lossless.choice.binds == "link"
    assert "codec fp32+z (auto, lossless codecs only)" in lossless.reason
    assert "the link binds" in lossless.reason
    lossy = plan("3g", 0.01, codec="auto")
    assert lossy.codec == "int8+z" and set(lossy.by_codec) == set(CODECS)


def test_edge_bound_picks_an_uncoded_codec() -> None:
    """A slow edge on a fast link: coding only adds to the stage that binds."""
    for lossless_only in (True, False):
        p = plan("wifi", 2.0, codec="auto", lossless_only=lossless_only)
        assert not BY_NAME[p.codec].coded, p.reason
        assert p.choice.binds == "edge"
        assert "coding to fewer bytes would only slow the edge" in p.reason
        coded = min(best(p.by_codec[c]).runtime_s for c in p.by_codec if BY_NAME[c].coded)
        assert p.choice.runtime_s < coded
    assert plan("wifi", 2.0, codec="auto", lossless_only=True).codec == "fp32"


def test_coding_time_is_the_edges_and_bytes_shrink_by_the_measured_ratio() -> None:
    plain = plan("3g", 0.01, codec="fp32")
    coded = plan("3g", 0.01, codec="fp32+z")
    for a, b in zip(plain.predictions, coded.predictions, strict=True):
        assert b.edge_s == pytest.approx(a.edge_s - ENCODE["fp32"] + ENCODE["fp32+z"])
        assert b.cloud_s == pytest.approx(a.cloud_s + (ENCODE["fp32+z"] - ENCODE["fp32"]) / 2)
        assert b.link_s == pytest.approx(0.6 * a.link_s, rel=0.02)  # labels and headers aside
        assert b.split_runtime_s == pytest.approx(a.split_runtime_s)  # split learning: fp32


def test_a_profile_without_coded_ratios_is_measured_for_auto(monkeypatch) -> None:
    calls: list = []

    def fake(setup, splits, progress=lambda _m: None):
        calls.append(list(splits))
        return []

    monkeypatch.setattr(planner, "profile_splits", fake)
    old = BoardProfile(model="smallcnn", splits={2: figures(0.01, codecs=False)})
    req = PlanRequest("smallcnn", parse_link("3g"), codec="int8")
    assert make_plan(req, old).codec == "int8" and calls == [[]]  # plain codec: shape only
    with pytest.raises(planner.ProfileError, match="no measured ratio for fp32\\+z"):
        make_plan(PlanRequest("smallcnn", parse_link("3g"), codec="fp32+z"), old)
    assert calls[-1] == [2]  # it tried to measure what the profile lacked


def test_cli_codec_auto_says_why(tmp_path) -> None:
    path = tmp_path / "board.json"
    save_profile(board(0.01), path)
    assert "codec:fp32+z:ratio" in json.loads(path.read_text())["splits"][0]
    out = subprocess.run(
        [sys.executable, "-m", "host.cli", "plan", "--model", "smallcnn", "--link", "3g",
         "--codec", "auto", "--lossless-only", "--profile", str(path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "fp32+z (auto) activations" in out.stdout
    assert "codec fp32+z (auto, lossless codecs only)" in out.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "host.cli", "plan", "--model", "smallcnn", "--codec", "int8",
         "--lossless-only", "--profile", str(path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2
    assert "--lossless-only goes with --codec auto" in bad.stderr
    assert "Traceback" not in bad.stderr
