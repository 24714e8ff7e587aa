"""Click options that several hostctl commands take alike, declared once, and their checks.

Kept free of heavy imports: every hostctl command imports it at start-up, and `hostctl --help`
must not import torch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from edge_runtime.errors import UsageFault
from edge_runtime.link.codecs import CODECS
from host.linkemu import EMULATION_CHOICES

MODEL_HELP = (
    "zoo name (resnet18, vgg16, smallcnn), path/to/file.py:factory or package.module:factory"
)


class InputShape(click.ParamType):
    """'3x32x32' or '3,32,32' -> (3, 32, 32)."""

    name = "CxHxW"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """A (C, H, W) tuple of positive integers; a usage error naming the form otherwise."""
        if isinstance(value, tuple):
            return value
        try:
            dims = tuple(int(p) for p in str(value).replace(",", "x").lower().split("x"))
        except ValueError:
            dims = ()
        if len(dims) != 3 or min(dims) < 1:
            self.fail(
                f"{value!r}: expected C x H x W with positive integers, e.g. 3x32x32", param, ctx
            )
        if dims[2] in (1, 3, 4) and dims[0] > 4:
            # Channels last (H x W x C, as numpy and PIL hold images): models take channels first.
            self.fail(
                f"{value!r} looks like H x W x C; give channels first (C x H x W): "
                f"{dims[2]}x{dims[0]}x{dims[1]}",
                param,
                ctx,
            )
        return dims


def board_option(func: Callable) -> Callable:
    """``--board FILE``: the board file of bundle, deploy and hil."""
    return click.option(
        "--board",
        "board_file",
        required=True,
        type=click.Path(path_type=Path, dir_okay=False),
        help="board file (TOML): hw_tests/boards/virtual.toml, qemu-aarch64.toml, or your own",
    )(func)


def model_option(**kwargs: Any) -> Callable:
    """``--model``: a zoo name or a user model; each command gives its default or required."""
    return click.option("--model", help=MODEL_HELP, **{"show_default": True, **kwargs})


def input_shape_option(func: Callable) -> Callable:
    """``--input-shape C x H x W``, parsed to a tuple of three ints."""
    return click.option(
        "--input-shape", type=InputShape(), default="3x32x32", show_default=True, help="C x H x W"
    )(func)


def num_classes_option(func: Callable) -> Callable:
    """``--num-classes``: the classifier's classes."""
    return click.option("--num-classes", type=click.IntRange(min=2), default=10, show_default=True)(
        func
    )


LR_SCHEDULE_FORMS = (
    "constant | cosine:epochs=E[,floor=F] | step:every=N[,gamma=G], each [,warmup=W] "
    "(docs/architecture.md, 'Learning-rate schedule')"
)


def lr_schedule_option(help: str) -> Callable:
    """``--lr-schedule``: the learning rate per epoch of the bundle a command exports, checked
    when the command line is read (a usage error naming what is wrong; torch not yet loaded)."""
    return click.option(
        "--lr-schedule",
        default="constant",
        show_default=True,
        callback=_check_lr_schedule,
        help=f"{help}: {LR_SCHEDULE_FORMS}",
    )


def _check_lr_schedule(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    from edge_runtime.train.schedule import LrSchedule, ScheduleError

    try:
        LrSchedule.parse(value)
    except ScheduleError as exc:
        raise UsageFault(f"--lr-schedule: {exc}") from None
    return value


def codec_option(default: str, auto: bool = False) -> Callable:
    """``--codec``: one activation encoding on the link (``auto``: also let the command pick)."""
    return click.option(
        "--codec",
        type=click.Choice([*CODECS, "auto"] if auto else CODECS),
        default=default,
        show_default=True,
        help="activation encoding on the link"
        + ("; auto: pick codec and split together" if auto else ""),
    )


def engine_option(func: Callable) -> Callable:
    """``--engine`` of the commands that run an edge here (demo, bench)."""
    return click.option(
        "--engine",
        type=click.Choice(["auto", "ort", "torch"]),
        default="auto",
        show_default=True,
        help="the edge's engine (torch: what an aarch64 board runs)",
    )(func)


LINK_HELP = (
    "3g | 3g-sym | 4g | wifi | local | <rate>[:<down>][/<rtt>], e.g. 2mbit/50ms | serial:<baud>"
)


def link_option(func: Callable) -> Callable:
    """``--link``: a preset, a rate with an optional round trip, or a serial line."""
    return click.option("--link", default="3g", show_default=True, help=LINK_HELP)(func)


def link_options(func: Callable) -> Callable:
    """``--link`` and ``--link-emulation``, as `hostctl demo` and `hostctl bench` take them."""
    func = click.option(
        "--link-emulation",
        type=click.Choice(EMULATION_CHOICES),
        default="auto",
        show_default=True,
        help="kernel: tc tbf between network namespaces (root); user: a user-space token "
        "bucket; auto: kernel where it works here, else user",
    )(func)
    return link_option(func)


def check_link(link: str, emulation: str, mode: str = "hierarchical") -> None:
    """--link and --link-emulation of demo and bench: a usage error if either cannot run."""
    from edge_runtime.modes import mode_spec
    from host.linkemu import parse_link
    from host.session.links import choose_emulation

    spec = parse_link(link)  # LinkSpecError, a usage error, names the accepted forms
    if mode_spec(mode).needs_link:
        choose_emulation(spec, emulation)  # EmulationUnavailable says why, and what instead


def parse_csv(option: str, text: str, choices: tuple[str, ...]) -> tuple[str, ...]:
    """'a,b' -> ('a', 'b'), each one of choices: a usage error naming them otherwise."""
    chosen = tuple(part.strip() for part in text.split(",") if part.strip())
    if not chosen or any(c not in choices for c in chosen):
        raise UsageFault(f"{option} {text!r}: choose from {', '.join(choices)} (comma-separated)")
    return chosen
