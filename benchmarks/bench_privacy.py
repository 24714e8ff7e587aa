"""Benchmark: what each privacy defence costs and what it buys, smallcnn on the real digits.

    .venv/bin/python benchmarks/bench_privacy.py [--data PATH] [--epochs 5] [--json PATH]
    .venv/bin/python benchmarks/bench_privacy.py --model resnet18 [--splits 2,4,8] [--samples N]
        [--width W] [--decoder-width W] [--resnet-noise 0.05,1]

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

`--model resnet18`: ResNet-18 narrowed to `--width` (16 by default, the zoo's is 64: at full width
a row needs hundreds of steps of a 0.3-0.7 s edge step to leave chance) on synthetic 3x32x32
shapes (`synthetic:N:32`, N = `--samples`), splits 2, 4, 8, the same steps 1-4: defences none,
noise at each `--resnet-noise` multiplier (0.05 and 1 by default) at the plain front's median
norm, and the adversarial exit (lambda 2) with noise 0.05 in its loop. The undefended front is
attacked through fp32 and int8 (the lossy codecs' effect); the rows use int8. The attacks target
the trained front only (the audit's `trained` stage; the initial one costs as much again). The
adversarial exit's extra edge time is its own step's median against the plain step's (taken at
different moments); step 4 (20 interleaved steps) measures both side by side.

Everything runs with one torch thread (a shared machine); figures are printed side by side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
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
CODEC_SWEEP = ("fp32", "int8")  # the undefended ResNet-18 rows attack through each
# ResNet-18's attacks: the trained front only (the one a defence changes), for this machine's share.
RESNET_STAGES = ("trained",)


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


def _smallcnn_export(split: int) -> ExportOptions:
    return ExportOptions(model="smallcnn", split=split, input_shape=(1, 8, 8))


def step_overhead(
    splits: list[int],
    tmp: Path,
    export: Callable[[int], ExportOptions] = _smallcnn_export,
    input_shape: tuple[int, int, int] = (1, 8, 8),
    steps: int = 60,
) -> list[dict]:
    """Edge train-step time with and without each edge-side defence, interleaved step by step
    (plain, noise, adversarial, plain, ...) so that a shared machine's load hits all alike."""
    rng = np.random.default_rng(0)
    out = []
    for split in splits:
        bundle_dir = tmp / f"steps{split}"
        export_bundle(export(split), bundle_dir)
        bundle = load_bundle(bundle_dir / "edge")
        plain = make_engine("torch", bundle, threads=1)
        noise = ActivationNoise(1.0, ADV_NOISE)
        adversarial = AdversarialTorchEngine(bundle, ADV_LAMBDA, noise=noise, threads=1)
        times: dict[str, list[float]] = {"plain": [], "noise": [], "adversarial": []}
        for _ in range(steps):
            x = rng.normal(size=(32, *input_shape)).astype(np.float32)
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
        "--samples", type=int, default=2400, help="resnet18: synthetic samples (a fifth for test)"
    )
    parser.add_argument("--width", type=int, default=16, help="resnet18: base width (zoo: 64)")
    parser.add_argument(
        "--decoder-width", type=int, default=32, help="resnet18: the learned attack's decoder width"
    )
    parser.add_argument(
        "--resnet-noise",
        type=lambda v: [float(m) for m in v.split(",")],
        default=[ADV_NOISE, 1.0],
        help="resnet18: noise multipliers of the noise-only rows",
    )
    parser.add_argument(
        "--no-adversarial", action="store_true", help="resnet18: skip the adversarial exit's rows"
    )
    args = parser.parse_args()
    if args.model == "resnet18":
        torch.set_num_threads(1)
        splits = [int(s) for s in args.splits.split(",")] if args.splits != "1,2,3,4" else [2, 4, 8]
        resnet_rows(args, splits)
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


