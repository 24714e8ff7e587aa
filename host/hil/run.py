"""A short hierarchical training run with the edge runtime on the board, the cloud here.

The cloud trainer serves on 127.0.0.1; the edge reaches it over the board's link. A board whose
`[link]` says `emulate = "3g"` (the virtual and qemu boards run on this machine) gets a shaped
user-space relay in front of the cloud (`emulate = "serial:115200"`: a pty pair paced to the
baud rate; host/session/links.py); a board with a `url` connects to the host as it says.
The edge is `edge-runtime run` from the board's current release, started through the board's
BoardAccess (a local process, a chroot under qemu-user, or ssh), so its step times are the
board's own.

With a model out, the run ends as a user's would: the board writes its own edge.onnx (its
engine's export), the host assembles the whole model from the board's uploaded weights and its
tail, and `infer_on_board` copies that model to the board and answers held-out samples there
with `edge-runtime infer` against this host's `tail.onnx`, over the same link.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edge_runtime.bundle import KEY_FILE, load_bundle, read_key_file
from edge_runtime.cli import infer_argv, run_argv
from edge_runtime.errors import HiertrainError
from edge_runtime.infer.model_dir import EDGE_ONNX
from edge_runtime.model_out import EDGE_JSON
from host.cloud.server import CloudServer
from host.deploy.access import BoardAccess, BoardAccessError
from host.deploy.board import Board
from host.deploy.errors import BoardError, DeployError
from host.deploy.model import deploy_model
from host.infer.server import InferServer
from host.linkemu import parse_link
from host.model.collect import held_out_samples, run_models_out
from host.session.links import Emulation, Listener, make_emulation
from host.session.runner import merge_reports


class HilError(HiertrainError):
    """The HIL run could not finish: which part failed and its output."""


@dataclass(frozen=True)
class HilRunOptions:
    """Small enough for CI on the virtual board; the board's speed sets the rest."""

    data: str = "synthetic:640"
    epochs: int = 2
    batch_size: int = 32
    codec: str = "int8"
    timeout_s: float = 900.0
    infer_samples: int = 64  # held-out samples the board answers in the inference run
    # The inference run's threshold, calibrated on held-out samples it does not answer (a
    # calibration pass on the board): at most this fraction offloaded, so both paths are used.
    infer_max_offload: float = 0.5


def edge_argv(
    board: Board,
    work: str,
    connect: str,
    opts: HilRunOptions,
    model_out: bool = False,
    **link: Any,
) -> list[str]:
    """`edge-runtime run` from the board's current release, writing under work/runs/hil
    (with ``model_out``, the board's trained front + exit in work/runs/hil/model).

    ``link``: more link options of `edge-runtime run` by parameter name (``baud`` for serial).
    """
    runs = f"{work}/runs/hil"
    argv = run_argv(
        [_edge_program(work)],
        bundle_dir=f"{work}/current/edge",
        url=connect,
        **link,
        engine=board.resolved_engine,
        data_spec=opts.data,
        epochs=opts.epochs,
        batch_size=opts.batch_size,
        codec=opts.codec,
        edge_id=board.name,
        work_dir=runs,
        fresh=True,
        report_path=f"{runs}/edge-report.json",
        model_out=f"{runs}/model" if model_out else None,
    )
    return argv + _pacing(board)


def _edge_program(work: str) -> str:
    return f"{work}/current/venv/bin/edge-runtime"


def _pacing(board: Board) -> list[str]:
    """A board that runs here at this machine's speed stands in for a slower one by pacing its
    steps; a board under emulation (chroot) or real hardware runs at its own speed."""
    local = board.connection.access_kind == "local"
    if local and board.profile and board.profile.slowdown and board.profile.slowdown > 1:
        return ["--slowdown", str(board.profile.slowdown)]
    return []


def link_capability(board: Board) -> str | None:
    """Why the HIL run cannot reach this board's edge, or None where it can."""
    if board.link.emulate:
        return None
    if board.link.url and board.link.url.startswith("socket://"):
        return None
    if board.link.serial or board.link.url:
        return (
            f"board {board.name} links over {board.link.serial or board.link.url}; the HIL run "
            "serves the cloud over TCP only (give [link] url = socket://HOST:PORT)"
        )
    return f"board {board.name} has no [link] (emulate, or url = socket://HOST:PORT)"


