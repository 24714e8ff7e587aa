"""User models from a file or a module, in both forms, and the errors for bad ones."""

import json
import textwrap

import pytest
import torch

from models import ModelSpecError, build_model, split_table

SEQUENTIAL = """
from torch import nn

def make(input_shape=(3, 32, 32), num_classes=10):
    c, h, w = input_shape
    return nn.Sequential(
        nn.Conv2d(c, 8, 3, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(8 * h * w, num_classes),
    )
"""

BLOCKS_ATTRIBUTE = """
from collections import OrderedDict
from torch import nn

class Net(nn.Module):
    def __init__(self, channels, classes):
        super().__init__()
        self.blocks = nn.ModuleDict(OrderedDict(
            features=nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.ReLU()),
            more=nn.Sequential(nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU()),
            head=nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, classes)),
        ))

def net(input_shape, num_classes):
    return Net(input_shape[0], num_classes)

class Listed(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(1, 2, 3, padding=1)
        self.b = nn.Sequential(nn.Flatten(), nn.Linear(2 * 8 * 8, 5))
        self.blocks = [("stage.a", self.a), ("stage.b", self.b)]

def listed():  # takes no arguments: the class count comes from the model
    return Listed()

def not_a_model():
    return 42

def one_block():
    return nn.Sequential(nn.Flatten())

def wrong_classes(num_classes):
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 7))

def broken_chain(input_shape):
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.Linear(5, 3))

def with_depth(input_shape, num_classes, depth=1):
    return nn.Sequential(nn.Flatten(), *[nn.Linear(64, 64) for _ in range(depth)], nn.Linear(64, num_classes))

ANSWER = 42
"""


@pytest.fixture
def user_dir(tmp_path):
    (tmp_path / "seq_model.py").write_text(textwrap.dedent(SEQUENTIAL))
    (tmp_path / "blocks_model.py").write_text(textwrap.dedent(BLOCKS_ATTRIBUTE))
    return tmp_path


def assert_splits_compose(model):
    x = torch.randn(2, *model.input_shape)
    full = x
    for _, block in model.blocks:
        full = block.eval()(full)
    for split in model.valid_splits:
        activation = model.front(split).eval()(x)
        assert tuple(activation.shape[1:]) == model.activation_shape(split)
        torch.testing.assert_close(model.tail(split).eval()(activation), full)


def test_sequential_from_file(user_dir):
    spec = f"{user_dir / 'seq_model.py'}:make"
    model = build_model(spec, input_shape=(1, 8, 8), num_classes=4)
    assert model.name == spec
    assert model.block_names == ["0", "1", "2", "3"]
    assert model.num_classes == 4
    assert model.activation_shape(3) == (512,)
    assert model.spec["model"] == spec
    assert model.spec["source"] == str(user_dir / "seq_model.py")
    assert model.spec["input_shape"] == [1, 8, 8] and model.spec["num_classes"] == 4
    json.dumps(model.spec)
    assert_splits_compose(model)
    rows = split_table(model)
    assert rows[-1]["activation_shape"] == [512]  # flat cut: Flatten + Linear exit head


def test_blocks_attribute_from_file(user_dir):
    model = build_model(f"{user_dir / 'blocks_model.py'}:net", input_shape=(3, 16, 16))
    assert model.block_names == ["features", "more", "head"]
    assert model.activation_shape(2) == (6, 8, 8)
    assert_splits_compose(model)
    assert len(split_table(model)) == 2


def test_blocks_list_and_factory_without_arguments(user_dir):
    model = build_model(f"{user_dir / 'blocks_model.py'}:listed", input_shape=(1, 8, 8))
    assert model.block_names == ["stage.a", "stage.b"]
    assert model.num_classes == 5  # the factory took no num_classes: read from the output
    assert [n for n, _ in model.front(1).named_children()] == ["stage_a"]
    assert_splits_compose(model)


def test_module_form_and_rebuild_from_spec(user_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(user_dir))
    model = build_model("blocks_model:net", input_shape=(1, 8, 8), num_classes=3)
    assert model.spec["source"] == "blocks_model"
    again = build_model(json.loads(json.dumps(model.spec)))
    assert again.block_names == model.block_names and again.num_classes == 3


def test_module_form_from_the_working_directory(user_dir):
    """`hostctl` is a console script: its sys.path has no working directory, so a package
    beside the user (`mypkg.nets:net`) was "No module named 'mypkg'"."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    hostctl = Path(sys.executable).with_name("hostctl")
    if not hostctl.is_file():
        pytest.skip(f"no console script {hostctl} (not an installed environment)")
    (user_dir / "mypkg").mkdir()
    (user_dir / "mypkg" / "__init__.py").write_text("")
    shutil.copy(user_dir / "blocks_model.py", user_dir / "mypkg" / "nets.py")
    args = [str(hostctl), "inspect", "--model", "mypkg.nets:net", "--input-shape", "1x8x8"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=user_dir)
    assert out.returncode == 0, out.stderr
    assert "mypkg.nets:net" in out.stdout and "6x4x4" in out.stdout, out.stdout


def test_user_options_are_passed(user_dir):
    model = build_model(
        f"{user_dir / 'blocks_model.py'}:with_depth", input_shape=(1, 8, 8), depth=3
    )
    assert len(model.blocks) == 5 and model.spec["depth"] == 3
    with pytest.raises(ModelSpecError, match="does not take option"):
        build_model(f"{user_dir / 'seq_model.py'}:make", depth=3)


@pytest.mark.parametrize(
    "factory,needle",
    [
        ("not_a_model", "returned a int; expected an nn.Sequential, or a module with a `blocks`"),
        ("one_block", "at least 2 are needed"),
        ("wrong_classes", "asked for 10 classes, the last block gives 7"),
        ("broken_chain", "block '1' fails"),
        ("missing", "no factory 'missing'"),
        ("ANSWER", "not callable"),
    ],
)
def test_bad_user_models(user_dir, factory, needle):
    with pytest.raises(ModelSpecError, match=needle) as err:
        build_model(f"{user_dir / 'blocks_model.py'}:{factory}", input_shape=(1, 8, 8))
    assert "\n" not in str(err.value)


def test_missing_file_and_module(tmp_path):
    with pytest.raises(ModelSpecError, match="file not found: .*nope.py"):
        build_model(f"{tmp_path / 'nope.py'}:make")
    with pytest.raises(
        ModelSpecError,
        match=r"cannot import module 'no_such_pkg.models'.*: install it, or run where its "
        r"package is in the working directory",
    ):
        build_model("no_such_pkg.models:make")
    with pytest.raises(ModelSpecError, match="bad user model spec"):
        build_model("models.py:")


def test_file_that_fails_to_import(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ModelSpecError, match="bad.py failed: RuntimeError: boom"):
        build_model(f"{path}:make")
