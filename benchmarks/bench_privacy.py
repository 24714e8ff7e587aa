"""Benchmark: what each privacy defence costs and what it buys, smallcnn on the real digits.

    .venv/bin/python benchmarks/bench_privacy.py [--data PATH] [--epochs 5] [--json PATH]
    .venv/bin/python benchmarks/bench_privacy.py --model resnet18 [--splits 2,4,8] [--samples N]

For every split of smallcnn (1x8x8 digits, 10 classes; exported with lr 3e-3) and each defence
(none; activation noise at a few multipliers, with the clip set to the median norm of the trained
front's activations; PriPHiT's adversarial exit, which trains its own front, alone and with the
lightest noise in its loop):

1. Hierarchical training in one process, as the two sides do it: the torch engine trains front
   + exit on the victim's share of the train split (the audit's split: the attacker holds a
   disjoint half), and the tail trains on each batch's activation as released (noise, then the
   int8 codec's encode and decode). The front never sees the noise, so it is trained once per
   split; each defence trains its own tail on that front's released activations, batch by batch,
   which is what the host would receive. Exit accuracy (edge) and final accuracy (tail, on the
   test split's released activations) follow.
2. `hostctl privacy audit`'s attacks (learned inversion and white-box, int8, initial and
   trained front) on the victims' activations through the same defence: the best PSNR/SSIM, and
   the mean-image baseline.
3. epsilon at delta 1e-5 for the run's epochs (dp-accounting RDP), and the extra edge time per
   step: the defence's apply() against the engine's train step, medians over the run.
4. The edge step's cost of each edge-side defence, interleaved step by step on random batches
   (plain step, noise on its activation, adversarial step), medians: on a shared machine the
   per-row times of 1-3 are taken at different moments, these are not (`--only-step-times`).

`--model resnet18`: ResNet-18 on synthetic 3x32x32 shapes (`synthetic:N:32`), splits 2, 4, 8:
no attacks (a decoder per row costs more than this machine has), only each defence's cost: the
edge step's median time with the defence (noise: apply() on top of the plain step; adversarial
exit: its own step) and exit and final accuracy after a short run, the same for every defence.

Everything runs with one torch thread (a shared machine); figures are printed side by side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from edge_runtime.bundle import load_bundle  # noqa: E402
from edge_runtime.data import batches, load_dataset  # noqa: E402
from edge_runtime.engines import make_engine  # noqa: E402
from edge_runtime.engines.adversarial import AdversarialTorchEngine  # noqa: E402
from edge_runtime.link.codecs import decode_tensor, encode_tensor  # noqa: E402
from edge_runtime.privacy import ActivationNoise, noise_rng  # noqa: E402
from host.cloud.tail import TailTrainer  # noqa: E402
from host.export import ExportOptions, export_bundle  # noqa: E402
from host.privacy import attacks  # noqa: E402
from host.privacy.accounting import activation_epsilon  # noqa: E402
from host.privacy.audit import AuditOptions, run_audit, split_data  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "digits.csv.gz"
CODEC = "int8"
MULTIPLIERS = (0.05, 0.1, 1.0)
ADV_LAMBDA = 2.0
ADV_NOISE = 0.05  # the multiplier the adversarial exit trains with (and the link applies)
DELTA = 1e-5


def train_front(
    bundle_dir: Path,
    victim_data,
    epochs: int,
    batch_size: int,
    seed: int,
    adv_lambda: float | None = None,
    noise: ActivationNoise | None = None,
):
    """Train front + exit (with PriPHiT's adversarial exit if `adv_lambda`, `noise` in its loop);
    keep every batch's activation and labels for the tails."""
    bundle = load_bundle(bundle_dir / "edge")
    torch.manual_seed(seed)
    if adv_lambda is None:
        engine = make_engine("torch", bundle, threads=1)
    else:
        engine = AdversarialTorchEngine(bundle, adv_lambda, noise=noise, threads=1)
    steps, step_s = [], []
    for epoch in range(epochs):
        for _, x, y in batches(victim_data, "train", batch_size, epoch=epoch, seed=seed):
            t = time.perf_counter()
            result = engine.train_step(x, y)
            step_s.append(time.perf_counter() - t)
            steps.append((result.activation, y))
    hits, test = 0, []
    for _, x, y in batches(victim_data, "test", 256, epoch=0):
        result = engine.eval_step(x, y)
        hits += int((result.logits.argmax(axis=1) == y).sum())
        test.append((result.activation, y))
    return engine, steps, test, hits / len(victim_data.y_test), statistics.median(step_s)


def release(activation: np.ndarray, defence: ActivationNoise | None, rng) -> np.ndarray:
    released = activation if defence is None else defence.apply(activation, rng)
    return decode_tensor(encode_tensor(released, CODEC))


def train_tail(bundle_dir: Path, steps, test, defence: ActivationNoise | None) -> float:
    """The host's side: the tail on each batch as released, then accuracy on the test split."""
    tail = TailTrainer(load_bundle(bundle_dir))
    rng = noise_rng()
    for activation, y in steps:
        tail.train_step(release(activation, defence, rng), y)
    hits = sum(int((tail.predict(release(a, defence, rng)) == y).sum()) for a, y in test)
    return hits / sum(len(y) for _, y in test)


def apply_time(defence: ActivationNoise, steps) -> float:
    """Median seconds of the defence's apply() per training batch (what the edge adds)."""
    rng = noise_rng()
    times = []
    for activation, _ in steps[:200]:
        t = time.perf_counter()
        defence.apply(activation, rng)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def step_overhead(splits: list[int], tmp: Path, steps: int = 60) -> list[dict]:
    """Edge train-step time with and without each edge-side defence, interleaved step by step
    (plain, noise, adversarial, plain, ...) so that a shared machine's load hits all alike."""
    rng = np.random.default_rng(0)
    out = []
    for split in splits:
        bundle_dir = tmp / f"steps{split}"
        export_bundle(
            ExportOptions(model="smallcnn", split=split, input_shape=(1, 8, 8)), bundle_dir
        )
        bundle = load_bundle(bundle_dir / "edge")
        plain = make_engine("torch", bundle, threads=1)
        noise = ActivationNoise(1.0, ADV_NOISE)
        adversarial = AdversarialTorchEngine(bundle, ADV_LAMBDA, noise=noise, threads=1)
        times: dict[str, list[float]] = {"plain": [], "noise": [], "adversarial": []}
        for _ in range(steps):
            x = rng.normal(size=(32, 1, 8, 8)).astype(np.float32)
            y = rng.integers(0, 10, 32)
            t = time.perf_counter()
            step = plain.train_step(x, y)
            times["plain"].append(time.perf_counter() - t)
            t = time.perf_counter()
            noise.apply(step.activation, rng)
            times["noise"].append(time.perf_counter() - t)
            t = time.perf_counter()
            adversarial.train_step(x, y)
            times["adversarial"].append(time.perf_counter() - t)
        med = {k: statistics.median(v[5:]) for k, v in times.items()}  # after warm-up
        row = {
            "split": split,
            "step_ms": 1e3 * med["plain"],
            "noise_extra_ms": 1e3 * med["noise"],
            "adversarial_extra_ms": 1e3 * (med["adversarial"] - med["plain"]),
        }
        print(
            f"split {split}: edge step {row['step_ms']:.2f} ms; noise +{row['noise_extra_ms']:.3f}"
            f" ms; adversarial exit +{row['adversarial_extra_ms']:.2f} ms (medians, interleaved)",
            flush=True,
        )
        out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--splits", default="1,2,3,4")
    parser.add_argument("--decoder-epochs", type=int, default=30)
    parser.add_argument("--whitebox-steps", type=int, default=150)
    parser.add_argument("--victims", type=int, default=256)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--only-step-times", action="store_true", help="only the interleaved edge step times"
    )
    parser.add_argument("--model", choices=("smallcnn", "resnet18"), default="smallcnn")
    parser.add_argument(
        "--samples", type=int, default=480, help="resnet18: synthetic samples (a fifth for test)"
    )
    args = parser.parse_args()
    if args.model == "resnet18":
        torch.set_num_threads(1)
        splits = [int(s) for s in args.splits.split(",")] if args.splits != "1,2,3,4" else [2, 4, 8]
        resnet_rows(splits, args.samples, args.batch_size, args.epochs, args.json)
        return
    if not args.data.is_file():
        sys.exit(f"bench_privacy: {args.data} is absent (the real digits live in ../shared/data)")
    torch.set_num_threads(1)
    spec = f"digits:{args.data}"
    rows: list[dict] = []
    splits = [int(s) for s in args.splits.split(",")]
    if args.only_step_times:
        with tempfile.TemporaryDirectory() as tmp:
            step_overhead(splits, Path(tmp))
        return
    with tempfile.TemporaryDirectory() as tmp:
        for split in (int(s) for s in args.splits.split(",")):
            bundle_dir = Path(tmp) / f"split{split}"
            export_bundle(
                ExportOptions(model="smallcnn", split=split, input_shape=(1, 8, 8), lr=3e-3),
                bundle_dir,
            )
            base_opts = AuditOptions(bundle_dir, spec, codecs=(CODEC,), epochs=args.epochs)
            victim_data = split_data(load_dataset(spec), base_opts).victim_data
            plain = train_front(bundle_dir, victim_data, args.epochs, args.batch_size, 0)
            last = np.concatenate([a for a, _ in plain[1][-20:]])
            clip = float(np.median(np.linalg.norm(last.reshape(len(last), -1), axis=1)))
            runs = [("none", None, plain)]
            runs += [
                (f"clip {clip:.3g}, noise {m:g}", ActivationNoise(round(clip, 3), m), plain)
                for m in MULTIPLIERS
            ]
            light = ActivationNoise(round(clip, 3), ADV_NOISE)
            runs += [
                (
                    f"adversarial exit {ADV_LAMBDA:g}",
                    None,
                    train_front(
                        bundle_dir, victim_data, args.epochs, args.batch_size, 0, ADV_LAMBDA
                    ),
                ),
                (
                    f"adv. exit {ADV_LAMBDA:g} + noise {ADV_NOISE:g}",
                    light,
                    train_front(
                        bundle_dir, victim_data, args.epochs, args.batch_size, 0, ADV_LAMBDA, light
                    ),
                ),
            ]
            for name, defence, (engine, steps, test, exit_acc, step_s) in runs:
                checkpoint = Path(tmp) / f"split{split}-{len(rows)}.ckpt"
                engine.save_checkpoint(checkpoint)
                final_acc = train_tail(bundle_dir, steps, test, defence)
                audit = run_audit(
                    AuditOptions(
                        bundle_dir,
                        spec,
                        codecs=(CODEC,),
                        noise=defence,
                        checkpoint=checkpoint,
                        epochs=args.epochs,
                        victims=args.victims,
                        decoder=attacks.DecoderTraining(epochs=args.decoder_epochs),
                        whitebox=attacks.WhiteBoxSettings(steps=args.whitebox_steps),
                    )
                )
                best = max(audit["results"], key=lambda r: r["psnr"])
                row = {
                    "split": split,
                    "activation": audit["activation_shape"],
                    "defence": name,
                    "exit_accuracy": exit_acc,
                    "final_accuracy": final_acc,
                    "best_attack": f"{best['attack']} ({best['stage']})",
                    "psnr": best["psnr"],
                    "ssim": best["ssim"],
                    "baseline_psnr": audit["baseline"]["psnr"],
                    "baseline_ssim": audit["baseline"]["ssim"],
                    "epsilon": None
                    if defence is None
                    else activation_epsilon(defence.noise_multiplier, args.epochs, DELTA),
                    "edge_step_s": step_s,
                    "extra_edge_s": 0.0 if defence is None else apply_time(defence, steps),
                }
                rows.append(row)
                print_row(row)
        step_times = step_overhead(splits, Path(tmp))
    if args.json:
        args.json.write_text(
            json.dumps({"epochs": args.epochs, "rows": rows, "step_times": step_times}, indent=2)
        )


