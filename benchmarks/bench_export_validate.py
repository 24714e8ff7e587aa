"""What export's validation costs: export_bundle without and with validation, side by side.

    .venv/bin/python benchmarks/bench_export_validate.py [--repeats 2]

One untimed export first (torch and onnx warm-up), then per model the two settings alternated,
median seconds of `--repeats` each. Validation runs onnxruntime in a child process (its start
and imports are part of the figure) and rebuilds the torch engine from the bundle.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from host.export import ExportOptions, export_bundle

CASES = [("smallcnn", 3), ("resnet18", 4)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "b"
        export_bundle(ExportOptions(model="smallcnn", split=1, force=True), out)
        print(f"{'model':<10} {'split':>5} {'export s':>9} {'+validate s':>12} {'extra':>7}")
        for model, split in CASES:
            times: dict[bool, list[float]] = {False: [], True: []}
            for _ in range(args.repeats):
                for validate in (False, True):
                    opts = ExportOptions(model=model, split=split, force=True, validate=validate)
                    t0 = time.perf_counter()
                    export_bundle(opts, out)
                    times[validate].append(time.perf_counter() - t0)
            plain, checked = (statistics.median(times[v]) for v in (False, True))
            print(
                f"{model:<10} {split:>5} {plain:>9.2f} {checked:>12.2f} {checked / plain - 1:>6.0%}"
            )


if __name__ == "__main__":
    main()