def resnet_rows(args: argparse.Namespace, splits: list[int]) -> list[dict]:
    """ResNet-18 (narrowed to `--width`) on synthetic 32x32 shapes: every split x defence, as
    the smallcnn table (accuracies, best attack, epsilon, edge time), plus the codecs' effect on
    the undefended front's attacks and the interleaved edge step cost of each defence."""
    spec = f"synthetic:{args.samples}:32"
    data = load_dataset(spec)
    rows: list[dict] = []
    codec_rows: list[dict] = []
    decoder = attacks.DecoderTraining(epochs=args.decoder_epochs, width=args.decoder_width)
    whitebox = attacks.WhiteBoxSettings(steps=args.whitebox_steps)
    export = {"model": "resnet18", "input_shape": (3, 32, 32), "width": args.width}
    with tempfile.TemporaryDirectory() as tmp:
        for split in splits:
            t_split = time.perf_counter()
            bundle_dir = Path(tmp) / f"split{split}"
            export_bundle(_resnet_export(export, split), bundle_dir)
            base = AuditOptions(bundle_dir, spec, epochs=args.epochs, batch_size=args.batch_size)
            victim_data = split_data(data, base).victim_data
            plain = train_front(bundle_dir, victim_data, args.epochs, args.batch_size, 0)
            last = np.concatenate([a for a, _ in plain[1][-20:]])
            clip = round(float(np.median(np.linalg.norm(last.reshape(len(last), -1), axis=1))), 3)
            light = ActivationNoise(clip, ADV_NOISE)
            runs = [("none", None, plain)]
            runs += [
                (f"noise {m:g} (clip {clip:.3g})", ActivationNoise(clip, m), plain)
                for m in args.resnet_noise
            ]
            if not args.no_adversarial:
                adversarial = train_front(
                    bundle_dir, victim_data, args.epochs, args.batch_size, 0, ADV_LAMBDA, light
                )
                runs.append((f"adv. exit {ADV_LAMBDA:g} + noise {ADV_NOISE:g}", light, adversarial))
            for name, defence, (engine, steps, test, exit_acc, step_s) in runs:
                checkpoint = Path(tmp) / f"split{split}-{len(rows)}.ckpt"
                engine.save_checkpoint(checkpoint)
                final_acc = train_tail(bundle_dir, steps, test, defence)
                # The undefended front is attacked through every codec: the codecs' effect.
                codecs = CODEC_SWEEP if defence is None else (CODEC,)
                audit = run_audit(
                    AuditOptions(
                        bundle_dir,
                        spec,
                        codecs=codecs,
                        noise=defence,
                        checkpoint=checkpoint,
                        epochs=args.epochs,
                        batch_size=args.batch_size,
                        victims=args.victims,
                        stages=RESNET_STAGES,
                        decoder=decoder,
                        whitebox=whitebox,
                    )
                )
                if defence is None:
                    codec_rows += _codec_rows(split, audit)
                link = [r for r in audit["results"] if r["codec"] == CODEC]
                best = max(link, key=lambda r: r["psnr"])
                if defence is None:
                    extra = 0.0
                elif engine is plain[0]:
                    extra = apply_time(defence, steps)
                else:  # its own step (noise inside) against the plain one, medians over the runs
                    extra = step_s - plain[4]
                row = {
                    "model": f"resnet18 width {args.width}",
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
                    "edge_step_s": plain[4],
                    "extra_edge_s": extra,
                    "audit_s": audit["audit_s"],
                }
                rows.append(row)
                print_row(row)
            print(f"split {split}: {time.perf_counter() - t_split:.0f} s", flush=True)
        step_times = step_overhead(
            splits, Path(tmp), lambda s: _resnet_export(export, s), (3, 32, 32), 20
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "model": f"resnet18 width {args.width}",
                    "data": spec,
                    "epochs": args.epochs,
                    "batch_size": args.batch_size,
                    "rows": rows,
                    "codecs": codec_rows,
                    "step_times": step_times,
                },
                indent=2,
            )
        )
    return rows


def _resnet_export(export: dict, split: int) -> ExportOptions:
    # The torch engine trains it; ORT artifacts would only cost export time here.
    return ExportOptions(
        model=export["model"],
        split=split,
        input_shape=export["input_shape"],
        engine="torch",
        validate=False,
        model_kwargs={"width": export["width"]},
    )


def _codec_rows(split: int, audit: dict) -> list[dict]:
    """Per codec, the best attack on the undefended front (the audit's codec comparison)."""
    out = []
    for codec in audit["codecs"]:
        mine = [r for r in audit["results"] if r["codec"] == codec]
        best = max(mine, key=lambda r: r["psnr"])
        by_attack = {
            a: max((r["psnr"] for r in mine if r["attack"] == a), default=None)
            for a in ("learned", "whitebox")
        }
        out.append(
            {
                "split": split,
                "codec": codec,
                "best_attack": f"{best['attack']} ({best['stage']})",
                "psnr": best["psnr"],
                "ssim": best["ssim"],
                "learned_psnr": by_attack["learned"],
                "whitebox_psnr": by_attack["whitebox"],
            }
        )
        print(
            f"split {split} codec {codec:<5}: best {out[-1]['best_attack']:<20} PSNR "
            f"{best['psnr']:5.2f} SSIM {best['ssim']:.3f} (learned {by_attack['learned']:.2f}, "
            f"white-box {by_attack['whitebox'] or float('nan'):.2f})",
            flush=True,
        )
    return out


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
