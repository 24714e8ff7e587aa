"""The paper's four settings: hierarchical training against split learning, one table.

VGG-16 and ResNet-18 on 3x32x32 with 10 classes (CIFAR-10's shape) and on 3x64x64 with 200
classes (Tiny ImageNet's), synthetic data, a Pi-class edge (host/bench/profiles/rpi4.json: each
edge step paced to 16x this machine's time), the torch engine (an aarch64 board's), one epoch of
1000 training samples (+250 test), batch 32, over two links: ``3g`` (768 kbit/s up, 1.6 Mbit/s
down) and ``3g-sym`` (768 kbit/s both ways, the paper's symmetric channel). Five columns per
setting and link: hierarchical at fp32, fp32+z (lossless) and int8+z, split learning at fp32
(the paper's baseline) and split learning with the same lossless coding both ways (fp32+z up,
fp32+z gradient down: a fair second baseline).

Two kinds of figures, never mixed in one ratio:

* **modelled** (every cell): each setting's edge and host steps and its activation's and
  gradient's coded sizes and coding times are measured here once (a "profile" row; edge figures
  x16), then host/plan's runtime model (the one `hostctl plan` uses, within 2.2% of the measured
  Pi-class runs in docs/results.md) gives each column's training phase and whole run.
* **measured** (the rows asked for with ``--measure``, all of them by default): a full run of the
  real system (`hostctl bench`'s: edge runtime process, cloud trainer, shaped link).

This machine is shared, and a loaded machine's steps are slower than the quiet ones the board
profile's 16x multiplies. The board's anchor is the profile's own step (ResNet-18 split 4,
torch, batch 32: 0.30 s here when quiet, so 4.8 s on the Pi-class board). With ``--pacing cpu``
(the default) the edge runs its engine on one thread and every edge step, profiled or run, is
taken as its thread CPU time, which other load here does not stretch
(edge_runtime/train/pacing.py), times 4.8 s over the reference step's CPU time. With
``--pacing wall`` (the earlier way) the reference step's wall time is timed beside each profile
and before each run: profiled times are scaled by quiet/now, and a measured run's edge is paced
by 16 x quiet/now (at least 1), which a load that changes during a run defeats. The host's
figures are scaled by quiet/now either way. The profile row keeps both the raw and the scaled
figures; each measured run says how near its edge came to the profile's (under the table).

Every row is appended to ``--results`` (JSON Lines) as soon as it exists; a rerun skips the rows
already there for the same parameters, so an interrupted run resumes where it stopped.

    .venv/bin/python benchmarks/bench_paper.py            # everything measured: many hours
    .venv/bin/python benchmarks/bench_paper.py --quick    # modelled table + 2 measured runs
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from host.bench.rows import ResultRows  # noqa: E402 - after the repo is on the path

FORMAT = "hiertrain-bench-paper/1"


@dataclass(frozen=True)
class Setting:
    """One of the paper's four: a network on a data set's shape, cut at ``split``."""

    name: str
    model: str
    input_shape: tuple[int, int, int]
    num_classes: int
    split: int
    paper_ratio: float  # the paper's training time against split learning's


# The splits of docs/results.md's Pi-class runs (VGG-16 10, ResNet-18 8); --split overrides.
SETTINGS = (
    Setting("vgg16-cifar", "vgg16", (3, 32, 32), 10, 10, 0.71),
    Setting("resnet18-cifar", "resnet18", (3, 32, 32), 10, 8, 0.39),
    Setting("vgg16-tiny", "vgg16", (3, 64, 64), 200, 10, 0.75),
    Setting("resnet18-tiny", "resnet18", (3, 64, 64), 200, 8, 0.19),
)
LINKS = ("3g", "3g-sym")
SYMMETRIC = "3g-sym"
# (mode, codec): split learning's column is its codec both ways (host/cloud/modes/split.py).
COLUMNS = (
    ("hierarchical", "fp32"),
    ("hierarchical", "fp32+z"),
    ("hierarchical", "int8+z"),
    ("split", "fp32"),
    ("split", "fp32+z"),
)
LOSSLESS = "fp32+z"
QUICK_MEASURE = ("resnet18-cifar/3g/hierarchical-fp32+z", "resnet18-cifar/3g/split-fp32")
TARGET_3G = 0.30  # ResNet-18 CIFAR shape on 3g, training time against split learning's
# A measured run whose edge was busy more than this far from the profile's board says so.
EDGE_OFF = 0.10
# The step the rpi4 profile's slowdown is measured against (host/bench/profiles/rpi4.json's
# source: ResNet-18 split 4, batch 32, torch, 3x32x32, 0.30 s on this machine when quiet).
REFERENCE = ("resnet18", 4, 0.30)


@dataclass(frozen=True)
class Params:
    """What every row of one invocation shares; part of each row's key."""

    samples: int = 1000
    test_samples: int = 250
    batch_size: int = 32
    eval_batch_size: int = 128
    slowdown: float = 16.0
    engine: str = "torch"
    calibrate: bool = True  # scale to the load (see load_factor)
    pacing: str = "cpu"  # the edge's clock: "cpu" (one thread, CPU time) or "wall"


