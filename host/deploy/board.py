"""Board files: where a board is, what it runs, and how its link to the host goes.

A board file is TOML (docs/boards.md has every key). `load_board(path)` reads and checks one
and returns a `Board`; anything wrong raises `BoardError` naming the file, the key and what is
valid. Paths on the host side (identity_file, known_hosts, rootfs) are relative to the board
file; `work_dir` is a path on the board.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from host.deploy.errors import BoardError

ARCHES = ("x86_64", "aarch64", "armv7l")
ENGINES = ("ort", "torch", "auto")
CONNECTION_KINDS = ("local", "ssh", "serial")
LOCAL_RUNNERS = ("chroot",)

__all__ = ["Board", "BoardError", "Connection", "Link", "SpeedProfile", "Service", "load_board"]


@dataclass(frozen=True)
class Connection:
    """How the host reaches the board to deploy: `kind` picks the BoardAccess."""

    kind: str  # local | ssh | serial
    # ssh
    host: str | None = None
    port: int = 22
    user: str | None = None
    identity_file: Path | None = None
    known_hosts: Path | None = None
    options: tuple[str, ...] = ()
    connect_timeout_s: float = 10.0
    # serial
    device: str | None = None
    baud: int = 115200
    key_file: Path | None = None  # the deploy key `edge-runtime agent --key-file` holds
    # local
    rootfs: Path | None = None
    runner: str | None = None  # None: run directly on this machine; "chroot": inside rootfs

    @property
    def access_kind(self) -> str:
        """The key of the BoardAccess registry: a local board with a runner uses that runner."""
        return self.runner if self.kind == "local" and self.runner else self.kind

    def describe(self) -> str:
        """One line for logs: `ssh root@pi4.local:22`, `serial /dev/ttyUSB0 @ 115200`, `local`."""
        if self.kind == "ssh":
            user = f"{self.user}@" if self.user else ""
            return f"ssh {user}{self.host}:{self.port}"
        if self.kind == "serial":
            return f"serial {self.device} @ {self.baud}"
        return f"local ({self.runner} {self.rootfs})" if self.runner else "local"


@dataclass(frozen=True)
class Link:
    """How the edge reaches the host when it trains: a URL, a serial device, or an emulation."""

    url: str | None = None  # socket://HOST:PORT, rfc2217://HOST:PORT
    serial: str | None = None  # /dev/ttyUSB0
    baud: int = 115200
    emulate: str | None = None  # a link spec for virtual boards: "3g", "768kbit/150ms"

    @property
    def connect(self) -> str | None:
        """What `edge-runtime run --connect` takes, if the board file says."""
        return self.url or self.serial


@dataclass(frozen=True)
class SpeedProfile:
    """How fast a board computes, for an edge here that stands in for a slower one: a board
    file's `[profile]`, or `hostctl bench --profile rpi4`. (A link's rate and delay are a
    `LinkSpec`; a board's measured step times per split, for the planner, a `BoardProfile`.)"""

    slowdown: float | None = None  # edge step time = host step time x slowdown
    step_time_s: float | None = None  # or a measured step time
    source: str = ""  # where the figure comes from
    name: str = ""  # e.g. "Raspberry Pi 4 class (estimate)"


@dataclass(frozen=True)
class Service:
    """What the systemd unit runs: `edge-runtime run --data DATA --epochs E ARGS...`."""

    data: str = "synthetic"
    epochs: int = 2
    args: tuple[str, ...] = ()
    systemd_dir: str = "/etc/systemd/system"
    unit_name: str = "hiertrain-edge.service"


@dataclass(frozen=True)
class Board:
    """A board as a board file describes it."""

    name: str
    arch: str
    python: str  # "3.11": the X.Y the board's interpreter runs
    engine: str  # ort | torch | auto (as written; see `resolved_engine`)
    work_dir: str  # on the board; "~/" means the deploying user's home
    connection: Connection
    link: Link = field(default_factory=Link)
    profile: SpeedProfile | None = None
    service: Service = field(default_factory=Service)
    interpreter: str = "python3"  # the command on the board that runs `python`
    path: Path | None = None  # the board file

    @property
    def python_tag(self) -> str:
        """`3.11` -> `311`."""
        return self.python.replace(".", "")

    @property
    def resolved_engine(self) -> str:
        """`auto` -> `ort` where an onnxruntime-training wheel is published or vendored (our
        aarch64 build, host/deploy/vendor.py), else `torch`."""
        if self.engine != "auto":
            return self.engine
        from host.deploy.vendor import VENDORED  # vendor.py reads boards: imported on use

        own = VENDORED.get(("ort", self.arch, self.python))
        vendored = own is not None and any(own.glob("*.whl"))
        return "ort" if ort_wheel_exists(self.arch, self.python) or vendored else "torch"


