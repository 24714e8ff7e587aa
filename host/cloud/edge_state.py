"""What the host keeps per (edge, run): the tail, its cursor, its accounting — durably.

A checkpoint holds the tail, its optimizer, the consumed sequence number and the ids of every
batch trained so far, written atomically together. After a crash the host reloads it, hands the
cursor to the link (WELCOME), and the edge re-sends everything after it: what was trained but
not checkpointed is trained again from the checkpointed tail, so the final tail has seen each
batch exactly once. Ids are (epoch, index); a batch whose id is not above the last trained one
is a duplicate (a restarted edge re-creating batches) and is acknowledged without training.

With a shared tail (`hostctl serve --shared-tail`) every edge of the fleet trains one
`SharedTail`: its tail, its optimizer and every member edge's accounting live in one checkpoint
written atomically, and every member's lock is the shared tail's, so that a checkpoint taken
for one edge is a consistent cut of all of them (see `SharedTail`).
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import torch

from edge_runtime.bundle import Bundle
from edge_runtime.model_messages import ModelWeights
from edge_runtime.statefile import StateError, read_state, write_state
from host.cloud.tail import TailTrainer

CONFIDENCE_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)


STATE_KIND, STATE_VERSION = "tail-checkpoint", 1
SUFFIX = ".ckpt"
RESTORE = (
    "restore it from its .prev file, move it away to start that edge's tail over, "
    "or serve with another --state-dir"
)


def state_file(state_dir: Path, edge_id: str, run_id: str) -> Path:
    """Checkpoint path of one (edge, run). The mapping is injective: every byte outside
    [A-Za-z0-9_.-] is percent-escaped and '+', which is always escaped, separates the ids, so
    ('a--b', 'c') and ('a', 'b--c'), or 'lab/pi' and 'lab_pi', never share a file."""
    return state_dir / f"{quote(edge_id, safe='')}+{quote(run_id, safe='')}{SUFFIX}"


SHARED_KIND, SHARED_VERSION = "shared-tail-checkpoint", 1
SHARED_FILE = "shared-tail.fleet"  # not *.ckpt: a per-edge server never mistakes it for its own


def check_state_dir(
    state_dir: Path, *, shared: bool = False, tail: torch.nn.Module | None = None
) -> int:
    """Verify every tail checkpoint in `state_dir` before serving (StateError on the first
    damaged one, on checkpoints of the other kind: per-edge tails and a shared tail never
    mix in one directory, and, given the bundle's `tail`, on one whose tail does not fit
    it); returns how many there are."""
    state_dir = Path(state_dir)
    paths = sorted(state_dir.glob(f"*{SUFFIX}")) if state_dir.is_dir() else []
    shared_path = state_dir / SHARED_FILE
    if shared and paths:
        raise StateError(
            paths[0],
            "is a per-edge tail checkpoint, and --shared-tail keeps one tail for all edges",
            "serve without --shared-tail, or with another --state-dir",
        )
    if not shared and shared_path.exists():
        raise StateError(
            shared_path,
            "is a shared tail checkpoint, and this server keeps one tail per edge",
            "serve with --shared-tail, or with another --state-dir",
        )
    for path in paths:
        payload = read_state(path, kind=STATE_KIND, version=STATE_VERSION, way_out=RESTORE)
        _check_fits(path, payload, tail)
    if shared and shared_path.exists():
        payload = read_state(shared_path, kind=SHARED_KIND, version=SHARED_VERSION, way_out=RESTORE)
        _check_fits(shared_path, payload, tail)
        return 1
    return len(paths)


def _check_fits(path: Path, payload: bytes, tail: torch.nn.Module | None) -> None:
    """StateError unless the checkpoint's tail has `tail`'s entries and shapes."""
    if tail is None:
        return
    saved = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    theirs, ours = saved["trainer"]["tail"], tail.state_dict()
    odd = sorted(set(theirs) ^ set(ours)) or [
        k for k in ours if tuple(theirs[k].shape) != tuple(ours[k].shape)
    ]
    if odd:
        raise StateError(
            path,
            f"holds the tail of another model or split than this bundle's (it differs at "
            f"{odd[0]}): a run of an earlier export",
            "serve it with the bundle that run trained, move it away, or serve with another "
            "--state-dir",
        )


class SharedTail:
    """One tail and its optimizer, trained on the batches of every edge holding the bundle.

    Exactly-once stays per edge: each member `EdgeState` keeps its own cursor, trained ids and
    duplicates. The checkpoint holds the tail, the optimizer and *every* member's accounting,
    written atomically in one state file, because the tail has learnt from every edge's batches
    since the last checkpoint: a checkpoint made for edge A that left out edge B's cursor would,
    after a crash, make B re-send batches the tail already holds. Every member shares `lock`,
    so a checkpoint is a consistent cut (no edge is mid-batch) and training is serialized.
    """

    def __init__(self, bundle: Bundle, state_dir: Path) -> None:
        """The shared tail of `state_dir`, from its checkpoint if there is one."""
        self.trainer = TailTrainer(bundle)
        self.path = Path(state_dir) / SHARED_FILE
        self.lock = threading.Lock()
        self.members: dict[tuple[str, str], EdgeState] = {}
        # Accounting of edges saved by an earlier life of the host and not (yet) back: kept in
        # every later checkpoint, since the tail holds their batches.
        self.saved: dict[tuple[str, str], dict[str, Any]] = {}
        self.steps = 0  # optimizer steps of the tail over its whole life, across restarts
        # Front averaging (host/cloud/modes/averaging.py): the averaged front, its version and
        # its rounds, saved with the tail so that a restarted host goes on from them.
        self.front: dict[str, Any] = {}
        if self.path.exists():
            payload = read_state(
                self.path, kind=SHARED_KIND, version=SHARED_VERSION, way_out=RESTORE
            )
            saved = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
            self.trainer.load_state_dict(saved["trainer"])
            self.steps = saved["steps"]
            self.front = saved.get("front", {})
            self.saved = {(e["edge_id"], e["run_id"]): e["meta"] for e in saved["edges"]}

    def join(self, state: EdgeState) -> None:
        """Make `state` a member: its accounting goes into every checkpoint from now on."""
        self.members[(state.edge_id, state.run_id)] = state

    def checkpoint(self) -> None:
        """Write tail + optimizer + every edge's accounting atomically; afterwards every member
        has `consumed_seq == last_seq`. The caller holds `lock`."""
        metas = dict(self.saved)
        metas.update({key: s.meta() for key, s in self.members.items()})
        edges = [{"edge_id": e, "run_id": r, "meta": m} for (e, r), m in metas.items()]
        buffer = io.BytesIO()
        torch.save(
            {
                "trainer": self.trainer.state_dict(),
                "steps": self.steps,
                "edges": edges,
                "front": self.front,
            },
            buffer,
        )
        write_state(self.path, buffer.getvalue(), kind=SHARED_KIND, version=SHARED_VERSION)
        for state in self.members.values():
            state.consumed_seq = state.last_seq


@dataclass
class EvalEpoch:
    """Final-exit results on the test set for one epoch, by eval batch index."""

    correct: dict[int, list[int]] = field(default_factory=dict)

    def accuracy(self) -> float | None:
        flat = [c for i in sorted(self.correct) for c in self.correct[i]]
        return float(np.mean(flat)) if flat else None

    def flat(self) -> np.ndarray:
        return np.array([c for i in sorted(self.correct) for c in self.correct[i]], dtype=bool)


@dataclass
class TrainedBatch:
    """What training one batch gave: its figures, and the activation's gradient if asked."""

    figures: dict[str, Any]
    grad: np.ndarray | None = None


