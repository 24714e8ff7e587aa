"""One rank of `hostctl serve --shared-tail --ranks N`: a torch.distributed process (torchrun).

Every rank holds the same shared tail and serves the edges that connect to its own address.
A `Stepper` thread per rank runs the collective loop; every iteration, all ranks together:

1. exchange a small control vector (all_reduce): samples in this rank's batch (0 or one
   batch), and whether it wants a checkpoint, has handshakes to claim, is idle, is stopping;
2. if any rank has a batch: each rank runs forward/backward on its batch (sum-reduced loss)
   or contributes zero gradient, the gradients and the BatchNorm statistics are summed
   (all_reduce) and divided by the total samples, and every rank takes the same optimizer
   step. The average is weighted by samples, so the step equals one step on the union of the
   ranks' batches, and the parameters stay identical on every rank;
3. if any rank wants a checkpoint: each rank reaches a quiet point (no batch of its own is
   trained but not yet accounted), the ranks' per-edge accounting is gathered, rank 0 writes
   the one shared checkpoint (tail, optimizer, every edge), and only after rank 0 says it is
   on disk does each rank acknowledge its edges' batches;
4. handshakes: an edge trains on the first rank it reached in this life of the ranks; a
   second rank refuses it, naming the first (claims are settled collectively, lowest rank
   first).

Why not DistributedDataParallel: DDP needs every rank to run forward and backward every step,
and averages over ranks, not samples. Here a rank often has no batch ready (its edges are
slower, or it has none); it contributes zero gradient and zero samples instead.

A rank whose collective fails (a peer died) exits at once without writing anything: torchrun's
elastic restart starts every rank again from the last checkpoint, the edges reconnect and
resend what was not acknowledged, which is exactly what the checkpoint does not hold.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from edge_runtime.bundle import Bundle
from edge_runtime.link import HandshakeRefused, LinkClosed, LinkConfig
from edge_runtime.report import write_report
from edge_runtime.statefile import StateError
from host.cloud.edge_state import SharedTail
from host.cloud.ranks import RANKS_DIR
from host.cloud.server import CloudServer
from host.cloud.tail import TailTrainer

log = logging.getLogger("hiertrain.cloud")

POLL_S = 0.02  # how long a rank waits for a batch of its own before it meets the others


def rank_file(state_dir: Path, rank: int, kind: str) -> Path:
    """`<state-dir>/ranks/rank-<r>.<kind>`: what a rank leaves for the launcher."""
    return Path(state_dir) / RANKS_DIR / f"rank-{rank}.{kind}"


@dataclass
class _Request:
    """One thing a session or handshake thread waits on the stepper for."""

    kind: str  # "batch", "checkpoint" or "claim"
    payload: Any = None
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None

    def wait(self) -> Any:
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.result

    def deliver(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.done.set()


class RankTail(TailTrainer):
    """The shared tail as one rank sees it: `train_step` hands the batch to the stepper and
    returns when the collective step that trained it is done."""

    def __init__(self, base: TailTrainer) -> None:
        # Adopt the loaded tail and optimizer instead of building them again.
        self.tail = base.tail
        self.optimizer = base.optimizer
        self.base_lr, self.schedule = base.base_lr, base.schedule
        # The epoch of the batch this thread is about to hand over (begin_epoch, then
        # train_step, on one edge's thread): the stepper sets the collective step's rate.
        self._batch_epoch = threading.local()
        self.stepper: Stepper | None = None
        # The stepper mutates the tail in place; evaluation must not read a half-applied step.
        self.model_lock = threading.Lock()

    def begin_epoch(self, epoch: int) -> float:
        """Note the batch's epoch; the rate is the stepper's to set: every rank must step the
        shared tail with the same one, whichever epochs their edges are in."""
        self._batch_epoch.value = epoch
        return self.schedule.lr(self.base_lr, epoch)

    def train_step(self, activation: np.ndarray, labels: np.ndarray) -> tuple[float, int]:
        assert self.stepper is not None
        epoch = getattr(self._batch_epoch, "value", 0)
        return self.stepper.request("batch", (activation, labels, epoch))

    def train_step_split(self, activation: np.ndarray, labels: np.ndarray):  # noqa: ANN201
        raise NotImplementedError("split learning is not served on ranks")

    def predict(self, activation: np.ndarray) -> np.ndarray:
        with self.model_lock:
            return super().predict(activation)


class RankSharedTail(SharedTail):
    """The shared tail of one rank: its steps and checkpoints are collective (`Stepper`)."""

    def __init__(self, bundle: Bundle, state_dir: Path) -> None:
        super().__init__(bundle, state_dir)
        self.trainer = RankTail(self.trainer)
        self.stepper: Stepper | None = None

    # `steps` counts batches trained into the tail over its life, on every rank: the stepper
    # keeps it (it sees every rank's count), so EdgeState's per-batch increment is ignored.
    @property
    def steps(self) -> int:
        return self._steps

    @steps.setter
    def steps(self, value: int) -> None:
        if getattr(self, "stepper", None) is None:  # SharedTail.__init__: 0, or the checkpoint's
            self._steps = value

    def checkpoint(self) -> None:
        """A collective checkpoint; the caller holds `lock` (as for SharedTail).

        Once the ranks have stopped there is none: nothing is acknowledged, and the edges
        resend after their cursor when they next connect."""
        assert self.stepper is not None
        if self.stepper.finished.is_set():
            return
        with contextlib.suppress(LinkClosed):
            self.stepper.request("checkpoint")


class Stepper:
    """The collective loop of one rank (see the module docstring)."""

    def __init__(self, shared: RankSharedTail, server: RankServer, *, hashes: bool) -> None:
        self.shared = shared
        self.tail: RankTail = shared.trainer  # type: ignore[assignment]
        self.server = server
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.hashes = hashes
        self.hash_log: list[str] = []  # sha256 of the tail after every optimizer step
        self.optimizer_steps = 0
        self.checkpoints = 0
        self.owners: dict[str, int] = {}  # edge id -> the rank it trains on in this life
        self.addresses: list[str] = []
        self._cv = threading.Condition()
        self._batch: _Request | None = None
        self._checkpoints: list[_Request] = []
        self._claims: list[_Request] = []
        self._stop = threading.Event()
        self.finished = threading.Event()
        self.finish_reason = ""
        self._thread = threading.Thread(target=self._run, name="rank-stepper", daemon=True)
        shared.stepper = self
        self.tail.stepper = self

    # -- what session threads ask -------------------------------------------------------------

    def request(self, kind: str, payload: Any = None) -> Any:
        """Queue a batch, a checkpoint or a claim for the next collective round; wait for it."""
        req = _Request(kind, payload)
        with self._cv:
            if self.finished.is_set():
                raise LinkClosed("the ranks have stopped")
            if kind == "batch":
                self._batch = req
            elif kind == "checkpoint":
                self._checkpoints.append(req)
            else:
                self._claims.append(req)
            self._cv.notify_all()
        return req.wait()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Ask every rank to stop at the next round (a rank's own stop stops them all)."""
        self._stop.set()
        with self._cv:
            self._cv.notify_all()

    # -- the loop -------------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._loop()
        except (RuntimeError, OSError, dist.DistBackendError) as exc:
            # A peer is gone (killed, or its machine): nothing more can be stepped or written
            # consistently. Exit now; torchrun restarts every rank from the last checkpoint.
            message = f"rank {self.rank}: a collective failed ({exc}); leaving for a restart"
            log.error("%s", message.splitlines()[0])
            _write_error(self.server.state_dir, self.rank, message.splitlines()[0])
            logging.shutdown()
            os._exit(1)
        finally:
            with self._cv:
                self.finished.set()
                pending = [*self._checkpoints, *self._claims, self._batch]
                self._batch, self._checkpoints, self._claims = None, [], []
            for req in pending:
                if req is not None:
                    req.deliver(error=LinkClosed("the ranks have stopped"))

    def _loop(self) -> None:
        while True:
            with self._cv:
                if self._batch is None and not self._stop.is_set():
                    self._cv.wait(POLL_S)
                batch = self._batch
                want_ckpt = bool(self._checkpoints)
                claims = list(self._claims)
            n = len(batch.payload[1]) if batch is not None else 0
            ctrl = torch.tensor(
                [
                    n,
                    batch is not None,
                    want_ckpt,
                    len(claims),
                    *self.server.progress(),
                    self._stop.is_set(),
                ],
                dtype=torch.float64,
            )
            dist.all_reduce(ctrl)
            total_n, batches, ckpt, n_claims, idle, seen, back, stop = (
                int(v) for v in ctrl.tolist()
            )
            if n_claims:
                self._settle_claims(claims)
            if total_n:
                self._step(batch, n, total_n, batches)
            if ckpt or stop:
                self._checkpoint_round()
            if stop:
                self.finish_reason = "stopped"
                return
            if (
                self.server.exit_when_done
                and seen >= self.server.expect_edges
                and idle == self.world
                and back == len(self.server.unfinished_saved)
            ):
                self.finish_reason = "done"
                return

    def _step(self, batch: _Request | None, n: int, total_n: int, batches: int) -> None:
        """One synchronised optimizer step over every rank's batch (weighted by samples)."""
        tail, optimizer = self.tail.tail, self.tail.optimizer
        with self.tail.model_lock:
            optimizer.zero_grad(set_to_none=False)
            loss = correct = 0.0
            epoch = -1  # a rank without a batch has no say in the rate
            if batch is not None:
                x, y, epoch = batch.payload
                tail.train()
                logits = tail(torch.from_numpy(np.ascontiguousarray(x, np.float32)))
                labels = torch.from_numpy(np.ascontiguousarray(y, np.int64))
                summed = nn.functional.cross_entropy(logits, labels, reduction="sum")
                summed.backward()
                loss = float(summed.detach()) / n
                correct = int((logits.detach().argmax(1) == labels).sum())
            params = [p for p in tail.parameters() if p.requires_grad]
            for p in params:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
            stats = [b for b in tail.buffers() if b.is_floating_point()]
            counts = [b for b in tail.buffers() if not b.is_floating_point()]
            # A rank without a batch kept its statistics unchanged; weight 0 leaves them out.
            flat = torch.cat(
                [p.grad.reshape(-1) for p in params] + [b.reshape(-1) * n for b in stats]
            )
            dist.all_reduce(flat)
            flat /= total_n
            offset = 0
            for t in [p.grad for p in params] + stats:
                t.copy_(flat[offset : offset + t.numel()].view_as(t))
                offset += t.numel()
            for c in counts:  # num_batches_tracked: the ranks that stepped all agree on it
                dist.all_reduce(c, op=dist.ReduceOp.MAX)
            if not self.tail.schedule.constant:
                # One rate for the collective step: the latest epoch among the ranks' batches
                # (a fleet's edges need not be in the same epoch).
                latest = torch.tensor([epoch], dtype=torch.int64)
                dist.all_reduce(latest, op=dist.ReduceOp.MAX)
                lr = self.tail.schedule.lr(self.tail.base_lr, int(latest))
                for group in optimizer.param_groups:
                    group["lr"] = lr
            optimizer.step()
            self.optimizer_steps += 1
            self.shared._steps += batches
            if self.hashes:
                self.hash_log.append(tail_digest(tail))
        if batch is not None:
            with self._cv:
                self._batch = None
            batch.deliver((loss, correct))

    def _quiesce(self) -> bool:
        """Wait until this rank's accounting matches its tail; True if we took the lock.

        A session thread holds the shared lock while it dispatches a message; if it is parked
        on us (its batch not trained yet, or asking for a checkpoint) its edge's accounting is
        whole and the lock is ours to borrow. Otherwise it finishes its accounting and lets go.
        """
        while True:
            with self._cv:
                if self._batch is not None or self._checkpoints:
                    return False
            if self.shared.lock.acquire(timeout=0.005):
                return True

    def _checkpoint_round(self) -> None:
        """Gather every rank's accounting; rank 0 writes; then each rank acknowledges."""
        took = self._quiesce()
        try:
            with self._cv:
                waiters, self._checkpoints = self._checkpoints, []
            members = dict(self.shared.members)
            metas = {key: state.meta() for key, state in members.items()}
            gathered: list[Any] = [None] * self.world
            dist.all_gather_object(gathered, metas)
            error: list[Any] = [None]
            if self.rank == 0:
                merged = dict(self.shared.saved)
                for rank_metas in gathered:
                    merged.update(rank_metas)
                try:
                    self._write(merged)
                except StateError as exc:
                    error[0] = str(exc)
            dist.broadcast_object_list(error, src=0)
            failure = None
            if error[0] is None:
                self.checkpoints += 1
                for key, state in members.items():
                    state.consumed_seq = metas[key]["consumed_seq"]
            else:
                path = self.shared.path
                failure = StateError(path, f"rank 0 could not write it: {error[0]}", "see rank 0")
        finally:
            if took:
                self.shared.lock.release()
        for req in waiters:
            req.deliver(error=failure)

    def _write(self, metas: dict[tuple[str, str], dict[str, Any]]) -> None:
        """Rank 0: the shared checkpoint, exactly as SharedTail writes it."""
        import io

        from edge_runtime.statefile import write_state
        from host.cloud.edge_state import SHARED_KIND, SHARED_VERSION

        edges = [{"edge_id": e, "run_id": r, "meta": m} for (e, r), m in metas.items()]
        buffer = io.BytesIO()
        torch.save(
            {
                "trainer": self.tail.state_dict(),
                "steps": self.shared._steps,
                "edges": edges,
                "front": self.shared.front,  # front averaging's (not run on ranks: empty)
            },
            buffer,
        )
        write_state(self.shared.path, buffer.getvalue(), kind=SHARED_KIND, version=SHARED_VERSION)

    def _settle_claims(self, claims: list[_Request]) -> None:
        """Which rank each newly connecting edge trains on in this life: the first to claim."""
        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, [req.payload for req in claims])
        for rank, edge_ids in enumerate(gathered):
            for edge_id in edge_ids:
                self.owners.setdefault(edge_id, rank)
        with self._cv:
            self._claims = [r for r in self._claims if r not in claims]
        for req in claims:
            req.deliver(self.owners[req.payload])