def _url_port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].strip("/"))


def train_on_board(
    board: Board,
    access: BoardAccess,
    work: str,
    bundle_dir: Path,
    state_dir: Path,
    opts: HilRunOptions | None = None,
    model_out: Path | None = None,
) -> dict[str, Any]:
    """Train with the edge on `board` (deployed under `work`) and the cloud here; the figures.

    Returns the merged run report (the demo's keys) plus the HIL figures (`hil_figures`). With
    `model_out`, the host writes the trained model there (`hostctl serve --model-out`) and the
    board's own edge.onnx and edge.json (`edge-runtime run --model-out`) are fetched into
    `state_dir/board-model`.
    """
    opts = opts or HilRunOptions()
    why = link_capability(board)
    if why is not None:
        raise HilError(why)
    bundle = load_bundle(bundle_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    emulation = _emulation(board)
    cloud = CloudServer(
        bundle,
        state_dir / "cloud-state",
        key=bundle.key(),
        metrics_csv=state_dir / "cloud.csv",
        config=emulation.link_config() if emulation else None,
        collect_model=model_out is not None,  # the board uploads its front only when asked
    )
    try:
        connect, link_desc, link_options = _open_link(board, emulation, cloud)
        argv = edge_argv(board, work, connect, opts, model_out is not None, **link_options)
        wall = _run_on_board(board, access, argv, opts.timeout_s, state_dir / "edge.log")
        cloud.wait(exit_when_done=True)
        if model_out is not None:
            samples = held_out_samples(opts.data, input_shape=bundle.manifest["input_shape"])
            run_models_out(bundle, cloud.states(), model_out, samples, say=lambda _: None)
    finally:
        cloud.stop()
        if emulation is not None:
            emulation.close()
    runs = f"{work}/runs/hil"
    edge_report = _fetch(access, f"{runs}/edge-report.json", state_dir)
    metrics = _fetch(access, f"{runs}/edge_metrics.csv", state_dir)
    if model_out is not None:
        (state_dir / "board-model").mkdir(exist_ok=True)
        for name in (EDGE_ONNX, EDGE_JSON):
            _copy_back(access, f"{runs}/model/{name}", state_dir / "board-model")
    link_stats = emulation.stats() if emulation else None
    report = merge_reports(
        json.loads(edge_report),
        cloud.report(link_desc),
        link_stats,
        link_desc,
        wall,
        emulation=emulation.describe() if emulation else None,
    )
    report["hil_figures"] = hil_figures(report, metrics, link_stats)
    return report


def infer_on_board(
    board: Board,
    access: BoardAccess,
    work: str,
    model_dir: Path,
    state_dir: Path,
    opts: HilRunOptions | None = None,
) -> dict[str, Any]:
    """Put the trained model in `model_dir` on the board and answer the first
    `opts.infer_samples` held-out samples there (`edge-runtime infer --max-offload`, calibrated
    on the board), this host answering offloads with `tail.onnx` (`hostctl serve --infer`) over
    the board's link.

    Returns the board's inference report, with the host's figures under `host`.
    """
    opts = opts or HilRunOptions()
    why = link_capability(board)
    if why is not None:
        raise HilError(why)
    state_dir.mkdir(parents=True, exist_ok=True)
    remote = f"{work}/runs/hil-infer"
    try:
        # As a user puts it there: `hostctl deploy --model` (what the board needs, verified).
        placed = deploy_model(board, model_dir, name="hil", access=access)
    except (DeployError, BoardError) as exc:
        raise HilError(f"cannot put the model on {board.name}: {exc}") from None
    emulation = _emulation(board)
    server = InferServer(
        model_dir,
        key=read_key_file(Path(model_dir) / KEY_FILE),
        config=emulation.link_config() if emulation else None,
    )
    t0 = time.perf_counter()
    try:
        connect, _, link_options = _open_link(board, emulation, server)
        argv = infer_argv(
            [_edge_program(work)],
            model_dir=placed.remote_dir,
            url=connect,
            **link_options,
            data_spec=opts.data,
            codec=opts.codec,
            max_offload=opts.infer_max_offload,
            limit=opts.infer_samples,
            edge_id=board.name,
            report_path=f"{remote}/infer.json",
        )
        _run_on_board(board, access, argv + _pacing(board), opts.timeout_s, state_dir / "infer.log")
    finally:
        server.close()
        if emulation is not None:
            emulation.close()
    report = json.loads(_fetch(access, f"{remote}/infer.json", state_dir))
    report["host"] = server.report(time.perf_counter() - t0).as_dict()
    return report


def _emulation(board: Board) -> Emulation | None:
    """The board runs on this machine: the host behind an emulated link (user-space, as the
    edge runs through the board's access, not in a namespace of ours)."""
    if board.link.emulate:
        return make_emulation(parse_link(board.link.emulate), "user")
    return None


def _open_link(
    board: Board, emulation: Emulation | None, host: Listener
) -> tuple[str, str, dict[str, Any]]:
    """Make `host` listen where the board's edge reaches it: (url, link label, more options)."""
    if emulation is not None:
        emulation.open(host)
        link_options = emulation.edge_options()
        return link_options.pop("url"), emulation.link.describe(), link_options
    # A real board connects to the host as its board file says: listen on that port.
    url = str(board.link.url)
    host.serve_tcp("0.0.0.0", _url_port(url))
    return url, url, {}


def _run_on_board(
    board: Board, access: BoardAccess, argv: list[str], timeout_s: float, log: Path
) -> float:
    """Run the edge runtime command on the board; its wall seconds. Output goes to `log`."""
    t0 = time.perf_counter()
    try:
        result = access.run(argv, check=False, timeout=timeout_s)
    except BoardAccessError as exc:
        raise HilError(f"the edge runtime on {board.name}: {exc}") from None
    wall = time.perf_counter() - t0
    log.write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        tail = " | ".join((result.stderr or result.stdout).strip().splitlines()[-8:])
        raise HilError(f"the edge runtime on {board.name} exited {result.returncode}: {tail}")
    return wall


def _fetch(access: BoardAccess, remote: str, state_dir: Path) -> str:
    """The text of the board's file `remote`, copied into `state_dir`."""
    return _copy_back(access, remote, state_dir).read_text()


def _copy_back(access: BoardAccess, remote: str, state_dir: Path) -> Path:
    local = state_dir / Path(remote).name
    try:
        access.get(remote, local)
    except (BoardAccessError, OSError) as exc:
        raise HilError(f"cannot fetch {remote} from the board: {exc}") from None
    return local


def hil_figures(
    report: dict[str, Any], metrics_csv: str, link: dict[str, Any] | None
) -> dict[str, Any]:
    """Edge step time, link throughput, epoch time and host/edge overlap of one run."""
    rows = [r for r in csv.DictReader(io.StringIO(metrics_csv)) if r["phase"] == "train"]
    steps = [float(r["step_s"]) for r in rows if r["step_s"]]
    per_epoch: dict[str, list[float]] = {}
    for r in rows:
        per_epoch.setdefault(r["epoch"], []).append(float(r["time"]))
    # An epoch's training span on the board: first batch done to last batch done, plus one step.
    spans = [max(t) - min(t) for t in per_epoch.values()]
    first_step = steps[0] if steps else 0.0
    busy_up = float(link["busy_up_s"]) if link else 0.0
    runtime = float(report["runtime_s"])
    bytes_up = int(report["bytes_up"])
    busiest = max(report["edge_busy_s"], report["link_busy_s"], report["cloud_busy_s"], 1e-9)
    return {
        "edge_step_s_median": round(statistics.median(steps), 5) if steps else None,
        "edge_step_s_p90": round(_quantile(steps, 0.9), 5) if steps else None,
        "edge_steps": len(steps),
        "epoch_s": round(runtime / max(int(report["epochs"]), 1), 3),
        "epoch_train_s_median": round(statistics.median(spans) + first_step, 3) if spans else None,
        "link_throughput_bps": round(8 * bytes_up / busy_up) if busy_up > 0 else None,
        "link_average_bps": round(8 * bytes_up / runtime) if runtime > 0 else None,
        "link_utilisation": round(busy_up / runtime, 3) if busy_up and runtime > 0 else None,
        "pipeline_efficiency": round(runtime / busiest, 3),
        "bottleneck": report["bottleneck"],
    }


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def board_work_dir(board: Board, tmp: Path | None) -> Board:
    """The board with its work_dir moved under `tmp` when the board is this machine."""
    if board.connection.access_kind == "local" and tmp is not None:
        return replace(board, work_dir=str(tmp / "board-work"))
    return board
