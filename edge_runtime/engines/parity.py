"""Do the engines train the same front the same way on this machine? One engine per process.

    python -m edge_runtime.engines.parity --bundle EDGE_DIR --engine ort --out ort.npz

runs `--steps` training steps of one engine over the bundle's edge half from its exported
weights, on batches drawn from a fixed seed, and writes each step's loss and activation plus
the process's peak RSS to an .npz file. Run it once per engine, each in a fresh interpreter
(the ort engine's process never loads torch or onnx, so its peak RSS is its own), then compare
with `compare`: the tolerances below are the ones the x86_64 test suite holds the engines to
(tests/engines/test_engines_parity.py) and the HIL suite holds a board to
(hw_tests/test_engines_parity.py). Under qemu-user the RSS is the emulator's process, guest
and translator together.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

# Stated tolerances over 5 steps from the same weights and batches. Measured on resnet18 split 3:
# AdamW loss |diff| <= 5e-5 and activation relative L2 <= 1e-2 (Adam divides by sqrt(v), so
# float32 summation-order noise in near-zero gradients grows a little each step); SGD 1e-4.
LOSS_ATOL = 1e-3
ACT_REL = {"adamw": 3e-2, "sgd": 1e-3}


def peak_rss_mb() -> float | None:
    """This process's RSS high-water mark, MB: VmHWM from /proc, else getrusage's ru_maxrss
    (qemu-user emulates no VmHWM; its getrusage is the emulator process's); None if neither."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass  # no /proc: getrusage below
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    except (ImportError, OSError):
        return None


def batches(shape: tuple[int, ...], classes: int, steps: int, batch: int, seed: int = 42):
    """The same batches on every machine: numpy's PCG64 stream is platform-independent."""
    rng = np.random.default_rng(seed)
    return [
        (
            rng.standard_normal((batch, *shape)).astype(np.float32),
            rng.integers(0, classes, batch),
        )
        for _ in range(steps)
    ]


def run(bundle_dir: Path, engine: str, steps: int, batch: int, threads: int | None) -> dict:
    """Train `steps` steps with `engine`; losses, activations, timings and peak RSS."""
    from edge_runtime.bundle import load_bundle
    from edge_runtime.engines import make_engine

    bundle = load_bundle(bundle_dir)
    shape = tuple(bundle.manifest["input_shape"])
    classes = int(bundle.manifest["num_classes"])
    eng = make_engine(engine, bundle, threads=threads)
    losses, acts, step_s = [], [], []
    for x, y in batches(shape, classes, steps, batch):
        t0 = time.perf_counter()
        out = eng.train_step(x, y)
        step_s.append(time.perf_counter() - t0)
        losses.append(out.loss)
        acts.append(out.activation)
    return {
        "engine": eng.name,
        "losses": np.asarray(losses, np.float64),
        "activations": np.stack(acts),
        "step_s": np.asarray(step_s),
        "peak_rss_mb": np.float64(peak_rss_mb() or np.nan),
        "heavy_modules": json.dumps(sorted(m for m in ("torch", "onnx") if m in sys.modules)),
        "optimizer": str(bundle.manifest["edge"]["optimizer"]["type"]).lower(),
    }


def compare(ort: dict, torch: dict) -> list[str]:
    """What breaks parity between two runs' results (empty when they agree)."""
    problems = []
    rel_limit = ACT_REL.get(str(ort["optimizer"]), ACT_REL["adamw"])
    for step, (a, b) in enumerate(zip(ort["losses"], torch["losses"], strict=True)):
        if not abs(float(a) - float(b)) < LOSS_ATOL:
            problems.append(f"step {step}: loss {float(a):.6f} vs {float(b):.6f}")
    for step, (a, b) in enumerate(zip(ort["activations"], torch["activations"], strict=True)):
        rel = float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-12))
        if not rel < rel_limit:
            problems.append(f"step {step}: activation relative L2 {rel:.2e} >= {rel_limit}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, required=True, help="the edge half of a bundle")
    ap.add_argument("--engine", choices=("ort", "torch"), required=True)
    ap.add_argument("--out", type=Path, required=True, help="the .npz to write")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    result = run(args.bundle, args.engine, args.steps, args.batch, args.threads)
    np.savez(args.out, **result)
    print(
        f"{result['engine']}: {args.steps} steps, losses "
        f"{', '.join(f'{v:.4f}' for v in result['losses'])}, median step "
        f"{np.median(result['step_s']):.3f} s, peak RSS {float(result['peak_rss_mb']):.0f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
