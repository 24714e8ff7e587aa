"""`hostctl export`: a model and a split point in, a verified bundle directory out."""

from __future__ import annotations

import importlib.metadata
import json
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edge_runtime.bundle import (
    BUNDLE_FORMAT,
    CODE_DIR,
    EDGE_WEIGHTS,
    INFERENCE_MODEL,
    KEY_FILE,
    MANIFEST,
    SPLIT_ARTIFACTS,
    TAIL_MODEL,
    TAIL_WEIGHTS,
    sha256_listing,
)
from edge_runtime.errors import UsageFault
from edge_runtime.train.schedule import LrSchedule, ScheduleError
from host.export.onnx_artifacts import (
    export_inference,
    export_split_artifacts,
    export_training_artifacts,
    trace_training_graph,
)
from host.export.ort_ops import check_trainable, from_ort_error
from host.export.validate import validate_bundle
from models import EdgeNet, SplitModel, build_exit_head, build_model, split_table
from models.pretrained import load_pretrained
from models.user import working_dir_package

OPTIMIZERS = ("adamw", "sgd")
# "ort": ONNX Runtime training artifacts as well (a bundle both engines train);
# "torch": no training artifacts, for fronts whose ops ORT training cannot differentiate.
EXPORT_ENGINES = ("ort", "torch")


class ExportError(UsageFault):
    """Export options that cannot work (a bad --include, --requires, optimizer, engine)."""


class BundleExistsError(ExportError):
    """--out already holds a bundle (and no --force), or holds something else."""


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
    # The learning rate per epoch for both halves (edge_runtime/train/schedule.py's spec).
    lr_schedule: str = "constant"
    exit_head_width: int | None = None
    seed: int = 0
    key_file: Path | None = None
    # Also what the comparison modes need: split-learning artifacts (edge/split/) and the whole
    # network's weights on both sides (edge mode trains it all on the board, cloud mode on the host).
    baselines: bool = False
    model_kwargs: dict = field(default_factory=dict)
    # Pretrained weights to start from (models/pretrained.py): model.pt or a state dict.
    weights: Path | None = None
    engine: str = "ort"
    # Replace an existing bundle at --out (keeping its link key unless new_key).
    force: bool = False
    new_key: bool = False
    # Extra modules (files or package directories) and pip requirements the model's code needs
    # on the board; both go into the bundle and its manifest (`hostctl bundle` fetches wheels).
    includes: list[Path] = field(default_factory=list)
    requires: list[str] = field(default_factory=list)
    validate: bool = True
    # The model's class names in label order (folder:DIR data is labelled by them on every
    # edge); None: no `classes` entry, each folder numbers its classes in its own sorted order.
    classes: tuple[str, ...] | None = None
    # The defence an edge run applies unless its command line names one: the manifest's
    # `privacy` entry (edge_runtime.privacy.defence_entry); None: no defence, no entry.
    privacy: dict[str, float] | None = None


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


def _write_key(key_text: bytes, dirs: list[Path]) -> None:
    for d in dirs:
        (d / KEY_FILE).write_bytes(key_text)
        (d / KEY_FILE).chmod(0o600)


def _key_for(opts: ExportOptions, out: Path) -> bytes:
    """--key-file, else the key of the bundle being replaced (a deployed board keeps
    authenticating), else a fresh random key (also with --new-key)."""
    if opts.key_file is not None:
        return Path(opts.key_file).read_bytes()
    old = out / "edge" / KEY_FILE
    if opts.force and not opts.new_key and old.is_file():
        return old.read_bytes()
    return (secrets.token_hex(32) + "\n").encode()


def check_target(out: Path, force: bool) -> None:
    """Refuse to replace a bundle without --force, and never replace a directory that is not one."""
    if not out.exists():
        return
    if not out.is_dir():
        raise BundleExistsError(f"--out {out} exists and is not a directory")
    if (out / MANIFEST).is_file():
        if not force:
            raise BundleExistsError(
                f"{out} already holds a bundle: pass --force to replace it (its link key is "
                "kept; add --new-key for a fresh one), or give another --out"
            )
        return
    if any(out.iterdir()):
        raise BundleExistsError(
            f"--out {out} exists and is not a bundle (no {MANIFEST}); give a new or empty directory"
        )


