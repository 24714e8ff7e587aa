"""A bundle as the board and the host load it: manifest, file hashes, the link key.

`hostctl export` writes a bundle directory:

    DIR/manifest.json          model, split, shapes, costs, sha256 of every file
    DIR/edge/                  what the board needs (a copy of manifest.json included)
    DIR/cloud/                 what the host needs (a copy of manifest.json included)

Either side can be loaded on its own: `load_bundle(DIR/edge)` verifies only the files under
`edge/`. Paths in the manifest are relative to DIR. Both copies of the manifest are the same
bytes, so its sha256 (sent in HELLO) agrees on both ends.

The names of a bundle's files are defined here, once, for the exporter that writes them and
the board and host that read them; so is the one check of a directory against a list of
sha256s, which bundles, deploy bundles and releases on a board all use.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_runtime.errors import HiertrainError, UsageFault

MANIFEST = "manifest.json"
KEY_FILE = "link.key"
BUNDLE_FORMAT = "hiertrain-bundle/1"
SIDES = ("edge", "cloud")

# Files of a bundle half (the ONNX Runtime training artifacts keep the names ORT gives them).
EDGE_WEIGHTS = "edge_weights.npz"  # front + exit head, a plain .npz state dict
TAIL_WEIGHTS = "tail_weights.npz"  # the tail, likewise
# A user model's code (its factory file, the modules it imports from its folder, --include paths),
# copied under each side so the torch side rebuilds the model from it.
CODE_DIR = "code"
TRAINING_MODEL = "training_model.onnx"
EVAL_MODEL = "eval_model.onnx"
OPTIMIZER_MODEL = "optimizer_model.onnx"
CHECKPOINT = "checkpoint"
INFERENCE_MODEL = "inference_model.onnx"  # front + exit head, for inference
TAIL_MODEL = "tail_model.onnx"
SPLIT_ARTIFACTS = "split"  # edge/split/: the front alone, for split learning


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

    def side_dir(self, side: str) -> Path:
        """The directory of `side` ("edge" or "cloud"): DIR/side for a whole bundle, else root."""
        if self.side == "all":
            return self.root / side
        if side != self.side:
            raise BundleError(
                f"{self.root} is the {self.side} half of a bundle: it has no {side} files"
            )
        return self.root

    def side_path(self, side: str, name: str) -> Path:
        """Path of `name` under `side`, whether the whole bundle or that half was loaded."""
        return self.side_dir(side) / name

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

    @property
    def identity(self) -> dict[str, Any]:
        """What the handshake compares beyond the hash: model, split, shapes, classes."""
        m = self.manifest
        found = {
            "model": m.get("model"),
            "split": m.get("split"),
            "input_shape": m.get("input_shape"),
            "activation_shape": (m.get("activation") or {}).get("shape"),
            "num_classes": m.get("num_classes"),
        }
        return {k: v for k, v in found.items() if v is not None}


def fit_class_names(data: Any, manifest: Mapping[str, Any]) -> Any:
    """`data` (edge_runtime.data.Dataset) labelled by the bundle's class names where both name
    their classes (`hostctl export --classes`, folder:DIR): every board's folders then number a
    class alike, whichever classes each folder lacks. Otherwise `data` as it is."""
    names = manifest.get("classes")
    if not names or not data.classes:
        return data
    return data.named_as(names)


def class_numbering_note(data: Any, manifest: Mapping[str, Any]) -> str | None:
    """A warning where data names fewer classes than the model has and the bundle names none:
    its labels are positions in its own sorted list, which another board's folder, lacking
    other classes, numbers otherwise (one class, two labels in one shared tail)."""
    if manifest.get("classes") or not data.classes:
        return None
    if len(data.classes) >= manifest["num_classes"]:
        return None
    return (
        f"data {data.name} names {len(data.classes)} of the model's {manifest['num_classes']} "
        "classes and the bundle names none: its labels are positions in its own sorted list, "
        "so boards whose folders lack other classes number them otherwise; export with "
        "--classes NAME,... to label every board's folders by name"
    )


def check_data_fits(data: Any, manifest: Mapping[str, Any]) -> None:
    """UsageFault unless a data set (edge_runtime.data.Dataset) fits the bundle's model: its
    sample shape, and no more classes than the model has. One check for every command that
    pairs data with a bundle (the edge's run, the demo, bench), so they refuse it alike."""
    expected = tuple(manifest["input_shape"])
    if data.input_shape != expected:
        shape = "x".join(map(str, data.input_shape))
        raise UsageFault(
            f"data {data.name} is {shape} but the bundle expects {'x'.join(map(str, expected))}: "
            f"export with --input-shape {shape}"
        )
    classes = manifest["num_classes"]
    if data.num_classes > classes:
        # Labels 1..K or sparse ids fit a K-class model once mapped to 0..K-1: say so, rather
        # than only the class count (a 1001-way classifier for six ids) that takes them as is.
        labels = sorted({*data.y_train.tolist(), *data.y_test.tolist()})
        if len(labels) <= classes:
            raise UsageFault(
                f"data {data.name} has labels {labels[0]}..{labels[-1]} ({len(labels)} distinct "
                f"values) but the bundle's model takes class indices 0..{classes - 1}: map the "
                f"labels to 0..{len(labels) - 1} (numpy.unique(y, return_inverse=True)) or "
                f"export with --num-classes {data.num_classes}"
            )
        raise UsageFault(
            f"data {data.name} has {data.num_classes} classes but the bundle's model has "
            f"{manifest['num_classes']}: export with --num-classes {data.num_classes}"
        )


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
    if not root.is_dir():
        raise BundleError(f"bundle {root} does not exist or is not a directory")
    manifest, raw = read_manifest(
        root / MANIFEST,
        BUNDLE_FORMAT,
        what="a bundle",
        make="hostctl export --split N",
        remake="re-export the bundle with this version",
    )
    check_manifest(manifest, root / MANIFEST)
    side = root.name if root.name in SIDES and not (root / "edge").is_dir() else "all"
    if verify:
        _verify_files(root, side, manifest["files"])
    return Bundle(root, side, manifest, hashlib.sha256(raw).hexdigest())


def _positive_ints(value: Any, n: int | None = None) -> bool:
    return (
        isinstance(value, list)
        and (n is None or len(value) == n)
        and len(value) > 0
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
    )


# The fields every reader of a bundle relies on: (name, check, what a valid value is).
_MANIFEST_SCHEMA: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("model", lambda v: isinstance(v, str) and bool(v), "a model name"),
    ("split", lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an int >= 1"),
    ("input_shape", lambda v: _positive_ints(v, 3), "[C, H, W] of positive ints"),
    (
        "num_classes",
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 2,
        "an int >= 2",
    ),
    (
        "activation",
        lambda v: isinstance(v, dict) and _positive_ints(v.get("shape")),
        'an object with "shape" (positive ints)',
    ),
    ("edge", lambda v: isinstance(v, dict), "an object"),
    ("cloud", lambda v: isinstance(v, dict), "an object"),
    (
        "files",
        lambda v: (
            isinstance(v, dict)
            and bool(v)
            and all(
                isinstance(k, str) and isinstance(h, str) and len(h) == 64 for k, h in v.items()
            )
        ),
        "a non-empty object of path -> sha256 (hash verification needs it)",
    ),
)


def check_manifest(manifest: dict[str, Any], path: Path) -> None:
    """BundleError naming the first field that is missing or wrong (one line, what is valid)."""
    for name, valid, what in _MANIFEST_SCHEMA:
        if name not in manifest:
            raise BundleError(f"{path}: field {name!r} is missing (it must be {what}); re-export")
        if not valid(manifest[name]):
            raise BundleError(
                f"{path}: field {name!r} is {manifest[name]!r:.60} but must be {what}; re-export"
            )
    if "privacy" in manifest:  # optional: the defence `hostctl export` recorded
        from edge_runtime.privacy import PrivacyOptionError, exported_defence

        try:
            exported_defence(manifest["privacy"])
        except PrivacyOptionError as exc:
            raise BundleError(f"{path}: field 'privacy': {exc}; re-export") from None
    from edge_runtime.train.schedule import ScheduleError, schedule_of

    for half in ("edge", "cloud"):  # optional: a bundle from before schedules is constant
        config = manifest[half].get("optimizer")
        try:
            if isinstance(config, dict):
                schedule_of(config)
        except ScheduleError as exc:
            raise BundleError(
                f"{path}: field '{half}.optimizer.schedule': {exc}; re-export"
            ) from None


def read_manifest(
    path: Path, fmt: str, *, what: str, make: str, remake: str
) -> tuple[dict[str, Any], bytes]:
    """A JSON manifest of format `fmt`, and its bytes (whose sha256 names what it describes).

    BundleError says what is wrong: no manifest (`make` makes one), not JSON, or another
    format (`remake` gives one of this version). `what` names the directory's kind.
    """
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"{path.parent} is not {what}: no {path.name} (make one with `{make}`)")
    raw = path.read_bytes()
    try:
        manifest = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != fmt:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise BundleError(f"{path} has format {found!r}; this version reads {fmt!r} ({remake})")
    return manifest, raw


