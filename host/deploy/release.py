"""`hostctl deploy`: put a deploy bundle on a board as a release and make it current.

On the board, under the board file's work_dir:

    releases/<id>/           one per deploy bundle; <id> = sha256 of its manifest, 12 digits
        deploy-manifest.json, edge/, wheels/, venv/, .installed
    current -> releases/<id> the release the edge runs; switched atomically (rename)

Steps, each named in a failure: connect, compare, upload, verify, install, check, switch,
systemd. Files the board already has (in this release, or unchanged in the current one) are
not sent again. Nothing touches `current` before the switch, so a deploy that fails at any
earlier step leaves the previous release running.
"""

from __future__ import annotations

import json
import shlex
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from edge_runtime.bundle import mismatched_files
from host.deploy.access import BoardAccess, BoardAccessError, open_shell
from host.deploy.board import Board
from host.deploy.errors import BoardError, DeployError
from host.deploy.offline import DEPLOY_MANIFEST, DeployBundle, load_deploy_bundle
from host.deploy.unit import edge_command, render_unit

INSTALLED_MARK = ".installed"
# Where the venv made with --skip-deps finds the packages of the board's own Python.
BOARD_SITE_PTH = "hiertrain-board-site.pth"
# What proves an engine works on the board: its framework imports (the engine modules import
# it lazily, so importing them alone proves little).
ENGINE_IMPORTS = {
    "ort": "from edge_runtime.engines.ort_import import training_api; training_api()",
    "torch": "import torch; torch.zeros(1).sum()",
}


@dataclass
class DeployResult:
    """What a deploy did."""

    release: str
    release_dir: str
    previous: str | None  # the release that was current before
    sent: list[str] = field(default_factory=list)  # uploaded from the host
    reused: list[str] = field(default_factory=list)  # linked from the current release
    present: list[str] = field(default_factory=list)  # already in this release
    installed: bool = False  # False: the release's venv was already installed
    switched: bool = False  # False: the release was already current
    unit_path: str | None = None

    @property
    def up_to_date(self) -> list[str]:
        """Files that did not cross the link."""
        return sorted(self.reused + self.present)


def deploy(
    board: Board,
    deploy_dir: Path,
    *,
    systemd: bool = False,
    access: BoardAccess | None = None,
    console: Console | None = None,
) -> DeployResult:
    """Deploy the bundle in `deploy_dir` to `board`; DeployError names the step that failed."""
    bundle = load_deploy_bundle(deploy_dir)
    _check_platform(board, bundle)
    console = console or Console(stderr=True, quiet=True)
    if systemd:
        edge_command(board, board.work_dir, bundle.manifest["engine"])  # fail before any step
    owned = access is None
    run = _Deploy(board, bundle, console)
    run.access = access or open_shell(board, "a deploy with dependency wheels")
    try:
        with run.step("connect"):
            run.connect()
        return run.all(systemd)
    finally:
        if owned and run.access is not None:
            run.access.close()


def parse_sha256sum(text: str) -> dict[str, str]:
    """{path: hex sha256} from `sha256sum` output; lines that are not a digest are skipped
    (a file missing on the board has none)."""
    hashes = {}
    for line in text.splitlines():
        sha, sep, path = line.partition("  ")
        if sep and len(sha) == 64:
            hashes[path] = sha
    return hashes


def board_work_dir(board: Board, access: BoardAccess) -> str:
    """The board file's work_dir, created and resolved on the board; BoardError when the
    board's architecture is not the board file's."""
    work = board.work_dir
    # "~/x": the deploying user's home on the board, resolved there.
    quoted = '"$HOME"/' + shlex.quote(work[2:]) if work.startswith("~/") else shlex.quote(work)
    out = access.run(f"mkdir -p {quoted} && cd {quoted} && pwd -P && uname -m")
    lines = out.stdout.split()
    if len(lines) < 2:
        raise BoardAccessError(f"unexpected answer from the board: {out.stdout!r}")
    resolved, arch = lines[0], lines[1]
    if arch != board.arch:
        raise BoardError(f"the board file says arch {board.arch}, the board is {arch}")
    return resolved


