"""`hostctl key issue` and `hostctl key revoke`: a key per board, and taking one back."""

from __future__ import annotations

import datetime
from pathlib import Path

import click

from edge_runtime.errors import UsageFault
from host.console import console


@click.group("key")
def key_group() -> None:
    """Board keys: one per edge id, derived from the bundle's secret."""


@key_group.command("issue")
@click.option(
    "--bundle",
    "bundle_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="the bundle whose secret the key derives from",
)
@click.option("--edge-id", required=True, help="the board's --edge-id")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="key file to write (default: board-EDGE_ID.key)",
)
def issue_cmd(bundle_dir: Path, edge_id: str, out: Path | None) -> None:
    """Write the key of one board: give it to that board as `edge-runtime run --key-file`."""
    from edge_runtime.bundle import load_bundle
    from edge_runtime.link.handshake import board_key, id_problem

    problem = id_problem("--edge-id", edge_id)
    if problem is not None:
        raise UsageFault(problem)
    bundle = load_bundle(bundle_dir)
    out = out or Path(f"board-{edge_id}.key")
    key = board_key(bundle.key(), edge_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(key.hex() + "\n")
    out.chmod(0o600)
    console.print(
        f"wrote {out}: the key of board {edge_id!r}. On the board: edge-runtime run "
        f"--edge-id {edge_id} --key-file {out.name} (and no copy of the bundle's own key)"
    )


@key_group.command("revoke")
@click.option(
    "--state-dir",
    required=True,
    type=click.Path(path_type=Path),
    help="the state directory of `hostctl serve`",
)
@click.option("--edge-id", required=True, help="the board to refuse from now on")
@click.option("--note", default="", help="why (kept in the list and told to the board)")
def revoke_cmd(state_dir: Path, edge_id: str, note: str) -> None:
    """Refuse a board from now on (a running host reads the list at every handshake)."""
    from host.keys.boards import revoke, revoked_path

    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    try:
        added = revoke(state_dir, edge_id, f"revoked {when}" + (f": {note}" if note else ""))
    except ValueError as exc:
        raise UsageFault(str(exc)) from None
    where = revoked_path(state_dir)
    if added:
        console.print(f"board {edge_id!r} revoked in {where}")
    else:
        console.print(f"board {edge_id!r} was already revoked in {where}")


COMMANDS = [key_group]