def ort_wheel_exists(arch: str, python: str) -> bool:
    """onnxruntime-training 1.19.2 (the last release) has wheels for x86_64, CPython <= 3.11."""
    major, minor = (int(p) for p in python.split("."))
    return arch == "x86_64" and (major, minor) <= (3, 11)


class _Table:
    """One table of a board file: typed reads that fail naming the file, the key and what is valid."""

    def __init__(self, path: Path, name: str, data: dict[str, Any], known: tuple[str, ...]):
        self.path, self.name, self.data = path, name, data
        unknown = sorted(set(data) - set(known))
        if unknown:
            self.fail(unknown[0], f"unknown key; valid keys here are {', '.join(known)}")

    def key(self, key: str) -> str:
        return f"[{self.name}] {key}" if self.name else key

    def fail(self, key: str, what: str) -> None:
        raise BoardError(f"board file {self.path}: {self.key(key)}: {what}")

    def get(self, key: str, kind: type | tuple[type, ...], what: str, default: Any = None) -> Any:
        if key not in self.data:
            return default
        value = self.data[key]
        # TOML booleans are ints to isinstance; a board file never means True as 1.
        if isinstance(value, bool) or not isinstance(value, kind):
            self.fail(key, f"expected {what}, got {value!r}")
        return value

    def need(self, key: str, kind: type | tuple[type, ...], what: str) -> Any:
        if key not in self.data:
            self.fail(key, f"missing; expected {what}")
        return self.get(key, kind, what)

    def choice(self, key: str, valid: tuple[str, ...], default: str | None = None) -> str:
        what = " | ".join(valid)
        value = self.need(key, str, what) if default is None else self.get(key, str, what, default)
        if value not in valid:
            self.fail(key, f"{value!r} is not valid; use one of {', '.join(valid)}")
        return value

    def host_path(self, key: str) -> Path | None:
        value = self.get(key, str, "a path (relative to the board file)")
        if value is None:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.path.parent / p).resolve()

    def table(self, key: str, known: tuple[str, ...], required: bool = False) -> _Table | None:
        if key not in self.data:
            if required:
                self.fail(key, f"missing table; expected [{key}] with {', '.join(known)}")
            return None
        value = self.data[key]
        if not isinstance(value, dict):
            self.fail(key, f"expected a table [{key}], got {value!r}")
        return _Table(self.path, key, value, known)


_TOP_KEYS = (
    "name",
    "arch",
    "python",
    "interpreter",
    "engine",
    "work_dir",
    "connection",
    "link",
    "profile",
    "service",
)
_CONNECTION_KEYS = (
    "kind",
    "host",
    "port",
    "user",
    "identity_file",
    "known_hosts",
    "options",
    "connect_timeout_s",
    "device",
    "baud",
    "key_file",
    "rootfs",
    "runner",
)
_PYTHON = re.compile(r"^3\.\d{1,2}$")