def tail_digest(tail: nn.Module) -> str:
    """sha256 over the tail's parameters and buffers, in state_dict order."""
    h = hashlib.sha256()
    for name, t in tail.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class RankServer(CloudServer):
    """A CloudServer whose shared tail is a rank's, and whose edges are claimed collectively."""

    shared_tail_type = RankSharedTail

    def __init__(
        self, *args: Any, exit_when_done: bool, expect_edges: int, hashes: bool, **kwargs: Any
    ) -> None:
        super().__init__(*args, shared_tail=True, **kwargs)
        self.exit_when_done = exit_when_done
        self.expect_edges = max(1, expect_edges)  # with exit_when_done: edges to wait for
        assert isinstance(self.shared, RankSharedTail)
        self.stepper = Stepper(self.shared, self, hashes=hashes)
        self.unfinished_saved: set[tuple[str, str]] = set()  # set once rank 0's state is in

    def progress(self) -> tuple[bool, int, int]:
        """What this rank adds to the ranks' "every edge is done" test, summed over ranks:
        whether it is idle (no session open, every edge it serves done; a rank with no edges
        is idle), the edges it knows (its own that no checkpoint had, plus, on rank 0 only,
        every edge in the checkpoint: after a restart a finished edge never comes back), and
        how many of the checkpoint's unfinished edges it has seen finish."""
        saved = self.shared.saved
        with self._changed:
            states = self.states()
            idle = not self._active and all(s.done for s in states)
        new = sum((s.edge_id, s.run_id) not in saved for s in states)
        known = new + (len(saved) if self.stepper.rank == 0 else 0)
        back = sum(s.done and (s.edge_id, s.run_id) in self.unfinished_saved for s in states)
        return idle, known, back

    def _resume_for(self, edge_id: str, run_id: str) -> tuple[int, dict[str, Any]]:
        owner = self.stepper.request("claim", edge_id)
        if owner != self.stepper.rank:
            where = self.stepper.addresses[owner] if self.stepper.addresses else "?"
            message = (
                f"edge id {edge_id!r} trains on rank {owner} ({where}) until the ranks "
                "restart; connect there, or give each board its own --edge-id"
            )
            self.errors.append(f"{edge_id}: refused run {run_id}: {message}")
            raise HandshakeRefused("identity", message)
        return super()._resume_for(edge_id, run_id)


