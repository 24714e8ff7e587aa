"""`hostctl deploy` to a board on a serial line: the edge artifacts to `edge-runtime agent`.

A board reached over serial offers file transfer only (`host/deploy/agent_access.py`): there is
no shell to install wheels with or run sha256sum in, so this deploy sends the edge half of a
bundle to the agent, which checks each file's sha256 as it lands, and asks it to commit: the
agent verifies every file of the release and loads the bundle before `current` moves.

Only the edge artifacts cross a serial line: the edge runtime itself is installed on the board
already (it is what receives them), and wheels of 100 MB would take hours at 115200 baud.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from rich.console import Console

from edge_runtime.bundle import MANIFEST, BundleError, load_bundle, sha256_file
from host.deploy.access import BoardAccessError
from host.deploy.agent_access import CONNECT_TIMEOUT_S, AgentAccess
from host.deploy.board import Board
from host.deploy.errors import BoardError, DeployError
from host.deploy.offline import DEPLOY_MANIFEST
from host.deploy.release import DeployResult, transfer_progress

T = TypeVar("T")


@dataclass(frozen=True)
class EdgeArtifacts:
    """What crosses the line: the edge half of a bundle, each file's sha256, the release id."""

    root: Path  # the directory holding edge/
    files: dict[str, str]  # "edge/<name>" -> sha256
    manifest_sha256: str

    @property
    def release(self) -> str:
        return self.manifest_sha256[:12]

    def size(self, names: list[str]) -> int:
        return sum((self.root / name).stat().st_size for name in names)


def edge_artifacts(bundle_dir: Path) -> tuple[EdgeArtifacts, str | None]:
    """The edge artifacts of a deploy bundle or an export bundle, verified; and a note, if any."""
    note = None
    if (bundle_dir / DEPLOY_MANIFEST).is_file():
        wheels = sorted((bundle_dir / "wheels").glob("*.whl"))
        if wheels:
            note = (
                f"{len(wheels)} wheel(s) of the deploy bundle stay on the host: over serial only "
                "the edge artifacts are sent (the board's edge runtime is installed already)"
            )
    edge = bundle_dir if bundle_dir.name == "edge" else bundle_dir / "edge"
    try:
        bundle = load_bundle(edge)
    except BundleError as exc:
        raise BoardError(f"--bundle {bundle_dir}: {exc}") from None
    if bundle.side != "edge":
        raise BoardError(f"--bundle {bundle_dir}: no edge/ artifacts in it")
    root = edge.parent
    # load_bundle has just hashed what the manifest lists: only the rest is hashed here.
    known = {**bundle.manifest.get("files", {}), f"edge/{MANIFEST}": bundle.manifest_sha256}
    files = {}
    for p in sorted(edge.rglob("*")):
        if p.is_file():
            rel = p.relative_to(root).as_posix()
            files[rel] = known.get(rel) or sha256_file(p)
    return EdgeArtifacts(root, files, bundle.manifest_sha256), note


def deploy_serial(
    board: Board,
    bundle_dir: Path,
    console: Console,
    access: AgentAccess | None = None,
    *,
    connect_timeout: float = CONNECT_TIMEOUT_S,
) -> DeployResult:
    """Deploy the edge artifacts of `bundle_dir` to the agent on `board`'s serial device
    (through `access` if given, else one opened here and closed after)."""
    artifacts, note = edge_artifacts(bundle_dir)
    if note:
        console.print(f"[yellow]note:[/] {note}")
    owned = access is None
    if access is None:
        try:
            access = AgentAccess.from_connection(board.connection, connect_timeout)
        except BoardError as exc:
            raise BoardError(f"board file {board.path}: {exc}") from None
    try:
        return _FilesOnly(access, board, artifacts, console).run()
    finally:
        if owned:
            access.close()


class _FilesOnly:
    """One deploy through file transfer alone: compare, upload, commit (the agent verifies)."""

    def __init__(
        self, access: AgentAccess, board: Board, artifacts: EdgeArtifacts, console: Console
    ) -> None:
        self.access, self.board, self.art, self.console = access, board, artifacts, console
        self.current: str | None = None

    def step(self, name: str, fn: Callable[..., T], *args: object) -> T:
        """`fn(*args)`, its BoardAccessError reported as the failure of step `name`."""
        try:
            return fn(*args)
        except BoardAccessError as exc:
            raise DeployError(name, str(exc), self.current) from exc

    def run(self) -> DeployResult:
        art, board = self.art, self.board
        self.step("connect", lambda: self.access.session)
        inv = self.step("compare", self.access.inventory)
        self.current = inv.current
        self.console.print(
            f"[bold]{board.name}[/] ({self.access.describe()}): current release "
            f"{self.current or 'none'}, deploying {art.release}"
        )
        result = DeployResult(art.release, f"{board.work_dir}/releases/{art.release}", self.current)
        there = inv.files
        if art.release in inv.releases:
            result.present = sorted(art.files)  # the release is on the board: nothing to send
        else:
            for name, sha in art.files.items():
                (result.reused if there.get(name) == sha else result.sent).append(name)
        for name in result.up_to_date:
            self.console.print(f"up to date  {name}")
        if self.current == art.release and not result.sent:
            return result
        self.step("upload", self.upload, result.sent)
        done = self.step(
            "switch",
            self.access.commit,
            art.release,
            art.manifest_sha256,
            art.files,
            art.size(list(art.files)),
        )
        if not done.ok:
            raise DeployError(
                done.step or "switch", f"the board refused: {done.error}", self.current
            )
        result.switched = done.switched
        self.console.print(
            f"verify: {len(art.files)} files match their sha256 on the board"
            + (f"; switch: current -> releases/{art.release}" if result.switched else "")
        )
        return result

    def upload(self, names: list[str]) -> None:
        """Send every file of `names`, then wait for the verdicts still on their way: a file's
        verdict is not awaited before the next file starts, so the line stays busy."""
        if not names:
            return
        total = self.art.size(names)
        with transfer_progress(self.console) as progress:
            task = progress.add_task("upload", total=total)
            for name in names:
                progress.update(task, description=f"send {name}")
                self.access.send_file(
                    self.art.root / name,
                    name,
                    sha256=self.art.files[name],
                    advance=lambda n: progress.advance(task, n),
                )
        self.access.wait_verdicts(names, total)
        for name in names:
            self.console.print(f"sent        {name}")