def load_board(path: str | Path) -> Board:
    """Read and check a board file; raises BoardError naming the file, the key and what is valid."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise BoardError(f"board file {path} does not exist (see hw_tests/boards/)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BoardError(f"board file {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise BoardError(f"board file {path} is not valid TOML: {exc}") from None
    top = _Table(path, "", data, _TOP_KEYS)
    name = top.need("name", str, "a board name, e.g. pi4")
    if not re.fullmatch(r"[A-Za-z0-9._-]+", name):
        top.fail("name", f"{name!r}: use letters, digits, '.', '_' and '-' only")
    arch = top.choice("arch", ARCHES)
    python = top.need("python", str, 'the board\'s Python as "3.X", e.g. "3.11"')
    if not _PYTHON.match(python):
        top.fail("python", f'{python!r}: expected "3.X", e.g. "3.11"')
    engine = top.choice("engine", ENGINES, default="auto")
    work_dir = top.need("work_dir", str, "a directory on the board, e.g. ~/hiertrain")
    if not work_dir.strip() or work_dir.strip() in ("/", "~", "~/"):
        top.fail("work_dir", f"{work_dir!r}: give a directory of its own, e.g. ~/hiertrain")
    interpreter = top.get("interpreter", str, "a command on the board, e.g. python3", "python3")
    return Board(
        name=name,
        arch=arch,
        python=python,
        engine=engine,
        work_dir=work_dir,
        connection=_connection(top),
        link=_link(top),
        profile=_profile(top),
        service=_service(top),
        interpreter=interpreter,
        path=path,
    )


def _connection(top: _Table) -> Connection:
    t = top.table("connection", _CONNECTION_KEYS, required=True)
    assert t is not None
    kind = t.choice("kind", CONNECTION_KINDS)
    if kind == "ssh":
        port = t.get("port", int, "a TCP port 1..65535", 22)
        if not 1 <= port <= 65535:
            t.fail("port", f"{port} is out of range 1..65535")
        options = t.get("options", list, 'a list of ssh -o options, e.g. ["Compression=yes"]', [])
        if not all(isinstance(o, str) and "=" in o for o in options):
            t.fail("options", f'expected a list of "Key=value" strings, got {options!r}')
        timeout = t.get("connect_timeout_s", (int, float), "seconds", 10.0)
        return Connection(
            kind,
            host=t.need("host", str, "the board's host name or address"),
            port=port,
            user=t.get("user", str, "a user name on the board"),
            identity_file=t.host_path("identity_file"),
            known_hosts=t.host_path("known_hosts") or (top.path.parent / ".known_hosts").resolve(),
            options=tuple(options),
            connect_timeout_s=float(timeout),
        )
    if kind == "serial":
        baud = t.get("baud", int, "a baud rate, e.g. 115200", 115200)
        if baud <= 0:
            t.fail("baud", f"{baud}: expected a positive baud rate, e.g. 115200")
        device = t.need("device", str, "a serial device, e.g. /dev/ttyUSB0")
        key_file = t.host_path("key_file")
        if key_file is None:
            t.fail(
                "key_file",
                "missing; serial deploy authenticates with a pre-shared key: make one with "
                "`openssl rand -hex 32 > board.key` and give the same file to `edge-runtime agent`",
            )
        return Connection(kind, device=device, baud=baud, key_file=key_file)
    runner = t.get("runner", str, " | ".join(LOCAL_RUNNERS))
    if runner is not None and runner not in LOCAL_RUNNERS:
        t.fail("runner", f"{runner!r} is not valid; use one of {', '.join(LOCAL_RUNNERS)}")
    rootfs = t.host_path("rootfs")
    if runner and rootfs is None:
        t.fail("rootfs", f'missing; runner = "{runner}" needs the root filesystem to run in')
    return Connection(kind, rootfs=rootfs, runner=runner)


def _link(top: _Table) -> Link:
    t = top.table("link", ("url", "serial", "baud", "emulate"))
    if t is None:
        return Link()
    url = t.get("url", str, "a URL the edge connects to, e.g. socket://192.168.1.10:5555")
    if url is not None and "://" not in url:
        t.fail("url", f"{url!r}: expected socket://HOST:PORT or rfc2217://HOST:PORT")
    emulate = t.get("emulate", str, "a link spec, e.g. 3g")
    if emulate is not None:
        from host.linkemu import LinkSpecError, parse_link

        try:
            parse_link(emulate)
        except LinkSpecError as exc:
            t.fail("emulate", str(exc))
    return Link(
        url=url,
        serial=t.get("serial", str, "a serial device on the board, e.g. /dev/ttyAMA0"),
        baud=t.get("baud", int, "a baud rate", 115200),
        emulate=emulate,
    )


def _profile(top: _Table) -> SpeedProfile | None:
    t = top.table("profile", ("slowdown", "step_time_s", "source"))
    if t is None:
        return None
    slowdown = t.get("slowdown", (int, float), "a factor > 0, e.g. 16")
    step = t.get("step_time_s", (int, float), "seconds per edge step, e.g. 0.35")
    if (slowdown is None) == (step is None):
        t.fail("slowdown", "give exactly one of slowdown or step_time_s")
    for key, value in (("slowdown", slowdown), ("step_time_s", step)):
        if value is not None and value <= 0:
            t.fail(key, f"{value}: expected a number above 0")
    return SpeedProfile(
        slowdown=None if slowdown is None else float(slowdown),
        step_time_s=None if step is None else float(step),
        source=t.get("source", str, "where the figure comes from", ""),
    )


def _service(top: _Table) -> Service:
    t = top.table("service", ("data", "epochs", "args", "systemd_dir", "unit_name"))
    if t is None:
        return Service()
    args = t.get("args", list, "a list of extra edge-runtime run arguments", [])
    if not all(isinstance(a, str) for a in args):
        t.fail("args", f"expected a list of strings, got {args!r}")
    epochs = t.get("epochs", int, "a number of epochs >= 1", 2)
    if epochs < 1:
        t.fail("epochs", f"{epochs}: expected at least 1")
    unit = t.get("unit_name", str, "a unit file name ending in .service", "hiertrain-edge.service")
    if not unit.endswith(".service") or "/" in unit:
        t.fail("unit_name", f"{unit!r}: expected a file name ending in .service")
    return Service(
        data=t.get("data", str, "an edge-runtime --data spec", "synthetic"),
        epochs=epochs,
        args=tuple(args),
        systemd_dir=t.get("systemd_dir", str, "a directory on the board", "/etc/systemd/system"),
        unit_name=unit,
    )
