"""`edge-runtime infer`: what the command does, apart from parsing its options."""

from __future__ import annotations

import dataclasses
import math
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_runtime.bundle import KEY_FILE, read_key_file, sha256_file
from edge_runtime.data import Dataset, load_dataset
from edge_runtime.errors import UsageFault
from edge_runtime.infer.arrivals import Arrivals
from edge_runtime.infer.calibration import calibrate_on_validation, validation_split
from edge_runtime.infer.model_dir import MODEL_JSON, ModelDirError
from edge_runtime.infer.policy import ExitPolicy, check_fraction
from edge_runtime.infer.runner import EdgeModel, InferRun, infer_report
from edge_runtime.link import EdgeLink, LinkConfig, LinkError
from edge_runtime.report import write_report

DEFAULT_THRESHOLD = 0.9


@dataclass(frozen=True)
class PolicyOptions:
    """What the policy options ask for, checked: a fixed threshold, or a calibration target."""

    threshold: float | None = None
    target_accuracy: float | None = None
    max_offload: float | None = None
    latency_budget_ms: float | None = None
    calibration_samples: int | None = None

    def __post_init__(self) -> None:
        given = [n for n, v in (("--threshold", self.threshold),
                                ("--target-accuracy", self.target_accuracy),
                                ("--max-offload", self.max_offload)) if v is not None]  # fmt: skip
        if len(given) > 1:
            raise UsageFault(
                f"give one of --threshold, --target-accuracy, --max-offload, not {' and '.join(given)}"
            )
        for name in given:
            check_fraction(name, getattr(self, name[2:].replace("-", "_")))
        if self.latency_budget_ms is not None and self.latency_budget_ms <= 0:
            raise UsageFault(
                f"--latency-budget {self.latency_budget_ms}: must be a positive number of ms"
            )
        if self.calibration_samples is not None and not self.calibrates:
            raise UsageFault(
                "--calibration-samples only goes with --target-accuracy or --max-offload"
            )

    @property
    def calibrates(self) -> bool:
        """Whether the threshold is calibrated on a validation split."""
        return self.target_accuracy is not None or self.max_offload is not None

    @property
    def budget_s(self) -> float | None:
        """The adaptive policy's latency budget in seconds (None: not adaptive)."""
        return None if self.latency_budget_ms is None else self.latency_budget_ms / 1000

    def fixed(self) -> ExitPolicy:
        """The policy of a fixed threshold (default 0.9)."""
        t = DEFAULT_THRESHOLD if self.threshold is None else self.threshold
        return ExitPolicy(t, "fixed", self.budget_s)


def run_infer(
    model_dir: Path,
    url: str | None,
    data_spec: str,
    *,
    policy_options: PolicyOptions,
    codec: str,
    key_file: Path | None,
    edge_id: str,
    connect_timeout: float,
    answer_timeout: float,
    baud: int,
    limit: int | None,
    report_path: Path | None,
    arrivals: Arrivals | None = None,
    slowdown: float = 1.0,
    say: Any = print,
) -> dict[str, Any]:
    """Answer the held-out split of `data_spec` (its test split, or its train split if it has
    none); when the policy calibrates, answer all but the validation samples it calibrates on."""
    model = EdgeModel(model_dir)
    if limit is not None and limit < 1:
        raise UsageFault(f"--limit {limit}: answer at least 1 sample")
    data = load_dataset(data_spec, seed=0)
    if data.input_shape != model.input_shape:  # the user's data, not the model, is off: usage
        have, want = ("x".join(map(str, s)) for s in (data.input_shape, model.input_shape))
        raise UsageFault(
            f"data {data.name} is {have} but the model takes {want}: give data of the shape "
            "it was trained on"
        )
    images, labels = (
        (data.x_test, data.y_test) if len(data.x_test) else (data.x_train, data.y_train)
    )
    labels = labels_as_trained(data, labels, model.description.get("classes"))
    classes = model.description.get("num_classes")
    if isinstance(classes, int) and len(labels) and int(labels.max()) >= classes:
        # Scored against labels it can never answer, the model would look wrong, not the data.
        raise UsageFault(
            f"data {data.name} has labels {int(labels.min())}..{int(labels.max())} but the model "
            f"answers classes 0..{classes - 1}: give the labels it was trained with (map them "
            f"to 0..{classes - 1})"
        )
    if limit is not None:  # the samples answered, not (as load_dataset's limit) the train split
        images, labels = images[:limit], labels[:limit]
    x = normalise_as_trained(data, images, model)
    model.check_input(x)
    split = None
    if policy_options.calibrates:
        split = validation_split(len(x), policy_options.calibration_samples)
    link = None
    lost = None
    if url is not None:
        key = read_key_file(key_file or Path(model_dir) / KEY_FILE)
        try:
            link = EdgeLink.connect(
                url,
                key=key,
                bundle_sha256=sha256_file(Path(model_dir) / MODEL_JSON),
                edge_id=edge_id,
                run_id=f"infer-{secrets.token_hex(4)}",
                spool_dir=Path(tempfile.mkdtemp(prefix="hiertrain-infer-")),
                config=LinkConfig(baudrate=baud, reconnect_timeout=connect_timeout),
            )
        except LinkError as exc:  # the board answers alone, marked degraded
            lost = f"host unreachable: {exc}"
            say(f"{lost}; answering every sample at the edge (degraded)")

    def new_run(policy: ExitPolicy, **kw: Any) -> InferRun:
        return InferRun(
            model, policy, link, codec, answer_timeout_s=answer_timeout, slowdown=slowdown, **kw
        )

    calibration: dict[str, Any] | None = None
    host_lost = lost
    try:
        if split is not None:
            say(split.describe())
            policy, calibration, cal_lost = _calibrate(
                new_run, x[split.validation], labels[split.validation], policy_options, lost
            )
            host_lost = host_lost or cal_lost
            x, labels = x[split.answered], labels[split.answered]
        else:
            policy = policy_options.fixed()
        run = new_run(policy, arrivals=arrivals or Arrivals())
        if host_lost is not None:
            run.host_lost = host_lost
        t0 = time.perf_counter()
        answers = run.run(x)
        wall = time.perf_counter() - t0
    finally:
        if link is not None:
            link.close("done")
    report = infer_report(answers, labels, run, wall)
    report.update(
        model=model.description["model"], split=model.description["split"], data=data.describe()
    )
    if split is not None and calibration is not None:
        # The answering run's bytes only; the calibration pass's are its own.
        report["bytes_up"] -= calibration.get("bytes_up", 0)
        report["bytes_down"] -= calibration.get("bytes_down", 0)
        report["calibration"] = calibration | {
            "how": split.describe(),
            "answered_indices": split.answered.tolist(),
        }
    if run.host_lost and host_lost is None and url is not None:
        say(f"host lost mid-run: {run.host_lost}; the rest answered at the edge (degraded)")
    if report_path:
        write_report(report_path, report)
    lat = report["latency_ms"]
    say(
        f"{report['samples']} samples: {100 * report['fraction_at_edge']:.1f}% at the edge, "
        f"accuracy {100 * report['accuracy']:.1f}%, latency p50 {lat['p50']:.1f} ms "
        f"p95 {lat['p95']:.1f} ms p99 {lat['p99']:.1f} ms"
        + (f", {report['answers']['degraded']} degraded" if report["degraded"] else "")
    )
    return report