def run_label(s: Setting, link: str, mode: str, codec: str) -> str:
    """A measured run's directory under OUT/runs: the split in it, so that a run at another
    split never meets this one's tail state (the host refuses a checkpoint of another cut)."""
    return f"{s.name}-split{s.split}-{link}-{mode}-{codec}"


def row_id(setting: str, link: str, mode: str, codec: str) -> str:
    """``resnet18-cifar/3g/hierarchical-fp32+z``: how --measure names a run."""
    return f"{setting}/{link}/{mode}-{codec}"


def profile_key(s: Setting, p: Params) -> dict[str, Any]:
    """The parameters a profile row was measured with (a rerun with other ones measures again)."""
    return {
        "kind": "profile",
        "setting": s.name,
        "model": s.model,
        "input_shape": list(s.input_shape),
        "num_classes": s.num_classes,
        "split": s.split,
        "batch_size": p.batch_size,
        "eval_batch_size": p.eval_batch_size,
        "slowdown": p.slowdown,
        "engine": p.engine,
        "calibrate": p.calibrate,
        "pacing": p.pacing,
    }


def run_key(s: Setting, p: Params, link: str, mode: str, codec: str) -> dict[str, Any]:
    """The parameters of one measured run."""
    return {
        **profile_key(s, p),
        "kind": "measured",
        "link": link,
        "mode": mode,
        "codec": codec,
        "samples": p.samples,
        "test_samples": p.test_samples,
    }