def _check_platform(board: Board, bundle: DeployBundle) -> None:
    made_for = bundle.manifest["board"]
    if (made_for["arch"], made_for["python"]) != (board.arch, board.python):
        raise BoardError(
            f"deploy bundle {bundle.root} was made for {made_for['arch']}, Python "
            f"{made_for['python']}; board {board.name} is {board.arch}, Python {board.python} "
            f"(run hostctl bundle --board {board.path})"
        )


class _Deploy:
    """One deploy run: the steps in order, sharing the board's paths."""

    def __init__(self, board: Board, bundle: DeployBundle, console: Console):
        self.board, self.bundle, self.console = board, bundle, console
        self.access: BoardAccess | None = None
        self.work = ""
        self.current: str | None = None
        self.sending: list[str] = []  # what crosses the link, the deploy manifest last

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        try:
            yield
        except DeployError:
            raise
        except (BoardAccessError, BoardError, OSError) as exc:
            raise DeployError(name, str(exc), self.current) from exc

    def sh(self, script: str, timeout: float = 120.0, check: bool = True):
        """Run a shell script on the board in the work directory."""
        assert self.access is not None
        return self.access.run(f"cd {shlex.quote(self.work)} && {script}", check, timeout)

    # -- steps ---------------------------------------------------------------------------

    def connect(self) -> None:
        """Reach the board, check its architecture, resolve and create the work directory."""
        assert self.access is not None
        self.work = board_work_dir(self.board, self.access)
        link = self.sh("readlink current || true").stdout.strip()
        self.current = link.rsplit("/", 1)[-1] if link else None
        self.console.print(
            f"[bold]{self.board.name}[/] ({self.access.describe()}): {self.work}, current "
            f"release {self.current or 'none'}, deploying {self.bundle.release}"
        )

    def all(self, systemd: bool) -> DeployResult:
        rel = f"releases/{self.bundle.release}"
        result = DeployResult(self.bundle.release, f"{self.work}/{rel}", self.current)
        with self.step("compare"):
            self.compare(rel, result)
        with self.step("upload"):
            self.upload(rel, result)
        with self.step("verify"):
            self.verify(rel)
        with self.step("install"):
            installed = self.sh(f"test -f {rel}/{INSTALLED_MARK} && echo yes || true").stdout
        if installed.strip() != "yes":
            with self.step("install"), self._busy("install: a venv from the release's wheels"):
                self.install(rel)
            with self.step("check"), self._busy("check: edge-runtime, engine, bundle"):
                self.check(rel)
            result.installed = True
        else:
            self.console.print("install: up to date (this release is installed)")
        if self.current != self.bundle.release:
            with self.step("switch"):
                self.sh(f"ln -sfn {rel} current.tmp && mv -T current.tmp current")
            result.switched = True
            self.current = self.bundle.release
            self.console.print(f"switch: current -> {rel}")
        else:
            self.console.print(f"switch: up to date (current is {rel})")
        if systemd:
            with self.step("systemd"):
                result.unit_path = self.install_unit()
        return result

    def compare(self, rel: str, result: DeployResult) -> None:
        """Sort the bundle's files: already in this release, unchanged in current, or to send."""
        files = self.bundle.files
        paths = [f"{rel}/{f}" for f in [*files, DEPLOY_MANIFEST]]
        if self.current:
            paths += [f"current/{f}" for f in files]
        remote = self._hashes(paths)
        for name, sha in sorted(files.items()):
            if remote.get(f"{rel}/{name}") == sha:
                result.present.append(name)
            elif remote.get(f"current/{name}") == sha:
                result.reused.append(name)
            else:
                result.sent.append(name)
        # The manifest last: a release with its manifest in place was uploaded whole.
        manifest_there = remote.get(f"{rel}/{DEPLOY_MANIFEST}") == self.bundle.manifest_sha256
        self.sending = [*result.sent] + ([] if manifest_there else [DEPLOY_MANIFEST])
        for name in result.up_to_date:
            self.console.print(f"up to date  {name}")

    def upload(self, rel: str, result: DeployResult) -> None:
        """Send what changed; link what the current release already has.

        A destination is removed before it is written: release files may be hard links into
        the current release, and writing through one would change the running release.
        """
        todo = [*self.sending, *result.reused]
        if not todo:
            return
        dirs = sorted({str(Path(rel, name).parent) for name in todo})
        script = [f"mkdir -p {' '.join(map(shlex.quote, dirs))}"]
        script.append("rm -f " + " ".join(shlex.quote(f"{rel}/{name}") for name in todo))
        for name in result.reused:
            src, dst = shlex.quote(f"current/{name}"), shlex.quote(f"{rel}/{name}")
            script.append(f"{{ ln {src} {dst} 2>/dev/null || cp -p {src} {dst}; }}")
        self.sh(" && ".join(script))
        total = sum((self.bundle.root / name).stat().st_size for name in self.sending)
        with self._progress() as progress:
            task = progress.add_task("upload", total=total)
            assert self.access is not None
            for name in self.sending:
                progress.update(task, description=f"send {name}")
                self.access.put(self.bundle.root / name, f"{self.work}/{rel}/{name}")
                progress.advance(task, (self.bundle.root / name).stat().st_size)
        for name in result.sent:
            self.console.print(f"sent        {name}")

    def verify(self, rel: str) -> None:
        """sha256 of every file of the release on the board against the manifest."""
        expected = {f"{rel}/{name}": sha for name, sha in self.bundle.files.items()}
        expected[f"{rel}/{DEPLOY_MANIFEST}"] = self.bundle.manifest_sha256
        bad = mismatched_files(expected, self._hashes(list(expected)).get)
        if bad:
            # Drop the bad copies so the next deploy sends them again.
            self.sh("rm -f " + " ".join(shlex.quote(b.rel) for b in bad))
            shown = ", ".join(
                f"{b.rel.removeprefix(rel + '/')} (sha256 {(b.actual or 'missing')[:12]}, "
                f"expected {b.expected[:12]})"
                for b in bad[:3]
            )
            raise DeployError(
                "verify",
                f"upload corrupted: {len(bad)} file(s) on the board differ from the deploy "
                f"manifest: {shown}",
                self.current,
            )
        self.console.print(f"verify: {len(expected)} files match their sha256 on the board")

    def install(self, rel: str) -> None:
        """A venv for the release, installed from the release's wheels without network."""
        m = self.bundle.manifest
        venv, python = f"{rel}/venv", shlex.quote(self.board.interpreter)
        system = " --system-site-packages" if m["skip_deps"] else ""
        # The board's own pip (22.3+ has --python) installs into a venv made without pip: no
        # ensurepip (Debian splits it into python3-venv), and seconds less on a slow board.
        outer = self._board_pip()
        bare = " --without-pip" if outer else ""
        self.console.print(f"install: venv{system} in {venv}")
        self.sh(
            f"rm -rf {venv} {rel}/{INSTALLED_MARK} && {python} -m venv{system}{bare} {venv}", 300
        )
        pip = f"{outer} --python {venv}/bin/python" if outer else f"{venv}/bin/python -m pip"
        pip += " install --no-index --disable-pip-version-check -q"
        if m["skip_deps"]:
            self._inherit_board_site(venv)
            # --ignore-installed: a hiertrain the board's Python already sees must not count.
            cmd = f"{pip} --no-deps --ignore-installed {shlex.quote(rel + '/' + m['wheel'])}"
        else:
            cmd = f"{pip} --find-links {rel}/wheels " + shlex.quote(f"hiertrain[{m['extra']}]")
        self.sh(cmd, timeout=3600)

    def _board_pip(self) -> str | None:
        """`<interpreter> -m pip` where the board's Python has a pip with --python, else None."""
        pip = f"{shlex.quote(self.board.interpreter)} -m pip"
        out = self.sh(f"{pip} --version 2>/dev/null || true").stdout.split()
        try:
            version = tuple(int(p) for p in out[1].split(".")[:2])
        except (IndexError, ValueError):
            return None
        return pip if version >= (22, 3) else None

    def _inherit_board_site(self, venv: str) -> None:
        # --system-site-packages sees the base installation only; when the board's Python is
        # itself a venv (the virtual board: hostctl's own venv), name its site-packages too.
        python = shlex.quote(self.board.interpreter)
        sites = self.sh(f'{python} -c "import site; print(*site.getsitepackages(), sep=chr(10))"')
        text = sites.stdout.strip() + "\n"
        write = (
            "import pathlib, sys, sysconfig; "
            f"pathlib.Path(sysconfig.get_paths()['purelib'], '{BOARD_SITE_PTH}')"
            ".write_text(sys.argv[1])"
        )
        self.sh(f"{venv}/bin/python -c {shlex.quote(write)} {shlex.quote(text)}")

    def check(self, rel: str) -> None:
        """The installed edge runs: its CLI starts, the engine imports, the bundle loads."""
        venv = f"{rel}/venv"
        self.sh(f"{venv}/bin/edge-runtime --help > /dev/null", timeout=120)
        probe = (
            "import importlib, json, sys\n"
            "import edge_runtime\n"
            "from edge_runtime.bundle import load_bundle\n"
            "from edge_runtime.engines import ENGINES, resolve_engine_name\n"
            "name = resolve_engine_name(sys.argv[1])\n"
            "importlib.import_module(ENGINES[name][0])\n"
            "exec(sys.argv[3])\n"
            "b = load_bundle(sys.argv[2])\n"
            "print(json.dumps({'engine': name, 'edge_runtime': edge_runtime.__file__, "
            "'prefix': sys.prefix, 'bundle': b.manifest_sha256}))\n"
        )
        engine = self.bundle.manifest["engine"]
        engine_import = shlex.quote(ENGINE_IMPORTS[engine])
        out = self.sh(
            f"{venv}/bin/python -c {shlex.quote(probe)} {engine} {rel}/edge {engine_import}",
            timeout=300,
        )
        found = json.loads(out.stdout.strip().splitlines()[-1])
        if not found["edge_runtime"].startswith(found["prefix"]):
            raise BoardError(
                f"the release's venv imports edge_runtime from {found['edge_runtime']}, "
                "not from the release"
            )
        self.sh(f"touch {rel}/{INSTALLED_MARK}")
        self.console.print(f"check: edge-runtime runs, engine {found['engine']} imports")

    def install_unit(self) -> str:
        """Write the systemd unit: into systemd's directory, or into work_dir without systemd."""
        assert self.access is not None
        service = self.board.service
        user = self.sh("id -un").stdout.strip() or None
        text = render_unit(self.board, self.work, self.bundle.manifest["engine"], user)
        has_systemd = self.sh("test -d /run/systemd/system && echo yes || true").stdout.strip()
        target_dir = service.systemd_dir if has_systemd == "yes" else self.work
        target = f"{target_dir}/{service.unit_name}"
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / service.unit_name
            local.write_text(text)
            self.access.put(local, target)
        if has_systemd == "yes":
            self.sh("systemctl daemon-reload")
            self.console.print(
                f"systemd: wrote {target}; start it with `systemctl enable --now "
                f"{service.unit_name}`"
            )
        else:
            self.console.print(
                f"systemd: this board does not run systemd; wrote {target} for a board that does "
                f"(copy it to {service.systemd_dir})"
            )
        return target

    # -- helpers -------------------------------------------------------------------------

    def _hashes(self, paths: list[str]) -> dict[str, str]:
        """sha256 of the paths (relative to work_dir) that exist on the board."""
        if not paths:
            return {}
        quoted = " ".join(shlex.quote(p) for p in paths)
        return parse_sha256sum(self.sh(f"sha256sum {quoted} 2>/dev/null || true", 600).stdout)

    def _busy(self, text: str) -> AbstractContextManager[object]:
        """A spinner for a step that takes a while (pip on a slow board), on a terminal only."""
        return self.console.status(text) if self.console.is_terminal else nullcontext()

    def _progress(self) -> Progress:
        return transfer_progress(self.console)


def transfer_progress(console: Console) -> Progress:
    """A bytes-sent progress bar (size, speed, time left), on a terminal only."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