def _verify_files(root: Path, side: str, files: dict[str, str]) -> None:
    if side != "all":  # a half: its files sit at the root, without the side/ prefix
        prefix = side + "/"
        files = {k[len(prefix) :]: v for k, v in files.items() if k.startswith(prefix)}
    bad = mismatched_files(files, sha256_under(root), first_only=True)
    if bad:
        rel = f"{side}/{bad[0].rel}" if side != "all" else bad[0].rel
        if bad[0].actual is None:
            raise BundleError(f"bundle {root} is incomplete: {rel} is missing")
        raise BundleError(
            f"bundle {root} was modified: {rel} has sha256 {bad[0].actual[:12]}..., "
            f"the manifest says {bad[0].expected[:12]}... (re-export or re-deploy it)"
        )


def sha256_listing(root: Path, under: Path | None = None) -> dict[str, str]:
    """{posix path relative to `root`: hex sha256} of every file below `under` (default root).

    The list a manifest carries and `mismatched_files` checks.
    """
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(Path(under or root).rglob("*"))
        if p.is_file()
    }


@dataclass(frozen=True)
class FileMismatch:
    """A listed file whose bytes are not the ones listed."""

    rel: str
    expected: str  # hex sha256 the list gives
    actual: str | None  # hex sha256 found; None: the file is missing


def mismatched_files(
    listed: Mapping[str, str],
    sha256_of: Callable[[str], str | None],
    *,
    first_only: bool = False,
) -> list[FileMismatch]:
    """The files of `listed` ({relative path: hex sha256}) that are missing or differ.

    `sha256_of(rel)` hashes one file wherever the files are (`sha256_under(root)` for a local
    directory, a dict's `get` for hashes a board reported), None for a missing one. Paths are
    checked in sorted order; `first_only` stops at the first mismatch (hashing is the cost).
    """
    bad = []
    for rel, expected in sorted(listed.items()):
        actual = sha256_of(rel)
        if actual != expected:
            bad.append(FileMismatch(rel, expected, actual))
            if first_only:
                break
    return bad


def sha256_under(root: Path) -> Callable[[str], str | None]:
    """`sha256_of` for files under a local directory: None for a path that is not a file."""

    def sha256_of(rel: str) -> str | None:
        path = Path(root) / rel
        return sha256_file(path) if path.is_file() else None

    return sha256_of