class Results(ResultRows):
    """The JSON Lines file of this benchmark's rows (host/bench/rows.py), resumable."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, FORMAT)


# -- measuring --------------------------------------------------------------------------------


def export(s: Setting, out: Path, baselines: bool = True) -> Path:
    """The setting's bundle (with split learning's graphs), exported once per results dir."""
    from host.export import ExportOptions, export_bundle

    bundle = out / "bundles" / f"{s.name}-split{s.split}"
    if not (bundle / "manifest.json").is_file():
        export_bundle(
            ExportOptions(
                model=s.model,
                split=s.split,
                baselines=baselines,
                input_shape=s.input_shape,
                num_classes=s.num_classes,
                validate=False,  # the runs below would fail loudly on a broken bundle anyway
                force=True,
            ),
            bundle,
        )
    return bundle


def reference_step_s(out: Path, engine_name: str, clock: str = "wall") -> float:
    """This machine's time for REFERENCE's step now (median of 3 after warm-up).

    The machine is shared (2 cores, other jobs, a compile): a step takes several times its quiet
    time. Measured beside each profile and each run, it says how loaded the machine is. On the
    "cpu" clock it is the step's thread CPU time on one engine thread, which the load leaves be:
    what a one-thread edge's CPU-paced steps are measured against.
    """
    import numpy as np

    from edge_runtime.bundle import load_bundle

    model, split, _ = REFERENCE
    ref = Setting("reference", model, (3, 32, 32), 10, split, 0.0)
    bundle = export(ref, out, baselines=False)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((32, 3, 32, 32)).astype(np.float32)
    y = rng.integers(0, 10, 32).astype(np.int64)
    return edge_step_times(load_bundle(bundle / "edge"), engine_name, x, y, clock, evals=0)[0]


def edge_step_times(
    bundle: Any, engine_name: str, x: Any, y: Any, clock: str, evals: int = 3
) -> tuple[float, float | None]:
    """Median train-step and eval-step seconds of the edge engine (after a warm-up step) on
    ``clock``: "wall" (all cores, wall time) or "cpu" (one thread, its CPU time)."""
    import statistics

    from edge_runtime.engines import make_engine
    from edge_runtime.train.pacing import Stopwatch
    from host.plan.profiling import torch_threads

    threads = 1 if clock == "cpu" else None

    def timed(step: Any, n: int) -> float:
        times = []
        for _ in range(n):
            watch = Stopwatch()
            step()
            e = watch.elapsed()
            times.append(e.cpu_s if clock == "cpu" else e.wall_s)
        return statistics.median(times)

    with torch_threads(threads):
        engine = make_engine(engine_name, bundle, threads=threads)
        engine.train_step(x, y)
        train = timed(lambda: engine.train_step(x, y), 3)
        ev = timed(lambda: engine.eval_step(x, y), evals) if evals else None
    return train, ev


def pi_class_slowdown(p: Params, reference_cpu_s: float) -> float:
    """The slowdown that makes a one-thread step's CPU time Pi-class: the board takes
    REFERENCE's step in slowdown x its quiet time here, whatever that step's CPU time is."""
    return p.slowdown * REFERENCE[2] / reference_cpu_s


def load_factor(reference_s: float | None) -> float:
    """Quiet time over loaded time: what turns a step measured now into this machine's quiet
    step, the one the board profile's slowdown multiplies (1 uncalibrated)."""
    return REFERENCE[2] / reference_s if reference_s else 1.0


def measure_profile(s: Setting, p: Params, bundle: Path) -> dict[str, Any]:
    """Step times and coding figures of one setting, the runtime model's inputs.

    The edge and host steps come from host/plan's profiler (edge figures multiplied by the
    slowdown here, as `hostctl plan --profile` does); the gradient's coded size and coding
    times from the tail's gradient of the activation it made (split learning codes it).
    """
    import numpy as np

    from edge_runtime.bundle import load_bundle
    from edge_runtime.engines import make_engine
    from host.cloud.tail import TailTrainer
    from host.plan.board_profile import STEP_FIELDS
    from host.plan.profiling import ProfileSetup, codec_figures, profile_split

    setup = ProfileSetup(
        model=s.model,
        input_shape=s.input_shape,
        num_classes=s.num_classes,
        batch_size=p.batch_size,
        eval_batch_size=p.eval_batch_size,
        engine=p.engine,
        steps=2,
    )
    before = reference_step_s(bundle.parents[1], p.engine) if p.calibrate else None
    t = profile_split(setup, bundle)
    here = {k: getattr(t, k) for k in STEP_FIELDS} | t.codecs
    rng = np.random.default_rng(1)
    x = rng.standard_normal((p.batch_size, *s.input_shape)).astype(np.float32)
    y = rng.integers(0, s.num_classes, p.batch_size).astype(np.int64)
    engine = make_engine(p.engine, load_bundle(bundle / "edge"))
    tail = TailTrainer(load_bundle(bundle / "cloud"))
    for _ in range(3):  # a few steps, so the gradient is not the first step's
        activation = np.asarray(engine.train_step(x, y).activation, dtype=np.float32)
        _, _, grad = tail.train_step_split(activation, y)
    grad_figures = codec_figures(np.asarray(grad, dtype=np.float32))
    for codec in (c for _, c in COLUMNS):
        for figure in ("ratio", "encode_s", "decode_s"):
            here[f"grad:{codec}:{figure}"] = grad_figures[f"codec:{codec}:{figure}"]
    after = reference_step_s(bundle.parents[1], p.engine) if p.calibrate else None
    reference = (before + after) / 2 if before and after else None
    figures = pi_class(here, load_factor(reference), p.slowdown)
    row: dict[str, Any] = {
        "activation_shape": list(t.activation_shape),
        "reference_step_s": [before, after],
        "load_factor": load_factor(reference),
        "measured_here": here,
    }
    if p.pacing == "cpu":
        # The edge's steps on the clock its measured runs are paced by: one thread's CPU time,
        # against the reference step's on the same clock (the load changes neither).
        ref_cpu = reference_step_s(bundle.parents[1], p.engine, clock="cpu")
        edge_bundle = load_bundle(bundle / "edge")
        train_cpu, eval_cpu = edge_step_times(edge_bundle, p.engine, x, y, "cpu")
        slowdown = pi_class_slowdown(p, ref_cpu)
        eval_scale = p.eval_batch_size / p.batch_size  # timed at the training batch, as plan's
        figures["edge_step_s"] = train_cpu * slowdown
        figures["edge_eval_s"] = (eval_cpu or 0.0) * eval_scale * slowdown
        row |= {
            "reference_cpu_s": ref_cpu,
            "edge_cpu_s": {"train": train_cpu, "eval": eval_cpu},
            "edge_slowdown": slowdown,
        }
    return row | {"figures": figures}


