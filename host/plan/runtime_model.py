"""The runtime model of a hierarchical run: three stages in a pipeline, no gradient back.

Per training batch the edge trains front + exit head (``e``), the link carries the batch's
activation and labels up (``l``) and the host trains the tail (``c``). Nothing waits for a
reply, so the stages overlap and, for N identical batches, a pass takes

    T = (N - 1) * max(e, l, c) + e + l + c        (the pipeline fills once, then the
                                                   slowest stage sets the pace)

The model evaluates the general recurrence of a three-stage flow shop, which is that formula
for identical batches and also covers the epoch's evaluation pass (test activations go up at
the eval batch size) and the first steps' warm-up:

    E_j = E_{j-1} + e_j;   L_j = max(E_j, L_{j-1}) + l_j;   C_j = max(L_j + rtt/2, C_{j-1}) + c_j

The link's time for a message is its wire bytes at the uplink rate, unless the window is too
small to cover the round trip: then at most ``window`` messages are in flight per RTT, and a
message costs ``(rtt + tx) / window``. With the default window of 16 that matters only for
small messages on long round trips. An epoch ends when the host has taken the EPOCH_END
(exit confidences, one per test sample) and its METRICS are back: half an RTT each way.

Split learning, the baseline (``predict_split``): per batch the edge runs its front, the
activation goes up (fp32), the host trains the tail and sends the activation's gradient down
(fp32, the same size, at the downlink rate), and the edge backpropagates it before its next
batch. Nothing overlaps, so an epoch's training costs ``N * (e + l_up + c + l_down + rtt)``, its
evaluation is the same pipeline as above (fp32 activations up). The front's step there has no
exit head; the model takes the hierarchical edge step for it, which overstates split learning's
edge by the head's small share (a ratio slightly in split learning's favour, if anything).
Each prediction carries the training phase too (``train_s``: until the host trained the last
batch), the time the paper compares and ``hostctl bench`` measures as ``train_s``.

Coding (``edge_encode_s``, ``cloud_decode_s``): the edge codes each batch it sends on its own
CPU, in its sender thread while the engine trains the next batch. The engine uses every core,
so the coding takes its time from the training: the edge stage costs ``e + encode`` a batch.
Decoding happens on the host's reader thread beside the tail's training: ``c + decode``.
An entropy-coded codec trades this CPU for fewer bytes: it wins where the link binds.

Colocated (``colocated=True``): the edge and the host compute on the same CPU, as a virtual
board on the host machine does. Their steps then take turns on the cores rather than overlap:
while the edge trains batch j the host trains batch j-1 on the same cores, so the edge stage
costs ``e + c`` a batch (the pace becomes ``max(e + c, l)``). Step times measured alone, each
using every core, add up this way; a real board has a CPU of its own (the default).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from host.linkemu.presets import LinkSpec


@dataclass(frozen=True)
class SplitCosts:
    """What one split costs per batch: step times on each side and bytes on the wire."""

    split: int
    edge_step_s: float  # front + exit head, one training step
    cloud_step_s: float  # tail, one training step
    batch_wire_bytes: int  # one BATCH message as framed on the wire
    edge_eval_s: float = 0.0  # front + exit head inference, one eval batch
    cloud_eval_s: float = 0.0  # tail inference, one eval batch
    eval_wire_bytes: int = 0  # one EVAL_BATCH message
    edge_warmup_s: float = 0.0  # the first steps' extra time (sessions, allocator)
    cloud_warmup_s: float = 0.0
    # Split learning's messages: fp32 whatever the codec (0 = as the hierarchical ones).
    split_batch_wire_bytes: int = 0  # BATCH up
    grad_wire_bytes: int = 0  # GRAD down
    split_eval_wire_bytes: int = 0  # EVAL_BATCH up
    # Coding the activation: the edge's CPU per batch sent, the host's per batch received.
    edge_encode_s: float = 0.0
    cloud_decode_s: float = 0.0
    edge_eval_encode_s: float = 0.0
    cloud_eval_decode_s: float = 0.0


@dataclass(frozen=True)
class RunShape:
    """How much one run trains: samples, batch sizes, epochs, and the epoch-end message."""

    train_samples: int
    test_samples: int = 0
    batch_size: int = 32
    eval_batch_size: int = 128
    epochs: int = 1
    epoch_end_bytes: int = 0

    @property
    def train_batches(self) -> int:
        return -(-self.train_samples // self.batch_size)

    @property
    def eval_batches(self) -> int:
        return -(-self.test_samples // self.eval_batch_size) if self.test_samples else 0


@dataclass(frozen=True)
class Prediction:
    """The model's answer for one split."""

    split: int
    edge_s: float  # per training batch
    link_s: float
    cloud_s: float
    runtime_s: float  # the whole run (all epochs)
    epoch_s: float
    binds: str  # the stage with the most work: edge, link, cloud (colocated: edge+cloud)
    train_s: float = 0.0  # until the host trained the last training batch
    split_runtime_s: float | None = None  # split learning, same split, link and data
    split_train_s: float | None = None

    @property
    def vs_split(self) -> float | None:
        """Runtime as a fraction of split learning's (the paper's comparison)."""
        return self.runtime_s / self.split_runtime_s if self.split_runtime_s else None

    @property
    def train_vs_split(self) -> float | None:
        """The training phase as a fraction of split learning's."""
        return self.train_s / self.split_train_s if self.split_train_s else None

    @property
    def bound(self) -> str:
        """`link-bound`, or `compute-bound (edge)` / `compute-bound (cloud)`."""
        return "link-bound" if self.binds == "link" else f"compute-bound ({self.binds})"


