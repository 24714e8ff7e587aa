"""Board profiles: save/load round trip, refusals, and how a partial profile is completed."""

from __future__ import annotations

import json

import pytest

from host.linkemu import parse_link
from host.plan import planner
from host.plan.board_profile import (
    FORMAT,
    STEP_FIELDS,
    BoardProfile,
    ProfileError,
    load_profile,
    save_profile,
)
from host.plan.planner import PlanRequest, make_plan
from host.plan.profiling import StepTimes


def full(split: int, scale: float = 1.0) -> dict[str, float]:
    return {
        k: round(scale * (0.01 + 0.001 * i + 0.0001 * split), 6) for i, k in enumerate(STEP_FIELDS)
    }


def test_save_load_round_trip(tmp_path) -> None:
    profile = BoardProfile(
        model="smallcnn",
        batch_size=32,
        eval_batch_size=128,
        engine="ort",
        slowdown=2.5,
        source="a test",
        measured_on="here",
        splits={1: full(1), 3: full(3)},
    )
    path = tmp_path / "p.json"
    save_profile(profile, path)
    data = json.loads(path.read_text())
    assert data["format"] == FORMAT and [s["split"] for s in data["splits"]] == [1, 3]
    assert load_profile(path) == profile
    assert load_profile(path).complete(3) and not load_profile(path).complete(2)


def test_a_slowdown_only_file_loads(tmp_path) -> None:
    path = tmp_path / "rpi4.json"
    path.write_text(json.dumps({"name": "Pi 4", "slowdown": 16, "source": "estimate"}))
    profile = load_profile(path)
    assert profile.slowdown == 16 and profile.splits == {} and profile.source == "estimate"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{", "not JSON"),
        ("[]", "expected a JSON object"),
        ('{"format": "other/2"}', "format 'other/2'"),
        ('{"slowdown": 0.5}', "below 1"),
        ('{"splits": [{"edge_step_s": 1}]}', "integer 'split'"),
        ('{"splits": [{"split": 2, "edge_step_s": -1}]}', "must not be negative"),
        ('{"splits": [{"split": 2, "edge_step_s": "fast"}]}', "must be a number"),
    ],
)
def test_bad_files_are_refused_with_what_to_fix(tmp_path, text: str, says: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(ProfileError, match=says):
        load_profile(path)
    with pytest.raises(ProfileError, match="cannot read"):
        load_profile(tmp_path / "missing.json")


def test_a_profile_for_another_model_or_batch_size_is_refused() -> None:
    profile = BoardProfile(model="resnet18", batch_size=64)
    with pytest.raises(ProfileError, match="model resnet18"):
        profile.check_fits("smallcnn", 64, 128)
    with pytest.raises(ProfileError, match="--batch-size 64"):
        profile.check_fits("resnet18", 32, 128)


def _fake_measurement(monkeypatch, calls: list) -> None:
    """Stand in for the measurement: this machine's edge step is 10 ms, cloud 2 ms, per split."""

    def fake(setup, splits, progress=lambda _m: None):
        calls.append(list(splits))
        return [
            StepTimes(n, (1,), 0.010, 0.020, 0.002, 0.004, edge_warmup_s=0.1, cloud_warmup_s=0.2)
            for n in splits
        ]

    monkeypatch.setattr(planner, "profile_splits", fake)


def test_a_complete_profile_measures_nothing(monkeypatch) -> None:
    calls: list = []
    _fake_measurement(monkeypatch, calls)
    profile = BoardProfile(model="smallcnn", splits={n: full(n) for n in (1, 2, 3, 4)})
    plan = make_plan(PlanRequest("smallcnn", parse_link("3g")), profile)
    assert calls == [[]]
    assert [p.split for p in plan.predictions] == [1, 2, 3, 4]
    assert plan.figures.splits == profile.splits


def test_slowdown_scales_this_machines_edge_times_only(monkeypatch) -> None:
    _fake_measurement(monkeypatch, [])
    plan = make_plan(
        PlanRequest("smallcnn", parse_link("3g"), splits=(2,)), BoardProfile(slowdown=16)
    )
    f = plan.figures.splits[2]
    assert f["edge_step_s"] == pytest.approx(0.16) and f["edge_eval_s"] == pytest.approx(0.32)
    assert f["cloud_step_s"] == pytest.approx(0.002)  # the host is this machine
    assert plan.figures.slowdown == 1.0  # already applied: saving and reloading is stable


def test_a_boards_edge_step_scales_the_edge_figures_it_left_out(monkeypatch) -> None:
    calls: list = []
    _fake_measurement(monkeypatch, calls)
    board = BoardProfile(splits={3: {"edge_step_s": 0.05}})  # 5x this machine
    plan = make_plan(PlanRequest("smallcnn", parse_link("3g")), board)
    assert calls == [[3]]  # only the profile's split, and only because it is incomplete
    f = plan.figures.splits[3]
    assert f["edge_step_s"] == 0.05
    assert f["edge_eval_s"] == pytest.approx(0.1) and f["edge_warmup_s"] == pytest.approx(0.5)
    assert f["cloud_eval_s"] == pytest.approx(0.004)