def pi_class(here: dict[str, float], factor: float, slowdown: float) -> dict[str, float]:
    """Figures measured here, as the quiet host and the Pi-class edge would take them: every
    time times ``factor`` (the load); the edge's (its step, its coding, its decoding of split
    learning's gradient) times ``slowdown`` too. Ratios stay as they are."""
    from host.plan.board_profile import is_edge_figure

    out = {}
    for k, v in here.items():
        if k.endswith(":ratio"):
            out[k] = v
        elif k.startswith("grad:"):  # the host encodes the gradient, the edge decodes it
            out[k] = v * factor * (slowdown if k.endswith(":decode_s") else 1.0)
        elif is_edge_figure(k):
            out[k] = v * factor * slowdown
        else:
            out[k] = v * factor
    return out


def measure_run(
    s: Setting, p: Params, bundle: Path, link: str, mode: str, codec: str, out: Path
) -> dict[str, Any]:
    """One full run of the real system; the report's figures the table needs."""
    from rich.console import Console

    from host.session import SessionOptions, run_session

    size = s.input_shape[1]
    label = run_label(s, link, mode, codec)
    # Under load this machine's steps take longer than the quiet ones the slowdown multiplies:
    # pace by less, so that the edge's steps take the Pi-class time (never below 1: a machine
    # loaded past the slowdown makes a slower edge than the profile, and the row says so).
    if p.pacing == "cpu":  # one engine thread, paced by its CPU time (edge_runtime/train/pacing.py)
        before = reference_step_s(out, p.engine, clock="cpu")
        slowdown, threads = pi_class_slowdown(p, before), 1
    else:
        before = reference_step_s(out, p.engine) if p.calibrate else None
        slowdown, threads = max(1.0, p.slowdown * load_factor(before)), None
    r = run_session(
        SessionOptions(
            model=s.model,
            split=s.split,
            data=f"synthetic:{p.samples + p.test_samples}:{size}",
            epochs=1,
            batch_size=p.batch_size,
            codec=codec,
            link=link,
            mode=mode,
            work_dir=out / "runs" / label,
            edge_log=out / "runs" / f"{label}-edge.log",
            bundle=bundle,
            slowdown=slowdown,
            edge_threads=threads,
            engine=p.engine,
        ),
        Console(quiet=True),
    )
    after = reference_step_s(out, p.engine, clock=p.pacing) if p.calibrate else None
    keys = (
        "runtime_s",
        "train_s",
        "edge_busy_s",
        "link_busy_s",
        "cloud_busy_s",
        "bytes_up",
        "bytes_down",
        "model_bytes_up",  # the trained front + exit sent at the end (hierarchical only)
        "link_emulation",
    )
    return {
        **{k: r.get(k) for k in keys},
        "reference_step_s": [before, after],  # on the pacing clock
        "edge_slowdown": slowdown,
        "pacing_clock": p.pacing,
    }


