"""Validate a written bundle against the torch modules it came from, as `optimum-cli export` does.

Every ONNX model runs in onnxruntime on one sample batch (in a child process: see ort_probe) and
is compared with torch: the inference model of front + exit, the eval model, the cloud's tail,
and two training steps of the ORT artifacts against two torch steps with the same optimizer. The
torch engine is built from the bundle as the board builds it (bundled code, .npz weights) and
compared the same way. One line per model, ✓ or ✗ with the largest difference.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_runtime.command_line import own_module_argv
from edge_runtime.errors import HiertrainError

REPO = Path(__file__).resolve().parents[2]
SAMPLE_BATCH = 4
TRAIN_STEPS = 2  # as ort_probe.TRAIN_STEPS
PROBE_TIMEOUT_S = 600


class ValidationError(HiertrainError):
    """A model in the bundle disagrees with torch, or onnxruntime failed on it (exit 1)."""


@dataclass(frozen=True)
class Check:
    """One model's comparison."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'✓' if self.ok else '✗'} {self.name}: {self.detail}"


def _diff(got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> tuple[bool, float]:
    if got.shape != want.shape:
        return False, float("inf")
    diff = float(np.max(np.abs(got.astype(np.float64) - want))) if got.size else 0.0
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    return diff <= atol + rtol * scale and np.isfinite(got).all(), diff


def compare(
    name: str, pairs: dict[str, tuple[np.ndarray, np.ndarray]], *, loose: bool = False
) -> Check:
    """One Check over named (got, want) arrays; `loose` for values after an optimizer step."""
    rtol, atol = (1e-2, 1e-3) if loose else (1e-3, 1e-4)
    parts, ok = [], True
    for what, (got, want) in pairs.items():
        fine, diff = _diff(np.asarray(got), np.asarray(want, np.float64), rtol, atol)
        ok &= fine
        shape = (
            ""
            if np.shape(got) == np.shape(want)
            else f" (shape {np.shape(got)} vs {np.shape(want)})"
        )
        parts.append(f"{what} {diff:.1e}{shape}")
    return Check(name, ok, "max |diff| " + ", ".join(parts))


def _has_dropout(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in module.modules())


def torch_reference(
    edge_net: nn.Module, tail: nn.Module, optimizer: dict, x: torch.Tensor, y: torch.Tensor
) -> dict[str, np.ndarray]:
    """What torch gives on the sample: eval outputs, the tail on that activation, step losses.

    Works on copies: the modules passed in stay as exported.
    """
    from models import build_optimizer

    net, tail = copy.deepcopy(edge_net).eval(), copy.deepcopy(tail).eval()
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        logits, activation = net(x)
        out["logits"], out["activation"] = logits.numpy(), activation.numpy()
        out["tail.logits"] = tail(activation).numpy()
    net.train()
    opt = build_optimizer(net.parameters(), optimizer)
    losses = []
    for _ in range(TRAIN_STEPS):
        loss = nn.functional.cross_entropy(net(x)[0], y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    out["train.loss"] = np.array(losses)
    return out


def _run_probe(bundle_dir: Path, sample: dict[str, np.ndarray]) -> tuple[dict, str]:
    """The ORT side's outputs, and why the probe stopped early ('' if it did not)."""
    with tempfile.TemporaryDirectory(prefix="hiertrain-validate-") as tmp:
        sample_path, out_path = Path(tmp) / "sample.npz", Path(tmp) / "out.npz"
        np.savez(sample_path, **sample)
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
        )
        argv = [*own_module_argv("host.export.ort_probe"), str(bundle_dir), str(sample_path)]
        try:
            proc = subprocess.run(
                [*argv, str(out_path)],
                capture_output=True,
                text=True,
                env=env,
                timeout=PROBE_TIMEOUT_S,
            )
            failure = _why(proc.returncode, proc.stderr)
        except subprocess.TimeoutExpired:
            failure = f"onnxruntime did not finish in {PROBE_TIMEOUT_S} s"
        found: dict = {}
        if out_path.is_file():
            with np.load(out_path) as data:
                found = {k: data[k] for k in data.files}
    return found, failure


def _why(returncode: int, stderr: str) -> str:
    if returncode == 0:
        return ""
    if returncode < 0:
        return f"onnxruntime crashed the process ({signal.Signals(-returncode).name})"
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    last = " ".join(lines[-1].split())[-300:] if lines else f"exit status {returncode}"
    return f"onnxruntime failed: {last}"


def validate_bundle(
    bundle_dir: Path,
    edge_net: nn.Module,
    tail: nn.Module,
    *,
    seed: int = 0,
    report: Callable[[str], None] = print,
) -> list[Check]:
    """Compare every model in `bundle_dir` with the torch modules; raise ValidationError on a ✗."""
    from edge_runtime.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    m = bundle.manifest
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(SAMPLE_BATCH, *m["input_shape"], generator=gen)
    y = torch.randint(0, m["num_classes"], (SAMPLE_BATCH,), generator=gen)
    ref = torch_reference(edge_net, tail, m["edge"]["optimizer"], x, y)
    dropout = _has_dropout(edge_net)
    sample = {"x": x.numpy(), "y": y.numpy(), "activation": ref["activation"]}
    got, failure = _run_probe(bundle_dir, sample)

    checks: list[Check] = []
    expected = {"inference": "inference model (front + exit)", "tail": "cloud tail model"}
    if "ort" in m.get("engines", ["ort"]):
        expected |= {"eval": "eval model (ORT artifacts)", "train": "training step (ORT artifacts)"}
    for key, name in expected.items():
        if key == "tail" and not (bundle_dir / "cloud" / "tail_model.onnx").is_file():
            continue
        if not any(k.startswith(key + ".") for k in got):
            checks.append(Check(name, False, failure or "onnxruntime gave no output"))
            continue
        if key == "train":
            checks.append(_train_check(name, got["train.loss"], ref["train.loss"], dropout))
        elif key == "tail":
            checks.append(compare(name, {"logits": (got["tail.logits"], ref["tail.logits"])}))
        else:
            pairs = {k: (got[f"{key}.{k}"], ref[k]) for k in ("logits", "activation")}
            checks.append(compare(name, pairs))
    checks.append(_torch_engine_check(bundle_dir, sample, ref, dropout))
    for check in checks:
        report(check.line())
    bad = [c.name for c in checks if not c.ok]
    if bad:
        raise ValidationError(f"the exported bundle disagrees with torch: {', '.join(bad)}")
    return checks


def _train_check(name: str, got: np.ndarray, want: np.ndarray, dropout: bool) -> Check:
    if dropout:  # the two runtimes draw different dropout masks: only finiteness is comparable
        ok = bool(np.isfinite(got).all())
        return Check(name, ok, f"loss {got[0]:.4f} (dropout: not compared with torch)")
    first = compare(name, {"loss": (got[:1], want[:1])})
    after = compare(name, {"after a step": (got[1:], want[1:])}, loose=True)
    detail = f"{first.detail}, {after.detail.removeprefix('max |diff| ')}"
    return Check(name, first.ok and after.ok, detail)


def _torch_engine_check(
    bundle_dir: Path, sample: dict[str, np.ndarray], ref: dict[str, np.ndarray], dropout: bool
) -> Check:
    """The torch engine rebuilt from the bundle (bundled code, .npz weights), as on the board."""
    from edge_runtime.bundle import load_bundle
    from edge_runtime.engines.base import EngineError
    from edge_runtime.engines.torch_engine import TorchEngine
    from models import ManifestError, ModelSpecError

    name = "torch engine (bundled code + weights)"
    try:
        engine = TorchEngine(load_bundle(bundle_dir / "edge"), threads=torch.get_num_threads())
        ev = engine.eval_step(sample["x"], sample["y"])
        losses = np.array(
            [engine.train_step(sample["x"], sample["y"]).loss for _ in range(TRAIN_STEPS)]
        )
    except (EngineError, ManifestError, ModelSpecError, RuntimeError) as exc:
        return Check(name, False, f"cannot rebuild the model: {' '.join(str(exc).split())[:300]}")
    outputs = compare(
        name,
        {"logits": (ev.logits, ref["logits"]), "activation": (ev.activation, ref["activation"])},
    )
    step = _train_check(name, losses, ref["train.loss"], dropout)
    detail = f"{outputs.detail}, {step.detail.removeprefix('max |diff| ')}"
    return Check(name, outputs.ok and step.ok, detail)
