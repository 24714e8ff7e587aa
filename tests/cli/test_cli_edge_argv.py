"""The one builder of `edge-runtime run` command lines (demo, HIL, systemd unit)."""

from __future__ import annotations

import pytest

from edge_runtime.cli import run_argv


def test_run_argv_maps_parameter_names_to_flags_in_order() -> None:
    argv = run_argv(
        ["edge-runtime"],
        bundle_dir="b/edge",
        url="socket://h:1",
        epochs=3,
        fresh=True,
        resume=False,
        report_path=None,
    )
    assert argv == [
        "edge-runtime",
        "run",
        "--bundle",
        "b/edge",
        "--connect",
        "socket://h:1",
        "--epochs",
        "3",
        "--fresh",
    ]


def test_run_argv_refuses_an_option_run_does_not_have() -> None:
    with pytest.raises(ValueError, match="no option for 'epoch'"):
        run_argv(["edge-runtime"], epoch=3)
