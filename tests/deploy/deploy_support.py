"""Helpers for the deploy tests: small export bundles and board files for this machine."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path


def write_edge_bundle(root: Path, files: dict[str, bytes]) -> Path:
    """An export bundle as `load_bundle` checks it: manifest with sha256, edge/ with the files."""
    if root.exists():
        shutil.rmtree(root)
    (root / "edge").mkdir(parents=True)
    hashes = {}
    for name, data in files.items():
        (root / "edge" / name).write_bytes(data)
        hashes[f"edge/{name}"] = hashlib.sha256(data).hexdigest()
    manifest = {
        "format": "hiertrain-bundle/1",
        "model": "smallcnn",
        "split": 2,
        "input_shape": [3, 32, 32],
        "num_classes": 10,
        "activation": {"shape": [32, 8, 8], "dtype": "float32"},
        "edge": {},
        "cloud": {},
        "files": hashes,
    }
    raw = json.dumps(manifest, indent=2).encode()
    (root / "manifest.json").write_bytes(raw)
    (root / "edge" / "manifest.json").write_bytes(raw)
    return root


EDGE_FILES = {
    "training_model.onnx": b"\x01training" * 20000,
    "eval_model.onnx": b"\x02eval" * 5000,
    "optimizer_model.onnx": b"\x03optimizer" * 3000,
    "checkpoint": b"\x04checkpoint" * 8000,
    "link.key": b"ab" * 32,
}


def ssh_connection(sshd) -> str:
    """A board file's [connection] body for the test sshd (conftest's SshServer)."""
    return "\n".join(
        [
            'kind = "ssh"',
            'host = "127.0.0.1"',
            f"port = {sshd.port}",
            f'user = "{sshd.user}"',
            f'identity_file = "{sshd.identity_file}"',
            f'known_hosts = "{sshd.known_hosts}"',
            "connect_timeout_s = 5",
        ]
    )


def write_board(path: Path, work_dir: Path, connection: str, **top: str) -> Path:
    """A board file for this machine (x86_64, this Python) with the given [connection] body."""
    keys = {
        "name": "test-board",
        "arch": os.uname().machine,
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
        "engine": "ort",
        "interpreter": sys.executable,
        "work_dir": str(work_dir),
        **top,
    }
    body = "\n".join(f"{k} = {json.dumps(v)}" for k, v in keys.items())
    link = '[link]\nurl = "socket://127.0.0.1:5555"\n'
    service = f'[service]\nsystemd_dir = "{work_dir}/systemd"\nargs = ["--codec", "fp16"]\n'
    path.write_text(f"{body}\n\n[connection]\n{connection}\n\n{link}\n{service}")
    return path


def write_wheel(folder: Path, name: str, version: str, requires: list[str]) -> Path:
    """A minimal pure-Python wheel whose METADATA lists `requires` as Requires-Dist."""
    import zipfile

    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}-py3-none-any.whl"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    wheel = "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{dist}.dist-info/METADATA", metadata)
        zf.writestr(f"{dist}.dist-info/WHEEL", wheel)
        zf.writestr(f"{dist}.dist-info/RECORD", "")
    return path
