"""Click options that several hostctl commands take alike, declared once.

Kept free of heavy imports: every hostctl command imports it at start-up.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from host.linkemu import EMULATION_CHOICES


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
    return click.option(
        "--link",
        default="3g",
        show_default=True,
        help="3g | 4g | wifi | local | <rate>[:<down>][/<rtt>], e.g. 2mbit/50ms | serial:<baud>",
    )(func)
