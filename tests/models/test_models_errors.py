"""Bad names, options and splits give one-line ModelSpecErrors that say what is valid."""

import pytest

from models import ModelSpecError, build_model


def test_model_spec_error_is_a_value_error():
    assert issubclass(ModelSpecError, ValueError)


@pytest.mark.parametrize("split", [0, 10, 12, -1, 2.0, True, "3"])
def test_split_out_of_range(split):
    model = build_model("resnet18", input_shape=(1, 8, 8))
    with pytest.raises(ModelSpecError) as err:
        model.front(split)
    message = str(err.value)
    assert "\n" not in message
    assert "resnet18" in message and "valid 1..9" in message
    assert "stem, layer1.0, layer1.1" in message and "classifier" in message
    with pytest.raises(ModelSpecError):
        model.tail(split)
    with pytest.raises(ModelSpecError):
        model.activation_shape(split)


def test_check_split_accepts_valid_range():
    model = build_model("smallcnn")
    for split in model.valid_splits:
        model.check_split(split)


def test_unknown_model_lists_known_models_and_user_forms():
    with pytest.raises(ModelSpecError) as err:
        build_model("resnet50")
    message = str(err.value)
    assert "'resnet50'" in message
    for name in ("resnet18", "vgg16", "smallcnn"):
        assert name in message
    assert "file.py:factory" in message and "package.module:factory" in message


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"input_shape": (32, 32)}, "input_shape"),
        ({"input_shape": (3, 0, 32)}, "input_shape"),
        ({"num_classes": 0}, "num_classes"),
        ({"width": -2}, "width"),
        ({"depth": 3}, "valid options are width"),
    ],
)
def test_bad_options(kwargs, needle):
    with pytest.raises(ModelSpecError, match=needle):
        build_model("smallcnn", **kwargs)


def test_spec_dict_without_model():
    with pytest.raises(ModelSpecError, match="'model'"):
        build_model({"input_shape": [3, 32, 32]})
