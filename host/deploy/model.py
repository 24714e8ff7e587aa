"""`hostctl deploy --model DIR`: put a trained model on a board for early-exit inference.

The board answers from three files of a model directory (docs/model_out.md): model.json,
edge.onnx and link.key; model.pt, full.onnx and tail.onnx stay on the host, which answers the
offloads with `hostctl serve --infer`. On the board, under the board file's work_dir:

    models/<name>/           model.json, edge.onnx, link.key; <name>: the model directory's

The files go to a temporary directory beside it, are checked there against their sha256
(model.json's own list, and this host's copies), and only then replace models/<name> (a
rename), so a failed or corrupted upload leaves the previous model in place.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from edge_runtime.bundle import KEY_FILE, mismatched_files, sha256_file
from edge_runtime.infer.model_dir import EDGE_ONNX, MODEL_JSON, ModelDirError, read_model_dir
from host.deploy.access import BoardAccess, BoardAccessError, open_shell
from host.deploy.board import Board
from host.deploy.errors import BoardError, DeployError
from host.deploy.release import board_work_dir, parse_sha256sum

# What the board answers from; the rest of the model directory stays on the host.
BOARD_MODEL_FILES = (MODEL_JSON, EDGE_ONNX, KEY_FILE)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class ModelDeployResult:
    """Where the model now is on the board, and what crossed."""

    remote_dir: str
    files: tuple[str, ...]
    bytes_sent: int


def deploy_model(
    board: Board,
    model_dir: Path,
    *,
    name: str | None = None,
    access: BoardAccess | None = None,
    console: Console | None = None,
) -> ModelDeployResult:
    """Copy what the board needs of `model_dir` to `work_dir/models/<name>` on `board`.

    DeployError names the step that failed (check, connect, upload, verify, switch); the
    model that was there before stays until the new one is verified.
    """
    model_dir = Path(model_dir)
    console = console or Console(stderr=True, quiet=True)
    name = name or model_dir.resolve().name
    if not _NAME.match(name):
        raise BoardError(f"model name {name!r}: use letters, digits, '.', '_' and '-'")
    try:
        read_model_dir(model_dir, needs=(EDGE_ONNX,))
        if not (model_dir / KEY_FILE).is_file():
            raise ModelDirError(f"{model_dir}: {KEY_FILE} is missing (the board's link key)")
    except ModelDirError as exc:
        raise DeployError("check", str(exc)) from None
    digests = {f: sha256_file(model_dir / f) for f in BOARD_MODEL_FILES}
    owned = access is None
    step = "connect"
    try:
        access = access or open_shell(board, "a model deploy")
        work = board_work_dir(board, access)
        final = f"{work}/models/{name}"
        staging = f"{work}/models/.{name}.incoming-{os.getpid()}"
        step = "upload"
        access.run(f"rm -rf {shlex.quote(staging)} && mkdir -p {shlex.quote(staging)}")
        sent = 0
        for file in BOARD_MODEL_FILES:
            access.put(model_dir / file, f"{staging}/{file}")
            sent += (model_dir / file).stat().st_size
        step = "verify"
        quoted = " ".join(shlex.quote(f"{staging}/{f}") for f in BOARD_MODEL_FILES)
        out = access.run(f"sha256sum {quoted} 2>/dev/null || true", timeout=600)
        found = {p.rsplit("/", 1)[-1]: sha for p, sha in parse_sha256sum(out.stdout).items()}
        bad = mismatched_files(digests, found.get)
        if bad:
            access.run(f"rm -rf {shlex.quote(staging)}", check=False)
            shown = ", ".join(f"{b.rel} (sha256 {(b.actual or 'missing')[:12]})" for b in bad)
            raise DeployError(step, f"upload corrupted: {shown}; the board keeps its old model")
        step = "switch"
        # The old copy aside first, then the new one in: models/<name> is never half written.
        old = f"{final}.old-{os.getpid()}"
        access.run(
            f"if [ -e {shlex.quote(final)} ]; then mv {shlex.quote(final)} {shlex.quote(old)}; "
            f"fi && mv {shlex.quote(staging)} {shlex.quote(final)} && rm -rf {shlex.quote(old)}"
        )
    except (BoardAccessError, BoardError, OSError) as exc:
        raise DeployError(step, str(exc)) from exc
    finally:
        if owned and access is not None:
            access.close()
    console.print(
        f"{board.name}: model {model_dir} -> {final} ({len(BOARD_MODEL_FILES)} files, "
        f"{sent / 1e3:.1f} kB, sha256 verified)"
    )
    return ModelDeployResult(final, BOARD_MODEL_FILES, sent)
