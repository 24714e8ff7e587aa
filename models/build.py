"""build_model: a zoo name, a user-model spec, or a saved spec dict -> SplitModel."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from models.errors import ModelSpecError
from models.split_model import SplitModel
from models.user import USER_FORMS, build_user_model, is_user_spec
from models.zoo import KNOWN_MODELS

_ZOO_OPTIONS = ("width",)
# Keys of a spec that say where the model comes from rather than how to build it.
_ORIGIN_KEYS = ("model", "source", "bundled_source", "bundled_package", "factory")


def build_model(
    name_or_spec: str | dict,
    input_shape: Sequence[int] = (3, 32, 32),
    num_classes: int = 10,
    **kwargs: Any,
) -> SplitModel:
    """Build a SplitModel.

    `name_or_spec` is a zoo name (see KNOWN_MODELS), "path/to/file.py:factory",
    "package.module:factory", or a SplitModel.spec dict (which rebuilds that model; the other
    arguments are then ignored). Zoo models take the option `width` (base channel count).
    """
    if isinstance(name_or_spec, dict):
        return model_from_spec(name_or_spec)
    if not isinstance(name_or_spec, str) or not name_or_spec:
        raise ModelSpecError(f"model must be a name or spec string, got {name_or_spec!r}")
    shape = _check_input_shape(input_shape)
    _check_positive_int("num_classes", num_classes)
    if is_user_spec(name_or_spec):
        return build_user_model(name_or_spec, shape, num_classes, **kwargs)
    factory = KNOWN_MODELS.get(name_or_spec)
    if factory is None:
        raise ModelSpecError(
            f"unknown model {name_or_spec!r}: known models are {', '.join(KNOWN_MODELS)}, "
            f"or a user model as {USER_FORMS}"
        )
    unknown = sorted(set(kwargs) - set(_ZOO_OPTIONS))
    if unknown:
        raise ModelSpecError(
            f"{name_or_spec} has no option {', '.join(unknown)}: valid options are "
            f"{', '.join(_ZOO_OPTIONS)}"
        )
    if "width" in kwargs:
        _check_positive_int("width", kwargs["width"])
    return factory(input_shape=shape, num_classes=num_classes, **kwargs)


def model_from_spec(spec: Mapping[str, Any], source_dir: Path | None = None) -> SplitModel:
    """Rebuild the model a SplitModel.spec, or a bundle manifest's `model_spec`, describes.

    An export bundles a user model's file and notes it as `bundled_source` and `factory`: that
    copy, in `source_dir` (the directory of the bundle half being loaded), is what is built,
    since the path the model was exported from need not exist where the bundle is loaded.
    """
    if "model" not in spec:
        raise ModelSpecError(f"model spec has no 'model' key: {dict(spec)!r:.200}")
    options = {k: v for k, v in spec.items() if k not in _ORIGIN_KEYS}
    name = spec["model"]
    bundled = spec.get("bundled_source")
    if bundled:
        if source_dir is None:
            raise ModelSpecError(
                f"model {name} was bundled as {bundled}: rebuilding it needs the bundle directory"
            )
        name = f"{Path(source_dir) / bundled}:{spec['factory']}"
    package = spec.get("bundled_package")
    if package and not bundled:
        # A `package.module:factory` model from the export's working directory: its package
        # is in the bundle's code/, which goes on sys.path (after any installed copy).
        if source_dir is None:
            raise ModelSpecError(
                f"model {name} was bundled as {package}: rebuilding it needs the bundle directory"
            )
        where = str((Path(source_dir) / package).parent)
        if where not in sys.path:
            sys.path.append(where)
    return build_model(name, **options)


def _check_input_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    try:
        shape = tuple(input_shape)
    except TypeError:
        shape = ()
    if len(shape) != 3 or not all(_is_positive_int(side) for side in shape):
        raise ModelSpecError(
            f"input_shape must be (channels, height, width) of positive ints, got {input_shape!r}"
        )
    return tuple(int(side) for side in shape)  # type: ignore[return-value]


def _check_positive_int(name: str, value: Any) -> None:
    if not _is_positive_int(value):
        raise ModelSpecError(f"{name} must be a positive integer, got {value!r}")


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
