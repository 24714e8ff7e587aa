"""Hierarchical inference with early exits against its alternatives, on a Pi-class board over 3G.

Per model (smallcnn on the UCI digits, a narrow ResNet-18 on 32x32 synthetic shapes), after a
hierarchical training run (in process, ORT engine, real link over a socket pair;
host/model/in_process.py) whose model out gives edge.onnx / tail.onnx / full.onnx, five ways to
answer the same held-out samples:

  (a) edge only       every sample answered at the exit (no link)
  (b) cloud only      the raw input goes up, the host runs full.onnx (bench-only host; the
                      product never sends an input)
  (c) always offload  split inference: edge.onnx's activation up, tail.onnx answers
  (d) early exit      the exit answers when its confidence clears a threshold calibrated on a
                      validation split (disjoint, as `edge-runtime infer --target-accuracy`);
                      target: the validation accuracy of (c) less half a point
  (e) adaptive        (d) plus `--latency-budget`, under a burst at 4x the rate (d) sustains;
                      (d) is run under the same burst for comparison

The board is emulated: real ORT sessions on this machine, each edge.onnx run paced by the
board profile's slowdown (host/bench/profiles/rpi4.json: 16) as `edge-runtime infer --slowdown`
does; the host computes at this machine's speed. The link is the `3g` preset shaped in user
space (host/linkemu ShapedRelay: up 768 kbit/s, down 1.6 Mbit/s, RTT 150 ms), no root needed.
(a)-(d) get evenly spaced arrivals at 0.7 of the rate the slowest of (a)-(c) sustains, so their
latencies are service times, not queues.

The burst, all of it measured before it runs: (d) sustains S = 1 / max(board, f x offload)
samples/s, with `board` the board's time per sample (a closed-loop edge-only pass: edge.onnx,
pacing and the loop), f the fraction (d) offloaded at the steady rate, and `offload` the time
one offload holds the link (its wire bytes at the uplink's rate, or the closed-loop calibration
pass's time per offload, whichever is longer). The burst arrives at 4 S for max(5 s, 3 x budget)
so that (d)'s backlog (growing by 3 s a second) passes the budget many times over; half the
answered samples arrive before it and half after, at the steady rate. The answered samples are
cycled (repeated in order) to make up that many arrivals. The budget (`--latency-budget` of
(e)) is twice the p95 of (d) at the steady rate.

ResNet-18 is the zoo's at width 16 (stage widths 16/32/64/128, `model_kwargs={"width": 16}`),
split 4 (activation 32x16x16, default exit head), trained on the 2400 training samples of
`synthetic:3000:32` (600 held out; the embedded shapes data set, edge_runtime/data/
synthetic.py), for 7, 8, 9 and 10 epochs (`--resnet-epochs`). At full width and one epoch it
stayed at chance on two shared cores (11-14%), so calibration put every sample at the exit. The
trainings show where the targets hold together: (d)'s latency target needs an exit good enough
that few samples are offloaded, (e)'s needs the offloads, not the board, to bound (d)'s rate by
more than 4x (else the burst outruns the board's own edge model, and no policy can hold a
budget). Measured: both hold at 7 epochs (45% offloaded), not at 8 (67%) or 9-10 (9%, 0.3%).
Trained models are cached under --cache (artifacts/bench_infer by default), keyed by their
training settings; `--retrain` ignores the cache.

Targets: (d) within 1 point of (c)'s accuracy at no more than half of (c)'s mean latency;
(e) holds its p95 budget where (d) does not.

    .venv/bin/python benchmarks/bench_infer.py [--quick] [--json PATH] [--codec int8]
        [--cache DIR] [--retrain] [--resnet-epochs 7,8,9,10] [--no-digits]
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edge_runtime.bundle import read_key_file, sha256_file
from edge_runtime.data import load_dataset
from edge_runtime.infer.arrivals import Arrivals
from edge_runtime.infer.calibration import validation_split
from edge_runtime.infer.model_dir import ModelDirError, read_model_dir
from edge_runtime.infer.policy import ALWAYS_OFFLOAD, ExitPolicy, calibrate, exit_table
from edge_runtime.infer.runner import EdgeModel, InferRun, infer_report
from edge_runtime.link import EdgeLink, LinkConfig
from edge_runtime.link.codecs import BY_NAME
from host.export import ExportOptions, export_bundle
from host.infer.server import InferServer
from host.linkemu.presets import parse_link
from host.linkemu.shaper import ShapedRelay
from host.model.in_process import train_in_process

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT.parent / "shared" / "data" / "digits.csv.gz"
PROFILE = ROOT / "host" / "bench" / "profiles" / "rpi4.json"
CACHE = ROOT / "artifacts" / "bench_infer"
LINK = "3g"
BURST_FACTOR = 4.0
# The burst lasts at least this long, and at least this many budgets.
BURST_MIN_S = 5.0
BURST_BUDGETS = 3.0
# Arrivals outside the burst load the slowest of (a)-(c) to this fraction: evenly spaced
# arrivals into a near-constant service time do not queue below 1.
LOAD = 0.7
# Part of the cache key: bump when the training recipe changes in a way the fields do not show.
RECIPE = 1


@dataclass(frozen=True)
class Case:
    """One model, its data and how it is trained."""

    label: str
    model: str
    split: int
    input_shape: tuple[int, int, int]
    data: str
    epochs: int
    lr: float
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    exit_head_width: int | None = None

    def key(self) -> str:
        """The cache key: every training setting (not the label)."""
        settings = {k: v for k, v in asdict(self).items() if k != "label"}
        settings["recipe"] = RECIPE
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]

    def describe(self) -> str:
        """One line: the model and its training."""
        options = "".join(f", {k} {v}" for k, v in self.model_kwargs.items())
        head = f", exit head width {self.exit_head_width}" if self.exit_head_width else ""
        return (
            f"{self.model}{options} split {self.split}{head}; {self.data}; "
            f"{self.epochs} epochs, lr {self.lr:g}"
        )


def cases(
    quick: bool, resnet_epochs: tuple[int, ...] = (7, 8, 9, 10), digits: bool = True
) -> list[tuple[Case | None, str]]:
    """(case, why skipped) per model."""
    out: list[tuple[Case | None, str]] = []
    if digits and DIGITS.is_file():
        out.append(
            (Case("smallcnn / digits 8x8", "smallcnn", 2, (1, 8, 8), str(DIGITS), 3, 3e-3), "")
        )
    elif digits:
        out.append((None, f"smallcnn / digits skipped: {DIGITS} is absent"))
    # Several trainings of the same narrow ResNet-18: the targets hold together only for an exit
    # of middling accuracy (the module docstring), so each is measured in the same run.
    for epochs in (2,) if quick else resnet_epochs:
        resnet = Case(
            f"resnet18 w16, {epochs} epochs / synthetic 32x32",
            "resnet18",
            4,
            (3, 32, 32),
            "synthetic:1000:32" if quick else "synthetic:3000:32",
            epochs,
            2e-3,
            {"width": 16},
        )
        out.append((resnet, ""))
    return out


def train(case: Case, cache: Path, retrain: bool, say: Any) -> Path:
    """The case's model directory: from the cache when a run with the same settings left one
    there (every file checked against model.json's sha256), else a fresh training run."""
    target = cache / f"{case.model}-{case.key()}"
    model_dir = target / "model"
    if not retrain and model_dir.is_dir():
        try:
            read_model_dir(model_dir)
            say(f"  trained model from the cache: {model_dir}")
            return model_dir
        except ModelDirError as exc:
            say(f"  the cached model is unusable ({exc}); training again")
    # Train beside the cache entry and move it in whole: an interrupted run leaves no entry.
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    t0 = time.perf_counter()
    options = ExportOptions(
        model=case.model,
        split=case.split,
        input_shape=case.input_shape,
        lr=case.lr,
        model_kwargs=dict(case.model_kwargs),
        exit_head_width=case.exit_head_width,
    )
    export_bundle(options, partial / "bundle")
    # Eval batches of 64: a full-width ResNet-18's split-4 activation (128x16x16 fp32) at 128
    # per batch is over the link's 16 MiB frame limit.
    train_in_process(
        partial / "bundle", case.data, partial, epochs=case.epochs, eval_batch_size=64,
        timeout_s=3600,
    )  # fmt: skip
    shutil.rmtree(target, ignore_errors=True)
    partial.rename(target)
    say(f"  trained in {time.perf_counter() - t0:.0f} s; cached in {target}")
    return model_dir


class RawInputServer(InferServer):
    """(b) cloud only: the host runs full.onnx on the raw input. Bench only."""

    def __init__(self, model_dir: Path, *, key: bytes) -> None:
        super().__init__(model_dir, key=key)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        self._tail = ort.InferenceSession(
            str(model_dir / "full.onnx"), opts, providers=["CPUExecutionProvider"]
        )
        io = self.description["io"]["full.onnx"]
        self._in, self._out = io["inputs"][0], io["outputs"][0]
        self._shape = tuple(self.description["input_shape"])


class RawInput:
    """(b)'s board: no compute, the input itself is what goes up."""

    def __init__(self, model: EdgeModel) -> None:
        self.description, self.input_shape = model.description, model.input_shape
        self.check_input = model.check_input
        self._classes = int(model.description["num_classes"])

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((len(x), self._classes), np.float32), x


class Bench:
    """The inference scenarios of one trained model, each on a fresh shaped link."""

    def __init__(self, model_dir: Path, codec: str, slowdown: float, work: Path) -> None:
        self.model_dir, self.codec, self.slowdown, self.work = model_dir, codec, slowdown, work
        self.key = read_key_file(model_dir / "link.key")
        self.model = EdgeModel(model_dir, threads=1)
        self._n = 0

    def run(
        self,
        x: np.ndarray,
        policy: ExitPolicy,
        arrivals: Arrivals,
        *,
        raw: bool = False,
        linked: bool = True,
    ) -> tuple[InferRun, list]:
        """Answer x under `policy`; (the run, its answers)."""
        self._n += 1
        server = relay = link = None
        if linked:
            cls = RawInputServer if raw else InferServer
            server = cls(self.model_dir, key=self.key)
            relay = ShapedRelay(server.serve_tcp("127.0.0.1", 0), parse_link(LINK))
            relay.start()
            link = EdgeLink.connect(
                relay.url,
                key=self.key,
                bundle_sha256=sha256_file(self.model_dir / "model.json"),
                edge_id="board",
                run_id=f"bench-{self._n}",
                spool_dir=self.work / f"spool-{self._n}",
                config=LinkConfig(reconnect_timeout=30.0),
            )
        model = RawInput(self.model) if raw else self.model
        run = InferRun(
            model,  # type: ignore[arg-type]
            policy,
            link,
            self.codec,
            answer_timeout_s=300.0,
            arrivals=arrivals,
            slowdown=1.0 if raw else self.slowdown,
        )
        try:
            answers = run.run(x)
        finally:
            if link is not None:
                link.close("done")
            if relay is not None:
                relay.stop()
            if server is not None:
                server.close()
        return run, answers


def _figures(
    run: InferRun,
    answers: list,
    y: np.ndarray,
    budget_s: float | None = None,
    burst: slice | None = None,
) -> dict:
    r = infer_report(answers, y, run, 0.0)
    out = {
        "accuracy": r["accuracy"],
        "p50_ms": r["latency_ms"]["p50"],
        "p95_ms": r["latency_ms"]["p95"],
        "mean_ms": r["latency_ms"]["mean"],
        "at_edge": r["fraction_at_edge"],
        "bytes_up": r["bytes_up"],
        "degraded": r["answers"]["degraded"],
        "reasons": r["answers_by_reason"],
        "events": len(r["policy"]["events"]),
    }
    if budget_s is not None:
        out["within_budget"] = bool(r["latency_ms"]["p95"] <= 1000 * budget_s)
    if burst is not None:
        lat = 1000 * np.array([a.latency_s for a in answers[burst]])
        out["burst_p95_ms"] = round(float(np.percentile(lat, 95)), 3)
        out["max_ms"] = round(1000 * max(a.latency_s for a in answers), 3)
    return out


def bench_case(
    case: Case, work: Path, codec: str, slowdown: float, cache: Path, retrain: bool, say: Any
) -> dict[str, Any]:
    """Train (or take the cached model), then the five scenarios; returns the figures."""
    model_dir = train(case, cache, retrain, say)
    desc = json.loads((model_dir / "model.json").read_text())
    data = load_dataset(case.data, seed=0)
    x_all, y_all = data.normalise(data.x_test), data.y_test
    split = validation_split(len(y_all))
    x, y = x_all[split.answered], y_all[split.answered]
    b = Bench(model_dir, codec, slowdown, work)
    link = parse_link(LINK)

    # (d)'s calibration first, over the link as the CLI does it (one closed-loop pass that
    # offloads every validation sample, then the table; the target is (c)'s validation accuracy
    # less half a point, which the same pass measures). The pass also measures what one offload
    # costs on the wire, which sets the arrival rates below.
    cal_x, cal_y = x_all[split.validation], y_all[split.validation]
    tc = time.perf_counter()
    cal_run, first = b.run(cal_x, ExitPolicy(ALWAYS_OFFLOAD, "calibration pass"), Arrivals())
    cal_wall = time.perf_counter() - tc
    if any(a.path != "cloud" for a in first):
        raise RuntimeError(f"calibration pass incomplete: {cal_run.host_lost}")
    conf = np.array([a.confidence for a in first])
    exit_ok = np.array([a.exit_class for a in first]) == cal_y
    final_ok = np.array([a.predicted for a in first]) == cal_y
    target = round(float(final_ok.mean()) - 0.005, 4)
    threshold, why = calibrate(
        exit_table(conf, exit_ok, final_ok), target_accuracy=target, max_offload=None
    )
    summary = {"validation_final_accuracy": float(final_ok.mean()),
               "validation_exit_accuracy": float(exit_ok.mean()),
               "pass_s": cal_wall}  # fmt: skip

    # Service times. Board: a closed-loop edge-only pass over the answered samples (edge.onnx
    # paced by the slowdown, plus the loop's own work), per sample. Uplink: the wire bytes per
    # offload the calibration pass measured (tensor + framing, ids, acks), at the link's rate;
    # the raw input's offload has the same overhead around its own tensor.
    tc = time.perf_counter()
    b.run(x, ExitPolicy(0.0, "edge only"), Arrivals(), linked=False)
    board_s = (time.perf_counter() - tc) / len(x)
    itemsize = BY_NAME[codec].wire.itemsize
    per_offload = cal_run.link.stats["bytes_up"] / len(cal_x) if cal_run.link else 0.0
    act_bytes = float(np.prod(desc["activation_shape"])) * itemsize
    raw_bytes = float(np.prod(desc["input_shape"])) * itemsize
    act_s = per_offload * 8 / link.up_bps
    raw_s = (per_offload - act_bytes + raw_bytes) * 8 / link.up_bps
    closed_loop_s = cal_wall / len(cal_x)  # (c)'s measured time per sample, closed loop
    base_rate = LOAD / max(board_s, act_s, raw_s, closed_loop_s)
    steady = Arrivals(base_rate)
    say(
        f"  board {1000 * board_s:.2f} ms/sample (x{slowdown:g}, closed loop); uplink "
        f"{per_offload:.0f} B = {1000 * act_s:.1f} ms/activation, {1000 * raw_s:.1f} ms/input; "
        f"split inference closed loop {1000 * closed_loop_s:.1f} ms/sample; arrivals "
        f"{base_rate:.2f}/s"
    )
    rows: dict[str, dict] = {}
    rows["a"] = _figures(*b.run(x, ExitPolicy(0.0, "edge only"), steady, linked=False), y)
    say(f"  (a) {rows['a']}")
    rows["b"] = _figures(*b.run(x, ExitPolicy(ALWAYS_OFFLOAD, "cloud"), steady, raw=True), y)
    say(f"  (b) {rows['b']}")
    rows["c"] = _figures(*b.run(x, ExitPolicy(ALWAYS_OFFLOAD, "split"), steady), y)
    say(f"  (c) {rows['c']}")
    say(f"  calibrated: {why}")
    rows["d"] = _figures(*b.run(x, ExitPolicy(threshold, why), steady), y)
    say(f"  (d) {rows['d']}")

    # (e): the burst (the module docstring says how it is sized).
    offloaded = max(1e-3, 1 - rows["d"]["at_edge"])
    offload_s = max(act_s, closed_loop_s)
    sustainable = 1 / max(board_s, offloaded * offload_s)
    burst_rate = BURST_FACTOR * sustainable
    budget_s = 2 * rows["d"]["p95_ms"] / 1000
    burst_s = max(BURST_MIN_S, BURST_BUDGETS * budget_s)
    n = len(x)
    before = after = n // 2
    count = math.ceil(burst_s * burst_rate)
    order = np.arange(before + count + after) % n  # the answered samples, cycled
    xb, yb = x[order], y[order]
    burst = Arrivals(base_rate, burst_rate / base_rate, before, count)
    window = slice(before, before + count)
    plan = {
        "sustainable_rate": sustainable,
        "burst_rate": burst_rate,
        "burst_s": burst_s,
        "burst_samples": count,
        "samples": len(order),
        "budget_ms": 1000 * budget_s,
        "bound": "board" if board_s >= offloaded * offload_s else "offloads",
        "offload_ms": 1000 * offload_s,
        "offloaded": offloaded,
    }
    say(
        f"  burst: (d) sustains {sustainable:.1f}/s = 1 / max(board {1000 * board_s:.2f} ms, "
        f"{offloaded:.3f} offloaded x {1000 * offload_s:.1f} ms); samples {before}.."
        f"{before + count - 1} of {len(order)} (answered samples cycled) at {burst_rate:.1f}/s "
        f"for {burst_s:.1f} s; budget {1000 * budget_s:.0f} ms = 2 x (d)'s steady p95"
    )
    rows["d_burst"] = _figures(*b.run(xb, ExitPolicy(threshold, why), burst), yb, budget_s, window)
    say(f"  (d) burst {rows['d_burst']}")
    adaptive = ExitPolicy(threshold, why, budget_s)
    rows["e"] = _figures(*b.run(xb, adaptive, burst), yb, budget_s, window)
    say(f"  (e) {rows['e']}")
    return {
        "case": case.label,
        "training": case.describe(),
        "answered": n,
        "validation": len(split.validation),
        "threshold": threshold,
        "target_accuracy": target,
        "calibration": summary,
        "board_ms": 1000 * board_s,
        "uplink_ms_activation": 1000 * act_s,
        "uplink_ms_input": 1000 * raw_s,
        "base_rate": base_rate,
        "burst": plan,
        "budget_ms": 1000 * budget_s,
        "rows": rows,
        "final_accuracy_training": desc.get("final_accuracy"),
        "exit_accuracy_training": desc.get("edge_exit_accuracy"),
    }


def verdicts(r: dict) -> list[tuple[str, bool, str]]:
    """(target, pass, the figures) per target."""
    rows = r["rows"]
    c, d, db, e = rows["c"], rows["d"], rows["d_burst"], rows["e"]
    # Rounded: 0.97 - 0.96 is a hair over 0.01 in floating point, and one point is what it is.
    acc_gap = round(100 * (c["accuracy"] - d["accuracy"]), 6)
    ratio = d["mean_ms"] / c["mean_ms"]
    return [
        (
            "(d) accuracy within 1 point of (c)",
            acc_gap <= 1.0,
            f"{100 * d['accuracy']:.1f}% vs {100 * c['accuracy']:.1f}% ({acc_gap:+.1f} pt below)",
        ),
        (
            "(d) mean latency <= 0.5 x (c)'s",
            ratio <= 0.5,
            f"{d['mean_ms']:.1f} / {c['mean_ms']:.1f} ms = {ratio:.2f}",
        ),
        (
            "(e) holds its p95 budget where (d) does not",
            e["within_budget"] and not db["within_budget"],
            f"p95 (e) {e['p95_ms']:.0f} ms, (d) {db['p95_ms']:.0f} ms; budget "
            f"{r['budget_ms']:.0f} ms",
        ),
    ]


NAMES = {
    "a": "(a) edge only",
    "b": "(b) cloud only (raw input up)",
    "c": "(c) always offload (split)",
    "d": "(d) early exit, calibrated",
    "d_burst": "(d) under the burst",
    "e": "(e) adaptive under the burst",
}


def table(results: list[dict]) -> str:
    """Per model, the scenarios side by side (markdown) and the targets; then all verdicts."""
    lines = []
    for r in results:
        p = r["burst"]
        lines.append(
            f"\n**{r['case']}** ({r['training']}; the training run's final accuracy "
            f"{100 * r['final_accuracy_training']:.1f}%, exit "
            f"{100 * r['exit_accuracy_training']:.1f}%): {r['answered']} answered samples "
            f"({r['validation']} others calibrate); board {r['board_ms']:.2f} ms/sample, uplink "
            f"{r['uplink_ms_activation']:.1f} ms/activation and {r['uplink_ms_input']:.1f} "
            f"ms/input; arrivals {r['base_rate']:.2f}/s; threshold {r['threshold']:.4g} (target "
            f"{r['target_accuracy']}). Burst: {p['burst_samples']} samples in {p['burst_s']:.1f}"
            f" s at {p['burst_rate']:.1f}/s = 4 x the {p['sustainable_rate']:.1f}/s (d) sustains"
            f" (bound by the {p['bound']}), {p['samples']} samples in all (answered samples "
            f"cycled); budget {p['budget_ms']:.0f} ms\n"
        )
        lines.append(
            "| scenario | accuracy | p50 ms | p95 ms | mean ms | burst p95 ms | at edge | "
            "kB up | mean/(c) |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|")
        c_mean = r["rows"]["c"]["mean_ms"]
        for key, name in NAMES.items():
            f = r["rows"][key]
            bp = f"{f['burst_p95_ms']:.0f}" if "burst_p95_ms" in f else "-"
            lines.append(
                f"| {name} | {100 * f['accuracy']:.1f}% | {f['p50_ms']:.1f} | {f['p95_ms']:.1f} "
                f"| {f['mean_ms']:.1f} | {bp} | {100 * f['at_edge']:.0f}% | "
                f"{f['bytes_up'] / 1e3:.1f} | {f['mean_ms'] / c_mean:.2f} |"
            )
        lines.append("")
        for name, ok, figures in verdicts(r):
            lines.append(f"- {'PASS' if ok else 'FAIL'}: {name}: {figures}")
    if results:
        lines.append("\n| target | " + " | ".join(r["case"] for r in results) + " |")
        lines.append("|---|" + "---|" * len(results))
        per = [verdicts(r) for r in results]
        for k, (name, _, _) in enumerate(per[0]):
            cells = [f"{'PASS' if v[k][1] else 'FAIL'}: {v[k][2]}" for v in per]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smaller data, fewer epochs: a smoke run (the ResNet stays near chance)",
    )
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--codec", default="int8", help="link codec for activations and inputs [int8]"
    )
    parser.add_argument(
        "--cache", type=Path, default=CACHE, help=f"trained models are kept here [{CACHE}]"
    )
    parser.add_argument("--retrain", action="store_true", help="train even if cached")
    parser.add_argument(
        "--resnet-epochs",
        default="7,8,9,10",
        help="the ResNet-18 trainings to measure, in epochs, comma-separated [7,8,9,10]",
    )
    parser.add_argument("--no-digits", action="store_true", help="the ResNet-18 cases only")
    args = parser.parse_args()
    try:
        resnet_epochs = tuple(int(e) for e in args.resnet_epochs.split(","))
        if min(resnet_epochs) < 1:
            raise ValueError
    except ValueError:
        print(
            f"--resnet-epochs {args.resnet_epochs!r}: positive integers, e.g. 8,10", file=sys.stderr
        )
        sys.exit(2)
    if args.codec not in BY_NAME:
        print(f"--codec {args.codec}: known codecs are {', '.join(BY_NAME)}", file=sys.stderr)
        sys.exit(2)
    say = functools.partial(print, flush=True)
    slowdown = float(json.loads(PROFILE.read_text())["slowdown"])
    print(f"board: {PROFILE.stem} (slowdown {slowdown:g}x); link {parse_link(LINK).describe()}")
    results = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i, (case, skipped) in enumerate(cases(args.quick, resnet_epochs, not args.no_digits)):
            if case is None:
                print(skipped)
                continue
            print(f"{case.label}: {case.describe()}", flush=True)
            work = Path(tmp) / str(i)
            work.mkdir()
            results.append(
                bench_case(case, work, args.codec, slowdown, args.cache, args.retrain, say)
            )
    print(table(results))
    print(f"\nwall time {time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