def resnet_rows(
    splits: list[int], samples: int, batch_size: int, epochs: int, json_path: Path | None
) -> list[dict]:
    """ResNet-18 on synthetic 32x32 shapes: each defence's edge step time and accuracies."""
    spec = f"synthetic:{samples}:32"
    data = load_dataset(spec, seed=0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for split in splits:
            bundle_dir = Path(tmp) / f"split{split}"
            # The torch engine trains it; ORT artifacts would only cost export time here.
            export_bundle(
                ExportOptions(model="resnet18", split=split, engine="torch", validate=False),
                bundle_dir,
            )
            plain = train_front(bundle_dir, data, epochs, batch_size, 0)
            last = np.concatenate([a for a, _ in plain[1][-4:]])
            clip = round(float(np.median(np.linalg.norm(last.reshape(len(last), -1), axis=1))), 3)
            light = ActivationNoise(clip, ADV_NOISE)
            adversarial = train_front(bundle_dir, data, epochs, batch_size, 0, ADV_LAMBDA, light)
            for name, defence, run in (
                ("none", None, plain),
                (f"noise {ADV_NOISE:g} (clip {clip:.3g})", light, plain),
                (f"adv. exit {ADV_LAMBDA:g} + noise {ADV_NOISE:g}", light, adversarial),
            ):
                _, steps, test, exit_acc, step_s = run
                extra = apply_time(defence, steps) if defence is not None and run is plain else 0.0
                row = {
                    "model": "resnet18",
                    "split": split,
                    "defence": name,
                    "exit_accuracy": exit_acc,
                    "final_accuracy": train_tail(bundle_dir, steps, test, defence),
                    "edge_step_s": step_s + extra,
                    "plain_step_s": plain[4],
                    "epsilon": None
                    if defence is None
                    else activation_epsilon(defence.noise_multiplier, epochs, DELTA),
                }
                rows.append(row)
                print(
                    f"resnet18 split {split} | {name:<26} | exit {100 * exit_acc:5.1f}% final "
                    f"{100 * row['final_accuracy']:5.1f}% | edge step {1e3 * row['edge_step_s']:.0f}"
                    f" ms ({row['edge_step_s'] / row['plain_step_s']:.2f}x plain)",
                    flush=True,
                )
    if json_path:
        json_path.write_text(json.dumps({"data": spec, "epochs": epochs, "rows": rows}, indent=2))
    return rows


def print_row(r: dict) -> None:
    eps = "inf" if r["epsilon"] is None else f"{r['epsilon']:.3g}"
    print(
        f"split {r['split']} {'x'.join(map(str, r['activation'])):>7} | {r['defence']:<22} | "
        f"exit {100 * r['exit_accuracy']:5.1f}% final {100 * r['final_accuracy']:5.1f}% | "
        f"{r['best_attack']:<20} PSNR {r['psnr']:5.2f} (mean image {r['baseline_psnr']:5.2f}) "
        f"SSIM {r['ssim']:.3f} ({r['baseline_ssim']:.3f}) | eps {eps:>6} | "
        f"step {1e3 * r['edge_step_s']:.2f} ms +{1e3 * r['extra_edge_s']:.3f} ms",
        flush=True,
    )


if __name__ == "__main__":
    main()
