"""`edge-runtime infer`: what the command does, apart from parsing its options."""

from __future__ import annotations

import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from edge_runtime.bundle import KEY_FILE, read_key_file, sha256_file
from edge_runtime.data import load_dataset
from edge_runtime.errors import UsageFault
from edge_runtime.infer.model_dir import MODEL_JSON
from edge_runtime.infer.policy import ExitPolicy, calibrate, check_fraction
from edge_runtime.infer.runner import EdgeModel, InferRun, infer_report
from edge_runtime.link import EdgeLink, LinkConfig, LinkError
from edge_runtime.report import write_report

DEFAULT_THRESHOLD = 0.9


def choose_policy(
    description: dict[str, Any],
    threshold: float | None,
    target_accuracy: float | None,
    max_offload: float | None,
    latency_budget_ms: float | None,
) -> ExitPolicy:
    """The exit policy the options ask for (at most one of the three; default threshold 0.9)."""
    given = [n for n, v in (("--threshold", threshold), ("--target-accuracy", target_accuracy),
                            ("--max-offload", max_offload)) if v is not None]  # fmt: skip
    if len(given) > 1:
        raise UsageFault(
            f"give one of --threshold, --target-accuracy, --max-offload, not {' and '.join(given)}"
        )
    for name, value in zip(
        given, (v for v in (threshold, target_accuracy, max_offload) if v is not None), strict=True
    ):
        check_fraction(name, value)
    if latency_budget_ms is not None and latency_budget_ms <= 0:
        raise UsageFault(f"--latency-budget {latency_budget_ms}: must be a positive number of ms")
    budget = None if latency_budget_ms is None else latency_budget_ms / 1000
    if target_accuracy is not None or max_offload is not None:
        t, why = calibrate(
            description.get("early_exit") or [],
            target_accuracy=target_accuracy,
            max_offload=max_offload,
        )
        return ExitPolicy(t, f"calibrated ({why})", budget)
    t = DEFAULT_THRESHOLD if threshold is None else threshold
    return ExitPolicy(t, "fixed", budget)


def run_infer(
    model_dir: Path,
    url: str | None,
    data_spec: str,
    *,
    policy_options: dict[str, float | None],
    codec: str,
    key_file: Path | None,
    edge_id: str,
    connect_timeout: float,
    answer_timeout: float,
    baud: int,
    limit: int | None,
    report_path: Path | None,
    say: Any = print,
) -> dict[str, Any]:
    """Answer the test split of `data_spec` (or its train split if it has none)."""
    model = EdgeModel(model_dir)
    policy = choose_policy(model.description, **policy_options)
    data = load_dataset(data_spec, seed=0, limit=limit)
    images, labels = (
        (data.x_test, data.y_test) if len(data.x_test) else (data.x_train, data.y_train)
    )
    x = data.normalise(images)
    model.check_input(x)
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
    run = InferRun(model, policy, link, codec, answer_timeout_s=answer_timeout)
    if lost is not None:
        run.host_lost = lost
    t0 = time.perf_counter()
    try:
        answers = run.run(x)
    finally:
        if link is not None:
            link.close("done")
    report = infer_report(answers, labels, run, time.perf_counter() - t0)
    report.update(
        model=model.description["model"], split=model.description["split"], data=data.describe()
    )
    if run.host_lost and lost is None and url is not None:
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
