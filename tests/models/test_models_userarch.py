"""Architectures like the ones users bring, end to end: export (validated), then one short epoch
with each engine that can train them, `edge-runtime run` against `hostctl serve` over TCP.

torchvision and timm do not import here (PyPI's torchvision is a CUDA build), so the test writes
their shapes itself: MobileNetV2 inverted residuals with ReLU6, an ImageNet-form ResNet (7x7
stem, max-pool), timm resnet10t's average-pool shortcut, and a MobileNetV3 block with HardSwish.
The blocks live in a helper module beside the factory file (`from userblocks import ...`), and
the source folder is deleted after export: the board's torch engine runs the bundle's copy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from e2e.e2e_harness import ENV, edge_cmd, run_edge, start_cloud

HOSTCTL = [sys.executable, "-m", "host.cli"]

BLOCKS = textwrap.dedent(
    '''
    """Blocks shaped like torchvision's and timm's, narrow enough to train in seconds."""
    import torch
    from torch import nn
    import torch.nn.functional as F


    def conv_bn(i, o, k=3, s=1, groups=1, act=nn.ReLU):
        layers = [nn.Conv2d(i, o, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(o)]
        return nn.Sequential(*layers, act()) if act else nn.Sequential(*layers)


    class InvertedResidual(nn.Module):
        """MobileNetV2: expand 1x1, depthwise 3x3, project 1x1 (no activation), residual."""

        def __init__(self, i, o, s, expand=4, act=nn.ReLU6):
            super().__init__()
            mid = i * expand
            self.use_res = s == 1 and i == o
            self.conv = nn.Sequential(
                conv_bn(i, mid, 1, act=act),
                conv_bn(mid, mid, 3, s, groups=mid, act=act),
                conv_bn(mid, o, 1, act=None),
            )

        def forward(self, x):
            return x + self.conv(x) if self.use_res else self.conv(x)


    class BasicBlock(nn.Module):
        """ResNet basic block; `avg_down` is timm's resnet*t / resnet*d shortcut."""

        def __init__(self, i, o, s, avg_down=False):
            super().__init__()
            self.conv1 = conv_bn(i, o, 3, s)
            self.conv2 = conv_bn(o, o, 3, act=None)
            self.down = None
            if s != 1 or i != o:
                pool = [nn.AvgPool2d(2, s, ceil_mode=True, count_include_pad=False)] if avg_down else []
                self.down = nn.Sequential(
                    *pool, nn.Conv2d(i, o, 1, 1 if avg_down else s, bias=False), nn.BatchNorm2d(o)
                )

        def forward(self, x):
            shortcut = x if self.down is None else self.down(x)
            y = self.conv2(self.conv1(x))
            y += shortcut
            return F.relu(y, inplace=True)


    def classifier(c, num_classes):
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes))
    '''
)

ARCHS = textwrap.dedent(
    """
    from collections import OrderedDict

    from torch import nn

    from userblocks import BasicBlock, InvertedResidual, classifier, conv_bn


    def mobilenet_v2(num_classes=10):
        return nn.Sequential(OrderedDict(
            stem=conv_bn(3, 16, 3, 2, act=nn.ReLU6),
            ir1=InvertedResidual(16, 16, 1),
            ir2=InvertedResidual(16, 24, 2),
            ir3=InvertedResidual(24, 24, 1),
            head=nn.Sequential(conv_bn(24, 64, 1, act=nn.ReLU6), classifier(64, num_classes)),
        ))


    def resnet_imagenet(num_classes=10):
        return nn.Sequential(OrderedDict(
            stem=nn.Sequential(conv_bn(3, 16, 7, 2), nn.MaxPool2d(3, 2, 1)),
            layer1=BasicBlock(16, 16, 1),
            layer2=BasicBlock(16, 32, 2),
            layer3=BasicBlock(32, 64, 2),
            fc=classifier(64, num_classes),
        ))


    def resnet10t(num_classes=10):
        # timm's tiered stem (24, 32, 64 channels here 8, 16, 16) and average-pool shortcuts.
        return nn.Sequential(OrderedDict(
            stem=nn.Sequential(conv_bn(3, 8, 3, 2), conv_bn(8, 16), conv_bn(16, 16), nn.MaxPool2d(3, 2, 1)),
            layer1=BasicBlock(16, 16, 1, avg_down=True),
            layer2=BasicBlock(16, 32, 2, avg_down=True),
            layer3=BasicBlock(32, 64, 2, avg_down=True),
            fc=classifier(64, num_classes),
        ))


    def mobilenet_v3_block(num_classes=10):
        return nn.Sequential(OrderedDict(
            stem=conv_bn(3, 16, 3, 2, act=nn.Hardswish),
            ir1=InvertedResidual(16, 24, 2, act=nn.Hardswish),
            ir2=InvertedResidual(24, 24, 1, act=nn.Hardswish),
            head=classifier(24, num_classes),
        ))
    """
)

# (factory, split, what ORT training says: None when it trains the front)
CASES = [
    ("mobilenet_v2", 3, None),
    ("resnet_imagenet", 3, None),
    ("resnet10t", 3, "AveragePool (nn.AvgPool2d"),
    ("mobilenet_v3_block", 2, "HardSwish (nn.Hardswish)"),
]
RUN = [
    "--data",
    "synthetic:96:32",
    "--epochs",
    "1",
    "--batch-size",
    "16",
    "--eval-batch-size",
    "32",
]


def _user_source(root: Path) -> Path:
    root.mkdir()
    (root / "userblocks.py").write_text(BLOCKS)
    (root / "userarch.py").write_text(ARCHS)
    return root / "userarch.py"


def _export(src: Path, factory: str, split: int, out: Path, *args: str):
    cmd = [
        *HOSTCTL,
        "export",
        "--model",
        f"{src}:{factory}",
        "--split",
        str(split),
        "--out",
        str(out),
    ]
    return subprocess.run(
        [*cmd, "--lr", "3e-3", *args], capture_output=True, text=True, timeout=600, env=ENV
    )


@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.parametrize(("factory", "split", "ort_says"), CASES, ids=[c[0] for c in CASES])
def test_user_architecture_exports_validates_and_trains(tmp_path, factory, split, ort_says) -> None:
    src = _user_source(tmp_path / "src")
    bundle = tmp_path / "bundle"
    made = _export(src, factory, split, bundle)
    if ort_says is None:
        engines = ["ort", "torch"]
        assert made.returncode == 0, made.stderr[-3000:]
        checks = [line for line in made.stderr.splitlines() if line[:1] in "✓✗"]
        assert len(checks) == 5 and all(line.startswith("✓") for line in checks), made.stderr
    else:
        # One line naming the op, its replacement and the way out; nothing left behind.
        lines = [line for line in made.stderr.splitlines() if line.strip()]
        assert made.returncode == 2 and len(lines) == 1, made.stderr
        assert ort_says in lines[0] and "replace it with" in lines[0], lines[0]
        assert "--engine torch" in lines[0]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]
        engines = ["torch"]
        made = _export(src, factory, split, bundle, "--engine", "torch")
        assert made.returncode == 0, made.stderr[-3000:]
        assert "✓ torch engine (bundled code + weights)" in made.stderr
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["engines"] == engines
    assert manifest["code"]["files"] == ["userarch.py", "userblocks.py"]
    assert (bundle / "edge" / "code" / "userblocks.py").read_text() == BLOCKS
    shutil.rmtree(src.parent)  # the board has only the bundle

    for engine in engines:
        work = tmp_path / f"run-{engine}"
        work.mkdir()
        cloud = start_cloud(bundle, work)
        edge = run_edge(bundle, cloud.url, work, *RUN, "--engine", engine, timeout=600)
        report = cloud.finish(timeout=600)
        assert edge["engine"] == engine
        assert edge["batches_sent"] == report["batches_trained_cloud"] > 0
        assert 0.0 <= edge["edge_exit_accuracy"] <= 1.0 and 0.0 <= report["final_accuracy"] <= 1.0

    if engines == ["torch"]:  # the ort engine refuses a torch-only bundle in one line
        work = tmp_path / "run-ort"
        work.mkdir()
        refused = subprocess.run(
            [*edge_cmd(bundle, "socket://127.0.0.1:9", work, *RUN), "--engine", "ort"],
            capture_output=True,
            text=True,
            timeout=300,
            env=ENV,
            cwd=work,
        )
        lines = [line for line in refused.stderr.splitlines() if line.strip()]
        assert refused.returncode != 0 and len(lines) == 1, refused.stderr
        assert "--engine torch" in lines[0], lines[0]