def _write_error(state_dir: Path, rank: int, message: str) -> None:
    path = rank_file(state_dir, rank, "error")
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(message + "\n")


def watch_parent(state_dir: Path, rank: int, every_s: float = 1.0) -> None:
    """Exit when torchrun, our parent, is gone (its agent SIGKILLed, or its launcher's test or
    benchmark killed): an orphaned rank would keep its listener, its gloo sockets and a core,
    and stray ranks were about when a later run's start-up hung."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(every_s)
            if os.getppid() != parent:
                message = f"rank {rank}: torchrun (pid {parent}) is gone; leaving"
                log.error("%s", message)
                _write_error(state_dir, rank, message)
                logging.shutdown()
                os._exit(1)

    threading.Thread(target=watch, name="rank-parent-watch", daemon=True).start()


def meet(what: str, timeout: timedelta) -> None:
    """A start-up barrier that names the ranks that did not come within `timeout`
    (`monitored_barrier`, gloo) instead of waiting in the next collective."""
    try:
        dist.monitored_barrier(timeout=timeout, wait_all_ranks=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RankStartError(
            f"the ranks did not all {what} (waited up to {timeout.total_seconds():g} s): {first}"
        ) from None


class RankStartError(RuntimeError):
    """The ranks could not start together (a rank missing at a start-up barrier)."""


def init_ranks(timeout: timedelta) -> tuple[int, int]:
    """Join the process group (gloo); returns (rank, world size).

    torchrun's agent keeps one store across elastic restarts, and gloo's addresses from the
    life before would still be in it: the restarted ranks waited forever to connect to dead
    peers. Each life gets its own key prefix (the restart count)."""
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    life = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    store = dist.TCPStore(
        os.environ["MASTER_ADDR"],
        int(os.environ["MASTER_PORT"]),
        world,
        # Under torchrun the agent hosts the store; launched otherwise, rank 0 does.
        is_master=rank == 0 and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True",
        timeout=timeout,
    )
    prefixed = dist.PrefixStore(f"hiertrain/life{life}", store)
    dist.init_process_group("gloo", store=prefixed, rank=rank, world_size=world, timeout=timeout)
    return rank, world


def adopt_rank0_state(shared: RankSharedTail) -> None:
    """Start every rank from what rank 0 loaded: the tail, its optimizer, the batch count and
    every saved edge's accounting. The same start whatever each rank found, and no rank but 0
    needs to read the checkpoint (the state dir need not be shared across machines)."""
    state: list[Any] = [None]
    if dist.get_rank() == 0:
        state[0] = {
            "trainer": shared.trainer.state_dict(),
            "steps": shared.steps,
            "saved": shared.saved,
            "front": shared.front,
        }
    dist.broadcast_object_list(state, src=0)
    if dist.get_rank() != 0:
        shared.trainer.load_state_dict(state[0]["trainer"])
        shared._steps = state[0]["steps"]
        shared.saved = state[0]["saved"]
        shared.front = state[0]["front"]


def run_rank(args: argparse.Namespace) -> int:
    """The body of one rank; returns its exit code."""
    from edge_runtime.bundle import load_bundle, read_key_file
    from host.cloud.serve import log_events

    state_dir = Path(args.state_dir)
    rank = int(os.environ["RANK"])
    rank_file(state_dir, rank, "pid").parent.mkdir(parents=True, exist_ok=True)
    rank_file(state_dir, rank, "pid").write_text(f"{os.getpid()}\n")
    watch_parent(state_dir, rank)
    start = timedelta(seconds=args.start_timeout)
    rank, world = init_ranks(timedelta(seconds=args.timeout))
    bundle = load_bundle(args.bundle)
    key = read_key_file(Path(args.key_file)) if args.key_file else bundle.key()
    metrics = Path(f"{args.metrics_csv}.rank{rank}") if args.metrics_csv else None
    server = RankServer(
        bundle,
        state_dir,
        key=key,
        checkpoint_every=args.checkpoint_every,
        metrics_csv=metrics,
        config=LinkConfig(window=args.window),
        on_event=log_events(),
        shared_key=args.shared_key,
        exit_when_done=args.exit_when_done,
        expect_edges=args.expect_edges,
        hashes=args.hashes,
        collect_model=bool(args.model_out),
    )
    stepper = server.stepper
    ports = [int(p) for p in args.ports.split(",")]
    if len(ports) != world:
        raise SystemExit(f"rank {rank}: {len(ports)} ports for {world} ranks")
    # Every rank has loaded the bundle and built its tail; a rank that has not by now is named
    # here, not left for the next collective to wait on.
    meet("load the bundle", start)
    adopt_rank0_state(server.shared)
    server.unfinished_saved = {k for k, meta in server.shared.saved.items() if not meta["done"]}
    try:
        host, port = server.serve_tcp(args.host, ports[rank])
        address = f"tcp://{host}:{port}"
    except OSError as exc:
        address = None
        problem = f"rank {rank} cannot listen on tcp://{args.host}:{ports[rank]}: {exc.strerror}"
    meet("bind their listeners", start)
    addresses: list[Any] = [None] * world
    dist.all_gather_object(addresses, address)
    if None in addresses:
        down = [r for r, a in enumerate(addresses) if a is None]
        if address is None:
            _write_error(state_dir, rank, problem)
            log.error("%s", problem)
        else:
            log.error("rank %d: ranks %s could not listen; stopping", rank, down)
        server.listener.close()
        return 1
    stepper.addresses = addresses
    # One write of the whole line: print() writes the text and the newline apart, and under
    # torchrun (`python -u`) the ranks' writes to their shared stdout then interleaved
    # ("...(rank 0 of 2)listening on ...(rank 1 of 2)"), so a reader missed a rank's line.
    sys.stdout.write(f"listening on {address} (rank {rank} of {world})\n")
    sys.stdout.flush()
    signal.signal(signal.SIGTERM, lambda *_: stepper.stop())
    signal.signal(signal.SIGINT, lambda *_: stepper.stop())
    stepper.start()
    while not stepper.finished.wait(0.2):
        if server._stopping.is_set():  # a state error (disk full): every rank stops
            stepper.stop()
    server.request_stop()
    server.stop()
    report = server.report()
    report["rank"] = {
        "rank": rank,
        "world": world,
        "address": address,
        "finish": stepper.finish_reason,
        "optimizer_steps": stepper.optimizer_steps,
        "batches_in_tail": server.shared.steps,
        "checkpoints": stepper.checkpoints,
        "tail_sha256": tail_digest(server.shared.trainer.tail),
        "step_sha256": stepper.hash_log,
        "restart": int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")),
    }
    write_report(rank_file(state_dir, rank, "json"), report)
    if args.model_out and server.fatal is None:
        write_models(server, bundle, Path(args.model_out))
    dist.destroy_process_group()
    return 1 if server.fatal is not None else 0


def write_models(server: RankServer, bundle: Bundle, out: Path) -> None:
    """`--model-out DIR` on ranks: each rank writes the models of the edges it served, each
    that edge's front + exit (sent at the end of its run) on the one shared tail (the same on
    every rank). As one process does: DIR when the whole fleet is one edge, else
    DIR/<edge id>; the ranks agree on which by gathering who sent a model."""
    from host.model.collect import model_out, parts_from_state

    mine = [s for s in server.states() if s.edge_model() is not None]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, [s.edge_id for s in mine])
    total = sum(len(ids) for ids in gathered)
    for state in mine:
        target = out if total == 1 else out / state.edge_id
        model_out(parts_from_state(bundle, state), target, say=log.info)


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m host.cloud.distributed` (torchrun runs one per rank)."""
    parser = argparse.ArgumentParser(prog="host.cloud.distributed")
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--ports", required=True, help="one port per rank, comma-separated")
    parser.add_argument("--key-file", default=None)
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--metrics-csv", default=None)
    parser.add_argument("--window", type=int, default=16)
    parser.add_argument("--shared-key", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--exit-when-done", action="store_true")
    parser.add_argument("--expect-edges", type=int, default=1)
    parser.add_argument("--hashes", action="store_true", help="hash the tail after every step")
    parser.add_argument("--model-out", default=None, help="write the edges' models here")
    parser.add_argument("--timeout", type=float, default=120.0, help="collective timeout (s)")
    parser.add_argument(
        "--start-timeout",
        type=float,
        default=120.0,
        help="how long the ranks wait for each other at start-up (s)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format=f"%(asctime)s rank{os.environ.get('RANK', '?')} %(message)s",
        stream=sys.stderr,
    )
    state_dir = Path(args.state_dir)
    rank = int(os.environ.get("RANK", "0"))
    try:
        return run_rank(args)
    except Exception as exc:  # noqa: BLE001 - one line for the launcher, then a failed rank
        message = f"rank {rank}: {type(exc).__name__}: {exc}".splitlines()[0]
        _write_error(state_dir, rank, message)
        log.error("%s", message)
        if os.environ.get("HIERTRAIN_TRACEBACK"):
            raise
        return 1


if __name__ == "__main__":
    sys.exit(main())