# -- the model --------------------------------------------------------------------------------


def modelled(s: Setting, p: Params, profile: dict[str, Any], link: str) -> dict[str, Any]:
    """Each column's (train_s, runtime_s) from a profile row through host/plan's model."""
    from host.linkemu import parse_link
    from host.plan.board_profile import BoardProfile
    from host.plan.planner import PlanRequest, coded_wire_bytes, split_costs
    from host.plan.runtime_model import predict, predict_split

    req = PlanRequest(
        model=s.model,
        link=parse_link(link),
        batch_size=p.batch_size,
        eval_batch_size=p.eval_batch_size,
        input_shape=s.input_shape,
        num_classes=s.num_classes,
        train_samples=p.samples,
        test_samples=p.test_samples,
    )
    f = profile["figures"]
    figures = BoardProfile(splits={s.split: f})
    shapes = {s.split: tuple(profile["activation_shape"])}
    out: dict[str, Any] = {}
    for mode, codec in COLUMNS:
        costs = split_costs(req, shapes, figures, codec)[0]
        if mode == "hierarchical":
            pred = predict(costs, req.link, req.run, req.window)
            out[f"{mode}-{codec}"] = {"train_s": pred.train_s, "runtime_s": pred.runtime_s}
            continue
        # Split learning with ``codec`` both ways: the coded activation up, the coded gradient
        # down; each side's step pays its coding (edge: encode up, decode down).
        shape = shapes[s.split]
        grad = coded_wire_bytes(
            costs.grad_wire_bytes, shape, p.batch_size, codec, f.get(f"grad:{codec}:ratio")
        )
        coded = (costs.batch_wire_bytes, grad, costs.eval_wire_bytes)
        split_costs_ = replace(
            costs,
            edge_step_s=costs.edge_step_s + costs.edge_encode_s + f[f"grad:{codec}:decode_s"],
            cloud_step_s=costs.cloud_step_s + costs.cloud_decode_s + f[f"grad:{codec}:encode_s"],
            edge_eval_s=costs.edge_eval_s + costs.edge_eval_encode_s,
            cloud_eval_s=costs.cloud_eval_s + costs.cloud_eval_decode_s,
            split_batch_wire_bytes=coded[0],
            grad_wire_bytes=coded[1],
            split_eval_wire_bytes=coded[2],
        )
        train_s, runtime_s = predict_split(split_costs_, req.link, req.run, req.window)
        out[f"{mode}-{codec}"] = {"train_s": train_s, "runtime_s": runtime_s}
    return out


# -- the table --------------------------------------------------------------------------------


