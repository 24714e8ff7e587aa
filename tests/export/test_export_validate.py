"""hostctl export validates what it wrote, refuses what ORT cannot train, and never leaves a
partial bundle: real exports, real onnxruntime sessions (in validation's child process)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import onnx
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from edge_runtime.bundle import load_bundle
from edge_runtime.engines import EngineError, make_engine
from host.cli import cli
from host.export import BundleExistsError, ExportError, ExportOptions, bundle_writer, export_bundle
from host.export.ort_ops import UNTRAINABLE, UnsupportedOpError, check_trainable
from host.export.validate import ValidationError

AVG_SHORTCUT = textwrap.dedent(
    """
    from torch import nn

    class Down(nn.Module):
        # timm resnet10t's shortcut: average pool, then a 1x1 conv
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(8, 8, 3, 2, 1)
            self.short = nn.Sequential(
                nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False), nn.Conv2d(8, 8, 1)
            )

        def forward(self, x):
            return self.conv(x) + self.short(x)

    def net(num_classes=10):
        head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))
        return nn.Sequential(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()), Down(), head)
    """
)


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def _perturb_first_weight(path: Path) -> None:
    """Change one weight in a written ONNX file: torch and the file now disagree."""
    model = onnx.load(str(path))
    init = next(i for i in model.graph.initializer if len(i.dims) == 4)
    array = numpy_helper.to_array(init).copy()
    array.flat[0] += 1.0
    init.CopyFrom(numpy_helper.from_array(array, init.name))
    onnx.save(model, str(path))


@pytest.mark.parametrize(
    ("target", "bad_line"),
    [("inference_model.onnx", "✗ inference model"), ("tail_model.onnx", "✗ cloud tail model")],
)
def test_a_weight_altered_between_torch_and_onnx_fails_validation(
    tmp_path, monkeypatch, target, bad_line
) -> None:
    original = bundle_writer.export_inference

    def altered(module, sample, outputs, path):
        original(module, sample, outputs, path)
        if Path(path).name == target:
            _perturb_first_weight(Path(path))

    monkeypatch.setattr(bundle_writer, "export_inference", altered)
    out = tmp_path / "bundles" / "b"
    result = CliRunner().invoke(
        cli, ["export", "--model", "smallcnn", "--split", "2", "--out", str(out)]
    )
    assert result.exit_code == 1, result.output
    assert bad_line in result.output, result.output
    assert "disagrees with torch" in result.output
    assert "✓ eval model (ORT artifacts)" in result.output  # the others still agree
    assert not out.exists() and _leftovers(out.parent) == []


def test_an_untrainable_op_that_slips_past_the_table_fails_at_validation(
    tmp_path, monkeypatch
) -> None:
    """AveragePool's gradient kills its process (SIGFPE) or fails with "Can broadcast 0 by 0
    or 1" (timm resnet10t at the first training step): validation runs ORT in a child process,
    so export lives to report it and removes the bundle."""
    src = tmp_path / "avg.py"
    src.write_text(AVG_SHORTCUT)
    monkeypatch.setattr(bundle_writer, "check_ort_trainable", lambda net, sample: None)
    lines: list[str] = []
    out = tmp_path / "b"
    with pytest.raises(ValidationError, match="training step"):
        export_bundle(
            ExportOptions(model=f"{src}:net", split=2, input_shape=(3, 8, 8)),
            out,
            report=lines.append,
        )
    bad = [line for line in lines if line.startswith("✗")]
    assert len(bad) == 1 and bad[0].startswith("✗ training step (ORT artifacts): onnxruntime"), (
        lines
    )
    assert not out.exists() and _leftovers(tmp_path) == []


def test_untrainable_ops_are_named_before_export_with_the_way_out(tmp_path) -> None:
    src = tmp_path / "avg.py"
    src.write_text(AVG_SHORTCUT)
    out = tmp_path / "b"
    with pytest.raises(UnsupportedOpError) as info:
        export_bundle(ExportOptions(model=f"{src}:net", split=2, input_shape=(3, 8, 8)), out)
    text = str(info.value)
    assert "\n" not in text and text.startswith("block '1' uses AveragePool (nn.AvgPool2d")
    assert "replace it with" in text and "--engine torch" in text
    assert not out.exists() and _leftovers(tmp_path) == []

    # The same model as a torch-engine bundle: validated, no ORT training artifacts, and the
    # engines say so (auto picks torch, ort refuses in one line).
    export_bundle(
        ExportOptions(model=f"{src}:net", split=2, input_shape=(3, 8, 8), engine="torch"), out
    )
    edge = load_bundle(out / "edge")
    assert edge.manifest["engines"] == ["torch"]
    assert not (out / "edge" / "training_model.onnx").exists()
    assert (out / "edge" / "inference_model.onnx").is_file()
    assert make_engine("auto", edge).name == "torch"
    with pytest.raises(EngineError, match="run with --engine torch") as refused:
        make_engine("ort", edge)
    assert "\n" not in str(refused.value)


def test_every_op_in_the_table_is_found_in_an_exported_graph() -> None:
    """The pre-export check reads op types from the traced graph; each table entry's torch
    layer really exports to that op (so the check can see it)."""
    import torch
    from torch import nn

    from host.export.onnx_artifacts import trace_training_graph
    from models import EdgeNet, build_exit_head

    layers = {
        "HardSwish": nn.Hardswish(),
        "HardSigmoid": nn.Hardsigmoid(),
        "Softplus": nn.Softplus(),
        "Elu": nn.ELU(),
        "Celu": nn.CELU(),
        "Selu": nn.SELU(),
        "PRelu": nn.PReLU(),
        "InstanceNormalization": nn.GroupNorm(2, 4),
        "LayerNormalization": nn.LayerNorm([4, 4, 4]),
        "AveragePool": nn.AvgPool2d(1),
        "Resize": nn.Upsample(scale_factor=1.0),
    }
    assert set(layers) == set(UNTRAINABLE)
    for op, layer in layers.items():
        front = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), layer)
        net = EdgeNet(front, build_exit_head((4, 4, 4), 10))
        with pytest.raises(UnsupportedOpError, match=f"uses {op} "):
            check_trainable(trace_training_graph(net, torch.randn(2, 3, 4, 4)))


def test_refuses_to_overwrite_without_force_and_keeps_the_key(tmp_path) -> None:
    out = tmp_path / "b"
    opts = ExportOptions(model="smallcnn", split=1, input_shape=(1, 8, 8), validate=False)
    export_bundle(opts, out)
    key = (out / "edge" / "link.key").read_bytes()
    with pytest.raises(BundleExistsError, match="--force"):
        export_bundle(opts, out)
    export_bundle(ExportOptions(**{**vars(opts), "force": True, "seed": 1}), out)
    assert (
        (out / "edge" / "link.key").read_bytes() == key == (out / "cloud" / "link.key").read_bytes()
    )
    assert load_bundle(out).manifest["seed"] == 1
    export_bundle(ExportOptions(**{**vars(opts), "force": True, "new_key": True}), out)
    assert (out / "edge" / "link.key").read_bytes() != key
    assert _leftovers(tmp_path) == []

    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep")
    with pytest.raises(BundleExistsError, match="not a bundle"):
        export_bundle(ExportOptions(**{**vars(opts), "force": True}), other)
    assert (other / "mine.txt").read_text() == "keep"


def test_hwc_input_shape_is_refused_with_the_chw_form(tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "host.cli", "export", "--split", "2", "--input-shape", "32x32x3"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert out.returncode == 2, out.stderr
    (line,) = [x for x in out.stderr.splitlines() if x.strip()]
    assert "H x W x C" in line and "3x32x32" in line
    assert list(tmp_path.iterdir()) == []


def test_user_code_and_requirements_go_into_the_bundle(tmp_path) -> None:
    src = tmp_path / "proj"
    (src / "xv_parts").mkdir(parents=True)
    (src / "xv_parts" / "__init__.py").write_text("from xv_parts.head import head\n")
    (src / "xv_parts" / "head.py").write_text(
        "from torch import nn\n\ndef head(c, n):\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(c * 64, n))\n"
    )
    (src / "xv_widths.py").write_text("WIDTH = 4\n")
    (src / "model.py").write_text(
        "from torch import nn\nfrom xv_parts import head\nfrom xv_widths import WIDTH\n\n"
        "def net(num_classes=10):\n"
        "    return nn.Sequential(nn.Conv2d(1, WIDTH, 3, padding=1), nn.ReLU(), head(WIDTH, num_classes))\n"
    )
    extra = tmp_path / "lazy_import.py"  # imported only when run: found by nobody but --include
    extra.write_text("X = 1\n")
    out = tmp_path / "b"
    export_bundle(
        ExportOptions(
            model=f"{src / 'model.py'}:net",
            split=2,
            input_shape=(1, 8, 8),
            includes=[extra],
            requires=["timm==1.0.9", "einops>=0.7"],
        ),
        out,
    )
    m = json.loads((out / "manifest.json").read_text())
    assert m["code"] == {
        "dir": "code",
        "files": ["lazy_import.py", "model.py", "xv_parts", "xv_widths.py"],
        "requires": ["timm==1.0.9", "einops>=0.7"],
    }
    assert m["model_spec"]["bundled_source"] == "code/model.py"
    for side in ("edge", "cloud"):
        assert (out / side / "code" / "xv_parts" / "head.py").is_file()
        assert f"{side}/code/xv_widths.py" in m["files"]  # hashed: a changed file is caught

    with pytest.raises(ExportError, match="--requires 'timm=1.0'"):
        export_bundle(
            ExportOptions(model="smallcnn", split=1, requires=["timm=1.0"]), tmp_path / "c"
        )
    assert not (tmp_path / "c").exists()


def test_ort_still_has_no_gradient_for_hardswish(tmp_path) -> None:
    """The table's premise, checked against the installed onnxruntime-training; an op the table
    does not list gets the same one line from generate_artifacts' error."""
    import torch
    from torch import nn

    from host.export.onnx_artifacts import export_training_artifacts
    from host.export.ort_ops import from_ort_error
    from models import EdgeNet, build_exit_head

    net = EdgeNet(
        nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Hardswish()), build_exit_head((4, 4, 4), 10)
    )
    with pytest.raises(RuntimeError, match="has not been registered: HardSwish") as info:
        export_training_artifacts(
            net, torch.randn(2, 3, 4, 4), tmp_path, optimizer="sgd", weight_decay=0.0
        )
    line = str(from_ort_error(info.value))
    assert line.startswith("block '1' uses HardSwish (nn.Hardswish)") and "\n" not in line
