"""`edge-runtime doctor`: what a board has and whether it can train, one checked line each.

Engines (installed, with versions; checked without importing torch), serial ports, the bundle
(every file against its manifest), and the host: reachable, and the handshake accepted with
this bundle and key. The handshake is the real one, under its own edge id (``<id>-doctor``) so
that it never takes over a training run's session; it ends before any data is sent.
"""

from __future__ import annotations

import importlib.metadata
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from edge_runtime.bundle import load_bundle, read_key_file
from edge_runtime.engines import ENGINES
from edge_runtime.errors import HiertrainError
from edge_runtime.link.config import LinkConfig
from edge_runtime.link.control import Hello
from edge_runtime.link.handshake import edge_handshake
from edge_runtime.link.header import PROTOCOL_VERSION
from edge_runtime.link.stream import FrameIO, LinkStats
from edge_runtime.link.transports import check_url, open_url

# The distribution that provides each engine, for its version.
ENGINE_DISTRIBUTIONS = {"ort": "onnxruntime-training", "torch": "torch"}


@dataclass
class Check:
    """One line of the doctor's answer."""

    name: str
    ok: bool
    detail: str
    required: bool = True  # a failed optional check (no serial port) does not fail the doctor


def engine_checks() -> Iterator[Check]:
    """Each engine: installed or not, and its version."""
    found = False
    for name, (_, _, needs, is_available) in ENGINES.items():
        if is_available():
            found = True
            try:
                version = importlib.metadata.version(ENGINE_DISTRIBUTIONS.get(name, needs))
            except importlib.metadata.PackageNotFoundError:
                version = "version unknown"
            yield Check(f"engine {name}", True, f"{needs} {version}", required=False)
        else:
            yield Check(f"engine {name}", False, f"{needs} not installed", required=False)
    if not found:
        yield Check("engines", False, "no engine: pip install hiertrain[edge] or [edge-torch]")


def serial_check() -> Check:
    """The serial ports this board has (a TCP-only board has none: not a failure)."""
    from serial.tools import list_ports

    ports = sorted(p.device for p in list_ports.comports())
    return Check("serial ports", bool(ports), ", ".join(ports) or "none found", required=False)


def bundle_check(bundle_dir: Path) -> Check:
    """The bundle loads and every file matches its manifest."""
    try:
        bundle = load_bundle(bundle_dir)
    except HiertrainError as exc:
        return Check("bundle", False, str(exc))
    return Check(
        "bundle", True, f"{bundle.model} split {bundle.split}, every file matches its manifest"
    )


def host_check(
    url: str, bundle_dir: Path, key_file: Path | None, edge_id: str, timeout: float
) -> Check:
    """Reach the host at ``url`` and run the handshake with this bundle and key."""
    try:
        bundle = load_bundle(bundle_dir)
        key = read_key_file(key_file) if key_file else bundle.key()
        config = LinkConfig(handshake_timeout=timeout)
        transport = open_url(check_url(url), config.baudrate, config.read_timeout)
    except HiertrainError as exc:
        return Check("host", False, f"not reachable: {exc}")
    try:
        io = FrameIO(transport, config.max_frame, LinkStats())
        hello = Hello(
            PROTOCOL_VERSION,
            f"{edge_id}-doctor",
            f"doctor-{secrets.token_hex(4)}",
            bundle.manifest_sha256,
            config.max_frame,
            bundle=bundle.identity,
        )
        edge_handshake(io, hello, key, timeout)
    except HiertrainError as exc:
        return Check("host", False, f"reachable at {url}, but {exc}")
    finally:
        transport.close()
    return Check("host", True, f"reachable at {url}, handshake accepted with this bundle")


def checks(
    bundle_dir: Path | None,
    url: str | None,
    key_file: Path | None,
    edge_id: str,
    timeout: float,
) -> list[Check]:
    """Every check that the given options allow."""
    found = [*engine_checks(), serial_check()]
    if bundle_dir is not None:
        found.append(bundle_check(bundle_dir))
        if url is not None:
            found.append(host_check(url, bundle_dir, key_file, edge_id, timeout))
    return found