def table_rows(
    settings: list[Setting], links: list[str], p: Params, results: Results
) -> list[dict[str, Any]]:
    """One dict per (setting, link, column): modelled and (where run) measured figures, and the
    ratios against both split-learning columns, each from one kind of figure."""
    rows = []
    for s in settings:
        prof = results.find(profile_key(s, p))
        if prof is None:
            continue
        for link in links:
            model = modelled(s, p, prof, link)
            measured = {f"{m}-{c}": results.find(run_key(s, p, link, m, c)) for m, c in COLUMNS}
            for mode, codec in COLUMNS:
                col = f"{mode}-{codec}"
                row: dict[str, Any] = {
                    "setting": s.name,
                    "link": link,
                    "column": col,
                    "model_train_s": model[col]["train_s"],
                    "model_runtime_s": model[col]["runtime_s"],
                    "train_s": None,
                    "runtime_s": None,
                }
                if measured[col]:
                    row["train_s"] = measured[col]["train_s"]
                    row["runtime_s"] = measured[col]["runtime_s"]
                    row["edge_busy_s"] = measured[col].get("edge_busy_s")
                    row["edge_slowdown"] = measured[col].get("edge_slowdown")
                    row["pacing_clock"] = measured[col].get("pacing_clock")
                    row["model_edge_busy_s"] = model_edge_busy_s(prof["figures"], p, codec)
                for base in ("split-fp32", f"split-{LOSSLESS}"):
                    for what in ("train", "runtime"):
                        mine, theirs = measured[col], measured[base]
                        modelled_ratio = model[col][f"{what}_s"] / model[base][f"{what}_s"]
                        row[f"model_{what}_vs_{base}"] = modelled_ratio
                        if mine and theirs and mine.get(f"{what}_s") and theirs.get(f"{what}_s"):
                            ratio, kind = mine[f"{what}_s"] / theirs[f"{what}_s"], "measured"
                            off = [edge_off(r, prof["figures"], p) for r in (mine, theirs)]
                            row[f"edge_off_vs_{base}"] = max(off, key=abs)
                        else:
                            ratio, kind = modelled_ratio, "modelled"
                        row[f"{what}_vs_{base}"] = (ratio, kind)
                rows.append(row)
    return rows


def edge_off(run: dict[str, Any], figures: dict[str, float], p: Params) -> float:
    """How far a measured run's edge was from the profile's Pi-class board: its busy time over
    the profile's, less 1 (+0.16: 16% slower). The CPU clock takes preemption out of a paced
    step, not contention for caches and memory, which still moves a step's CPU time."""
    return run["edge_busy_s"] / model_edge_busy_s(figures, p, run["key"]["codec"]) - 1