def message_link_s(
    wire_bytes: int, link: LinkSpec, window: int = 16, *, down: bool = False
) -> float:
    """Seconds the uplink (``down``: the downlink) is taken by one message of ``wire_bytes``,
    window limit included."""
    rate = link.down_bps if down else link.up_bps
    if math.isinf(rate) or wire_bytes <= 0:
        return 0.0
    tx = wire_bytes * 8 / rate
    return max(tx, (link.rtt_s + tx) / window)


def pipeline_s(jobs: list[tuple[float, float, float]], one_way_s: float = 0.0) -> float:
    """Completion time of the last job through edge -> link -> cloud (the flow-shop recurrence)."""
    edge = link = cloud = 0.0
    for e, lk, c in jobs:
        edge += e
        link = max(edge, link) + lk
        cloud = max(link + one_way_s, cloud) + c
    return cloud


def predict(
    costs: SplitCosts,
    link: LinkSpec,
    run: RunShape,
    window: int = 16,
    colocated: bool = False,
) -> Prediction:
    """Predicted runtime of a hierarchical run at one split (see the module doc for colocated)."""
    e_alone = e = costs.edge_step_s + costs.edge_encode_s
    c = costs.cloud_step_s + costs.cloud_decode_s
    lk = message_link_s(costs.batch_wire_bytes, link, window)
    ee = costs.edge_eval_s + costs.edge_eval_encode_s
    ce = costs.cloud_eval_s + costs.cloud_eval_decode_s
    if colocated:  # the host's step of the batch before shares the cores with the edge's
        e, ee = e + c, ee + ce
    eval_job = (ee, message_link_s(costs.eval_wire_bytes, link, window), ce)
    end_job = (0.0, message_link_s(run.epoch_end_bytes, link, window), 0.0)
    jobs: list[tuple[float, float, float]] = []
    last_train = 0  # jobs up to the last epoch's training batches
    for epoch in range(run.epochs):
        train = [(e, lk, c)] * run.train_batches
        evals = [eval_job] * run.eval_batches
        if epoch == 0 and train:
            train[0] = (e + costs.edge_warmup_s, lk, c + costs.cloud_warmup_s)
        jobs += train
        last_train = len(jobs)
        jobs += evals + [end_job]
    train_s = pipeline_s(jobs[:last_train], link.one_way_s)
    # The last EPOCH_END's METRICS come back down before the edge calls the run done.
    runtime = pipeline_s(jobs, link.one_way_s) + link.one_way_s
    split_train_s, split_runtime_s = predict_split(costs, link, run, window)
    # In pipeline order (edge, link, cloud): a tie goes to the earlier stage.
    work = {"edge+cloud": e, "link": lk} if colocated else {"edge": e, "link": lk, "cloud": c}
    return Prediction(
        split=costs.split,
        edge_s=e_alone,
        link_s=lk,
        cloud_s=c,
        runtime_s=runtime,
        epoch_s=runtime / max(run.epochs, 1),
        binds=max(work, key=work.__getitem__),
        train_s=train_s,
        split_runtime_s=split_runtime_s,
        split_train_s=split_train_s,
    )