def check_requirements(requires: list[str]) -> list[str]:
    """PEP 508 requirement strings, normalised; ExportError naming the first bad one."""
    from packaging.requirements import InvalidRequirement, Requirement

    out = []
    for text in requires:
        try:
            out.append(str(Requirement(text)))
        except InvalidRequirement as exc:
            raise ExportError(
                f"--requires {text!r} is not a requirement ({exc}); e.g. 'timm==1.0.9'"
            ) from None
    return out


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
    # The model's own count, not the option: a factory that takes no `num_classes` fixes it
    # (a 7-class model under the default --num-classes 10), and the exit must match the tail.
    head = build_exit_head(act_shape, model.num_classes, opts.exit_head_width)
    edge, tail = EdgeNet(model.front(opts.split), head), model.tail(opts.split)
    if opts.weights is not None:
        load_pretrained(opts.weights, edge, tail)  # front and tail share the model's blocks
    return model, edge, tail


def export_bundle(
    opts: ExportOptions,
    out: Path,
    *,
    progress: Callable[[str], None] | None = None,
    report: Callable[[str], None] | None = None,
) -> Path:
    """Export a bundle to `out`, validate it, and return the manifest path.

    `progress`, if given, is called with a short description before each stage; `report` with
    each validation line (✓/✗ per model). Everything is written into a hidden sibling directory
    first and moved into place only once validated: a failure leaves `out` as it was.
    Raises BundleExistsError, ExportError, UnsupportedOpError, ModelSpecError, ValidationError.
    """
    step = progress or (lambda _msg: None)
    if opts.optimizer not in OPTIMIZERS:
        raise ExportError(
            f"unknown optimizer {opts.optimizer!r}: use one of {', '.join(OPTIMIZERS)}"
        )
    if opts.engine not in EXPORT_ENGINES:
        raise ExportError(f"unknown engine {opts.engine!r}: use one of {', '.join(EXPORT_ENGINES)}")
    try:
        LrSchedule.parse(opts.lr_schedule)
    except ScheduleError as exc:
        raise ExportError(str(exc)) from None
    out = Path(out)
    check_target(out, opts.force)
    requires = check_requirements(opts.requires)
    includes = [Path(p) for p in opts.includes]
    for path in includes:
        if not (path.is_file() and path.suffix == ".py") and not path.is_dir():
            raise ExportError(f"--include {path}: not a .py file or a directory")
    t0 = time.perf_counter()
    step("building model")
    model, edge_net, tail = build_parts(opts)
    sample = torch.randn(2, *opts.input_shape)
    if opts.engine == "ort":
        step("checking the front's ops for ONNX Runtime training")
        check_ort_trainable(edge_net, sample)

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        _write(opts, model, edge_net, tail, sample, stage, out, requires, includes, t0, step)
        if opts.validate:
            step("validating the models against torch")
            validate_bundle(
                stage, edge_net, tail, seed=opts.seed, report=report or (lambda _l: None)
            )
        _move_into_place(stage, out)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return out / MANIFEST


def _move_into_place(stage: Path, out: Path) -> None:
    """Swap the staged bundle in; the old one is removed only after the new one is in place."""
    if out.exists():
        old = out.with_name(f".{out.name}.old-{secrets.token_hex(4)}")
        out.rename(old)
        stage.rename(out)
        shutil.rmtree(old)
    else:
        stage.rename(out)


def check_ort_trainable(edge_net: torch.nn.Module, sample: torch.Tensor) -> None:
    """UnsupportedOpError before anything is written if the ORT engine cannot train the front."""
    check_trainable(trace_training_graph(edge_net, sample))


def _copy_code(source: Path | None, includes: list[Path], dirs: list[Path]) -> list[str]:
    """The factory file, the modules it imported from its own folder, and --include paths,
    into DIR/code/ of each side; returns their names under code/."""
    from models.user import local_modules

    picked = {source.name: source} if source else {}
    for path in [*(local_modules(source) if source else []), *includes]:
        picked.setdefault(path.name, path)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for d in dirs:
        for name, path in picked.items():
            target = d / CODE_DIR / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                shutil.copytree(path, target, ignore=ignore)
            else:
                shutil.copyfile(path, target)
    return sorted(picked)