def model_edge_busy_s(figures: dict[str, float], p: Params, codec: str) -> float:
    """The Pi-class edge's busy seconds in one run by the profile: training steps and coding,
    evaluation; what a measured run's edge should have taken if its pacing hit the profile."""
    train = -(-p.samples // p.batch_size)
    evals = -(-p.test_samples // p.eval_batch_size)
    encode = figures.get(f"codec:{codec}:encode_s", 0.0)
    return train * (figures["edge_step_s"] + encode) + evals * figures.get("edge_eval_s", 0.0)


def _ratio(cell: tuple[float, str]) -> str:
    value, kind = cell
    return f"**{value:.2f}**" if kind == "measured" else f"{value:.2f}"


def markdown(rows: list[dict[str, Any]], settings: dict[str, Setting]) -> str:
    """The table (bold ratio: both runs measured; plain: modelled) and the targets' verdicts."""
    lines = [
        "| setting | link | column | training s (model) | run s (model) "
        "| training vs split fp32 | run vs split fp32 "
        "| training vs split fp32+z | run vs split fp32+z |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:

        def secs(what: str, r: dict[str, Any] = r) -> str:
            model = f"{r[f'model_{what}_s']:.0f}"
            return f"{r[f'{what}_s']:.1f} ({model})" if r[f"{what}_s"] else f"- ({model})"

        lines.append(
            f"| {r['setting']} | {r['link']} | {r['column']} | {secs('train')} | "
            f"{secs('runtime')} | {_ratio(r['train_vs_split-fp32'])} | "
            f"{_ratio(r['runtime_vs_split-fp32'])} | {_ratio(r[f'train_vs_split-{LOSSLESS}'])} | "
            f"{_ratio(r[f'runtime_vs_split-{LOSSLESS}'])} |"
        )
    lines.append("")
    for r in rows:  # how near each measured run's edge came to the Pi-class profile
        if r.get("edge_busy_s") is not None:
            lines.append(
                f"- measured {r['setting']}/{r['link']}/{r['column']}: edge busy "
                f"{r['edge_busy_s']:.0f} s against the profile's {r['model_edge_busy_s']:.0f} s "
                f"(paced x{r['edge_slowdown'] or 1:.2f} on the {r.get('pacing_clock') or 'wall'} clock)"
            )
    lines += [f"- {v}" for v in verdicts(rows, settings)]
    return "\n".join(lines)


def verdicts(rows: list[dict[str, Any]], settings: dict[str, Setting]) -> list[str]:
    """Pass/fail against the issue's targets, one line each, saying which kind of figure."""
    out = []
    for r in rows:
        ratio, kind = r["train_vs_split-fp32"]
        s = settings[r["setting"]]
        if kind == "measured" and abs(off := r.get("edge_off_vs_split-fp32", 0.0)) > EDGE_OFF:
            # A measured ratio whose edge missed the board: the model's is the fair one.
            kind += (
                f"; an edge ran {abs(off):.0%} {'slower' if off > 0 else 'faster'} than the "
                f"profile's board: modelled {r['model_train_vs_split-fp32']:.2f}"
            )
        if r["column"] == f"hierarchical-{LOSSLESS}" and r["link"] == SYMMETRIC:
            ok = "PASS" if ratio <= s.paper_ratio else "FAIL"
            out.append(
                f"{ok}: {s.name} lossless hierarchical on {SYMMETRIC}, training {ratio:.2f} of "
                f"split learning's (paper {s.paper_ratio:.2f}; {kind})"
            )
        if s.name == "resnet18-cifar" and r["link"] == "3g" and r["column"].startswith("hier"):
            ok = "PASS" if ratio <= TARGET_3G else "FAIL"
            out.append(
                f"{ok}: resnet18-cifar split {s.split} {r['column']} on 3g, training {ratio:.2f} "
                f"of split learning's at that split (target {TARGET_3G:.2f}; {kind})"
            )
    return out


# -- the command ------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module doc)."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Rows are kept in --results; a rerun skips those measured with the same "
        "parameters. Row names for --measure: SETTING/LINK/MODE-CODEC, e.g. "
        f"{QUICK_MEASURE[0]}; settings {', '.join(s.name for s in SETTINGS)}; links "
        f"{', '.join(LINKS)}.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"the modelled table and only {' and '.join(QUICK_MEASURE)} measured (~20 min)",
    )
    parser.add_argument("--settings", help="comma-separated subset of the four settings")
    parser.add_argument("--links", help=f"comma-separated subset of {', '.join(LINKS)}")
    parser.add_argument(
        "--measure",
        help="comma-separated row names to run for real, 'all' (the default without --quick) "
        "or 'none' (the modelled table only)",
    )
    parser.add_argument(
        "--split",
        action="append",
        default=[],
        metavar="MODEL=N",
        help="cut MODEL at N (default vgg16=10, resnet18=8)",
    )
    parser.add_argument("--samples", type=int, default=1000, help="training samples (>= 1000)")
    parser.add_argument("--test-samples", type=int, default=250)
    parser.add_argument("--profile", default="rpi4", help="edge board profile (slowdown)")
    parser.add_argument(
        "--pacing",
        choices=("cpu", "wall"),
        default="cpu",
        help="the edge's clock: one thread's CPU time, which load here does not stretch "
        "(default), or wall time scaled by a reference step timed before each run",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/bench_paper"))
    parser.add_argument(
        "--results", type=Path, default=None, help="JSON Lines rows [default: OUT/results.jsonl]"
    )
    args = parser.parse_args(argv)
    if args.samples < 1000:
        parser.error("--samples: the paper's comparison needs one epoch of at least 1000")
    return args


def choose(args: argparse.Namespace) -> tuple[list[Setting], list[str], set[str]]:
    """Settings, links and the row names to measure, from the arguments (UsageFault if bad)."""
    from edge_runtime.errors import UsageFault

    splits = {}
    for spec in args.split:
        model, _, n = spec.partition("=")
        if model not in ("vgg16", "resnet18") or not n.isdigit():
            raise UsageFault(f"--split {spec!r}: expected vgg16=N or resnet18=N")
        splits[model] = int(n)
    settings = [replace(s, split=splits.get(s.model, s.split)) for s in SETTINGS]
    if args.settings:
        names = args.settings.split(",")
        unknown = [n for n in names if n not in {s.name for s in SETTINGS}]
        if unknown:
            raise UsageFault(
                f"unknown setting {unknown[0]!r}: use {', '.join(s.name for s in SETTINGS)}"
            )
        settings = [s for s in settings if s.name in names]
    links = args.links.split(",") if args.links else list(LINKS)
    if any(link not in LINKS for link in links):
        raise UsageFault(f"--links: use {', '.join(LINKS)}")
    every = {row_id(s.name, lk, m, c) for s in settings for lk in links for m, c in COLUMNS}
    wanted = args.measure or ("none" if args.quick else "all")
    if args.quick and not args.measure:
        wanted = ",".join(QUICK_MEASURE)
    if wanted == "all":
        measure = every
    elif wanted == "none":
        measure = set()
    else:
        measure = set(wanted.split(","))
        if measure - every:
            raise UsageFault(
                f"--measure {sorted(measure - every)[0]!r} is not a row of this "
                "run: SETTING/LINK/MODE-CODEC, e.g. " + QUICK_MEASURE[0]
            )
    return settings, links, measure


def main(argv: list[str] | None = None) -> int:
    """The command: exit 0, 1 (a run failed: the cause in one line), 2 (usage), 130 (Ctrl-C:
    the rows measured so far are kept, and the same command resumes)."""
    from edge_runtime.errors import EXIT_INTERRUPTED, HiertrainError, Interrupted

    try:
        return bench(argv)
    except (KeyboardInterrupt, Interrupted):
        print(
            "bench_paper: interrupted; the finished rows are kept: run the same command to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except HiertrainError as exc:
        print(f"bench_paper: {exc.label}: {exc}", file=sys.stderr)
        return exc.exit_code


def bench(argv: list[str] | None = None) -> int:
    """Profile, measure what is asked and not yet measured, print and save the table."""
    args = parse_args(argv)
    settings, links, measure = choose(args)
    from host.bench.commands import load_speed_profile

    board = load_speed_profile(args.profile)
    p = Params(
        samples=args.samples,
        test_samples=args.test_samples,
        slowdown=board.slowdown,
        pacing=args.pacing,
    )
    results = Results(args.results or args.out / "results.jsonl")
    log = print
    for s in settings:
        runs = [
            (lk, m, c) for lk in links for m, c in COLUMNS if row_id(s.name, lk, m, c) in measure
        ]
        todo = [r for r in runs if results.find(run_key(s, p, *r)) is None]
        have_profile = results.find(profile_key(s, p)) is not None
        if have_profile and not todo:
            log(f"{s.name}: every row already in {results.path}")
            continue
        t0 = time.perf_counter()
        bundle = export(s, args.out)
        if not have_profile:
            log(f"{s.name}: profiling (edge x{p.slowdown:g}, {p.engine} engine)")
            results.add(profile_key(s, p), measure_profile(s, p, bundle))
        for link, mode, codec in todo:
            log(f"{s.name}: running {row_id(s.name, link, mode, codec)}")
            row = results.add(
                run_key(s, p, link, mode, codec),
                measure_run(s, p, bundle, link, mode, codec, args.out),
            )
            log(f"  training {row['train_s']:.1f} s, run {row['runtime_s']:.1f} s")
        log(f"{s.name}: {time.perf_counter() - t0:.0f} s")
    rows = table_rows(settings, links, p, results)
    text = markdown(rows, {s.name: s for s in settings})
    table = args.out / "table.md"
    table.parent.mkdir(parents=True, exist_ok=True)
    table.write_text(text + "\n")
    print(text)
    print(f"\nrows: {results.path}\ntable: {table}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