def predict_split(
    costs: SplitCosts, link: LinkSpec, run: RunShape, window: int = 16
) -> tuple[float, float]:
    """Split learning at the same split: (training phase, whole run) in seconds.

    Every batch waits for its gradient, so the edge and the host take turns whether or not they
    share a CPU; the evaluation pipelines as in a hierarchical run, at fp32.
    """
    e, c = costs.edge_step_s, costs.cloud_step_s
    up = message_link_s(costs.split_batch_wire_bytes or costs.batch_wire_bytes, link, window)
    down = message_link_s(costs.grad_wire_bytes or costs.batch_wire_bytes, link, window, down=True)
    step = e + up + c + down + link.rtt_s
    eval_up = message_link_s(costs.split_eval_wire_bytes or costs.eval_wire_bytes, link, window)
    evals = [(costs.edge_eval_s, eval_up, costs.cloud_eval_s)] * run.eval_batches
    end = (0.0, message_link_s(run.epoch_end_bytes, link, window), 0.0)
    elapsed = train_end = 0.0
    for epoch in range(run.epochs):
        elapsed += run.train_batches * step
        if epoch == 0 and run.train_batches:
            elapsed += costs.edge_warmup_s + costs.cloud_warmup_s
        train_end = elapsed
        elapsed += pipeline_s([*evals, end], link.one_way_s)
    return train_end, elapsed + link.one_way_s


def best(predictions: list[Prediction]) -> Prediction:
    """The split with the shortest predicted runtime (the shallower split on a tie)."""
    return min(predictions, key=lambda p: (round(p.runtime_s, 9), p.split))


def why(choice: Prediction, predictions: list[Prediction]) -> str:
    """One line: why ``choice`` wins (what binds it, and by how much the next split loses)."""
    line = (
        f"split {choice.split} is fastest: {choice.bound}, edge {choice.edge_s * 1e3:.1f} / "
        f"link {choice.link_s * 1e3:.1f} / cloud {choice.cloud_s * 1e3:.1f} ms per batch"
    )
    others = [p for p in predictions if p is not choice]
    if others:
        nxt = min(others, key=lambda p: p.runtime_s)
        slower = 100 * (nxt.runtime_s / choice.runtime_s - 1)
        margin = f"{slower:.0f}% slower" if slower >= 1 else "within 1% (about a tie)"
        line += f"; next best split {nxt.split} ({nxt.bound}) is {margin}"
    baselines = [p for p in predictions if p.split_runtime_s]
    if baselines:  # best against best: split learning at the split that suits it most
        sl = min(baselines, key=lambda p: p.split_runtime_s)
        line += (
            f"; split learning is fastest at split {sl.split}, and this run takes "
            f"{choice.runtime_s / sl.split_runtime_s:.2f} of its time"
        )
    return line


def why_codec(codec: str, by_codec: dict[str, list[Prediction]], lossless_only: bool) -> str:
    """One line: why ``codec`` wins among the planned codecs (each at its own best split)."""
    bests = {c: best(p) for c, p in by_codec.items()}
    won = bests[codec]
    others = sorted((c for c in bests if c != codec), key=lambda c: bests[c].runtime_s)
    scope = "lossless codecs only" if lossless_only else "lossy codecs allowed"
    line = (
        f"codec {codec} (auto, {scope}): at split {won.split} it is {won.bound}, "
        f"edge {won.edge_s * 1e3:.1f} ms a batch with coding, link {won.link_s * 1e3:.1f} ms"
    )
    if others:
        nxt = bests[others[0]]
        slower = 100 * (nxt.runtime_s / won.runtime_s - 1)
        margin = f"{slower:.0f}% slower" if slower >= 1 else "within 1% (about a tie)"
        line += (
            f"; next best {others[0]} at split {nxt.split} ({nxt.bound}, edge "
            f"{nxt.edge_s * 1e3:.1f} / link {nxt.link_s * 1e3:.1f} ms) is {margin}"
        )
    if won.binds == "link":
        line += "; the link binds, so fewer bytes pay for the edge's coding time"
    elif any(bests[c].link_s < won.link_s for c in others):
        line += "; the link does not bind, so coding to fewer bytes would only slow the edge"
    return line
