"""Run a freshly written bundle's ONNX models in onnxruntime on a sample batch, as the board would.

Run as `python -m host.export.ort_probe BUNDLE_DIR SAMPLE.npz OUT.npz` by validation: a separate
process, because a broken gradient graph can kill its process (AveragePool's gradient raises
SIGFPE in onnxruntime-training 1.19.2) and export must survive to say so. Imports neither torch
nor onnx: the ORT side runs through the ort engine the board uses.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

TRAIN_STEPS = 2  # the loss of step 2 shows that step 1's gradient and update agree


def probe(bundle_dir: Path, sample: dict[str, np.ndarray], save: Callable[[dict], None]) -> None:
    """Outputs of every ONNX model in the bundle on `sample` (keys x, y, activation).

    `save` gets what is known so far after each model, so a crash still leaves the earlier ones.
    """
    from edge_runtime.bundle import load_bundle
    from edge_runtime.engines.ort_import import training_api

    training_api()  # first: the light import the board uses (no torch, no onnx; ~3 s less)
    import onnxruntime as ort

    ort.set_default_logger_severity(3)
    out: dict[str, np.ndarray] = {}
    x, y = sample["x"], sample["y"]
    edge = bundle_dir / "edge"
    inference = ort.InferenceSession(str(edge / "inference_model.onnx"))
    out["inference.logits"], out["inference.activation"] = inference.run(
        ["logits", "activation"], {"input": x}
    )
    save(out)
    tail = bundle_dir / "cloud" / "tail_model.onnx"
    if tail.is_file():
        (out["tail.logits"],) = ort.InferenceSession(str(tail)).run(
            ["logits"], {"input": sample["activation"]}
        )
        save(out)
    if (edge / "training_model.onnx").is_file():
        from edge_runtime.engines import make_engine

        engine = make_engine("ort", load_bundle(edge), threads=1)
        ev = engine.eval_step(x, y)
        out["eval.logits"], out["eval.activation"] = ev.logits, ev.activation
        save(out)
        losses = [engine.train_step(x, y).loss for _ in range(TRAIN_STEPS)]
        out["train.loss"] = np.array(losses, np.float64)
        save(out)


def main(argv: list[str]) -> int:
    bundle_dir, sample_path, out_path = (Path(a) for a in argv)
    with np.load(sample_path) as data:
        sample = {k: data[k] for k in data.files}

    def save(found: dict) -> None:
        np.savez(out_path.with_name(out_path.name + ".tmp.npz"), **found)
        out_path.with_name(out_path.name + ".tmp.npz").replace(out_path)

    probe(bundle_dir, sample, save)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
