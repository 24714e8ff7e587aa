"""`hostctl export`: a model and a split point in, a verified bundle directory out."""

from __future__ import annotations

import importlib.metadata
import json
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edge_runtime.bundle import (
    BUNDLE_FORMAT,
    EDGE_WEIGHTS,
    INFERENCE_MODEL,
    KEY_FILE,
    MANIFEST,
    SPLIT_ARTIFACTS,
    TAIL_MODEL,
    TAIL_WEIGHTS,
    USER_MODEL_SOURCE,
    sha256_listing,
)
from host.export.onnx_artifacts import (
    export_inference,
    export_split_artifacts,
    export_training_artifacts,
)
from models import EdgeNet, SplitModel, build_exit_head, build_model, split_table

OPTIMIZERS = ("adamw", "sgd")


@dataclass
class ExportOptions:
    """Everything `hostctl export` takes besides the output directory."""

    model: str = "resnet18"
    split: int = 4
    input_shape: tuple[int, int, int] = (3, 32, 32)
    num_classes: int = 10
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    exit_head_width: int | None = None
    seed: int = 0
    key_file: Path | None = None
    # Also what the comparison modes need: split-learning artifacts (edge/split/) and the whole
    # network's weights on both sides (edge mode trains it all on the board, cloud mode on the host).
    baselines: bool = False
    model_kwargs: dict = field(default_factory=dict)


def default_out_dir(opts: ExportOptions) -> Path:
    """`artifacts/<model>-split<N>`, with a user spec reduced to its factory name."""
    name = opts.model.rsplit(":", 1)[-1] if ":" in opts.model else opts.model
    return Path("artifacts") / f"{name}-split{opts.split}"


def save_weights(module: torch.nn.Module, path: Path) -> None:
    """State dict (parameters and buffers) as a plain .npz: no pickled code crosses to the board."""
    arrays = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    np.savez(path, **arrays)


def _versions() -> dict[str, str]:
    out = {}
    for dist in ("torch", "onnx", "onnxruntime-training", "hiertrain"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = "absent"
    return out


def _write_key(opts: ExportOptions, dirs: list[Path]) -> None:
    if opts.key_file is not None:
        key_text = Path(opts.key_file).read_bytes()
    else:
        key_text = (secrets.token_hex(32) + "\n").encode()
    for d in dirs:
        (d / KEY_FILE).write_bytes(key_text)
        (d / KEY_FILE).chmod(0o600)


def build_parts(opts: ExportOptions) -> tuple[SplitModel, EdgeNet, torch.nn.Module]:
    """The split model, the edge network (front + exit head) and the tail, freshly initialised."""
    torch.manual_seed(opts.seed)
    model = build_model(
        opts.model,
        input_shape=opts.input_shape,
        num_classes=opts.num_classes,
        **opts.model_kwargs,
    )
    model.check_split(opts.split)
    act_shape = model.activation_shape(opts.split)
    head = build_exit_head(act_shape, opts.num_classes, opts.exit_head_width)
    return model, EdgeNet(model.front(opts.split), head), model.tail(opts.split)


def export_bundle(opts: ExportOptions, out: Path, *, progress=None) -> Path:
    """Export a bundle to `out` (replaced if it exists) and return the manifest path.

    `progress`, if given, is called with a short description before each stage.
    """
    step = progress or (lambda _msg: None)
    if opts.optimizer not in OPTIMIZERS:
        raise ValueError(
            f"unknown optimizer {opts.optimizer!r}: use one of {', '.join(OPTIMIZERS)}"
        )
    t0 = time.perf_counter()
    step("building model")
    model, edge_net, tail = build_parts(opts)
    act_shape = model.activation_shape(opts.split)
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    edge_dir, cloud_dir = out / "edge", out / "cloud"
    edge_dir.mkdir(parents=True)
    cloud_dir.mkdir(parents=True)

    sample = torch.randn(2, *opts.input_shape)
    step("exporting edge training artifacts")
    bn_updates = export_training_artifacts(
        edge_net, sample, edge_dir, optimizer=opts.optimizer, weight_decay=opts.weight_decay
    )
    step("exporting inference models")
    export_inference(edge_net, sample, ["logits", "activation"], edge_dir / INFERENCE_MODEL)
    save_weights(edge_net, edge_dir / EDGE_WEIGHTS)
    act_sample = torch.randn(2, *act_shape)
    export_inference(tail, act_sample, ["logits"], cloud_dir / TAIL_MODEL)
    save_weights(tail, cloud_dir / TAIL_WEIGHTS)

    split_bn: list[tuple[str, str]] = []
    if opts.baselines:
        step("exporting split-learning artifacts")
        split_bn = export_split_artifacts(
            edge_net.front,
            sample,
            edge_dir / SPLIT_ARTIFACTS,
            optimizer=opts.optimizer,
            weight_decay=opts.weight_decay,
        )
        shutil.copyfile(edge_dir / EDGE_WEIGHTS, cloud_dir / EDGE_WEIGHTS)
        shutil.copyfile(cloud_dir / TAIL_WEIGHTS, edge_dir / TAIL_WEIGHTS)

    model_spec = dict(model.spec)
    source = model_spec.get("source")
    if source and Path(source).is_file():
        # The torch engine rebuilds the front from source: ship the user's file, not a pickle.
        src = Path(source)
        for d in (edge_dir, cloud_dir):
            shutil.copyfile(src, d / USER_MODEL_SOURCE)
        model_spec["bundled_source"] = USER_MODEL_SOURCE
        model_spec["factory"] = opts.model.rsplit(":", 1)[1]
    _write_key(opts, [edge_dir, cloud_dir])

    step("measuring costs")
    row = next(r for r in split_table(model) if r["split"] == opts.split)
    edge_params = sum(p.numel() for p in edge_net.parameters())
    tail_params = sum(p.numel() for p in tail.parameters())
    files = {**sha256_listing(out, edge_dir), **sha256_listing(out, cloud_dir)}
    optimizer = {"type": opts.optimizer, "lr": opts.lr, "weight_decay": opts.weight_decay}
    manifest = {
        "format": BUNDLE_FORMAT,
        "model": opts.model,
        "model_spec": model_spec,
        "split": opts.split,
        "blocks": model.block_names,
        "edge_blocks": model.block_names[: opts.split],
        "tail_blocks": model.block_names[opts.split :],
        "input_shape": list(opts.input_shape),
        "num_classes": opts.num_classes,
        "activation": {"shape": list(act_shape), "dtype": "float32"},
        "raw_bytes_per_sample": int(row["raw_bytes"]),
        "activation_bytes_per_sample": int(row["activation_bytes"]),
        "edge": {
            "params": edge_params,
            "flops_per_sample": int(row["edge_flops"]),
            "exit_head_width": opts.exit_head_width,
            "optimizer": optimizer,
            "bn_updates": [list(p) for p in bn_updates],
            "split_bn_updates": [list(p) for p in split_bn],
            "onnx_opset": 17,
        },
        "cloud": {
            "params": tail_params,
            "flops_per_sample": int(row["tail_flops"]),
            "optimizer": optimizer,
        },
        "seed": opts.seed,
        "baselines": opts.baselines,
        "files": files,
        "versions": _versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "export_seconds": round(time.perf_counter() - t0, 3),
    }
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    for d in (out, edge_dir, cloud_dir):
        (d / MANIFEST).write_text(text)
    return out / MANIFEST