@dataclass
class EdgeState:
    """One edge's run on this host."""

    edge_id: str
    run_id: str
    trainer: TailTrainer
    path: Path
    consumed_seq: int = 0  # everything up to here is inside the checkpoint
    last_seq: int = 0  # everything up to here is trained in memory
    trained: tuple[int, int] | None = None
    trained_ids: list[tuple[int, int]] = field(default_factory=list)
    duplicates: int = 0
    eval: dict[int, EvalEpoch] = field(default_factory=dict)
    epochs: dict[int, dict[str, Any]] = field(default_factory=dict)
    cloud_busy_s: float = 0.0
    train_correct: int = 0
    train_seen: int = 0
    last_trained_at: float | None = None  # wall clock when the tail last trained a batch
    done: bool = False
    raw: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    # The edge's trained front + exit (MODEL_WEIGHTS parts), in memory: `--model-out` writes
    # them at the run's end; after a crash `hostctl model` takes the edge's checkpoint instead.
    model_parts: dict[int, ModelWeights] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    shared: SharedTail | None = None  # the fleet's tail, when this edge trains a shared one

    @classmethod
    def open(
        cls,
        bundle: Bundle,
        state_dir: Path,
        edge_id: str,
        run_id: str,
        shared: SharedTail | None = None,
    ) -> EdgeState:
        """The saved state of (edge, run), or a fresh one with the bundle's initial tail.

        With `shared`, the edge trains the shared tail, under its lock, and its accounting
        comes from (and goes into) the shared checkpoint."""
        if shared is not None:
            state = cls(
                edge_id, run_id, shared.trainer, shared.path, lock=shared.lock, shared=shared
            )
            meta = shared.saved.get((edge_id, run_id))
            if meta is not None:
                state.restore(meta)
            shared.join(state)
            return state
        path = state_file(state_dir, edge_id, run_id)
        state = cls(edge_id, run_id, TailTrainer(bundle), path)
        if path.exists():
            payload = read_state(path, kind=STATE_KIND, version=STATE_VERSION, way_out=RESTORE)
            saved = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
            state.trainer.load_state_dict(saved["trainer"])
            state.restore(saved["meta"])
        return state

    def restore(self, meta: dict[str, Any]) -> None:
        """Take the accounting a checkpoint saved (what `meta()` gave)."""
        self.consumed_seq = self.last_seq = meta["consumed_seq"]
        self.trained = tuple(meta["trained"]) if meta["trained"] else None
        self.trained_ids = [tuple(i) for i in meta["trained_ids"]]
        self.duplicates = meta["duplicates"]
        self.eval = {
            int(e): EvalEpoch({int(i): c for i, c in v.items()}) for e, v in meta["eval"].items()
        }
        self.epochs = {int(e): v for e, v in meta["epochs"].items()}
        self.cloud_busy_s = meta["cloud_busy_s"]
        self.done = meta["done"]

    def meta(self) -> dict[str, Any]:
        """This edge's accounting as a checkpoint saves it, with everything trained so far
        counted as consumed."""
        return {
            "consumed_seq": self.last_seq,
            "trained": list(self.trained) if self.trained else None,
            "trained_ids": [list(i) for i in self.trained_ids],
            "duplicates": self.duplicates,
            "eval": {
                str(e): {str(i): c for i, c in ev.correct.items()} for e, ev in self.eval.items()
            },
            "epochs": {str(e): v for e, v in self.epochs.items()},
            "cloud_busy_s": self.cloud_busy_s,
            "done": self.done,
            "saved_at": time.time(),
        }

    def resume_info(self) -> dict[str, Any]:
        """What WELCOME tells the edge: the last batch id the tail has trained."""
        return {"trained": list(self.trained) if self.trained else None}

    def checkpoint(self) -> None:
        """Write tail + cursor + accounting atomically; afterwards `consumed_seq == last_seq`.

        A shared tail's edge writes the shared checkpoint, which covers every member edge."""
        if self.shared is not None:
            self.shared.checkpoint()
            return
        buffer = io.BytesIO()
        torch.save({"trainer": self.trainer.state_dict(), "meta": self.meta()}, buffer)
        write_state(self.path, buffer.getvalue(), kind=STATE_KIND, version=STATE_VERSION)
        self.consumed_seq = self.last_seq

    def train(
        self,
        epoch: int,
        index: int,
        activation: np.ndarray,
        labels: np.ndarray,
        *,
        want_grad: bool = False,
    ) -> TrainedBatch | None:
        """Train the tail on one batch unless its id was trained already (then None).

        `want_grad` (split learning) also returns the loss's gradient w.r.t. the activation.
        """
        if self.trained is not None and (epoch, index) <= self.trained:
            self.duplicates += 1
            return None
        t = time.perf_counter()
        self.trainer.begin_epoch(epoch)  # the bundle's lr schedule, from the batch's own epoch
        if want_grad:
            loss, correct, grad = self.trainer.train_step_split(activation, labels)
        else:
            (loss, correct), grad = self.trainer.train_step(activation, labels), None
        busy = time.perf_counter() - t
        self.cloud_busy_s += busy
        if self.shared is not None:
            self.shared.steps += 1
        self.trained = (epoch, index)
        self.trained_ids.append((epoch, index))
        self.train_correct += correct
        self.train_seen += len(labels)
        self.last_trained_at = time.time()
        figures = {"loss": loss, "correct": correct, "n": len(labels), "busy_s": busy}
        return TrainedBatch(figures, grad)

    def evaluate(self, epoch: int, index: int, activation: np.ndarray, labels: np.ndarray) -> None:
        """Final-exit correctness of one test batch (a re-sent batch replaces, never adds)."""
        t = time.perf_counter()
        pred = self.trainer.predict(activation)
        self.cloud_busy_s += time.perf_counter() - t
        ev = self.eval.setdefault(epoch, EvalEpoch())
        ev.correct[index] = (pred == labels).astype(int).tolist()

    def receive_model(self, msg: ModelWeights) -> None:
        """Keep one part of the edge's model (a re-sent part replaces; a new count restarts)."""
        if any(p.parts != msg.parts for p in self.model_parts.values()):
            self.model_parts.clear()
        self.model_parts[msg.part] = msg

    def edge_model(self) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
        """The edge's weights and meta once every part is in; None before."""
        parts = self.model_parts
        if not parts or len(parts) != next(iter(parts.values())).parts:
            return None
        weights: dict[str, np.ndarray] = {}
        for i in sorted(parts):
            weights.update(parts[i].tensors)
        return weights, parts[max(parts)].meta

    def end_epoch(self, epoch: int, edge_metrics: dict[str, Any]) -> dict[str, Any]:
        """Combine the edge's exit figures with the final exit's: accuracy and early exit."""
        ev = self.eval.get(epoch, EvalEpoch())
        final_ok = ev.flat()
        result: dict[str, Any] = {
            "epoch": epoch,
            "final_accuracy": ev.accuracy(),
            "edge_exit_accuracy": edge_metrics.get("exit_accuracy"),
            "edge_train_exit_accuracy": edge_metrics.get("train_exit_accuracy"),
            "edge_train_exit_loss": edge_metrics.get("train_exit_loss"),
            "train_final_accuracy": self.train_correct / self.train_seen
            if self.train_seen
            else None,
            "batches_trained": len(self.trained_ids),
        }
        conf = np.asarray(edge_metrics.get("exit_confidence", []), dtype=float)
        exit_ok = np.asarray(edge_metrics.get("exit_correct", []), dtype=bool)
        if len(conf) and len(conf) == len(final_ok) == len(exit_ok):
            rows = []
            for t in CONFIDENCE_THRESHOLDS:
                at_edge = conf >= t
                combined = np.where(at_edge, exit_ok, final_ok)
                rows.append(
                    {
                        "threshold": t,
                        "fraction_at_edge": round(float(at_edge.mean()), 4),
                        "accuracy": round(float(combined.mean()), 4),
                    }
                )
            result["early_exit"] = rows
        self.train_correct = self.train_seen = 0
        self.epochs[epoch] = result
        return result