def _write(
    opts: ExportOptions,
    model: SplitModel,
    edge_net: EdgeNet,
    tail: torch.nn.Module,
    sample: torch.Tensor,
    root: Path,
    out: Path,
    requires: list[str],
    includes: list[Path],
    t0: float,
    step: Callable[[str], None],
) -> None:
    act_shape = model.activation_shape(opts.split)
    edge_dir, cloud_dir = root / "edge", root / "cloud"
    edge_dir.mkdir(parents=True)
    cloud_dir.mkdir(parents=True)

    bn_updates: list[tuple[str, str]] = []
    if opts.engine == "ort":
        step("exporting edge training artifacts")
        try:
            bn_updates = export_training_artifacts(
                edge_net, sample, edge_dir, optimizer=opts.optimizer, weight_decay=opts.weight_decay
            )
        except RuntimeError as exc:  # an op the table does not know yet: say it the same way
            known = from_ort_error(exc)
            if known is None:
                raise
            raise known from None
    step("exporting inference models")
    export_inference(edge_net, sample, ["logits", "activation"], edge_dir / INFERENCE_MODEL)
    save_weights(edge_net, edge_dir / EDGE_WEIGHTS)
    act_sample = torch.randn(2, *act_shape)
    export_inference(tail, act_sample, ["logits"], cloud_dir / TAIL_MODEL)
    save_weights(tail, cloud_dir / TAIL_WEIGHTS)

    split_bn: list[tuple[str, str]] = []
    if opts.baselines:
        step("exporting split-learning artifacts")
        if opts.engine == "ort":
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
    code_files: list[str] = []
    user_file = Path(source) if source and Path(source).is_file() else None
    package = working_dir_package(opts.model) if source and not user_file else None
    if package is not None:  # package.module:factory from the working directory
        includes = [package, *includes]
        model_spec["bundled_package"] = f"{CODE_DIR}/{package.name}"
    if user_file or includes:
        # The torch engine rebuilds the front from source: ship the user's code, not a pickle.
        code_files = _copy_code(user_file, includes, [edge_dir, cloud_dir])
    if user_file:
        model_spec["bundled_source"] = f"{CODE_DIR}/{user_file.name}"
        model_spec["factory"] = opts.model.rsplit(":", 1)[1]
    _write_key(_key_for(opts, out), [edge_dir, cloud_dir])

    step("measuring costs")
    row = next(r for r in split_table(model) if r["split"] == opts.split)
    edge_params = sum(p.numel() for p in edge_net.parameters())
    tail_params = sum(p.numel() for p in tail.parameters())
    files = {**sha256_listing(root, edge_dir), **sha256_listing(root, cloud_dir)}
    # One optimizer config, schedule included, for both halves: they follow the same rate.
    optimizer = {
        "type": opts.optimizer,
        "lr": opts.lr,
        "weight_decay": opts.weight_decay,
        "schedule": LrSchedule.parse(opts.lr_schedule).to_manifest(),  # checked on entry
    }
    manifest = {
        "format": BUNDLE_FORMAT,
        "model": opts.model,
        "model_spec": model_spec,
        "engines": ["ort", "torch"] if opts.engine == "ort" else ["torch"],
        "code": {"dir": CODE_DIR, "files": code_files, "requires": requires},
        "split": opts.split,
        "blocks": model.block_names,
        "edge_blocks": model.block_names[: opts.split],
        "tail_blocks": model.block_names[opts.split :],
        "input_shape": list(opts.input_shape),
        "num_classes": model.num_classes,
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
    if opts.classes is not None:
        if len(opts.classes) != model.num_classes:  # a factory that fixes its own count
            raise ExportError(
                f"--classes names {len(opts.classes)} classes but the model has "
                f"{model.num_classes}: name one per class"
            )
        manifest["classes"] = list(opts.classes)
    if opts.privacy:
        manifest["privacy"] = dict(opts.privacy)
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    for d in (root, edge_dir, cloud_dir):
        (d / MANIFEST).write_text(text)