def labels_as_trained(data: Dataset, labels: np.ndarray, trained: Any) -> np.ndarray:
    """`labels` as the model's class indices where the data names its classes (folder:DIR,
    say) and every name is one the model was trained on: a test folder that lacks a class
    numbers the rest from 0 again ("4" read as 3 without a "3"). Unnamed or unknown names
    leave the labels as they are (an npz's indices are the model's)."""
    if not data.classes or not isinstance(trained, list) or list(data.classes) == trained:
        return labels
    if not set(data.classes) <= set(trained):
        return labels
    index = np.array([trained.index(name) for name in data.classes], dtype=np.int64)
    return index[labels]


def normalise_as_trained(data: Dataset, images: np.ndarray, model: EdgeModel) -> np.ndarray:
    """Raw uint8 `images` as the model saw its training inputs: scaled with model.json's
    `normalisation` (the training data's train-split statistics), not with statistics of the
    data being answered, which may be a handful of new samples of another make-up. A model
    directory without it (assembled from checkpoints that lacked it) falls back on `data`'s."""
    norm = model.description.get("normalisation")
    if norm:
        channels = model.input_shape[0]
        mean = np.asarray(norm.get("mean", ()), np.float32)
        std = np.asarray(norm.get("std", ()), np.float32)
        if (
            mean.shape != (channels,)
            or std.shape != (channels,)
            or not math.isclose(norm.get("pixel_scale", 0.0), 1 / 255)
        ):
            raise ModelDirError(
                f"model.json's normalisation {norm} does not fit {channels}-channel inputs "
                "scaled by 1/255"
            )
        data = dataclasses.replace(data, mean=mean, std=std)
    return data.normalise(images)


def _calibrate(
    new_run: Any, x_val: Any, y_val: Any, options: PolicyOptions, lost: str | None
) -> tuple[ExitPolicy, dict[str, Any], str | None]:
    """(policy, calibration summary, why the host was lost or None) from the validation pass."""
    if lost is not None:  # every answer is the edge's: no threshold to choose
        summary = {"validation_samples": len(x_val), "incomplete": lost}
        return ExitPolicy(DEFAULT_THRESHOLD, "not calibrated: no host"), summary, lost
    cal = new_run(ExitPolicy(DEFAULT_THRESHOLD, "calibration pass"))
    threshold, why, summary = calibrate_on_validation(
        cal,
        x_val,
        y_val,
        target_accuracy=options.target_accuracy,
        max_offload=options.max_offload,
    )
    if math.isnan(threshold):
        return ExitPolicy(DEFAULT_THRESHOLD, "not calibrated: host lost"), summary, cal.host_lost
    summary["threshold"] = threshold
    return ExitPolicy(threshold, why, options.budget_s), summary, None
