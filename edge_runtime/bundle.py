"""A bundle as the board and the host load it: manifest, file hashes, the link key.

`hostctl export` writes a bundle directory:

    DIR/manifest.json          model, split, shapes, costs, sha256 of every file
    DIR/edge/                  what the board needs (a copy of manifest.json included)
    DIR/cloud/                 what the host needs (a copy of manifest.json included)

Either side can be loaded on its own: `load_bundle(DIR/edge)` verifies only the files under
`edge/`. Paths in the manifest are relative to DIR. Both copies of the manifest are the same
bytes, so its sha256 (sent in HELLO) agrees on both ends.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.errors import HiertrainError

MANIFEST = "manifest.json"
KEY_FILE = "link.key"
BUNDLE_FORMAT = "hiertrain-bundle/1"
SIDES = ("edge", "cloud")


class BundleError(HiertrainError):
    """A bundle is missing, incomplete, modified or of another format."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Bundle:
    """A verified bundle (or one side of it)."""

    root: Path  # the directory that was loaded (DIR, DIR/edge or DIR/cloud)
    side: str  # "all", "edge" or "cloud"
    manifest: dict[str, Any]
    manifest_sha256: str

    def path(self, name: str) -> Path:
        """Path of a file of this side, e.g. `bundle.path("training_model.onnx")`."""
        if self.side == "all":
            raise BundleError("path() needs a side: load DIR/edge or DIR/cloud, or use side_path()")
        return self.root / name

    def side_path(self, side: str, name: str) -> Path:
        """Path of `name` under `side` for a whole-bundle load."""
        return (self.root / side / name) if self.side == "all" else self.root / name

    def key(self) -> bytes:
        """The pre-shared link key that export wrote into this side of the bundle."""
        side = "edge" if self.side == "all" else self.side
        return read_key_file(self.side_path(side, KEY_FILE))

    @property
    def split(self) -> int:
        return int(self.manifest["split"])

    @property
    def model(self) -> str:
        return str(self.manifest["model"])


def read_key_file(path: Path) -> bytes:
    """Read a link key file: hex text (as export writes it) or raw bytes, at least 16 bytes."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise BundleError(f"key file {path} does not exist") from None
    text = raw.strip()
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        key = raw
    if len(key) < 16:
        raise BundleError(f"key file {path} holds {len(key)} bytes; a link key needs at least 16")
    return key


def load_bundle(path: str | Path, *, verify: bool = True) -> Bundle:
    """Load and (by default) verify a bundle directory, or its edge/ or cloud/ half.

    Raises BundleError naming the file that is missing or differs from the manifest.
    """
    root = Path(path)
    manifest_path = root / MANIFEST
    if not root.is_dir():
        raise BundleError(f"bundle {root} does not exist or is not a directory")
    if not manifest_path.is_file():
        raise BundleError(
            f"{root} is not a bundle: no {MANIFEST} (make one with `hostctl export --split N`)"
        )
    raw = manifest_path.read_bytes()
    try:
        manifest = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BundleError(f"{manifest_path} is not valid JSON: {exc}") from None
    if manifest.get("format") != BUNDLE_FORMAT:
        raise BundleError(
            f"{manifest_path} has format {manifest.get('format')!r}; this runtime reads "
            f"{BUNDLE_FORMAT!r} (re-export the bundle with this version)"
        )
    side = root.name if root.name in SIDES and not (root / "edge").is_dir() else "all"
    if verify:
        _verify_files(root, side, manifest.get("files", {}))
    return Bundle(root, side, manifest, hashlib.sha256(raw).hexdigest())


def _verify_files(root: Path, side: str, files: dict[str, str]) -> None:
    for rel, expected in sorted(files.items()):
        top, _, rest = rel.partition("/")
        if side != "all" and top != side:
            continue
        target = root / (rest if side != "all" else rel)
        if not target.is_file():
            raise BundleError(f"bundle {root} is incomplete: {rel} is missing")
        actual = sha256_file(target)
        if actual != expected:
            raise BundleError(
                f"bundle {root} was modified: {rel} has sha256 {actual[:12]}..., "
                f"the manifest says {expected[:12]}... (re-export or re-deploy it)"
            )
